"""The checks on a peer certificate that run after OpenSSL verified its chain."""

from __future__ import annotations

from envoy.type.matcher.v3 import string_pb2
from google.protobuf import json_format

from remora.config.errors import ErrorCollector
from remora.proxy.http.route.matchers import StringMatch, compile_string_matcher
from remora.proxy.tls.peer import (
    SAN_DNS,
    SAN_IP,
    SAN_URI,
    PeerValidator,
    SanMatcher,
    describe,
    dns_name_matches,
)
from tests.proxy.tls.pki import Authority


def matcher(**spec: str) -> StringMatch:
    message = json_format.ParseDict(spec, string_pb2.StringMatcher())
    errors = ErrorCollector()
    found = compile_string_matcher(message, "m", errors)
    assert found is not None, errors.errors
    return found


def test_dns_wildcards_cover_one_label() -> None:
    assert dns_name_matches("api.example.com", "*.example.com", False)
    assert not dns_name_matches("a.b.example.com", "*.example.com", False)
    assert not dns_name_matches("example.com", "*.example.com", False)
    # DNS names compare without case, whatever the matcher's ignore_case says (as Envoy).
    assert dns_name_matches("API.example.com", "api.EXAMPLE.com", True)
    assert dns_name_matches("API.example.com", "api.example.com", False)


def test_san_matchers_pins_and_their_refusals() -> None:
    ca = Authority()
    issued = ca.issue(
        dns=("*.svc.test",), uris=("spiffe://mesh.test/ns/a/sa/b",), ips=("10.0.0.1",)
    )
    peer = describe(issued.cert)
    assert peer.uri_sans == ("spiffe://mesh.test/ns/a/sa/b",)
    assert peer.ip_sans == ("10.0.0.1",)
    accept = [
        SanMatcher(SAN_URI, matcher(prefix="spiffe://mesh.test/ns/a/")),
        SanMatcher(SAN_DNS, matcher(exact="web.svc.test")),
        SanMatcher(SAN_IP, matcher(exact="10.0.0.1")),
    ]
    for one in accept:
        assert PeerValidator((one,)).refusal(peer) is None
    # A URI matcher never looks at DNS names, and the reverse.
    wrong_type = SanMatcher(SAN_DNS, matcher(prefix="spiffe://"))
    assert PeerValidator((wrong_type,)).refusal(peer) == "fail_verify_san"
    assert PeerValidator(certificate_hashes=frozenset({peer.sha256})).refusal(peer) is None
    assert PeerValidator(spki_hashes=frozenset({peer.spki_sha256})).refusal(peer) is None
    other = describe(ca.issue().cert)
    assert (
        PeerValidator(
            certificate_hashes=frozenset({other.sha256}), spki_hashes=frozenset({other.spki_sha256})
        ).refusal(peer)
        == "fail_verify_cert_hash"
    )
    # SANs first, as Envoy: a peer failing both is counted as a SAN failure.
    both = PeerValidator((wrong_type,), frozenset({other.sha256}))
    assert both.refusal(peer) == "fail_verify_san"
