"""The xDS resource types remora serves and consumes, and how each names its resources."""

from __future__ import annotations

from envoy.config.cluster.v3 import cluster_pb2
from envoy.config.endpoint.v3 import endpoint_pb2
from envoy.config.listener.v3 import listener_pb2
from envoy.config.route.v3 import route_pb2
from envoy.extensions.transport_sockets.tls.v3 import secret_pb2
from google.protobuf import any_pb2
from google.protobuf.message import Message

_PREFIX = "type.googleapis.com/"
LISTENER = _PREFIX + "envoy.config.listener.v3.Listener"
CLUSTER = _PREFIX + "envoy.config.cluster.v3.Cluster"
ROUTE = _PREFIX + "envoy.config.route.v3.RouteConfiguration"
ENDPOINT = _PREFIX + "envoy.config.endpoint.v3.ClusterLoadAssignment"
SECRET = _PREFIX + "envoy.extensions.transport_sockets.tls.v3.Secret"

# Envoy's order for applying updates: clusters before the endpoints they use, listeners before
# the routes they name; a client asks in this order and a server pushes in it. Secrets (SDS)
# are asked for by name as clusters and listeners name them, and they warm until theirs arrive.
ORDER: tuple[str, ...] = (CLUSTER, ENDPOINT, LISTENER, ROUTE, SECRET)

# In state-of-the-world, a response for these types is the full set: absent means deleted.
FULL_STATE: frozenset[str] = frozenset({LISTENER, CLUSTER})

MESSAGES: dict[str, type[Message]] = {
    LISTENER: listener_pb2.Listener,
    CLUSTER: cluster_pb2.Cluster,
    ROUTE: route_pb2.RouteConfiguration,
    ENDPOINT: endpoint_pb2.ClusterLoadAssignment,
    SECRET: secret_pb2.Secret,
}

SHORT: dict[str, str] = {
    LISTENER: "LDS", CLUSTER: "CDS", ROUTE: "RDS", ENDPOINT: "EDS", SECRET: "SDS",
}  # fmt: skip


def type_url_of(message: Message) -> str:
    return _PREFIX + message.DESCRIPTOR.full_name


def type_url_of_any(packed: any_pb2.Any) -> str:
    """The canonical type URL of what an Any holds, whatever host prefix its URL used."""
    return _PREFIX + packed.type_url.rpartition("/")[2]


def resource_name(message: Message) -> str:
    """The name a resource is subscribed by: `cluster_name` for a ClusterLoadAssignment."""
    if isinstance(message, endpoint_pb2.ClusterLoadAssignment):
        return str(message.cluster_name)
    name = getattr(message, "name", None)
    if not isinstance(name, str):
        raise TypeError(f"{message.DESCRIPTOR.full_name} has no name field")
    return name
