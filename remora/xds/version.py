"""Deterministic versions: the same config always gets the same version, on any control plane.

A resource's version hashes its canonical serialization (`deterministic=True` orders map entries),
so rebuilding identical config from its source yields identical versions and pushes nothing. A
type's version hashes the sorted (name, version) pairs of the resources a client is sent, so it
changes exactly when one of them does.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable

from google.protobuf.message import Message

_DIGEST_BYTES = 8  # 64 bits: collisions among one node's few thousand resources are negligible


def resource_version(message: Message) -> str:
    data = message.SerializeToString(deterministic=True)
    return hashlib.blake2b(data, digest_size=_DIGEST_BYTES).hexdigest()


def set_version(pairs: Iterable[tuple[str, str]]) -> str:
    digest = hashlib.blake2b(digest_size=_DIGEST_BYTES)
    for name, version in sorted(pairs):
        digest.update(name.encode())
        digest.update(b"\0")
        digest.update(version.encode())
        digest.update(b"\n")
    return digest.hexdigest()
