"""Fuzzing the HTTP/1.1 path end to end (tests/proxy/http/fuzz_h1.py holds the rig and grammars).

`make test` runs a short, derandomized pass so CI is repeatable. For a longer, randomized run:

    REMORA_FUZZ_EXAMPLES=5000 .venv/bin/pytest -q tests/proxy/http/test_fuzz_h1.py

A failure prints the shrunk client stream, the upstream replies and every broken invariant.
"""

from __future__ import annotations

import os
from collections.abc import Iterator

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.proxy.http.fuzz_h1 import ClientScript, Reply, Rig, client_script, reply, rig

EXAMPLES = int(os.environ.get("REMORA_FUZZ_EXAMPLES", "0"))
FUZZ = settings(
    max_examples=EXAMPLES or 300,
    derandomize=not EXAMPLES,
    deadline=None,
    database=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)


@pytest.fixture(scope="module")
def proxy_rig() -> Iterator[Rig]:
    with rig() as running:
        yield running


@pytest.mark.timeout(0)
@FUZZ
@given(script=client_script(), replies=st.lists(reply(), max_size=3))
def test_no_invariant_breaks_for_any_client_or_upstream_bytes(
    proxy_rig: Rig, script: ClientScript, replies: list[Reply]
) -> None:
    outcome = proxy_rig.exchange(script, replies)
    violations = outcome.violations()
    assert not violations, (
        violations,
        script.wire,
        [r.wire[:300] for r in replies],
        outcome.received,
    )


ENDLESS = [
    (b"GET /", b"a"),  # a target
    (b"GETGETGET", b"GET"),  # a method
    (b"GET /x HTTP/1.1\r\nhost: x\r\nx-big", b"a"),  # a name that never reaches its colon
    (b"GET /x HTTP/1.1\r\nhost: x\r\nx-big: ", b"a"),  # a value
    (b"GET /x HTTP/1.1\r\nhost: x\r\nx-big:", b" "),  # whitespace
    (b"GET /x HTTP/1.1\r\nhost: x\r\nx-fold: a\r\n", b" folded\r\n"),  # continuation lines
    (b"GET /x HTTP/1.1\r\nhost: x\r\n", b"x-n: v\r\n"),  # fields without end
    (b"GET /x HTTP/1.1\r\nhost: x\r\n", b"x-n:\r\n"),  # empty fields
    (b"POST /x HTTP/1.1\r\nhost: x\r\ntransfer-encoding: chunked\r\n\r\n0\r\nx-t: ", b"a"),
    (b"POST /x HTTP/1.1\r\nhost: x\r\ntransfer-encoding: chunked\r\n\r\n0\r\n", b"x-t: v\r\n"),
    (b"POST /x HTTP/1.1\r\nhost: x\r\ntransfer-encoding: chunked\r\n\r\n5;", b"e"),  # extension
    (b"POST /x HTTP/1.1\r\nhost: x\r\ntransfer-encoding: chunked\r\n\r\n", b"0"),  # leading zeros
    (b"GET /x HTTP/1.1\r\nhost: x\r\n\r\n", b"\r\n"),  # empty lines between requests
]


@pytest.mark.timeout(0)
@settings(FUZZ, max_examples=len(ENDLESS) * 2 if not EXAMPLES else max(EXAMPLES // 20, 20))
@given(case=st.sampled_from(ENDLESS), write_size=st.sampled_from([700, 16384, 65536]))
def test_an_element_that_never_ends_is_refused_in_bounded_memory(
    proxy_rig: Rig, case: tuple[bytes, bytes], write_size: int
) -> None:
    head, filler = case
    total = 8 << 20
    sent, peak, answer = proxy_rig.stream_endless(head, filler * (write_size // len(filler)), total)
    assert sent < total, f"streamed {sent} bytes of a never-ending element without an answer"
    # What the proxy holds for a stream it has not refused yet is bounded by the header limit
    # (60 KiB) and one read; the rest is the test's own buffers and the interpreter's noise.
    assert peak < 2 << 20, f"peak allocation {peak} bytes while streaming {sent} bytes"
    if head.startswith(b"GET") and head.endswith(b"\r\n\r\n"):
        assert answer.startswith(b"HTTP/1.1 200 "), answer[:100]  # the request before them
        answer = answer.partition(b"\r\n\r\nok")[2]
    assert answer.startswith((b"HTTP/1.1 400 ", b"HTTP/1.1 431 ")), answer[:100]
