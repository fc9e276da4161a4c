"""SPIFFE IDs of the shape remora issues: `spiffe://<trust-domain>/ns/<namespace>/sa/<account>`.

Kubernetes-style namespace and service account segments keep IDs familiar to anyone who has run
Istio or SPIRE, and make an ID something an RBAC `principal_name` can match exactly.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

SCHEME = "spiffe://"
MAX_TRUST_DOMAIN = 255
MAX_SEGMENT = 63
_TRUST_DOMAIN = re.compile(r"[a-z0-9._-]+")
_SEGMENT = re.compile(r"[a-z0-9]([-a-z0-9]*[a-z0-9])?")


@dataclass(frozen=True)
class SpiffeId:
    trust_domain: str
    namespace: str
    service_account: str

    def __str__(self) -> str:
        return format_id(self.trust_domain, self.namespace, self.service_account)


def check_trust_domain(trust_domain: str) -> str:
    """`trust_domain` if the SPIFFE spec allows it, else a ValueError saying why."""
    if not trust_domain:
        raise ValueError("trust domain is empty")
    if len(trust_domain) > MAX_TRUST_DOMAIN:
        raise ValueError(
            f"trust domain is {len(trust_domain)} characters, at most {MAX_TRUST_DOMAIN} allowed"
        )
    if not _TRUST_DOMAIN.fullmatch(trust_domain):
        raise ValueError(
            f"trust domain {trust_domain!r} may hold only lowercase letters, digits, '.', '-' "
            "and '_'"
        )
    return trust_domain


def check_segment(what: str, value: str) -> str:
    """A namespace or service account: a DNS label (lowercase, digits, inner '-'), <= 63 chars."""
    if not value:
        raise ValueError(f"{what} is empty")
    if len(value) > MAX_SEGMENT:
        raise ValueError(f"{what} {value[:20]!r}... is {len(value)} characters, at most 63 allowed")
    if not _SEGMENT.fullmatch(value):
        raise ValueError(
            f"{what} {value!r} must be lowercase letters, digits and '-', starting and ending "
            "with a letter or digit"
        )
    return value


def format_id(trust_domain: str, namespace: str, service_account: str) -> str:
    """The SPIFFE ID string, every part validated."""
    check_trust_domain(trust_domain)
    check_segment("namespace", namespace)
    check_segment("service account", service_account)
    return f"{SCHEME}{trust_domain}/ns/{namespace}/sa/{service_account}"


def parse_id(value: str) -> SpiffeId:
    """The parts of `spiffe://td/ns/NS/sa/SA`; a ValueError naming the part that is wrong."""
    if not value.startswith(SCHEME):
        raise ValueError(f"SPIFFE ID {value!r} must start with {SCHEME!r}")
    trust_domain, sep, path = value[len(SCHEME) :].partition("/")
    check_trust_domain(trust_domain)
    parts = path.split("/") if sep else []
    if len(parts) != 4 or parts[0] != "ns" or parts[2] != "sa":
        raise ValueError(f"SPIFFE ID {value!r} must have the path /ns/<namespace>/sa/<account>")
    return SpiffeId(
        trust_domain,
        check_segment("namespace", parts[1]),
        check_segment("service account", parts[3]),
    )
