"""The signing API, sans-IO: (method, path, headers, body) in, (status, JSON body) out.

A workload proves which identity it holds with its bearer token; the CA, not the CSR, decides
the name in the certificate. Refusals never echo the token, and an unknown token reads the same
however it is unknown, so the API is no oracle for guessing tokens.
"""

from __future__ import annotations

import json
import logging
from collections import Counter
from collections.abc import Callable, Mapping
from typing import Any

from remora.xds.ca.authority import CaError, CertificateAuthority
from remora.xds.ca.certs import utc
from remora.xds.ca.grants import Grants
from remora.xds.ca.spiffe import format_id

MAX_BODY = 64 * 1024
SVID_PATH = "/v1/svid"
BUNDLE_PATH = "/v1/bundle"
_UNAUTHENTICATED = "unknown or revoked token"
log = logging.getLogger("remora.ca")

Response = tuple[int, dict[str, Any]]


class SigningApi:
    def __init__(
        self,
        authority: CertificateAuthority,
        grants_provider: Callable[[], Grants],
        trust_domain: str,
    ) -> None:
        self.authority = authority
        self.grants_provider = grants_provider
        self.trust_domain = trust_domain
        self.issued = 0
        self.refused: Counter[str] = Counter()  # by reason: unauthenticated, bad_request, ...

    def counters(self) -> dict[str, Any]:
        return {"issued": self.issued, "refused": dict(sorted(self.refused.items()))}

    def status(self) -> dict[str, Any]:
        """The authority's status plus this API's counters: what the admin `GET /ca` shows."""
        return {**self.authority.status(), "api": self.counters()}

    def handle(
        self,
        method: str,
        path: str,
        headers: Mapping[str, str],
        body: bytes,
        peer: str | None = None,
    ) -> Response:
        """One request; `headers` has lower-case names; `peer` is only for the log."""
        path = path.split("?", 1)[0]
        if path == BUNDLE_PATH:
            if method not in ("GET", "HEAD"):
                return self._refuse(405, "method", f"{method} {path}: use GET", peer)
            return 200, {"trust_domain": self.trust_domain,
                         "trust_bundle": self.authority.bundle_pem().decode()}  # fmt: skip
        if path != SVID_PATH:
            return self._refuse(404, "not_found", f"no such endpoint {path[:200]!r}", peer)
        if method != "POST":
            return self._refuse(405, "method", f"{method} {path}: use POST", peer)
        if len(body) > MAX_BODY:
            return self._refuse(413, "too_large", f"body over {MAX_BODY} bytes", peer)
        scheme, _, token = headers.get("authorization", "").strip().partition(" ")
        if scheme.lower() != "bearer" or not token.strip():
            message = "authorization: Bearer <token> is required"
            return self._refuse(401, "unauthenticated", message, peer)
        grant = self.grants_provider().authenticate(token.strip())
        if grant is None:
            return self._refuse(401, "unauthenticated", _UNAUTHENTICATED, peer)
        spiffe_id = format_id(self.trust_domain, grant.namespace, grant.service_account)
        try:
            request = json.loads(body)
        except (ValueError, UnicodeDecodeError):
            return self._refuse(400, "bad_request", "body is not JSON", peer, spiffe_id)
        csr = request.get("csr") if isinstance(request, dict) else None
        if not isinstance(csr, str):
            message = 'body must be a JSON object {"csr": "<PEM>"}'
            return self._refuse(400, "bad_request", message, peer, spiffe_id)
        try:
            svid = self.authority.sign(csr.encode(), spiffe_id)
        except CaError as exc:
            return self._refuse(400, "bad_csr", str(exc), peer, spiffe_id)
        self.issued += 1
        log.info(
            "issued %s serial %x until %s%s", spiffe_id, svid.serial,
            utc(svid.not_after).isoformat(), f" to {peer}" if peer else "",
        )  # fmt: skip
        return 200, {
            "spiffe_id": svid.spiffe_id,
            "certificate_chain": svid.chain_pem.decode(),
            "trust_bundle": svid.bundle_pem.decode(),
            "not_before": svid.not_before,
            "not_after": svid.not_after,
        }

    def _refuse(
        self, status: int, reason: str, message: str, peer: str | None, spiffe_id: str = ""
    ) -> Response:
        self.refused[reason] += 1
        log.warning(
            "refused %d %s: %s%s%s", status, reason, message,
            f" (for {spiffe_id})" if spiffe_id else "", f" from {peer}" if peer else "",
        )  # fmt: skip
        return status, {"error": message}
