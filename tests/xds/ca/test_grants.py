"""Grants: the `identities:` schema with its error paths, and token authentication."""

from __future__ import annotations

from typing import Any

import pytest
import yaml

from remora.config.errors import ErrorCollector
from remora.xds.ca.grants import Grant, Grants, hash_token, new_token, parse_identities


def _parse(data: Any) -> tuple[tuple[Grant, ...], list[str]]:
    errors = ErrorCollector()
    grants = parse_identities(data, "identities", errors)
    return grants, [str(e) for e in errors.errors]


def test_identities_parse_with_the_default_namespace() -> None:
    a, b = hash_token("a"), hash_token("b")
    grants, errors = _parse(
        yaml.safe_load(
            f"web:\n  tokens_sha256: [{a}]\n"
            f"api:\n  namespace: shop\n  tokens_sha256: [{b.upper()}]\n"
        )
    )
    assert errors == []
    assert grants == (Grant("default", "web", (a,)), Grant("shop", "api", (b,)))
    assert _parse(None) == ((), [])


@pytest.mark.parametrize(
    ("data", "expected"),
    [
        ([], "identities: must be a mapping of service account"),
        ({"Web": {"tokens_sha256": [hash_token("x")]}}, "identities.Web: service account 'Web'"),
        ({"web": "x"}, "identities.web: must be a mapping with tokens_sha256"),
        ({"web": {"tokens_sha256": []}}, "identities.web.tokens_sha256: must be a non-empty list"),
        ({"web": {"tokens_sha256": ["abc"]}},
         "identities.web.tokens_sha256[0]: must be 64 hex characters"),
        ({"web": {"tokens_sha256": [hash_token("x"), hash_token("x")]}},
         "identities.web.tokens_sha256[1]: listed twice"),
        ({"web": {"namespace": "Bad_NS", "tokens_sha256": [hash_token("x")]}},
         "identities.web.namespace: namespace 'Bad_NS' must be lowercase"),
        ({"web": {"namespace": 3, "tokens_sha256": [hash_token("x")]}},
         "identities.web.namespace: must be a string"),
        ({"web": {"token": "x", "tokens_sha256": [hash_token("x")]}},
         "identities.web.token: unknown field"),
        ({"web": {"tokens_sha256": [hash_token("x")]}, "api": {"tokens_sha256": [hash_token("x")]}},
         "identities.api.tokens_sha256[0]: this token hash is already granted to identities.web"),
    ],
)  # fmt: skip
def test_bad_identities_are_errors_at_their_path(data: Any, expected: str) -> None:
    _grants, errors = _parse(data)
    assert any(e.startswith(expected) for e in errors), errors


def test_a_token_authenticates_as_its_grant_and_no_other() -> None:
    web_token, web_hash = new_token()
    api_token, api_hash = new_token()
    assert hash_token(web_token) == web_hash and len(web_token) >= 43
    grants = Grants(
        [Grant("default", "web", (web_hash,)), Grant("shop", "api", ("0" * 64, api_hash))]
    )
    assert grants.authenticate(web_token) == grants.grants[0]
    assert grants.authenticate(api_token) == grants.grants[1]
    assert grants.authenticate(web_hash) is None  # the hash in git is not a credential
    assert grants.authenticate("") is None
    assert grants.authenticate(web_token + "x") is None
    assert Grants().authenticate(web_token) is None
