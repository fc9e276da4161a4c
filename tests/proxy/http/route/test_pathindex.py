from __future__ import annotations

import random
from dataclasses import replace
from typing import Any

import pytest

from remora.proxy.http.route.domains import DomainIndexBuilder
from remora.proxy.http.route.pathindex import build_index, regex_literal_prefix, usable_prefix
from remora.proxy.http.route.table import RouteTable, VirtualHostEntry
from tests.proxy.http.route.util import build, request, route_name


@pytest.mark.parametrize(
    ("pattern", "prefix"),
    [
        ("/api/v[0-9]+", "/api/v"),
        ("^/a/b", "/a/b"),
        ("/ab*", "/a"),
        ("/ab?", "/a"),
        ("/a{2}", "/"),
        ("/ab+", "/ab"),
        (r"/a\.b", "/a"),
        ("/a|/b", ""),
        ("(?i)/x", ""),
        (".*", ""),
        ("/plain", "/plain"),
    ],
)
def test_regex_literal_prefix(pattern: str, prefix: str) -> None:
    assert regex_literal_prefix(pattern) == prefix


def test_usable_prefix_is_ascii_only() -> None:
    assert usable_prefix("/API") == "/api"
    assert usable_prefix("/\u0130x") == ""


def test_small_route_lists_are_not_indexed() -> None:
    assert build_index([("/a", 1), ("/b", 2)]) is None
    index = build_index([(f"/r{i}/", i) for i in range(10)] + [("/", 99)])
    assert index is not None
    assert index.candidates("/r3/x") == (3, 99)
    assert index.candidates("/zzz") == (99,)


# Non-ASCII segments whose lowercase is longer (U+0130) or context-dependent (final sigma).
_SEGMENTS = ["a", "b", "ab", "A", "api", "v1", "\u0130", "\u03a3", "A\u03a3", "A\u03a3B"]


def _random_path(rng: random.Random) -> str:
    path = "/" + "/".join(rng.choice(_SEGMENTS) for _ in range(rng.randint(0, 3)))
    if rng.random() < 0.3:
        path += "/"
    if rng.random() < 0.2:
        path += "?q=" + rng.choice(_SEGMENTS)
    return path


def _random_route(rng: random.Random, i: int) -> dict[str, Any]:
    prefix = _random_path(rng).partition("?")[0]
    kind = rng.choice(["prefix", "path", "safe_regex", "path_separated_prefix"])
    match: dict[str, Any]
    if kind == "safe_regex":
        match = {
            "safe_regex": {
                "regex": prefix.rstrip("/") + rng.choice(["/.*", "[a-z]*", ".+", "", "b*", "/?"])
            }
        }
    elif kind == "path_separated_prefix":
        match = {"path_separated_prefix": prefix.rstrip("/") or "/a"}
    else:
        match = {kind: prefix}
    if kind != "safe_regex" and rng.random() < 0.4:
        match["case_sensitive"] = False
    return {"name": f"r{i}", "match": match, "route": {"cluster": "c"}}


def _linear(table: RouteTable) -> RouteTable:
    """The same one-vhost ("*") table without its path index: every route is scanned in order."""
    (vhost,) = table.virtual_hosts
    plain = replace(vhost, index=None)
    builder: DomainIndexBuilder[VirtualHostEntry] = DomainIndexBuilder()
    builder.add("*", plain)
    return RouteTable(table.name, (plain,), builder.build(False), False, random.Random(0))


def test_index_gives_the_same_route_as_a_linear_scan() -> None:
    rng = random.Random(20240601)
    indexed_tables = 0
    for _ in range(25):
        entries = [_random_route(rng, i) for i in range(rng.randint(8, 40))]
        table = build({"virtual_hosts": [{"name": "v", "domains": ["*"], "routes": entries}]})
        indexed_tables += table.virtual_hosts[0].index is not None
        linear = _linear(table)
        assert linear.virtual_hosts[0].index is None
        for _ in range(300):
            req = request(_random_path(rng))
            assert route_name(table, req) == route_name(linear, req), req
    assert indexed_tables > 20  # the comparison really exercised indexes
