"""The mesh schema: a few lines of YAML per service, expanded into Envoy resources.

    services:
      greeter:
        listen_port: 10000        # the sidecar's outbound listener (0: any free port)
        endpoints:
          - {address: 127.0.0.1, port: 9001, weight: 1, locality: zone-a}
        localities: {zone-a: 3}   # locality weights (default: sum of endpoint weights)
        routes:                   # default: everything to this service
          - {prefix: /, to: {greeter: 90, greeter-canary: 10}, timeout: 2s}
        policies: {connect_timeout: 1s, max_connections: 100, max_requests: 100}
      greeter-canary:             # a route may only name services defined somewhere
        endpoints: [{address: 127.0.0.1, port: 9002}]
      backend:                    # identity and mTLS (needs the control plane's CA)
        mtls: STRICT              # STRICT | PERMISSIVE | DISABLE (default)
        service_account: backend  # spiffe://<trust domain>/ns/<namespace>/sa/<service_account>
        inbound: {port: 19001, app_port: 9001}   # its own sidecar: mesh port -> application
        endpoints: [{address: 127.0.0.1, port: 19001}]
        allow: [greeter]          # the callers its inbound side admits (by SPIFFE ID)
        calls: []                 # the outbound listeners its own sidecar binds (default: all)

`examples/mesh/` is a complete directory of this schema, and a test validates both it and this
example.

Each service becomes, for every node group:
- a Cluster named after it, type EDS over ADS, ROUND_ROBIN;
- a ClusterLoadAssignment with one LocalityLbEndpoints per locality, each with its weight set
  (gRPC's proxyless client ignores localities without one);
- a RouteConfiguration named after it;
and a Listener named after it: for the "proxyless" group an `api_listener` (so `xds:///greeter`
finds it) whose HCM fetches the routes over ADS with the router filter last; for the "sidecar"
group a socket listener on `listen_port`. A service with `inbound` or `calls` also gets a group
"sidecar/<name>" for its own sidecar (node metadata `remora.service`): the outbound listeners of
what it calls, and its inbound listener and application cluster. With mTLS, sidecar clusters
present the SVID secret `default` and check the peer's SPIFFE ID against the bundle `ROOTCA`.

Validation names the field (`services.greeter.endpoints[1].port`); the caller adds the file.
"""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from envoy.config.cluster.v3 import cluster_pb2
from envoy.config.endpoint.v3 import endpoint_pb2
from envoy.config.listener.v3 import listener_pb2
from envoy.config.route.v3 import route_pb2

# The typed configs the generated resources hold: imported so their Any fields parse.
from envoy.extensions.filters.http.rbac.v3 import rbac_pb2  # noqa: F401
from envoy.extensions.filters.listener.tls_inspector.v3 import tls_inspector_pb2  # noqa: F401
from envoy.extensions.transport_sockets.tls.v3 import tls_pb2  # noqa: F401
from google.protobuf import json_format
from google.protobuf.message import Message

from remora.config.errors import ErrorCollector

SIDECAR = "sidecar"
PROXYLESS = "proxyless"
GROUPS = (SIDECAR, PROXYLESS)

_HCM = (
    "type.googleapis.com/envoy.extensions.filters.network.http_connection_manager.v3."
    "HttpConnectionManager"
)
_ROUTER = {
    "name": "envoy.filters.http.router",
    "typed_config": {"@type": "type.googleapis.com/envoy.extensions.filters.http.router.v3.Router"},
}
_NAME = re.compile(r"^[a-z0-9]([a-z0-9.-]*[a-z0-9])?$")
_DURATION = re.compile(r"^\d+(\.\d+)?s$")
_MAX_DURATION_SECONDS = 315_576_000_000  # google.protobuf.Duration's bound, about 10,000 years
_SERVICE_KEYS = {
    "listen_port", "listen_address", "endpoints", "localities", "routes", "policies",
    "mtls", "service_account", "namespace", "inbound", "allow", "calls",
}  # fmt: skip
_INBOUND_KEYS = {"port", "address", "app_port", "app_address"}
MTLS_MODES = ("STRICT", "PERMISSIVE", "DISABLE")
_LABEL = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$")
_ENDPOINT_KEYS = {"address", "port", "weight", "locality"}
_ROUTE_KEYS = {"prefix", "to", "timeout"}
_POLICY_KEYS = {"connect_timeout", "max_connections", "max_pending_requests", "max_requests"}


@dataclass(frozen=True, slots=True)
class Endpoint:
    address: str
    port: int
    weight: int
    locality: str


@dataclass(frozen=True, slots=True)
class Route:
    prefix: str
    to: tuple[tuple[str, int], ...]
    timeout: str | None


@dataclass(frozen=True, slots=True)
class Inbound:
    """The service's own sidecar: it accepts mesh traffic on `address:port` (the service's
    endpoints are these) and hands it to the application on `app_address:app_port`."""

    port: int
    app_port: int
    address: str = "127.0.0.1"
    app_address: str = "127.0.0.1"


@dataclass(frozen=True, slots=True)
class Service:
    name: str
    listen_address: str
    listen_port: int
    endpoints: tuple[Endpoint, ...]
    localities: tuple[tuple[str, int], ...]
    routes: tuple[Route, ...]
    policies: Mapping[str, Any]
    explicit_localities: tuple[tuple[str, int], ...] = ()  # as written under `localities:`
    # Identity and transport security: the workload's SPIFFE identity is
    # spiffe://<trust domain>/ns/<namespace>/sa/<service_account>.
    mtls: str = "DISABLE"
    service_account: str = ""
    namespace: str = "default"
    inbound: Inbound | None = None
    allow: tuple[str, ...] | None = None  # services that may call it (None: any in the mesh)
    # The services its own sidecar has outbound listeners for (None: every service's).
    calls: tuple[str, ...] | None = None

    def spiffe_id(self, trust_domain: str) -> str:
        account = self.service_account or self.name
        return f"spiffe://{trust_domain}/ns/{self.namespace}/sa/{account}"


def with_endpoints(service: Service, extra: Sequence[Endpoint]) -> Service:
    """`service` with `extra` endpoints (registered ones) added, its locality weights redone:
    explicit weights stay, the others are again the sum of their endpoints' weights."""
    endpoints = (*service.endpoints, *extra)
    weights: dict[str, int] = {}
    for endpoint in endpoints:
        weights[endpoint.locality] = weights.get(endpoint.locality, 0) + endpoint.weight
    weights.update(service.explicit_localities)
    return dataclasses.replace(
        service, endpoints=endpoints, localities=tuple(sorted(weights.items()))
    )


def parse_services(data: Any, path: str, errors: ErrorCollector) -> list[Service]:
    if not isinstance(data, dict):
        errors.add(path, "must be a mapping of service name to service")
        return []
    services: list[Service] = []
    for name, spec in data.items():
        service = _parse_service(str(name), spec, f"{path}.{name}", errors)
        if service is not None:
            services.append(service)
    return services


def check_references(services: list[Service], path: str, errors: ErrorCollector) -> None:
    known = {s.name for s in services}
    for service in services:
        for key, names in (("allow", service.allow), ("calls", service.calls)):
            for i, other in enumerate(names or ()):
                if other not in known:
                    errors.add(f"{path}.{service.name}.{key}[{i}]", f"unknown service {other!r}")
        for i, route in enumerate(service.routes):
            for target, _weight in route.to:
                if target not in known:
                    errors.add(
                        f"{path}.{service.name}.routes[{i}].to",
                        f"unknown service {target!r}",
                    )


def _unknown_keys(
    spec: dict[str, Any], allowed: set[str], path: str, errors: ErrorCollector
) -> None:
    for key in spec:
        if key not in allowed:
            errors.add(f"{path}.{key}", f"unknown field (expected one of {sorted(allowed)})")


def _int(value: Any, path: str, errors: ErrorCollector, low: int, high: int) -> int:
    if not isinstance(value, int) or isinstance(value, bool) or not low <= value <= high:
        errors.add(path, f"must be an integer in {low}..{high}, got {value!r}")
        return low
    return value


def _duration(value: Any, path: str, errors: ErrorCollector) -> str | None:
    if not isinstance(value, str) or not _DURATION.match(value):
        errors.add(path, f"must be a duration like '1.5s', got {value!r}")
        return None
    if int(value.split(".")[0].rstrip("s")) > _MAX_DURATION_SECONDS:
        errors.add(path, f"must be at most {_MAX_DURATION_SECONDS}s (protobuf's Duration range)")
        return None
    return value


def _parse_service(name: str, spec: Any, path: str, errors: ErrorCollector) -> Service | None:
    before = len(errors.errors)
    if not _NAME.match(name):
        errors.add(path, f"invalid service name {name!r} (lowercase letters, digits, '.', '-')")
    if spec is None:
        spec = {}
    if not isinstance(spec, dict):
        errors.add(path, "must be a mapping")
        return None
    _unknown_keys(spec, _SERVICE_KEYS, path, errors)
    endpoints: list[Endpoint] = []
    raw_endpoints = spec.get("endpoints", [])
    if not isinstance(raw_endpoints, list):
        errors.add(f"{path}.endpoints", "must be a list")
        raw_endpoints = []
    for i, item in enumerate(raw_endpoints):
        ep_path = f"{path}.endpoints[{i}]"
        if not isinstance(item, dict):
            errors.add(ep_path, "must be a mapping with address and port")
            continue
        _unknown_keys(item, _ENDPOINT_KEYS, ep_path, errors)
        address = item.get("address")
        if not isinstance(address, str) or not address:
            errors.add(f"{ep_path}.address", "required: an IP address")
            address = ""
        port = _int(item.get("port"), f"{ep_path}.port", errors, 1, 65535)
        weight = _int(item.get("weight", 1), f"{ep_path}.weight", errors, 1, 1000)
        locality = str(item.get("locality", "default"))
        endpoints.append(Endpoint(address, port, weight, locality))
    raw_localities = spec.get("localities", {})
    localities = _localities(raw_localities, endpoints, f"{path}.localities", errors)
    routes = _routes(name, spec.get("routes"), f"{path}.routes", errors)
    policies = spec.get("policies", {}) or {}
    if not isinstance(policies, dict):
        errors.add(f"{path}.policies", "must be a mapping")
        policies = {}
    _unknown_keys(policies, _POLICY_KEYS, f"{path}.policies", errors)
    if "connect_timeout" in policies:
        _duration(policies["connect_timeout"], f"{path}.policies.connect_timeout", errors)
    for key in ("max_connections", "max_pending_requests", "max_requests"):
        if key in policies:
            _int(policies[key], f"{path}.policies.{key}", errors, 1, 1_000_000)
    listen_port = _int(spec.get("listen_port", 0), f"{path}.listen_port", errors, 0, 65535)
    listen_address = spec.get("listen_address", "127.0.0.1")
    mtls = spec.get("mtls", "DISABLE")
    if mtls not in MTLS_MODES:
        errors.add(f"{path}.mtls", f"must be one of {', '.join(MTLS_MODES)}, got {mtls!r}")
    account = _label(spec.get("service_account", name), f"{path}.service_account", errors)
    namespace = _label(spec.get("namespace", "default"), f"{path}.namespace", errors)
    inbound = _inbound(spec.get("inbound"), f"{path}.inbound", errors)
    allow = _service_names(spec, "allow", path, errors)
    if allow is not None:
        if mtls == "DISABLE":
            errors.add(
                f"{path}.allow", "callers are told apart by their mTLS identity: set mtls to STRICT"
            )
        elif mtls == "PERMISSIVE":
            errors.add(
                f"{path}.allow",
                "PERMISSIVE also takes plaintext callers, who have no identity to check: "
                "set mtls to STRICT",
            )
        if inbound is None:
            errors.add(f"{path}.allow", "is enforced by the service's inbound sidecar: set inbound")
    calls = _service_names(spec, "calls", path, errors)
    if len(errors.errors) > before:
        return None
    explicit = tuple(
        (zone, weight) for zone, weight in localities if zone in (raw_localities or {})
    )
    return Service(
        name,
        str(listen_address),
        listen_port,
        tuple(endpoints),
        localities,
        routes,
        policies,
        explicit,
        mtls=str(mtls),
        service_account=account,
        namespace=namespace,
        inbound=inbound,
        allow=allow,
        calls=calls,
    )


def _service_names(
    spec: dict[str, Any], key: str, path: str, errors: ErrorCollector
) -> tuple[str, ...] | None:
    """`allow:` or `calls:`, a list of service names; None when the service does not set it."""
    if key not in spec:
        return None
    raw = spec[key]
    if not isinstance(raw, list) or not all(isinstance(name, str) for name in raw):
        errors.add(f"{path}.{key}", "must be a list of service names")
        return None
    return tuple(raw)


def _label(value: Any, path: str, errors: ErrorCollector) -> str:
    if not isinstance(value, str) or len(value) > 63 or not _LABEL.match(value):
        errors.add(
            path, f"must be a DNS label (lowercase letters, digits, '-'; 63 at most), got {value!r}"
        )
        return ""
    return value


def _inbound(raw: Any, path: str, errors: ErrorCollector) -> Inbound | None:
    if raw is None:
        return None
    if not isinstance(raw, dict):
        errors.add(path, "must be a mapping with port and app_port")
        return None
    _unknown_keys(raw, _INBOUND_KEYS, path, errors)
    port = _int(raw.get("port"), f"{path}.port", errors, 1, 65535)
    app_port = _int(raw.get("app_port"), f"{path}.app_port", errors, 1, 65535)
    address = raw.get("address", "127.0.0.1")
    app_address = raw.get("app_address", "127.0.0.1")
    for key, value in (("address", address), ("app_address", app_address)):
        if not isinstance(value, str) or not value:
            errors.add(f"{path}.{key}", "must be an IP address")
    return Inbound(port, app_port, str(address), str(app_address))


def _localities(
    raw: Any, endpoints: list[Endpoint], path: str, errors: ErrorCollector
) -> tuple[tuple[str, int], ...]:
    if not isinstance(raw, dict):
        errors.add(path, "must be a mapping of locality name to weight")
        raw = {}
    weights: dict[str, int] = {}
    for endpoint in endpoints:
        weights[endpoint.locality] = weights.get(endpoint.locality, 0) + endpoint.weight
    for locality, weight in raw.items():
        if locality not in weights:
            errors.add(f"{path}.{locality}", "no endpoint is in this locality")
        weights[str(locality)] = _int(weight, f"{path}.{locality}", errors, 1, 1_000_000)
    return tuple(sorted(weights.items()))


def _routes(service: str, raw: Any, path: str, errors: ErrorCollector) -> tuple[Route, ...]:
    if raw is None:
        return (Route("/", ((service, 1),), None),)
    if not isinstance(raw, list) or not raw:
        errors.add(path, "must be a non-empty list")
        return ()
    routes: list[Route] = []
    for i, item in enumerate(raw):
        route_path = f"{path}[{i}]"
        if not isinstance(item, dict):
            errors.add(route_path, "must be a mapping")
            continue
        _unknown_keys(item, _ROUTE_KEYS, route_path, errors)
        prefix = item.get("prefix", "/")
        if not isinstance(prefix, str) or not prefix.startswith("/"):
            errors.add(f"{route_path}.prefix", f"must start with '/', got {prefix!r}")
        to = item.get("to", service)
        targets: list[tuple[str, int]] = []
        if isinstance(to, str):
            targets.append((to, 1))
        elif isinstance(to, dict) and to:
            for target, weight in to.items():
                targets.append(
                    (str(target), _int(weight, f"{route_path}.to.{target}", errors, 1, 10000))
                )
        else:
            errors.add(f"{route_path}.to", "must be a service name or {service: weight}")
        timeout = None
        if "timeout" in item:
            timeout = _duration(item["timeout"], f"{route_path}.timeout", errors)
        routes.append(Route(str(prefix), tuple(targets), timeout))
    return tuple(routes)


def generate(services: list[Service], trust_domain: str | None = None) -> dict[str, list[Message]]:
    """Envoy resources per node group: `sidecar` and `proxyless`, and `sidecar/<service>` for
    each service with `inbound` or `calls` (the sidecar's clusters, the outbound listeners of
    the services it calls, and its inbound side). Services with mTLS need the CA's
    `trust_domain`."""
    shared: list[Message] = []
    clusters: list[Message] = []
    outbound: dict[str, Message] = {}
    proxyless: list[Message] = []
    for service in services:
        shared.append(_load_assignment(service))
        shared.append(_route_configuration(service))
        clusters.append(_cluster(service, trust_domain))
        outbound[service.name] = _sidecar_listener(service)
        # gRPC's proxyless clients get no SDS secrets: they call a service in plaintext, which
        # PERMISSIVE (or DISABLE) accepts.
        proxyless.append(_cluster(service, None))
        proxyless.append(_api_listener(service))
    sidecar = [*shared, *clusters]
    groups = {SIDECAR: [*sidecar, *outbound.values()], PROXYLESS: shared + proxyless}
    for service in services:
        if service.inbound is None and service.calls is None:
            continue  # its sidecar is served the `sidecar` group
        # Sidecars on one host each bind their outbound listeners: `calls` keeps a service's
        # to the services it calls, so two sidecars need not claim the same ports.
        called = (
            outbound.values() if service.calls is None else [outbound[c] for c in service.calls]
        )
        extra = (
            [] if service.inbound is None else _inbound_resources(service, services, trust_domain)
        )
        groups[f"{SIDECAR}/{service.name}"] = [*sidecar, *called, *extra]
    return groups


def needs_ca(services: Sequence[Service]) -> list[str]:
    return [s.name for s in services if s.mtls != "DISABLE"]


# The workload's SVID (held by its sidecar's identity agent) and the mesh's trust bundle (sent
# by the control plane over ADS), as the generated TLS contexts name them.
SVID_SECRET = "default"
BUNDLE_SECRET = "ROOTCA"
_TLS = "type.googleapis.com/envoy.extensions.transport_sockets.tls.v3"


def _tls_common(peer_sans: Sequence[str]) -> dict[str, Any]:
    bundle = {"name": BUNDLE_SECRET, "sds_config": {"ads": {}, "resource_api_version": "V3"}}
    common: dict[str, Any] = {"tls_certificate_sds_secret_configs": [{"name": SVID_SECRET}]}
    if peer_sans:
        common["combined_validation_context"] = {
            "default_validation_context": {
                "match_typed_subject_alt_names": [
                    {"san_type": "URI", "matcher": {"exact": san}} for san in peer_sans
                ]
            },
            "validation_context_sds_secret_config": bundle,
        }
    else:
        common["validation_context_sds_secret_config"] = bundle
    return common


def _upstream_tls(service: Service, trust_domain: str) -> dict[str, Any]:
    return {
        "name": "envoy.transport_sockets.tls",
        "typed_config": {
            "@type": f"{_TLS}.UpstreamTlsContext",
            "common_tls_context": _tls_common([service.spiffe_id(trust_domain)]),
        },
    }


def _downstream_tls() -> dict[str, Any]:
    return {
        "name": "envoy.transport_sockets.tls",
        "typed_config": {
            "@type": f"{_TLS}.DownstreamTlsContext",
            "require_client_certificate": True,
            "common_tls_context": _tls_common([]),
        },
    }


def _inbound_resources(
    service: Service, services: Sequence[Service], trust_domain: str | None
) -> list[Message]:
    """The listener the service's own sidecar accepts mesh traffic on, and the cluster of the
    application beside it."""
    inbound = service.inbound
    assert inbound is not None
    name = f"inbound|{service.name}"
    app = _parse(
        {
            "name": name,
            "type": "STATIC",
            "connect_timeout": service.policies.get("connect_timeout", "1s"),
            "load_assignment": {
                "cluster_name": name,
                "endpoints": [{"lb_endpoints": [{"endpoint": {"address": {"socket_address": {
                    "address": inbound.app_address, "port_value": inbound.app_port}}}}]}],
            },
        },
        cluster_pb2.Cluster(),
    )  # fmt: skip
    filters: list[dict[str, Any]] = []
    if service.allow is not None and trust_domain is not None:
        by_name = {s.name: s for s in services}
        principals = [
            {"authenticated": {"principal_name": {"exact": by_name[c].spiffe_id(trust_domain)}}}
            for c in service.allow
        ]
        filters.append(
            {
                "name": "envoy.filters.http.rbac",
                "typed_config": {
                    "@type": "type.googleapis.com/envoy.extensions.filters.http.rbac.v3.RBAC",
                    "rules": {
                        "action": "ALLOW",
                        "policies": {
                            "allowed-callers": {
                                "permissions": [{"any": True}],
                                "principals": principals or [{"not_id": {"any": True}}],
                            }
                        },
                    },
                },
            }
        )
    hcm = {
        "@type": _HCM,
        "stat_prefix": name,
        "route_config": {
            "name": name,
            "virtual_hosts": [{"name": name, "domains": ["*"],
                               "routes": [{"match": {"prefix": "/"},
                                           "route": {"cluster": name}}]}],
        },
        "http_filters": [*filters, _ROUTER],
    }  # fmt: skip
    manager = [{"name": "envoy.filters.network.http_connection_manager", "typed_config": hcm}]
    address = {"socket_address": {"address": inbound.address, "port_value": inbound.port}}
    listener: dict[str, Any] = {"name": name, "address": address}
    if service.mtls == "STRICT":
        listener["filter_chains"] = [{"filters": manager, "transport_socket": _downstream_tls()}]
    elif service.mtls == "PERMISSIVE":
        listener["listener_filters"] = [
            {
                "name": "envoy.filters.listener.tls_inspector",
                "typed_config": {
                    "@type": "type.googleapis.com/envoy.extensions.filters.listener."
                    "tls_inspector.v3.TlsInspector"
                },
            }
        ]
        listener["filter_chains"] = [
            {
                "name": "mtls",
                "filter_chain_match": {"transport_protocol": "tls"},
                "filters": manager,
                "transport_socket": _downstream_tls(),
            },
            {
                "name": "plaintext",
                "filter_chain_match": {"transport_protocol": "raw_buffer"},
                "filters": manager,
            },
        ]
    else:
        listener["filter_chains"] = [{"filters": manager}]
    return [app, _parse(listener, listener_pb2.Listener())]


def _parse(data: dict[str, Any], message: Message) -> Message:
    json_format.ParseDict(data, message)
    return message


def _cluster(service: Service, trust_domain: str | None) -> Message:
    data: dict[str, Any] = {
        "name": service.name,
        "type": "EDS",
        "eds_cluster_config": {"eds_config": {"ads": {}, "resource_api_version": "V3"}},
        "lb_policy": "ROUND_ROBIN",
        # The load assignment always carries locality weights; this makes Envoy (and remora)
        # honour them, as gRPC's proxyless clients always do.
        "common_lb_config": {"locality_weighted_lb_config": {}},
        "connect_timeout": service.policies.get("connect_timeout", "1s"),
    }
    thresholds = {
        key: service.policies[key]
        for key in ("max_connections", "max_pending_requests", "max_requests")
        if key in service.policies
    }
    if thresholds:
        data["circuit_breakers"] = {"thresholds": [thresholds]}
    if trust_domain is not None and service.mtls != "DISABLE":
        data["transport_socket"] = _upstream_tls(service, trust_domain)
    return _parse(data, cluster_pb2.Cluster())


def _load_assignment(service: Service) -> Message:
    localities = []
    for locality, weight in service.localities:
        localities.append(
            {
                "locality": {"zone": locality},
                "load_balancing_weight": weight,
                "lb_endpoints": [
                    {
                        "endpoint": {
                            "address": {
                                "socket_address": {"address": e.address, "port_value": e.port}
                            }
                        },
                        "load_balancing_weight": e.weight,
                    }
                    for e in service.endpoints
                    if e.locality == locality
                ],
            }
        )
    return _parse(
        {"cluster_name": service.name, "endpoints": localities},
        endpoint_pb2.ClusterLoadAssignment(),
    )


def _route_configuration(service: Service) -> Message:
    routes = []
    for route in service.routes:
        action: dict[str, Any]
        if len(route.to) == 1:
            action = {"cluster": route.to[0][0]}
        else:
            action = {
                "weighted_clusters": {
                    "clusters": [{"name": name, "weight": weight} for name, weight in route.to]
                }
            }
        if route.timeout is not None:
            action["timeout"] = route.timeout
        routes.append({"match": {"prefix": route.prefix}, "route": action})
    return _parse(
        {
            "name": service.name,
            "virtual_hosts": [{"name": service.name, "domains": ["*"], "routes": routes}],
        },
        route_pb2.RouteConfiguration(),
    )


def _hcm(service: Service) -> dict[str, Any]:
    return {
        "@type": _HCM,
        "stat_prefix": service.name,
        "rds": {"config_source": {"ads": {}, "resource_api_version": "V3"},
                "route_config_name": service.name},
        "http_filters": [_ROUTER],  # the router filter is last (it is the only one)
    }  # fmt: skip


def _api_listener(service: Service) -> Message:
    return _parse(
        {"name": service.name, "api_listener": {"api_listener": _hcm(service)}},
        listener_pb2.Listener(),
    )


def _sidecar_listener(service: Service) -> Message:
    address = {"address": service.listen_address, "port_value": service.listen_port}
    return _parse(
        {
            "name": service.name,
            "address": {"socket_address": address},
            "filter_chains": [
                {
                    "filters": [
                        {
                            "name": "envoy.filters.network.http_connection_manager",
                            "typed_config": _hcm(service),
                        }
                    ]
                }
            ],
        },
        listener_pb2.Listener(),
    )
