"""What the proxy's ADS client has accepted, compiled, and what the proxy should run from it.

Shared by the state-of-the-world and the delta client: both check and compile every resource
with the same compilers and allowlist as a static bootstrap, and both warm clusters and listeners
the same way. They differ only in how a response maps onto the stores (a full set that replaces,
or changes plus `removed_resources`), so that is the one thing `install` is told.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Collection, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from envoy.config.cluster.v3 import cluster_pb2
from google.protobuf import any_pb2, json_format
from google.protobuf.message import Message

from remora.config import support
from remora.config.errors import ConfigError, ErrorCollector
from remora.proxy.http.config import HcmConfig
from remora.proxy.http.route import RouteTable, compile_route_configuration
from remora.proxy.listener_config import (
    FilterChainConfig,
    ListenerConfig,
    check_listener_set,
    compile_listener,
)
from remora.proxy.tls import secrets as tls_secrets
from remora.proxy.tls.compiler import check_secret
from remora.proxy.tls.config import TlsContext
from remora.proxy.upstream.cluster_compiler import compile_cluster, compile_endpoints
from remora.proxy.upstream.config import ClusterConfig, DiscoveryType
from remora.xds import types

INVALID_ARGUMENT = 3  # google.rpc.Code carried in a NACK's error_detail


@dataclass(frozen=True, slots=True)
class NackInfo:
    version: str
    nonce: str
    reason: str
    at: float


@dataclass(slots=True)
class TypeState:
    """Per-type protocol state, the same shape for both protocol variants."""

    version: str = ""  # last accepted (SotW version_info, delta system_version_info)
    nonce: str = ""  # last received
    names: frozenset[str] = frozenset()  # EDS/RDS: the names subscribed to
    subscribed: bool = False  # a request for this type went out on the current stream
    last_nack: NackInfo | None = None


@dataclass(frozen=True, slots=True)
class Checked:
    """One resource out of a response, unpacked and allowlist-checked."""

    name: str
    version: str
    path: str  # `resources[i](name)`, the prefix of every error about it
    message: Message


@dataclass(frozen=True, slots=True)
class Awaiting:
    """A cluster or listener that names ADS secrets not delivered yet: kept as received and
    compiled when they arrive (it warms meanwhile, as in Envoy)."""

    item: Checked
    secrets: frozenset[str]


# Per-resource config dump: name -> (version, JSON body).
Dumps = dict[str, tuple[str, dict[str, Any]]]
_WARMS_ON_SECRETS = (types.CLUSTER, types.LISTENER)


@dataclass(frozen=True, slots=True)
class Saved:
    stores: dict[str, dict[str, Any]]
    dumps: dict[str, Dumps]
    active_clusters: dict[str, ClusterConfig]
    active_listeners: dict[str, ListenerConfig]
    awaiting: dict[str, dict[str, Awaiting]]
    secret_names: dict[str, dict[str, frozenset[str]]]


@dataclass(frozen=True, slots=True)
class SavedState:
    """A client state before a response: restored when applying the response fails."""

    types: dict[str, TypeState]
    resources: Saved


def save_state(type_states: Mapping[str, TypeState], resources: ClientResources) -> SavedState:
    return SavedState({t: dataclasses.replace(s) for t, s in type_states.items()}, resources.save())


class ClientResources:
    def __init__(
        self,
        static_listeners: Sequence[ListenerConfig] = (),
        static_clusters: Collection[str] = (),
    ) -> None:
        self.stores: dict[str, dict[str, Any]] = {t: {} for t in types.ORDER}
        self.dumps: dict[str, Dumps] = {t: {} for t in types.ORDER}
        self._active_clusters: dict[str, ClusterConfig] = {}
        self._active_listeners: dict[str, ListenerConfig] = {}
        # The bootstrap's own resources win over dynamic ones of the same name, as in Envoy.
        self.static_listeners = {listener.name: listener for listener in static_listeners}
        self.static_clusters = frozenset(static_clusters)
        self.warnings: list[str] = []  # for the shell to log; cleared as it does
        # Clusters and listeners waiting for ADS secrets, and the ADS secrets every accepted
        # one names (what the SDS subscription asks for).
        self.awaiting: dict[str, dict[str, Awaiting]] = {t: {} for t in _WARMS_ON_SECRETS}
        self.secret_names: dict[str, dict[str, frozenset[str]]] = {t: {} for t in _WARMS_ON_SECRETS}
        # The static secrets resources may name (the bootstrap's and the identity agent's):
        # the shell points this at the proxy's.
        self.static_secrets: Callable[[], tls_secrets.Secrets] = lambda: {}

    @property
    def clusters(self) -> dict[str, ClusterConfig]:
        return self.stores[types.CLUSTER]

    @property
    def listeners(self) -> dict[str, ListenerConfig]:
        return self.stores[types.LISTENER]

    @property
    def endpoints(self) -> dict[str, Any]:
        return self.stores[types.ENDPOINT]

    @property
    def routes(self) -> dict[str, Any]:
        return self.stores[types.ROUTE]

    @property
    def secrets(self) -> dict[str, Any]:
        return self.stores[types.SECRET]

    def view(self, ads: Mapping[str, Any] | None = None) -> tls_secrets.SecretView:
        return tls_secrets.SecretView(
            static=self.static_secrets(), ads=self.secrets if ads is None else ads
        )

    # -- response -> compiled ------------------------------------------------------------------
    def check(
        self,
        type_url: str,
        items: Iterable[tuple[str, str, any_pb2.Any]],
        errors: ErrorCollector,
    ) -> list[Checked]:
        """Unpack `(declared name or "", version, Any)` items: each must have the type asked
        for, a unique name (matching the declared one, in delta) and only allowlisted fields."""
        checked: list[Checked] = []
        seen: set[str] = set()
        for i, (declared, version, item) in enumerate(items):
            path = f"resources[{i}]"
            if item.type_url != type_url:
                errors.add(path, f"@type {item.type_url} in a {type_url} response")
                continue
            try:
                message = support.unpack_any(item, path)
            except ConfigError as exc:
                errors.extend([exc])
                continue
            name = types.resource_name(message)
            path = f"{path}({name})"
            if name in seen:
                errors.add(path, f"duplicate resource {name!r}")
            if declared and declared != name:
                errors.add(path, f"declared as {declared!r} in the response")
            seen.add(name)
            unsupported, warnings = support.check(message, path)
            errors.extend(unsupported)
            self.warnings.extend(f"{types.SHORT[type_url]} {w}" for w in warnings)
            checked.append(Checked(name, version, path, message))
        return checked

    def compile(
        self,
        type_url: str,
        checked: Sequence[Checked],
        errors: ErrorCollector,
        ads: Mapping[str, Any] | None = None,
    ) -> dict[str, Any]:
        """Compile every resource (reporting all errors); name -> runtime object, or `Awaiting`
        for a cluster or listener whose ADS secrets (`ads`, by default those held) are not all
        there. A Secret compiles to itself once it is checked usable on its own."""
        compiled: dict[str, Any] = {}
        held = self.secrets if ads is None else ads
        with tls_secrets.using(self.view(held)):
            for item in checked:
                result: Any
                if type_url in _WARMS_ON_SECRETS:
                    wanted = frozenset(tls_secrets.resource_ads_secrets(item.message))
                    if not wanted <= held.keys():
                        compiled[item.name] = Awaiting(item, wanted)
                        continue
                if type_url == types.CLUSTER:
                    result = compile_cluster(item.message, item.path, errors)
                elif type_url == types.ENDPOINT:
                    result = compile_endpoints(item.message, item.path, errors)
                elif type_url == types.LISTENER:
                    result = compile_listener(item.message, item.path, errors)
                elif type_url == types.SECRET:
                    result = item.message if check_secret(item.message, item.path, errors) else None
                else:
                    result = compile_route_configuration(item.message, item.path, errors)
                if result is not None:
                    compiled[item.name] = result
        return compiled

    def wake(self, ads: Mapping[str, Any]) -> dict[str, dict[str, Any]]:
        """The waiting clusters and listeners that the ADS secrets `ads` (what an SDS update
        would leave held) complete, compiled: type -> name -> config.

        One that still cannot be built (it names a static secret the proxy does not have, say)
        keeps waiting, with a warning: it was accepted when it came, and it must not keep the
        secrets, which other resources use, from being accepted."""
        woken: dict[str, dict[str, Any]] = {}
        for type_url in _WARMS_ON_SECRETS:
            kind = "cluster" if type_url == types.CLUSTER else "listener"
            ready = [w.item for w in self.awaiting[type_url].values() if w.secrets <= ads.keys()]
            compiled: dict[str, Any] = {}
            for item in ready:
                errors = ErrorCollector()
                one = self.compile(type_url, [item], errors, ads)
                if errors.errors or item.name not in one:
                    self._still_waiting(type_url, kind, item.name, errors)
                    continue
                compiled.update(one)
            if not compiled:
                continue
            errors = ErrorCollector()
            self.check_set(type_url, compiled, ready, errors, replace=False)
            if errors.errors:
                for name in compiled:
                    self._still_waiting(type_url, kind, name, errors)
                continue
            woken[type_url] = compiled
        return woken

    def _still_waiting(self, type_url: str, kind: str, name: str, errors: ErrorCollector) -> None:
        # The paths start with the CDS/LDS response's `resources[i](name)`: name it instead.
        reasons = "; ".join(
            f"{e.path.partition(')')[2].lstrip('.') or e.path}: {e.message}" for e in errors.errors
        )
        self.warnings.append(
            f"{types.SHORT[type_url]} {kind} {name!r} has its secrets but cannot be built with "
            f"them, and keeps waiting: {reasons or 'no reason given'}"
        )

    def install_woken(self, woken: Mapping[str, Mapping[str, Any]]) -> None:
        for type_url, compiled in woken.items():
            for name, config in compiled.items():
                self.awaiting[type_url].pop(name, None)
                self.stores[type_url][name] = config

    def check_set(
        self,
        type_url: str,
        compiled: dict[str, Any],
        checked: Sequence[Checked],
        errors: ErrorCollector,
        replace: bool,
        removed: Iterable[str] = (),
    ) -> None:
        """The checks that span resources, on the set the update would leave in place: a
        dynamic listener or cluster named like a static one is dropped with a warning (the
        bootstrap's wins), and listeners must not share a name or an address with each other
        or with the static ones."""
        static: Collection[str] = ()
        if type_url == types.LISTENER:
            static = self.static_listeners.keys()
        elif type_url == types.CLUSTER:
            static = self.static_clusters
        for name in [n for n in compiled if n in static]:
            kind = "listener" if type_url == types.LISTENER else "cluster"
            self.warnings.append(
                f"{types.SHORT[type_url]} {kind} {name!r} is defined statically: the "
                "bootstrap's definition is kept and the dynamic one ignored"
            )
        if type_url != types.LISTENER:
            return
        paths = {item.name: item.path for item in checked}
        gone = set(removed)
        kept = {} if replace else {n: v for n, v in self.listeners.items() if n not in gone}
        kept.update(compiled)
        # One that waits for its secrets is checked when they arrive (`wake`); until then the
        # version it replaces, if any, still serves.
        kept = {n: v for n, v in kept.items() if not isinstance(v, Awaiting)}
        # A shadowed listener is stored, not served: it takes over if a reload drops the static
        # one of its name (`merged`), so only the served ones are checked against each other.
        kept = {n: v for n, v in kept.items() if n not in static}
        taken = {listener.address: name for name, listener in self.static_listeners.items()}
        check_listener_set(
            [(paths.get(name, f"({name})"), listener) for name, listener in sorted(kept.items())],
            errors,
            taken,
        )

    def install(
        self,
        type_url: str,
        compiled: Mapping[str, Any],
        checked: Sequence[Checked],
        replace: bool,
        removed: Iterable[str] = (),
    ) -> None:
        """Make an accepted response current: `replace` for a SotW full set, else merge."""
        store, dumps = self.stores[type_url], self.dumps[type_url]
        awaiting = self.awaiting.get(type_url, {})
        names = self.secret_names.get(type_url, {})
        if replace:
            for table in (store, dumps, awaiting, names):
                table.clear()
        for name in removed:
            for table in (store, dumps, awaiting, names):
                table.pop(name, None)
        for name, config in compiled.items():
            if isinstance(config, Awaiting):
                store.pop(name, None)
                awaiting[name] = config
            else:
                awaiting.pop(name, None)
                store[name] = config
        for item in checked:
            body = json_format.MessageToDict(item.message, preserving_proto_field_name=True)
            if type_url == types.SECRET:
                body = tls_secrets.redacted(body)
            dumps[item.name] = (item.version, body)
            if type_url in _WARMS_ON_SECRETS:
                names[item.name] = frozenset(tls_secrets.resource_ads_secrets(item.message))

    def tls_contexts(self) -> list[TlsContext]:
        """Every TLS context the accepted resources hold, served or not (a shadowed listener,
        one replaced by a version that is warming)."""
        found: list[TlsContext] = []
        for table in (self.listeners, self._active_listeners):
            found += [c.tls for ls in table.values() for c in ls.all_chains if c.tls is not None]
        for ctable in (self.clusters, self._active_clusters):
            found += [c.tls for c in ctable.values() if c.tls is not None]
        return found

    def swap_tls(self, old: TlsContext, new: TlsContext) -> None:
        """The proxy swapped a TLS context (a secret or file delivered again): the accepted
        resources that hold it take the new one too, or the next update would bring the old
        one back."""
        for table in (self.listeners, self._active_listeners):
            for name, listener in table.items():
                table[name] = listener.with_tls_swapped(old, new)
        for ctable in (self.clusters, self._active_clusters):
            for name, cluster in ctable.items():
                if cluster.tls is old:
                    ctable[name] = dataclasses.replace(cluster, tls=new)

    def save(self) -> Saved:
        """What `restore` needs to undo one install (the stores are replaced, not mutated)."""
        return Saved(
            {t: dict(store) for t, store in self.stores.items()},
            {t: dict(dumps) for t, dumps in self.dumps.items()},
            dict(self._active_clusters),
            dict(self._active_listeners),
            {t: dict(table) for t, table in self.awaiting.items()},
            {t: dict(table) for t, table in self.secret_names.items()},
        )

    def restore(self, saved: Saved) -> None:
        self.stores = {t: dict(store) for t, store in saved.stores.items()}
        self.dumps = {t: dict(dumps) for t, dumps in saved.dumps.items()}
        self._active_clusters = dict(saved.active_clusters)
        self._active_listeners = dict(saved.active_listeners)
        self.awaiting = {t: dict(table) for t, table in saved.awaiting.items()}
        self.secret_names = {t: dict(table) for t, table in saved.secret_names.items()}

    # -- subscriptions -------------------------------------------------------------------------
    def wanted(self) -> dict[str, frozenset[str]]:
        """EDS/RDS names follow the accepted clusters and listeners, and those serving while a
        new version waits for its secrets (whose own EDS name is asked for too)."""
        clusters = [*self.clusters.values()]
        listeners = [*self.listeners.values()]
        waiting_eds: set[str] = set()
        for name, waiting in self.awaiting[types.CLUSTER].items():
            if name in self._active_clusters:
                clusters.append(self._active_clusters[name])
            message = waiting.item.message
            if isinstance(message, cluster_pb2.Cluster) and message.type == cluster_pb2.Cluster.EDS:
                waiting_eds.add(message.eds_cluster_config.service_name or message.name)
        listeners += [
            self._active_listeners[name]
            for name in self.awaiting[types.LISTENER]
            if name in self._active_listeners
        ]
        return {
            types.ENDPOINT: frozenset(
                c.eds_service_name for c in clusters if c.discovery is DiscoveryType.EDS
            )
            | waiting_eds,
            types.ROUTE: frozenset(
                hcm.rds_name for listener in listeners for hcm in listener.hcms if hcm.rds_name
            ),
            types.SECRET: frozenset(
                secret
                for table in self.secret_names.values()
                for names in table.values()
                for secret in names
            ),
        }

    def prune(self, type_url: str, names: frozenset[str]) -> None:
        """Forget resources no longer subscribed to."""
        for table in (self.stores[type_url], self.dumps[type_url]):
            for gone in [n for n in table if n not in names]:
                del table[gone]

    def versions(self, type_url: str) -> dict[str, str]:
        return {name: version for name, (version, _body) in self.dumps[type_url].items()}

    # -- what the proxy should run -------------------------------------------------------------
    def set_static(
        self, listeners: Sequence[ListenerConfig], clusters: Collection[str]
    ) -> tuple[dict[str, ListenerConfig], frozenset[str]]:
        """Take a reloaded bootstrap's resources; returns the previous ones for a rollback."""
        previous = self.static_listeners, self.static_clusters
        self.static_listeners = {listener.name: listener for listener in listeners}
        self.static_clusters = frozenset(clusters)
        return previous

    def merged(
        self, static_clusters: Mapping[str, ClusterConfig]
    ) -> tuple[dict[str, ClusterConfig], list[ListenerConfig]]:
        """The sets the proxy should run: the bootstrap's resources and the accepted dynamic ones,
        the bootstrap's winning a name, or (for listeners) an address, that both claim.

        An address clash can only come from a reload (an xDS update that makes one is NACKed),
        when a new static listener takes the address of a dynamic one that was serving."""
        clusters = {**self.desired_clusters(), **static_clusters}
        static = self.static_listeners
        addresses = {listener.address: name for name, listener in static.items()}
        listeners = list(static.values())
        for listener in self.desired_listeners():
            if listener.name in static:
                continue
            holder = addresses.get(listener.address)
            if holder is not None and listener.address.port != 0:
                self.warnings.append(
                    f"LDS listener {listener.name!r} is on {listener.address}, which static "
                    f"listener {holder!r} now holds: it is not served until one of them moves"
                )
                continue
            listeners.append(listener)
        return clusters, listeners

    def desired_clusters(self) -> dict[str, ClusterConfig]:
        active: dict[str, ClusterConfig] = {}
        for name, cluster in self.clusters.items():
            if cluster.discovery is DiscoveryType.EDS:
                assignment = self.endpoints.get(cluster.eds_service_name)
                if assignment is None:  # warming: keep the serving version if there is one
                    if name in self._active_clusters:
                        active[name] = self._active_clusters[name]
                    continue
                cluster = dataclasses.replace(
                    cluster,
                    endpoints=assignment.endpoints,
                    overprovisioning_factor=assignment.overprovisioning_factor,
                )
            active[name] = cluster
        for name in self.awaiting[types.CLUSTER]:  # waiting for secrets: the old one serves
            if name not in active and name in self._active_clusters:
                active[name] = self._active_clusters[name]
        self._active_clusters = active
        return dict(active)

    def desired_listeners(self) -> list[ListenerConfig]:
        active: dict[str, ListenerConfig] = {}
        for name, listener in self.listeners.items():
            resolved = _with_routes(listener, self.routes)
            if resolved is None:  # warming: keep the serving version if there is one
                if name in self._active_listeners:
                    active[name] = self._active_listeners[name]
                continue
            active[name] = resolved
        for name in self.awaiting[types.LISTENER]:  # waiting for secrets: the old one serves
            if name not in active and name in self._active_listeners:
                active[name] = self._active_listeners[name]
        self._active_listeners = active
        return list(active.values())


def _with_routes(
    listener: ListenerConfig, routes: Mapping[str, RouteTable]
) -> ListenerConfig | None:
    """The listener with every RDS connection manager's route table filled in, or None while
    one of them has not arrived."""

    def resolve(chain: FilterChainConfig) -> FilterChainConfig | None:
        hcm = chain.network_filter
        if not isinstance(hcm, HcmConfig) or not hcm.rds_name:
            return chain
        table = routes.get(hcm.rds_name)
        if table is None:
            return None
        return dataclasses.replace(
            chain, network_filter=dataclasses.replace(hcm, route_table=table)
        )

    chains = [resolve(chain) for chain in listener.chains]
    default = None if listener.default_chain is None else resolve(listener.default_chain)
    if any(chain is None for chain in chains) or (
        listener.default_chain is not None and default is None
    ):
        return None
    return dataclasses.replace(
        listener, chains=tuple(c for c in chains if c is not None), default_chain=default
    )


def status(states: Mapping[str, TypeState]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for type_url, state in states.items():
        entry: dict[str, Any] = {"version_info": state.version, "nonce": state.nonce}
        if state.names:
            entry["resource_names"] = sorted(state.names)
        if state.last_nack is not None:
            entry["last_nack"] = {
                "rejected_version": state.last_nack.version,
                "reason": state.last_nack.reason,
                "time": state.last_nack.at,
            }
        out[types.SHORT[type_url]] = entry
    return out
