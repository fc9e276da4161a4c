"""Endpoint registration: instances announce themselves with a TTL and keep it alive by heartbeat.

For services whose endpoints are not written in the config source (autoscaled instances, jobs),
an instance POSTs `{service, address, port[, weight, locality, ttl]}` to the control plane's
admin address and repeats it before the TTL runs out. A registration that is not renewed in time
is dropped. Registered endpoints join the service's own (the service itself must be defined in
the source: the source owns routes and policies, instances only own their addresses).

A heartbeat that changes nothing only moves the deadline; only a new, changed, expired or
deregistered endpoint rebuilds the snapshots, and deterministic versions then push just the one
ClusterLoadAssignment that changed. `Registry` is sans-IO (time is passed in); the HTTP routes
are in `admin.py` and the expiry loop is `expire_forever`.
"""

from __future__ import annotations

import asyncio
import contextlib
import ipaddress
import json
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from remora.xds import mesh
from remora.xds.source import Publisher, SourceError

log = logging.getLogger("remora.xds.registration")

DEFAULT_TTL = 30.0
MAX_TTL = 3600.0
_KEYS = {"service", "address", "port", "weight", "locality", "ttl"}

Key = tuple[str, str, int]  # service, address, port


class RegistrationError(ValueError):
    """A request the API refuses, with the HTTP status to answer it with."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status


@dataclass(frozen=True, slots=True)
class Registration:
    service: str
    address: str
    port: int
    weight: int
    locality: str
    ttl: float

    @property
    def key(self) -> Key:
        return (self.service, self.address, self.port)

    def endpoint(self) -> mesh.Endpoint:
        return mesh.Endpoint(self.address, self.port, self.weight, self.locality)


def _int(body: dict[str, Any], key: str, default: int | None, low: int, high: int) -> int:
    value = body.get(key, default)
    if not isinstance(value, int) or isinstance(value, bool) or not low <= value <= high:
        raise RegistrationError(400, f"{key}: must be an integer in {low}..{high}, got {value!r}")
    return value


def parse_registration(data: bytes) -> Registration:
    try:
        body = json.loads(data or b"null")
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise RegistrationError(400, f"body: not JSON ({exc})") from None
    if not isinstance(body, dict):
        raise RegistrationError(400, "body: must be a JSON object with service, address, port")
    unknown = sorted(set(body) - _KEYS)
    if unknown:
        raise RegistrationError(400, f"{unknown[0]}: unknown field (expected {sorted(_KEYS)})")
    service = body.get("service")
    if not isinstance(service, str) or not service:
        raise RegistrationError(400, "service: required, a service name")
    address = body.get("address")
    try:
        address = str(ipaddress.ip_address(address if isinstance(address, str) else ""))
    except ValueError:
        raise RegistrationError(400, f"address: must be an IP address, got {address!r}") from None
    port = _int(body, "port", None, 1, 65535)
    weight = _int(body, "weight", 1, 1, 1000)
    locality = body.get("locality", "default")
    if not isinstance(locality, str) or not locality:
        raise RegistrationError(400, f"locality: must be a non-empty string, got {locality!r}")
    ttl = body.get("ttl", DEFAULT_TTL)
    if not isinstance(ttl, int | float) or isinstance(ttl, bool) or not 0 < ttl <= MAX_TTL:
        raise RegistrationError(400, f"ttl: must be seconds in (0, {MAX_TTL:g}], got {ttl!r}")
    return Registration(service, address, port, weight, locality, float(ttl))


class Registry:
    def __init__(self) -> None:
        self._entries: dict[Key, tuple[Registration, float]] = {}  # -> (registration, deadline)

    def register(self, registration: Registration, now: float) -> bool:
        """Add or renew; returns whether the served endpoints changed (not just the deadline)."""
        previous = self._entries.get(registration.key)
        self._entries[registration.key] = (registration, now + registration.ttl)
        return previous is None or previous[0].endpoint() != registration.endpoint()

    def deregister(self, key: Key) -> bool:
        return self._entries.pop(key, None) is not None

    def expire(self, now: float) -> list[Registration]:
        expired = [r for r, deadline in self._entries.values() if deadline <= now]
        for registration in expired:
            del self._entries[registration.key]
        return expired

    def next_deadline(self) -> float | None:
        return min((d for _r, d in self._entries.values()), default=None)

    def endpoints(self) -> dict[str, list[mesh.Endpoint]]:
        """Per service, in a fixed order, so registration order never changes a version."""
        out: dict[str, list[mesh.Endpoint]] = {}
        for key in sorted(self._entries):
            out.setdefault(key[0], []).append(self._entries[key][0].endpoint())
        return out

    def listing(self, now: float) -> list[dict[str, Any]]:
        return [
            {"service": r.service, "address": r.address, "port": r.port, "weight": r.weight,
             "locality": r.locality, "ttl": r.ttl, "expires_in": round(deadline - now, 3)}
            for key in sorted(self._entries)
            for r, deadline in [self._entries[key]]
        ]  # fmt: skip


class RegistrationApi:
    """The registry bound to the publisher: what the admin endpoint's routes call."""

    def __init__(
        self,
        publisher: Publisher,
        registry: Registry | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.publisher = publisher
        self.registry = registry or Registry()
        self.clock = clock
        self.changed = asyncio.Event()  # wakes the expiry loop when deadlines move earlier
        publisher.registered = self.registry.endpoints

    def register(self, data: bytes) -> dict[str, Any]:
        registration = parse_registration(data)
        if registration.service not in self.publisher.services():
            raise RegistrationError(
                404, f"service: {registration.service!r} is not defined in the config source"
            )
        changed = self.registry.register(registration, self.clock())
        if changed:
            log.info("registered %s %s:%d (ttl %gs)", *registration.key, registration.ttl)
            self._publish()
        self.changed.set()
        return {"status": "registered" if changed else "renewed", "ttl": registration.ttl}

    def deregister(self, service: str, address: str, port: str) -> dict[str, Any]:
        try:
            key = (service, str(ipaddress.ip_address(address)), int(port))
        except ValueError:
            raise RegistrationError(400, "expected /registrations/SERVICE/ADDRESS/PORT") from None
        if not self.registry.deregister(key):
            raise RegistrationError(404, f"{service} {address}:{port} is not registered")
        log.info("deregistered %s %s:%d", *key)
        self._publish()
        return {"status": "deregistered"}

    def listing(self) -> dict[str, Any]:
        return {"registrations": self.registry.listing(self.clock())}

    def expire(self) -> list[Registration]:
        expired = self.registry.expire(self.clock())
        for registration in expired:
            log.warning("registration of %s %s:%d expired (no heartbeat within %gs)",
                        *registration.key, registration.ttl)  # fmt: skip
        if expired:
            self._publish()
        return expired

    def _publish(self) -> None:
        try:
            self.publisher.refresh()
        except Exception as exc:  # not expected for valid registrations; never stop on it
            log.error(
                "registered endpoints not published: %s",
                exc,
                exc_info=not isinstance(exc, SourceError),
            )

    async def expire_forever(self, max_sleep: float = 1.0) -> None:
        """Drop registrations at their deadlines (to within a few ms), for ever."""
        while True:
            self.expire()
            deadline = self.registry.next_deadline()
            delay = max_sleep if deadline is None else deadline - self.clock()
            self.changed.clear()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self.changed.wait(), max(0.005, min(delay, max_sleep)))
