"""Which workload gets which identity: bearer tokens granted per service account.

The mesh config (in git, reviewed like any change) holds only SHA-256 hashes of tokens, so
reading the repository never yields a credential; the token itself goes to the workload's
secret store. A token is high-entropy random (`new_token`), which is why a plain hash (not a
slow password hash) is enough to make the stored value useless to an attacker.
"""

from __future__ import annotations

import hashlib
import hmac
import re
import secrets
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from remora.config.errors import ErrorCollector
from remora.xds.ca.spiffe import check_segment

DEFAULT_NAMESPACE = "default"
_HEX64 = re.compile(r"[0-9a-f]{64}")


@dataclass(frozen=True)
class Grant:
    namespace: str
    service_account: str
    token_hashes: tuple[str, ...]


def hash_token(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def new_token() -> tuple[str, str]:
    """(token, its SHA-256 hex): the token for the workload, the hash for the mesh config."""
    token = secrets.token_urlsafe(32)
    return token, hash_token(token)


class Grants:
    """The grants of one loaded config; `authenticate` maps a presented token to its grant."""

    def __init__(self, grants: Iterable[Grant] = ()) -> None:
        self.grants = tuple(grants)
        self._hashes = [
            (bytes.fromhex(h), grant) for grant in self.grants for h in grant.token_hashes
        ]

    def __len__(self) -> int:
        return len(self.grants)

    def authenticate(self, token: str) -> Grant | None:
        """The grant holding sha256(token), or None.

        Every stored hash is compared, in constant time each and without stopping at a match,
        so the time taken says nothing about which grant (or how early in the list) matched."""
        digest = hashlib.sha256(token.encode()).digest()
        found: Grant | None = None
        for stored, grant in self._hashes:
            if hmac.compare_digest(digest, stored) and found is None:
                found = grant
        return found


def parse_identities(data: Any, path: str, errors: ErrorCollector) -> tuple[Grant, ...]:
    """The `identities:` mapping of a mesh file; every problem goes to `errors` with its path.

    `path` is the field path of `data` itself (normally "identities")."""
    if data is None:
        return ()
    if not isinstance(data, dict):
        errors.add(path, "must be a mapping of service account to {namespace, tokens_sha256}")
        return ()
    grants: list[Grant] = []
    owner: dict[str, str] = {}  # token hash -> the identity that first claimed it
    for account, spec in data.items():
        where = f"{path}.{account}"
        grant = _parse_one(account, spec, where, errors)
        if grant is None:
            continue
        for index, digest in enumerate(grant.token_hashes):
            claimed = owner.setdefault(digest, where)
            if claimed != where:
                errors.add(
                    f"{where}.tokens_sha256[{index}]",
                    f"this token hash is already granted to {claimed}; a token may carry one "
                    "identity only",
                )
        grants.append(grant)
    return tuple(grants)


def _parse_one(account: Any, spec: Any, where: str, errors: ErrorCollector) -> Grant | None:
    ok = True
    try:
        check_segment("service account", str(account) if isinstance(account, str) else "")
    except ValueError as exc:
        errors.add(where, str(exc) if isinstance(account, str) else "must be a string key")
        ok = False
    if not isinstance(spec, dict):
        errors.add(where, "must be a mapping with tokens_sha256 (and optionally namespace)")
        return None
    for field in spec:
        if field not in ("namespace", "tokens_sha256"):
            errors.add(f"{where}.{field}", "unknown field (expected namespace, tokens_sha256)")
            ok = False
    namespace = spec.get("namespace", DEFAULT_NAMESPACE)
    try:
        check_segment("namespace", namespace if isinstance(namespace, str) else "")
    except ValueError as exc:
        errors.add(
            f"{where}.namespace", str(exc) if isinstance(namespace, str) else "must be a string"
        )
        ok = False
    hashes = spec.get("tokens_sha256")
    if not isinstance(hashes, list) or not hashes:
        errors.add(f"{where}.tokens_sha256", "must be a non-empty list of SHA-256 hex digests")
        return None
    seen: set[str] = set()
    for index, digest in enumerate(hashes):
        at = f"{where}.tokens_sha256[{index}]"
        if not isinstance(digest, str) or not _HEX64.fullmatch(digest.lower()):
            errors.add(at, "must be 64 hex characters (the token's SHA-256, `sha256sum`)")
            ok = False
        elif digest.lower() in seen:
            errors.add(at, "listed twice")
            ok = False
        else:
            seen.add(digest.lower())
    if not ok:
        return None
    return Grant(namespace, account, tuple(h.lower() for h in hashes))
