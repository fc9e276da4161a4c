"""`x-forwarded-client-cert` (XFCC): Envoy's `forward_client_cert_details` rules, sans-IO.

An element describes one hop's client certificate as `Key=value` pairs joined by `;`: `By` (this
proxy's own URI SANs), `Hash` (SHA-256 of the client's DER certificate), then, as
`set_current_client_cert_details` asks, `Cert` (the URL-encoded PEM), `Subject`, `URI` and
`DNS`. Elements of several hops are joined by `,`.
"""

from __future__ import annotations

import urllib.parse

from remora.proxy.tls.facts import TlsFacts

XFCC = "x-forwarded-client-cert"

# HttpConnectionManager.ForwardClientCertDetails
SANITIZE, FORWARD_ONLY, APPEND_FORWARD, SANITIZE_SET, ALWAYS_FORWARD_ONLY = range(5)


def _value(text: str) -> str:
    """Quoted when it holds a separator, as the header's grammar needs."""
    if any(ch in text for ch in ',;="'):
        return '"' + text.replace("\\", "\\\\").replace('"', '\\"') + '"'
    return text


def element(facts: TlsFacts, details: frozenset[str]) -> str | None:
    """This connection's element, or None when the client sent no certificate."""
    peer = facts.peer
    if peer is None:
        return None
    parts: list[str] = []
    if facts.local is not None:
        parts.extend(f"By={_value(uri)}" for uri in facts.local.uri_sans)
    parts.append(f"Hash={peer.sha256}")
    if "cert" in details and facts.peer_pem is not None:
        parts.append(f'Cert="{urllib.parse.quote(facts.peer_pem, safe="")}"')
    if "subject" in details:
        parts.append(f"Subject={_value(peer.subject)}" if peer.subject else 'Subject=""')
    if "uri" in details:
        parts.extend(f"URI={_value(uri)}" for uri in peer.uri_sans)
    if "dns" in details:
        parts.extend(f"DNS={_value(name)}" for name in peer.dns_sans)
    return ";".join(parts)


class XfccPlan:
    """What a connection does with XFCC on every request: decided once per connection, since
    the mode and the client certificate do not change. `keep` forwards a client's header;
    `value` is this hop's element to set (`replace`) or append."""

    __slots__ = ("keep", "replace", "value")

    def __init__(self, keep: bool, value: str | None, replace: bool) -> None:
        self.keep = keep
        self.value = value
        self.replace = replace


SANITIZE_PLAN = XfccPlan(False, None, False)
FORWARD_PLAN = XfccPlan(True, None, False)


def plan(mode: int, facts: TlsFacts | None, details: frozenset[str]) -> XfccPlan:
    if mode == ALWAYS_FORWARD_ONLY:
        return FORWARD_PLAN
    mtls = facts is not None and facts.peer_der is not None
    if not mtls or mode == SANITIZE:
        return SANITIZE_PLAN
    assert facts is not None
    if mode == FORWARD_ONLY:
        return FORWARD_PLAN
    own = element(facts, details)
    if mode == APPEND_FORWARD:
        return XfccPlan(True, own, False)
    return XfccPlan(False, own, True)  # SANITIZE_SET


def apply(headers: list[tuple[str, str]], xfcc: XfccPlan) -> None:
    """Add this hop's element to `headers` (which already lack a client's XFCC unless kept)."""
    value = xfcc.value
    if value is None:
        return
    if not xfcc.replace:
        for index, (name, existing) in enumerate(headers):
            if name == XFCC:
                headers[index] = (XFCC, f"{existing},{value}")
                return
    headers.append((XFCC, value))
