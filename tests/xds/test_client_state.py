"""The proxy-side protocol rules, against the sans-IO client state and real compiled resources."""

from __future__ import annotations

from envoy.config.core.v3 import base_pb2
from envoy.service.discovery.v3 import discovery_pb2
from google.protobuf import json_format

from remora.xds import types
from remora.xds.client_state import ClientState
from remora.xds.nacks import NackLog
from remora.xds.snapshot import Snapshot
from remora.xds.sotw import SotwStream
from tests.xds.helpers import cla, cluster, parse, route

CDS, EDS, LDS, RDS = types.CLUSTER, types.ENDPOINT, types.LISTENER, types.ROUTE
HCM = (
    "type.googleapis.com/envoy.extensions.filters.network.http_connection_manager.v3."
    "HttpConnectionManager"
)


def _listener(name: str, rds: str):  # type: ignore[no-untyped-def]
    from envoy.config.listener.v3 import listener_pb2

    hcm = {
        "@type": HCM,
        "stat_prefix": name,
        "rds": {"config_source": {"ads": {}}, "route_config_name": rds},
        "http_filters": [
            {"name": "router", "typed_config": {
                "@type": "type.googleapis.com/envoy.extensions.filters.http.router.v3.Router"}}
        ],
    }  # fmt: skip
    return json_format.ParseDict(
        {
            "name": name,
            "address": {"socket_address": {"address": "127.0.0.1", "port_value": 0}},
            "filter_chains": [{"filters": [{"name": "hcm", "typed_config": hcm}]}],
        },
        listener_pb2.Listener(),
    )


def _respond(server: SotwStream, snapshot: Snapshot, request: discovery_pb2.DiscoveryRequest):  # type: ignore[no-untyped-def]
    return [parse(r.data) for r in server.on_request(request, snapshot)]


def _state() -> ClientState:
    return ClientState(base_pb2.Node(id="p1", user_agent_name="remora"))


def test_wildcard_cds_then_eds_by_name_with_warming() -> None:
    state = _state()
    initial = state.initial_requests()
    assert [(r.type_url, list(r.resource_names)) for r in initial] == [(CDS, []), (LDS, [])]
    assert initial[0].node.id == "p1"
    server = SotwStream("p1", "g", NackLog())
    snap = Snapshot.build([cluster("web")])
    [cds] = _respond(server, snap, initial[0])
    changed, replies = state.on_response(cds)
    assert changed
    ack, eds_request = replies
    assert ack.version_info == cds.version_info and ack.response_nonce == cds.nonce
    assert not ack.HasField("error_detail")
    assert eds_request.type_url == EDS and list(eds_request.resource_names) == ["web"]
    assert state.resources.desired_clusters() == {}  # warming: no endpoints yet
    snap = Snapshot.build([cluster("web"), cla("web", 8080)])
    [eds] = _respond(server, snap, eds_request)
    state.on_response(eds)
    [web] = state.resources.desired_clusters().values()
    assert [e.port for e in web.endpoints] == [8080]


def test_listener_warms_until_its_routes_arrive() -> None:
    state = _state()
    response = discovery_pb2.DiscoveryResponse(type_url=LDS, version_info="1", nonce="a")
    response.resources.add().Pack(_listener("l", "r"))
    _changed, replies = state.on_response(response)
    assert replies[1].type_url == RDS and list(replies[1].resource_names) == ["r"]
    assert state.resources.desired_listeners() == []
    routes = discovery_pb2.DiscoveryResponse(type_url=RDS, version_info="2", nonce="b")
    routes.resources.add().Pack(route("r", "web"))
    state.on_response(routes)
    [listener] = state.resources.desired_listeners()
    assert listener.chains[0].network_filter.route_table.cluster_names == {"web"}  # type: ignore[union-attr]


def test_bad_resource_is_nacked_naming_the_field_and_last_good_version() -> None:
    state = _state()
    good = discovery_pb2.DiscoveryResponse(type_url=CDS, version_info="v1", nonce="1")
    good.resources.add().Pack(cluster("a"))
    state.on_response(good)
    bad_cluster = cluster("b")
    bad_cluster.upstream_bind_config.SetInParent()
    bad = discovery_pb2.DiscoveryResponse(type_url=CDS, version_info="v2", nonce="2")
    bad.resources.add().Pack(cluster("a"))
    bad.resources.add().Pack(bad_cluster)
    changed, [nack] = state.on_response(bad)
    assert not changed
    assert nack.version_info == "v1" and nack.response_nonce == "2"
    assert "resources[1](b).upstream_bind_config" in nack.error_detail.message
    assert set(state.resources.clusters) == {"a"}  # the whole response is rejected
    assert state.status()["CDS"]["last_nack"]["rejected_version"] == "v2"


def test_sotw_cds_full_set_deletes_missing_clusters() -> None:
    state = _state()
    first = discovery_pb2.DiscoveryResponse(type_url=CDS, version_info="1", nonce="1")
    for name in ("a", "b"):
        first.resources.add().Pack(cluster(name))
    state.on_response(first)
    second = discovery_pb2.DiscoveryResponse(type_url=CDS, version_info="2", nonce="2")
    second.resources.add().Pack(cluster("a"))
    _changed, replies = state.on_response(second)
    assert set(state.resources.clusters) == {"a"}
    # EDS follows: `b` is no longer subscribed.
    assert list(replies[-1].resource_names) == ["a"]


def test_reconnect_reports_versions_and_names() -> None:
    state = _state()
    response = discovery_pb2.DiscoveryResponse(type_url=CDS, version_info="v7", nonce="9")
    response.resources.add().Pack(cluster("a"))
    state.on_response(response)
    requests = {r.type_url: r for r in state.initial_requests()}
    assert requests[CDS].version_info == "v7" and requests[CDS].response_nonce == ""
    assert list(requests[EDS].resource_names) == ["a"]
