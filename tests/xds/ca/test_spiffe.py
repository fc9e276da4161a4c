"""SPIFFE IDs: formatted and parsed with every part checked."""

from __future__ import annotations

import pytest

from remora.xds.ca.spiffe import SpiffeId, format_id, parse_id


def test_an_id_round_trips() -> None:
    value = format_id("prod.example-1_x", "shop", "web-2")
    assert value == "spiffe://prod.example-1_x/ns/shop/sa/web-2"
    assert parse_id(value) == SpiffeId("prod.example-1_x", "shop", "web-2")
    assert str(parse_id(value)) == value


@pytest.mark.parametrize(
    ("value", "message"),
    [
        ("http://td/ns/a/sa/b", "must start with 'spiffe://'"),
        ("spiffe:///ns/a/sa/b", "trust domain is empty"),
        ("spiffe://TD/ns/a/sa/b", "may hold only lowercase letters"),
        (f"spiffe://{'a' * 256}/ns/a/sa/b", "256 characters, at most 255"),
        ("spiffe://td/ns/a", "must have the path /ns/<namespace>/sa/<account>"),
        ("spiffe://td/ns/a/sa/b/c", "must have the path"),
        ("spiffe://td/ns/-a/sa/b", "namespace '-a' must be lowercase"),
        ("spiffe://td/ns/a/sa/B", "service account 'B' must be lowercase"),
        (f"spiffe://td/ns/{'a' * 64}/sa/b", "64 characters, at most 63"),
        ("spiffe://td/ns//sa/b", "namespace is empty"),
    ],
)
def test_a_bad_id_names_its_bad_part(value: str, message: str) -> None:
    with pytest.raises(ValueError) as excinfo:
        parse_id(value)
    assert message in str(excinfo.value)


def test_formatting_checks_too() -> None:
    with pytest.raises(ValueError, match=r"service account 'a\.b' must be lowercase"):
        format_id("td", "default", "a.b")
    assert format_id("a" * 255, "a" * 63, "b").startswith("spiffe://aaa")
