from __future__ import annotations

from typing import Any

import pytest

from remora.proxy.http.route.domains import strip_port
from tests.proxy.http.route.util import build, errors_of, request


def vhost(name: str, *domains: str) -> dict[str, Any]:
    return {
        "name": name,
        "domains": list(domains),
        "routes": [{"match": {"prefix": "/"}, "route": {"cluster": name}}],
    }


def pick(table: Any, authority: str) -> str | None:
    result = table.route(request(authority=authority))
    return None if result is None else result.virtual_host_name


PRECEDENCE = {
    "name": "rc",
    "virtual_hosts": [
        vhost("any", "*"),
        vhost("prefix-short", "foo.*"),
        vhost("prefix-long", "foo.bar.*"),
        vhost("suffix-short", "*.com"),
        vhost("suffix-long", "*.example.com"),
        vhost("suffix-dash", "*-bar.example.com"),
        vhost("exact", "www.example.com", "Mixed.Example.org"),
    ],
}


@pytest.mark.parametrize(
    ("authority", "expected"),
    [
        ("www.example.com", "exact"),
        ("WWW.Example.COM", "exact"),
        ("mixed.example.org", "exact"),
        ("api.example.com", "suffix-long"),
        ("baz-bar.example.com", "suffix-dash"),
        # The wildcard never matches the empty string.
        ("-bar.example.com", "suffix-long"),
        (".example.com", "suffix-short"),
        ("other.com", "suffix-short"),
        # Suffix wildcards win over prefix wildcards, whatever their length.
        ("foo.bar.com", "suffix-short"),
        ("foo.bar.net", "prefix-long"),
        ("foo.net", "prefix-short"),
        ("foo.", "any"),
        ("unrelated.net", "any"),
        ("", "any"),
    ],
)
def test_domain_precedence(authority: str, expected: str) -> None:
    assert pick(build(PRECEDENCE), authority) == expected


def test_port_is_part_of_the_authority_by_default() -> None:
    table = build(
        {"virtual_hosts": [vhost("plain", "example.com"), vhost("port", "example.com:8080")]}
    )
    assert pick(table, "example.com") == "plain"
    assert pick(table, "example.com:8080") == "port"
    # Envoy does not retry without the port: no `*` host, so no match at all.
    assert pick(table, "example.com:9090") is None


def test_ignore_port_in_host_matching() -> None:
    table = build(
        {"ignore_port_in_host_matching": True, "virtual_hosts": [vhost("plain", "example.com")]}
    )
    assert pick(table, "example.com:9090") == "plain"
    assert pick(table, "Example.com:1") == "plain"
    ipv6 = build({"ignore_port_in_host_matching": True, "virtual_hosts": [vhost("v6", "[::1]")]})
    assert pick(ipv6, "[::1]:8080") == "v6"
    assert pick(ipv6, "[::1]") == "v6"


@pytest.mark.parametrize(
    ("authority", "expected"),
    [
        ("host:80", "host"),
        ("host", "host"),
        ("host:", "host:"),
        ("host:http", "host:http"),
        ("[::1]:443", "[::1]"),
        ("[::1]", "[::1]"),
        ("10.0.0.1:8080", "10.0.0.1"),
    ],
)
def test_strip_port(authority: str, expected: str) -> None:
    assert strip_port(authority) == expected


def test_duplicate_and_invalid_domains_are_errors() -> None:
    errors = errors_of(
        {
            "virtual_hosts": [
                vhost("a", "example.com", "*"),
                vhost("b", "EXAMPLE.com", "ok.com"),
                vhost("c", "*"),
                vhost("d", "bad\x01domain"),
                {"name": "e", "domains": [], "routes": []},
            ]
        }
    )
    assert errors == [
        (
            "route_config.virtual_hosts[1].domains[0]",
            "duplicate domain 'EXAMPLE.com' (already in virtual_hosts[0]); "
            "a domain must be unique across virtual hosts",
        ),
        (
            "route_config.virtual_hosts[2].domains[0]",
            "duplicate domain '*' (already in virtual_hosts[0]); "
            "a domain must be unique across virtual hosts",
        ),
        ("route_config.virtual_hosts[3].domains[0]", "invalid domain 'bad\\x01domain'"),
        ("route_config.virtual_hosts[4].domains", "a virtual host needs at least one domain"),
    ]
