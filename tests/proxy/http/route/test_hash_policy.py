"""A route's hash_policy: which request attribute keys the consistent-hash pick."""

from __future__ import annotations

from typing import Any

import xxhash

from remora.proxy.http.route import ClusterAction
from remora.proxy.http.route.hash_policy import HashPolicy
from tests.proxy.http.route.util import errors_of, must_route, request, routes


def _policy(*entries: dict[str, Any]) -> HashPolicy:
    table = routes(
        {"match": {"prefix": "/"}, "route": {"cluster": "c", "hash_policy": list(entries)}}
    )
    action = must_route(table, request()).action
    assert isinstance(action, ClusterAction) and action.hash_policy is not None
    return action.hash_policy


def _h(value: str) -> int:
    return xxhash.xxh64_intdigest(value.encode())


def test_header_cookie_query_and_source_ip_each_hash_their_value() -> None:
    header = _policy({"header": {"header_name": "X-User"}})
    assert header.key(request(headers=[("x-user", "alice")]), "1.2.3.4") == _h("alice")
    assert header.key(request(), "1.2.3.4") is None
    cookie = _policy({"cookie": {"name": "sid"}})
    req = request(headers=[("cookie", 'a=1; sid="abc"; z=2')])
    assert cookie.key(req, "") == _h("abc")
    assert cookie.key(request(headers=[("cookie", "sidx=1")]), "") is None
    query = _policy({"query_parameter": {"name": "u"}})
    assert query.key(request("/p?x=1&u=bob&u=eve"), "") == _h("bob")
    assert query.key(request("/p"), "") is None
    source = _policy({"connection_properties": {"source_ip": True}})
    assert source.key(request(), "10.1.2.3") == _h("10.1.2.3")


def test_repeated_header_values_hash_sorted_and_pseudo_headers_resolve() -> None:
    policy = _policy({"header": {"header_name": "x-a"}})
    one = policy.key(request(headers=[("x-a", "2"), ("x-a", "1")]), "")
    assert one == policy.key(request(headers=[("x-a", "1"), ("x-a", "2")]), "") == _h("12")
    authority = _policy({"header": {"header_name": ":authority"}})
    assert authority.key(request(authority="shop.example"), "") == _h("shop.example")
    path = _policy({"header": {"header_name": ":path"}})
    assert path.key(request("/cart?id=1"), "") == _h("/cart?id=1")


def test_regex_rewrite_applies_before_hashing() -> None:
    policy = _policy(
        {
            "header": {
                "header_name": ":path",
                "regex_rewrite": {"pattern": {"regex": r"\?.*$"}, "substitution": ""},
            }
        }
    )
    assert (
        policy.key(request("/cart?a=1"), "") == policy.key(request("/cart?b=2"), "") == _h("/cart")
    )


def test_keys_combine_by_rotate_and_xor_and_terminal_stops() -> None:
    both = _policy({"header": {"header_name": "x-a"}}, {"header": {"header_name": "x-b"}})
    req = request(headers=[("x-a", "1"), ("x-b", "2")])
    a, b = _h("1"), _h("2")
    assert both.key(req, "") == (((a << 1) | (a >> 63)) & (2**64 - 1)) ^ b
    # An absent attribute adds nothing.
    assert both.key(request(headers=[("x-b", "2")]), "") == b
    terminal = _policy(
        {"header": {"header_name": "x-a"}, "terminal": True}, {"header": {"header_name": "x-b"}}
    )
    assert terminal.key(req, "") == a
    # A terminal policy that produced nothing does not stop the next one.
    assert terminal.key(request(headers=[("x-b", "2")]), "") == b


def test_bad_hash_policies_name_their_path() -> None:
    def errors(entry: dict[str, Any]) -> list[tuple[str, str]]:
        vhost = {
            "name": "vh",
            "domains": ["*"],
            "routes": [
                {"match": {"prefix": "/"}, "route": {"cluster": "c", "hash_policy": [entry]}}
            ],
        }
        return errors_of({"name": "rc", "virtual_hosts": [vhost]})

    base = "route_config.virtual_hosts[0].routes[0].route.hash_policy[0]"
    assert errors({"header": {"header_name": ""}}) == [
        (f"{base}.header.header_name", "must not be empty")
    ]
    [(path, message)] = errors({"cookie": {"name": "sid", "ttl": "60s"}})
    assert path == f"{base}.cookie" and "generated cookies" in message
    assert errors({"filter_state": {"key": "k"}}) == [
        (f"{base}.filter_state", f"not supported: {base}.filter_state")
    ]
    [(path, message)] = errors(
        {
            "header": {
                "header_name": "x",
                "regex_rewrite": {"pattern": {"regex": "("}, "substitution": ""},
            }
        }
    )
    assert path.startswith(f"{base}.header.regex_rewrite")
