"""Bootstrap -> `ProxyConfig`: the one place where a whole config is validated and compiled.

Static bootstrap and (later) xDS resources take the same path: parse into protos, check the field
allowlist, compile each resource, then cross-check references. The result is immutable; swapping
config means swapping one reference.
"""

from __future__ import annotations

import dataclasses
import types
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from envoy.config.bootstrap.v3 import bootstrap_pb2
from envoy.extensions.transport_sockets.tls.v3 import secret_pb2
from google.protobuf import json_format

from remora.config import support
from remora.config.common import SocketAddress, socket_address
from remora.config.errors import ConfigError, ErrorCollector
from remora.proxy.listener_config import ListenerConfig, check_listener_set, compile_listener
from remora.proxy.tls.secrets import local as local_secrets
from remora.proxy.tls.secrets import static_secrets
from remora.proxy.upstream.cluster_compiler import compile_cluster
from remora.proxy.upstream.config import ClusterConfig
from remora.xds.bootstrap import AdsConfig, compile_dynamic_resources

support.register(
    "envoy.config.bootstrap.v3.Bootstrap",
    {"static_resources", "admin", "node", "dynamic_resources"},
)
support.register(
    "envoy.config.bootstrap.v3.Bootstrap.StaticResources", {"listeners", "clusters", "secrets"}
)
support.register("envoy.config.bootstrap.v3.Admin", {"address"})
# A static bootstrap has no use for the node identity, so it warns; with dynamic_resources the
# ADS client sends it to the control plane and the warning is dropped (compile_bootstrap).
_STATIC_ONLY = "node identity is only used by xDS, not by a static bootstrap"
support.register_ignored("envoy.config.core.v3.Node", "id", _STATIC_ONLY)
support.register_ignored("envoy.config.core.v3.Node", "cluster", _STATIC_ONLY)
# The other node fields and dynamic_resources are registered by remora.xds.bootstrap.


@dataclass(frozen=True, slots=True)
class ProxyConfig:
    listeners: tuple[ListenerConfig, ...]
    clusters: dict[str, ClusterConfig]
    admin: SocketAddress | None
    warnings: tuple[str, ...]
    source: dict[str, Any]  # the bootstrap as JSON, for /config_dump
    node_id: str = ""
    node_cluster: str = ""
    ads: AdsConfig | None = None  # dynamic_resources over ADS, when the bootstrap has them
    # static_resources.secrets by name: what xDS resources may name (with the agent's ones).
    static_secrets: Mapping[str, secret_pb2.Secret] = dataclasses.field(
        default_factory=lambda: types.MappingProxyType({})
    )


def compile_bootstrap(
    bootstrap: bootstrap_pb2.Bootstrap, parse_errors: Sequence[ConfigError] = ()
) -> ProxyConfig:
    """Compile a parsed bootstrap; raises `ConfigErrors` listing every problem found.

    `parse_errors` come from a lenient parse (values that could not be parsed were left out), so
    one run reports them together with what compiling the rest finds."""
    errors = ErrorCollector()
    errors.extend(parse_errors)
    # Every independent problem is listed once: unsupported fields, then what each resource's
    # compiler finds (the compilers read only supported fields, so an unsupported one adds no
    # second error), then references.
    unsupported, warnings = support.check(bootstrap, "")
    errors.extend(unsupported)
    secrets: dict[str, secret_pb2.Secret] = {}
    for i, secret in enumerate(bootstrap.static_resources.secrets):
        spath = f"static_resources.secrets[{i}]"
        if not secret.name:
            errors.add(f"{spath}.name", "a secret needs a name")
        elif secret.name in secrets:
            errors.add(f"{spath}.name", f"duplicate secret name {secret.name!r}")
        elif secret.name in local_secrets():
            errors.add(
                f"{spath}.name",
                f"{secret.name!r} is the name of the identity agent's secret (--identity-*); "
                "name this one differently",
            )
        secrets.setdefault(secret.name, secret)
    with static_secrets({**secrets, **local_secrets()}):
        clusters, defined, compiled_listeners = _compile_resources(bootstrap, errors)
    check_listener_set(compiled_listeners, errors)
    listeners = [listener for _path, listener in compiled_listeners]
    admin = None
    if bootstrap.HasField("admin"):
        admin = socket_address(bootstrap.admin.address, "admin.address", errors)
    ads = None
    if bootstrap.HasField("dynamic_resources"):
        ads = compile_dynamic_resources(bootstrap, clusters, errors, defined - clusters.keys())
        warnings = [
            w for w in warnings if not w.startswith(("ignored: node.id", "ignored: node.cl"))
        ]
    if errors.errors:
        # A refused config serves nothing: the log files its listeners opened are closed now,
        # not leaked once per rejected reload of a running proxy.
        for listener in listeners:
            for logger in listener.access_logs:
                logger.close()
    errors.raise_if_any()
    return ProxyConfig(
        listeners=tuple(listeners),
        clusters=clusters,
        admin=admin,
        warnings=tuple(warnings),
        source=json_format.MessageToDict(bootstrap, preserving_proto_field_name=True),
        node_id=bootstrap.node.id,
        node_cluster=bootstrap.node.cluster,
        ads=ads,
        static_secrets=types.MappingProxyType(secrets),
    )


def _compile_resources(
    bootstrap: bootstrap_pb2.Bootstrap, errors: ErrorCollector
) -> tuple[dict[str, ClusterConfig], set[str], list[tuple[str, ListenerConfig]]]:
    """The static clusters and listeners (with the bootstrap's secrets in scope)."""
    clusters: dict[str, ClusterConfig] = {}
    defined: set[str] = set()  # a cluster that failed to compile still counts for references
    for i, cluster in enumerate(bootstrap.static_resources.clusters):
        path = f"static_resources.clusters[{i}]"
        if cluster.name in defined:
            errors.add(f"{path}.name", f"duplicate cluster name {cluster.name!r}")
        defined.add(cluster.name)
        compiled = compile_cluster(cluster, path, errors)
        if compiled is not None:
            clusters[compiled.name] = compiled
    compiled_listeners: list[tuple[str, ListenerConfig]] = []
    for i, listener in enumerate(bootstrap.static_resources.listeners):
        path = f"static_resources.listeners[{i}]"
        compiled_listener = compile_listener(listener, path, errors, known_clusters=defined)
        if compiled_listener is not None:
            compiled_listeners.append((path, compiled_listener))
    return clusters, defined, compiled_listeners
