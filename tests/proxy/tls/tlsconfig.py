"""Envoy TLS transport-socket dicts for test bootstraps."""

from __future__ import annotations

from pathlib import Path
from typing import Any

TLS_SOCKET = "envoy.transport_sockets.tls"
_TLS = "type.googleapis.com/envoy.extensions.transport_sockets.tls.v3"


def common(
    cert: Path | None = None,
    key: Path | None = None,
    ca: Path | None = None,
    sans: list[dict[str, Any]] | None = None,
    **extra: Any,
) -> dict[str, Any]:
    context: dict[str, Any] = dict(extra)
    if cert is not None:
        context["tls_certificates"] = [
            {"certificate_chain": {"filename": str(cert)}, "private_key": {"filename": str(key)}}
        ]
    if ca is not None or sans:
        validation: dict[str, Any] = context.setdefault("validation_context", {})
        if ca is not None:
            validation["trusted_ca"] = {"filename": str(ca)}
        if sans:
            validation["match_typed_subject_alt_names"] = sans
    return context


def downstream(require_client_certificate: bool = False, **kwargs: Any) -> dict[str, Any]:
    typed: dict[str, Any] = {
        "@type": f"{_TLS}.DownstreamTlsContext",
        "common_tls_context": common(**kwargs),
    }
    if require_client_certificate:
        typed["require_client_certificate"] = True
    return {"name": TLS_SOCKET, "typed_config": typed}


def upstream(sni: str | None = None, **kwargs: Any) -> dict[str, Any]:
    typed: dict[str, Any] = {
        "@type": f"{_TLS}.UpstreamTlsContext",
        "common_tls_context": common(**kwargs),
    }
    if sni:
        typed["sni"] = sni
    return {"name": TLS_SOCKET, "typed_config": typed}


def with_tls(listener: dict[str, Any], socket: dict[str, Any]) -> dict[str, Any]:
    listener["filter_chains"][0]["transport_socket"] = socket
    return listener


def uri_san(value: str, kind: str = "exact") -> dict[str, Any]:
    return {"san_type": "URI", "matcher": {kind: value}}
