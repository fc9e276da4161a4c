"""Envoy-compatible admin server for the proxy.

Layers: `context` (what the runtime provides), `handlers` + `router` (sans-IO endpoint logic),
`clusters`/`listeners` (renderers), `server` (asyncio + h11 shell). Stats renderers live in
`remora.proxy.stats`.
"""

from __future__ import annotations

from .context import (
    AdminContext,
    CircuitBreakerThresholds,
    ClusterStatus,
    HostStatus,
    ListenerStatus,
)
from .messages import AdminRequest, AdminResponse
from .router import ENDPOINTS, dispatch
from .server import AdminServer

__all__ = [
    "ENDPOINTS",
    "AdminContext",
    "AdminRequest",
    "AdminResponse",
    "AdminServer",
    "CircuitBreakerThresholds",
    "ClusterStatus",
    "HostStatus",
    "ListenerStatus",
    "dispatch",
]
