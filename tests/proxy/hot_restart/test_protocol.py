"""The handover protocol without sockets: frames, messages, and the counter import."""

from __future__ import annotations

import struct

import pytest

from remora.proxy.hot_restart.merge import CounterImport, snapshot
from remora.proxy.hot_restart.protocol import (
    MAX_FRAME,
    Decoder,
    Draining,
    DrainRequest,
    Hello,
    ProtocolError,
    SocketReply,
    SocketRequest,
    Stats,
    StatsRequest,
    display_name,
    encode,
    socket_name,
)
from remora.proxy.stats import Store


def test_every_message_survives_a_round_trip_fed_one_byte_at_a_time() -> None:
    messages = [
        Hello(epoch=1, pid=42, first_started_at=1.5),
        SocketRequest("127.0.0.1", 8080),
        SocketReply("::", 443, found=True),
        StatsRequest(),
        Stats({"http.x.downstream_rq_total": 7}, final=True),
        DrainRequest(drain_time_s=600, parent_shutdown_time_s=900),
        Draining(open_connections=3),
    ]
    wire = b"".join(encode(message) for message in messages)
    decoder = Decoder()
    got = [message for i in range(len(wire)) for message in decoder.feed(wire[i : i + 1])]
    assert got == messages
    assert decoder.pending == 0


def test_a_partial_frame_waits_and_is_reported_pending() -> None:
    frame = encode(SocketRequest("127.0.0.1", 1))
    decoder = Decoder()
    assert decoder.feed(frame[:-1]) == []
    assert decoder.pending == len(frame) - 1
    assert decoder.feed(frame[-1:]) == [SocketRequest("127.0.0.1", 1)]


@pytest.mark.parametrize(
    ("body", "rule"),
    [
        (b"not json", "not JSON"),
        (b"[1]", "JSON object"),
        (b'{"type": "launch"}', "unknown message type 'launch'"),
        (b'{"type": "socket_request", "host": "h"}', "socket_request"),
        (b'{"type": "draining", "open_connections": 1, "extra": 2}', "draining"),
    ],
)
def test_a_malformed_frame_names_the_rule_it_broke(body: bytes, rule: str) -> None:
    with pytest.raises(ProtocolError, match=rule):
        Decoder().feed(struct.pack(">I", len(body)) + body)


def test_an_oversized_length_is_refused_before_buffering_it() -> None:
    with pytest.raises(ProtocolError, match="exceeds"):
        Decoder().feed(struct.pack(">I", MAX_FRAME + 1))


def test_names_are_abstract_and_separate_base_ids_and_epochs() -> None:
    assert socket_name(0, 0) == "\0remora_hot_restart_0_0"
    assert display_name(socket_name(7, 3)) == "@remora_hot_restart_7_3"
    assert len({socket_name(b, e) for b in (0, 1, 10) for e in (0, 1, 11)}) == 9


def test_counters_import_only_their_growth_and_gauges_never() -> None:
    parent, child = Store(), Store()
    parent.counter("http.x.downstream_rq_total").inc(5)
    parent.counter("never.used")
    parent.gauge("http.x.downstream_cx_active").set(4)
    child.counter("http.x.downstream_rq_total").inc(2)  # the child counted already
    imported = CounterImport(child)
    assert snapshot(parent) == {"http.x.downstream_rq_total": 5}
    assert imported.apply(snapshot(parent)) == 5
    assert child.counter("http.x.downstream_rq_total").value == 7
    parent.counter("http.x.downstream_rq_total").inc(3)  # served while draining
    assert imported.apply(snapshot(parent)) == 3
    assert imported.apply(snapshot(parent)) == 0  # the same snapshot again adds nothing
    assert child.counter("http.x.downstream_rq_total").value == 10
    assert [gauge.name for gauge in child.gauges()] == []


def test_a_counter_the_child_has_as_a_gauge_is_skipped() -> None:
    child = Store()
    child.gauge("clash").set(1)
    assert CounterImport(child).apply({"clash": 9, "other": 1}) == 1
    assert child.gauge("clash").value == 1
