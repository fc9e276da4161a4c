from __future__ import annotations

from remora.proxy.admin.messages import AdminRequest, json_response, text


def test_from_target_splits_and_decodes_query() -> None:
    request = AdminRequest.from_target("get", "/stats?filter=%5Ecluster%5C.&usedonly&format=json")
    assert request.method == "GET"
    assert request.path == "/stats"
    assert request.params == (("filter", r"^cluster\."), ("usedonly", ""), ("format", "json"))
    assert request.param("usedonly") == ""
    assert request.param("missing") is None


def test_from_target_without_query() -> None:
    assert AdminRequest.from_target("POST", "/quitquitquit").params == ()


def test_response_helpers() -> None:
    response = text(503, "DRAINING\n")
    assert (response.status, response.body) == (503, b"DRAINING\n")
    assert response.content_type.startswith("text/plain")
    doc = json_response({"a": 1})
    assert doc.content_type == "application/json"
    assert doc.body.endswith(b"\n")
