"""The RBAC rules on their own: Envoy's matching of principals and paths."""

from __future__ import annotations

from envoy.type.matcher.v3 import string_pb2
from google.protobuf import json_format

from remora.config.errors import ErrorCollector
from remora.proxy.http.route.matchers import StringMatch, compile_string_matcher
from remora.proxy.http.route.table import RouteRequest
from remora.proxy.rbac.policy import Subject, authenticated, url_path
from remora.proxy.tls.facts import TlsFacts
from remora.proxy.tls.peer import describe
from tests.proxy.tls.pki import Authority


def matcher(**spec: str) -> StringMatch:
    found = compile_string_matcher(
        json_format.ParseDict(spec, string_pb2.StringMatcher()), "m", ErrorCollector()
    )
    assert found is not None
    return found


def subject(tls: TlsFacts | None, path: str = "/") -> Subject:
    request = RouteRequest("GET", path, "x", [])
    return Subject("127.0.0.1", 80, "127.0.0.1", "127.0.0.1", tls, request)


def facts(uris: tuple[str, ...], dns: tuple[str, ...]) -> TlsFacts:
    issued = Authority().issue("cn-name", uris=uris, dns=dns, ips=())
    found = TlsFacts("TLSv1.3", None, None, None, b"x", None)
    found._peer = describe(issued.cert)
    return found


def test_principal_name_tries_every_uri_and_dns_san_and_the_subject() -> None:
    both = facts(("spiffe://mesh/ns/a/sa/b",), ("evil.example.com",))
    # A DNS SAN counts even when the certificate has URI SANs (a DENY on it must hold).
    assert authenticated(matcher(exact="evil.example.com"))(subject(both))
    assert authenticated(matcher(exact="spiffe://mesh/ns/a/sa/b"))(subject(both))
    assert authenticated(matcher(exact="CN=cn-name"))(subject(both))
    assert not authenticated(matcher(exact="other"))(subject(both))


def test_authenticated_without_a_name_is_any_tls_connection() -> None:
    no_cert = TlsFacts("TLSv1.3", None, None, None, None, None)
    assert authenticated(None)(subject(no_cert))
    assert not authenticated(None)(subject(None))
    assert not authenticated(matcher(exact="x"))(subject(no_cert))


def test_url_path_leaves_out_query_and_fragment() -> None:
    rule = url_path(matcher(exact="/admin"))
    for path in ("/admin", "/admin?x=1", "/admin#frag", "/admin?x#y"):
        assert rule(subject(None, path)), path
    assert not rule(subject(None, "/admin/x"))
