"""`/certs`: every certificate the TLS contexts in use hold, as Envoy's admin prints them."""

from __future__ import annotations

import datetime
import json
import math
import time
from collections.abc import Sequence
from typing import Any

from remora.proxy.admin.context import CertificateStatus
from remora.proxy.tls.peer import PeerCertificate


def _when(timestamp: float) -> str:
    moment = datetime.datetime.fromtimestamp(timestamp, datetime.UTC)
    return moment.strftime("%Y-%m-%dT%H:%M:%SZ")


def certificate_json(cert: PeerCertificate, now: float) -> dict[str, Any]:
    names: list[dict[str, str]] = [{"uri": uri} for uri in cert.uri_sans]
    names += [{"dns": name} for name in cert.dns_sans]
    names += [{"ip_address": ip} for ip in cert.ip_sans]
    names += [{"email": email} for email in cert.email_sans]
    return {
        "serial_number": cert.serial,
        "subject": cert.subject,
        "subject_alt_names": names,
        # Whole days left, truncated toward zero as Envoy counts them (negative once expired).
        "days_until_expiration": str(math.trunc((cert.not_after - now) / 86400)),
        "valid_from": _when(cert.not_before),
        "expiration_time": _when(cert.not_after),
    }


def certs_json(statuses: Sequence[CertificateStatus], now: float | None = None) -> str:
    at = time.time() if now is None else now
    return json.dumps(
        {
            "certificates": [
                {
                    "owner": status.owner,
                    "ca_cert": [certificate_json(c, at) for c in status.ca_certs],
                    "cert_chain": [certificate_json(c, at) for c in status.cert_chain],
                }
                for status in statuses
            ]
        },
        indent=2,
    )
