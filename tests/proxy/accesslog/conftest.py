"""A sample record shared by the access log tests (Envoy's documented example request)."""

from __future__ import annotations

import pytest

from remora.proxy.accesslog import AccessLogRecord


@pytest.fixture
def record() -> AccessLogRecord:
    return AccessLogRecord(
        start_time=1460751420.310,
        method="POST",
        path="/api/v1/locations",
        authority="locations",
        scheme="http",
        protocol="HTTP/2",
        request_headers=[
            ("x-forwarded-for", "10.0.35.28"),
            ("user-agent", "nsq2http"),
            ("x-request-id", "cc21d9b0-cf5c-432b-8c7e-98aeb7988cd2"),
        ],
        response_headers=[("x-envoy-upstream-service-time", "100"), ("server", "demo")],
        response_code=204,
        bytes_received=154,
        bytes_sent=0,
        duration_ms=226.7,
        upstream_host="tcp://10.0.2.1:80",
        upstream_cluster="locations_cluster",
        downstream_remote_address="10.0.35.28:51234",
        downstream_local_address="10.0.0.5:10000",
        route_name="loc_route",
    )
