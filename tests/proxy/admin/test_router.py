from __future__ import annotations

import pytest

from remora.proxy.admin.messages import AdminRequest, AdminResponse
from remora.proxy.admin.router import ENDPOINTS, dispatch, help_text

from .support import StaticContext


def _get(context: StaticContext, target: str, method: str = "GET") -> AdminResponse:
    return dispatch(context, AdminRequest.from_target(method, target))


def test_unknown_path_is_404_with_endpoint_list(context: StaticContext) -> None:
    response = _get(context, "/nope")
    assert response.status == 404
    assert response.body.startswith(b"invalid path. admin commands are:")
    assert b"/stats/prometheus" in response.body


def test_paths_match_exactly(context: StaticContext) -> None:
    assert _get(context, "/statsX").status == 404
    assert _get(context, "/stats/").status == 404


@pytest.mark.parametrize("path", ["/healthcheck/fail", "/healthcheck/ok", "/quitquitquit"])
def test_mutations_require_post(context: StaticContext, path: str) -> None:
    response = _get(context, path)
    assert response.status == 405
    assert response.body == b"Method GET not allowed, POST required.\n"
    assert ("allow", "POST") in response.headers
    assert context.shutdown_requests == 0
    assert not context.healthcheck_failed


def test_every_response_carries_envoy_fallback_headers(context: StaticContext) -> None:
    for target in ("/", "/nope", "/stats"):
        headers = dict(_get(context, target).headers)
        assert headers["x-content-type-options"] == "nosniff"
        assert headers["cache-control"] == "no-cache, max-age=0"


def test_handler_failure_is_contained_as_500(context: StaticContext) -> None:
    def broken() -> list[object]:
        raise RuntimeError("cluster manager exploded")

    context.clusters = broken  # type: ignore[method-assign,assignment]
    response = _get(context, "/clusters")
    assert response.status == 500
    assert b"/clusters" in response.body
    assert b"RuntimeError: cluster manager exploded" in response.body


def test_index_lists_endpoints_marking_post(context: StaticContext) -> None:
    response = _get(context, "/")
    assert response.status == 200
    body = response.body.decode()
    assert body == help_text()
    assert "  /quitquitquit (POST): exit the server" in body
    for endpoint in ENDPOINTS:
        assert f"  {endpoint.path}" in body
