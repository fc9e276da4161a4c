import uuid
from dataclasses import replace

import pytest

from remora.config.bootstrap import parse_dict
from remora.config.compile import compile_bootstrap
from remora.proxy.http.config import HcmConfig
from remora.proxy.http.forwarding import apply_forwarding, is_internal, new_request_id
from tests.proxy.harness import bootstrap, cluster, http_listener


@pytest.fixture(scope="module")
def hcm() -> HcmConfig:
    config = compile_bootstrap(parse_dict(bootstrap([http_listener()], [cluster("backend", [1])])))
    network_filter = config.listeners[0].chains[0].network_filter
    assert isinstance(network_filter, HcmConfig)
    return network_filter


def test_request_ids_are_v4_uuids() -> None:
    ids = {new_request_id() for _ in range(1000)}
    assert len(ids) == 1000
    for value in ids:
        parsed = uuid.UUID(value)
        assert parsed.version == 4 and parsed.variant == uuid.RFC_4122


def test_without_use_remote_address_xff_is_not_appended(hcm: HcmConfig) -> None:
    decision = apply_forwarding([("x-forwarded-for", "1.2.3.4")], "127.0.0.1", "http", hcm)
    headers = dict(decision.headers)
    assert headers["x-forwarded-for"] == "1.2.3.4"
    assert headers["x-forwarded-proto"] == "http"
    assert decision.trusted_client_address == "1.2.3.4"  # the last hop, zero trusted hops


def test_use_remote_address_appends_and_trusts_hops(hcm: HcmConfig) -> None:
    edge = replace(hcm, use_remote_address=True, xff_num_trusted_hops=1)
    headers = [("x-forwarded-for", "9.9.9.9, 8.8.8.8"), ("x-forwarded-proto", "https")]
    decision = apply_forwarding(headers, "10.1.1.1", "http", edge)
    result = dict(decision.headers)
    assert result["x-forwarded-for"] == "9.9.9.9, 8.8.8.8, 10.1.1.1"
    assert result["x-forwarded-proto"] == "http"  # an edge proxy overwrites it
    assert decision.trusted_client_address == "8.8.8.8"


def test_skip_xff_append(hcm: HcmConfig) -> None:
    edge = replace(hcm, use_remote_address=True, skip_xff_append=True)
    decision = apply_forwarding([], "10.1.1.1", "http", edge)
    assert "x-forwarded-for" not in dict(decision.headers)


def test_request_id_kept_or_regenerated(hcm: HcmConfig) -> None:
    decision = apply_forwarding([("x-request-id", "abc")], "127.0.0.1", "http", hcm)
    assert decision.request_id == "abc"
    edge = replace(hcm, use_remote_address=True)
    external = apply_forwarding([("x-request-id", "abc")], "8.8.8.8", "http", edge)
    assert external.request_id != "abc"  # external ids are not trusted...
    kept = apply_forwarding(
        [("x-request-id", "abc")],
        "8.8.8.8",
        "http",
        replace(edge, preserve_external_request_id=True),
    )
    assert kept.request_id == "abc"  # ...unless configured to be
    none = apply_forwarding([], "127.0.0.1", "http", replace(hcm, generate_request_id=False))
    assert none.request_id is None


def test_via_is_appended(hcm: HcmConfig) -> None:
    decision = apply_forwarding([("via", "1.1 a")], "127.0.0.1", "http", replace(hcm, via="remora"))
    assert dict(decision.headers)["via"] == "1.1 a, remora"


def test_internal_addresses() -> None:
    assert is_internal("127.0.0.1") and is_internal("10.0.0.1") and is_internal("::1")
    assert not is_internal("8.8.8.8") and not is_internal("not-an-ip")
