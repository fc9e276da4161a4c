"""The TLS contexts a proxy's listeners and clusters use, for the admin's `/certs`."""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from remora.proxy.admin.context import CertificateStatus
from remora.proxy.listener_config import ListenerConfig
from remora.proxy.tls.config import TlsContext
from remora.proxy.upstream.config import ClusterConfig


def certificate_statuses(
    listeners: Sequence[ListenerConfig], clusters: Mapping[str, ClusterConfig]
) -> list[CertificateStatus]:
    """Each TLS context in use, once per owner (`listener x`, `cluster y`)."""
    found: list[CertificateStatus] = []
    seen: set[tuple[str, str]] = set()

    def add(owner: str, tls: TlsContext | None) -> None:
        if tls is None or (owner, tls.fingerprint) in seen:
            return
        seen.add((owner, tls.fingerprint))
        found.append(CertificateStatus(owner, tls.trusted_ca, tls.certificates))

    for listener in listeners:
        for chain in listener.all_chains:
            add(f"listener {listener.name}", chain.tls)
    for name, cluster in clusters.items():
        add(f"cluster {name}", cluster.tls)
    return found
