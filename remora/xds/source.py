"""Config sources: a directory of YAML files (mesh schema or raw resources) feeding the cache.

Loading is all-or-nothing: every file is parsed and every resource built before anything is
installed, so an invalid file (named with its field path) leaves the previous snapshots serving.
Raw `resources:` files are served as-is to every node group.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml
from envoy.config.core.v3 import base_pb2
from envoy.extensions.transport_sockets.tls.v3 import secret_pb2
from google.protobuf import any_pb2, json_format
from google.protobuf.message import Message

import remora.config.typeregistry  # noqa: F401  (registers typed_config types for Any parsing)
from remora.config.errors import ConfigError, ErrorCollector
from remora.config.parse_errors import PARSE_FAILURES, find_errors
from remora.config.support import unpack_any
from remora.config.typeregistry import find_type
from remora.config.yamlload import LIMITS, load_yaml, read_text, yaml_error
from remora.xds import mesh, types
from remora.xds.ca.grants import Grant, parse_identities
from remora.xds.cache import GROUP_METADATA_KEY, SnapshotCache
from remora.xds.clip import clip
from remora.xds.snapshot import DuplicateResource, Snapshot
from remora.xds.stats import ControlPlaneStats

log = logging.getLogger("remora.xds.source")

_SUFFIXES = (".yaml", ".yml", ".json")
_TOP_LEVEL = frozenset({"services", "resources", "identities"})
# All files of one source together; each file is also held to `yamlload.LIMITS`.
MAX_SOURCE_BYTES = 4 * LIMITS.max_bytes


SERVICE_METADATA_KEY = "remora.service"


def mesh_group(node: base_pb2.Node) -> str:
    """`remora.group` metadata if set; else for remora proxies `sidecar/<service>` when the node
    says which service it runs beside (`remora.service`: its group adds the inbound side, and
    falls back to `sidecar` for a service without one) or `sidecar`; proxyless for the rest."""
    fields = node.metadata.fields
    if GROUP_METADATA_KEY in fields and fields[GROUP_METADATA_KEY].string_value:
        return str(fields[GROUP_METADATA_KEY].string_value)
    if not str(node.user_agent_name).startswith("remora"):
        return mesh.PROXYLESS
    service = fields[SERVICE_METADATA_KEY].string_value if SERVICE_METADATA_KEY in fields else ""
    return f"{mesh.SIDECAR}/{service}" if service else mesh.SIDECAR


class FirstLoadError(Exception):
    """The source failed before anything was served: the control plane should not start."""

    def __init__(self, where: str, errors: Sequence[str]) -> None:
        self.where = where
        self.errors = list(errors)
        lines = "".join(f"\n  {line}" for error in errors for line in error.splitlines())
        super().__init__(f"{where}: the first load failed, nothing to serve:{lines}")


def warn_if_empty(config: MeshConfig, where: str) -> None:
    """An empty or mistyped directory loads as zero services; say so instead of serving nothing."""
    if not config.services and not config.raw:
        log.warning(
            "%s has no services and no resources (looked for %s files with `services:` or "
            "`resources:`); serving an empty mesh",
            where, ", ".join(_SUFFIXES),
        )  # fmt: skip


class SourceError(Exception):
    """Every problem found while loading a config directory, each prefixed with its file."""

    def __init__(self, errors: list[ConfigError]) -> None:
        self.errors = errors
        super().__init__("\n".join(str(e) for e in errors))


@dataclass(frozen=True, slots=True)
class MeshConfig:
    """A parsed and validated source: mesh services plus raw resources (served as-is), and the
    identities the CA grants to workload tokens."""

    services: tuple[mesh.Service, ...]
    raw: tuple[Message, ...]
    identities: tuple[Grant, ...] = ()


@dataclass(frozen=True, slots=True)
class Identity:
    """What the control plane's CA adds to every snapshot: the trust domain SPIFFE IDs are in,
    and the trust bundle, sent over ADS as the secret the generated TLS contexts name."""

    trust_domain: str
    bundle_pem: bytes

    def bundle_secret(self) -> secret_pb2.Secret:
        secret = secret_pb2.Secret(name=mesh.BUNDLE_SECRET)
        secret.validation_context.trusted_ca.inline_bytes = self.bundle_pem
        return secret


def load_directory(directory: Path, label: str = "") -> dict[str, Snapshot]:
    """Build one snapshot per node group from `directory`; raises `SourceError`."""
    return build_snapshots(parse_directory(directory), label)


def build_snapshots(
    config: MeshConfig,
    label: str = "",
    registered: Mapping[str, Sequence[mesh.Endpoint]] | None = None,
    identity: Identity | None = None,
) -> dict[str, Snapshot]:
    """One snapshot per node group; `registered` endpoints join their services' own. Services
    with mTLS need the CA (`identity`)."""
    services = [
        mesh.with_endpoints(s, registered[s.name]) if registered and s.name in registered else s
        for s in config.services
    ]
    if identity is None and (secured := mesh.needs_ca(services)):
        raise SourceError(
            [
                ConfigError(
                    f"services.{name}.mtls",
                    "mTLS needs the control plane's CA to issue identities: start it with "
                    "--ca-dir (or set mtls: DISABLE)",
                )
                for name in secured
            ]
        )
    extra = [identity.bundle_secret()] if identity is not None else []
    trust_domain = identity.trust_domain if identity is not None else None
    snapshots: dict[str, Snapshot] = {}
    for group, messages in mesh.generate(services, trust_domain).items():
        try:
            snapshots[group] = Snapshot.build([*messages, *extra, *config.raw], label)
        except DuplicateResource as exc:  # say a raw cluster shadowing a service's
            raise SourceError([ConfigError("resources", f"{exc} ({group})")]) from None
    return snapshots


def parse_directory(directory: Path) -> MeshConfig:
    """Parse and validate every file under `directory`; raises `SourceError` naming them.

    Nothing else escapes: a failure this code did not foresee still rejects the load (naming the
    file and the exception), since a source that raised anything else would stop being watched.
    """
    try:
        return _parse_directory(directory)
    except SourceError:
        raise
    except Exception as exc:  # see the docstring
        log.debug("unexpected failure loading %s", directory, exc_info=True)
        raise SourceError([ConfigError(str(directory), unexpected(exc))]) from None


def unexpected(exc: BaseException) -> str:
    """An unforeseen exception as one line of an error list."""
    return f"cannot load: {type(exc).__name__}: {clip(str(exc), 300)}"


@dataclass(slots=True)
class _Parsed:
    errors: ErrorCollector = field(default_factory=ErrorCollector)
    services: list[mesh.Service] = field(default_factory=list)
    raw: list[Message] = field(default_factory=list)
    service_files: dict[str, str] = field(default_factory=dict)
    identities: list[Grant] = field(default_factory=list)
    identity_files: dict[tuple[str, str], str] = field(default_factory=dict)


def _parse_directory(directory: Path) -> MeshConfig:
    parsed = _Parsed()
    errors = parsed.errors
    files = sorted(p for p in directory.rglob("*") if p.suffix in _SUFFIXES and p.is_file())
    budget = MAX_SOURCE_BYTES
    for file in files:
        rel = str(file.relative_to(directory))
        try:
            budget -= file.stat().st_size
            if budget < 0:
                errors.add(rel, f"the files add up to more than {MAX_SOURCE_BYTES >> 20} MiB")
                break
            _parse_file(file, rel, parsed)
        except Exception as exc:  # one file's surprise must not hide the others
            log.debug("unexpected failure loading %s", file, exc_info=True)
            errors.add(rel, unexpected(exc))
    services = parsed.services
    reference_errors = ErrorCollector()
    mesh.check_references(services, "services", reference_errors)
    errors.extend(
        _in_file(parsed.service_files.get(e.path.split(".")[1], "?"), [e])[0]
        for e in reference_errors.errors
    )
    if errors.errors:
        raise SourceError(errors.errors)
    return MeshConfig(tuple(services), tuple(parsed.raw), tuple(parsed.identities))


def _parse_file(file: Path, rel: str, parsed: _Parsed) -> None:
    errors = parsed.errors
    try:
        data = load_yaml(read_text(file), rel)
    except OSError as exc:
        errors.add(rel, f"cannot read: {exc.strerror}")
        return
    except UnicodeDecodeError as exc:
        errors.add(rel, f"not UTF-8 text ({exc.reason})")
        return
    except yaml.YAMLError as exc:
        errors.add("", yaml_error(exc, rel))
        return
    if data is None:
        return
    if not isinstance(data, dict) or not (_TOP_LEVEL & data.keys()):
        errors.add(
            rel, "the top level must be a mapping with `services:`, `resources:` or `identities:`"
        )
        return
    for key in data:
        if key not in _TOP_LEVEL:
            errors.add(f"{rel}: {clip(str(key), 80)}", "unknown top-level field")
    if "identities" in data:
        file_errors = ErrorCollector()
        for grant in parse_identities(data["identities"], "identities", file_errors):
            key = (grant.namespace, grant.service_account)
            if key in parsed.identity_files:
                file_errors.add(
                    f"identities.{grant.service_account}",
                    f"duplicate identity (also in {parsed.identity_files[key]})",
                )
            parsed.identity_files[key] = rel
            parsed.identities.append(grant)
        errors.extend(_in_file(rel, file_errors.errors))
    if "services" in data:
        file_errors = ErrorCollector()
        for service in mesh.parse_services(data["services"], "services", file_errors):
            if service.name in parsed.service_files:
                file_errors.add(
                    f"services.{service.name}",
                    f"duplicate service (also in {parsed.service_files[service.name]})",
                )
            parsed.service_files[service.name] = rel
            parsed.services.append(service)
        errors.extend(_in_file(rel, file_errors.errors))
    if "resources" in data:
        parsed.raw.extend(_raw_resources(data["resources"], rel, errors))


def _in_file(file: str, errors: list[ConfigError]) -> list[ConfigError]:
    return [ConfigError(f"{file}: {e.path}", e.message) for e in errors]


def _raw_resources(items: Any, file: str, errors: ErrorCollector) -> list[Message]:
    if not isinstance(items, list):
        errors.add(f"{file}: resources", "must be a list of resources with '@type'")
        return []
    out: list[Message] = []
    for i, item in enumerate(items):
        path = f"{file}: resources[{i}]"
        if not isinstance(item, dict) or "@type" not in item:
            errors.add(path, "each resource needs an '@type'")
            continue
        if not isinstance(item["@type"], str):
            errors.add(f"{path}.@type", "must be a type URL (a string)")
            continue
        packed = any_pb2.Any()
        find_type(item["@type"].rpartition("/")[2])  # imports its generated module if needed
        try:
            json_format.ParseDict(item, packed)
        except PARSE_FAILURES:
            # Protobuf's own text lists camelCase field names; name each problem by its path.
            _, problems = find_errors(item, any_pb2.Any.DESCRIPTOR, path)
            errors.extend(problems or [ConfigError(path, "cannot parse this resource")])
            continue
        if types.type_url_of_any(packed) not in types.MESSAGES:
            served = ", ".join(sorted(t.rpartition(".")[2] for t in types.MESSAGES))
            errors.add(
                path,
                f"not an xDS resource: @type {packed.type_url.rpartition('/')[2]} "
                f"(a resources: file serves {served})",
            )
            continue
        try:
            message = unpack_any(packed, path)
        except ConfigError as exc:
            errors.extend([exc])
            continue
        if not types.resource_name(message):
            field_name = "cluster_name" if types.type_url_of(message) == types.ENDPOINT else "name"
            errors.add(f"{path}.{field_name}", "required: a resource is served by its name")
            continue
        out.append(message)
    return out


class Publisher:
    """The last good source config plus registered endpoints, installed as snapshots.

    Sources (a directory, a git branch) hand it a validated `MeshConfig`; the endpoint registry
    asks it to `refresh`. Either way every group's snapshot is rebuilt, and deterministic versions
    make the cache push only what actually changed.
    """

    def __init__(
        self,
        cache: SnapshotCache,
        stats: ControlPlaneStats | None = None,
        registered: Callable[[], Mapping[str, Sequence[mesh.Endpoint]]] = dict,
        identity: Callable[[], Identity | None] = lambda: None,
    ) -> None:
        self.cache = cache
        self.stats = stats or ControlPlaneStats()
        self.registered = registered
        self.identity = identity  # the CA's trust domain and current bundle, if a CA runs
        self._groups: set[str] = set()  # the groups the last install set
        self.config: MeshConfig | None = None
        self.label = ""

    def publish(self, config: MeshConfig, label: str = "") -> list[str]:
        """Install `config`; returns the groups whose snapshot changed."""
        return self.install(
            config, label, build_snapshots(config, label, self.registered(), self.identity())
        )

    async def publish_async(self, config: MeshConfig, label: str = "") -> list[str]:
        """`publish`, building the snapshots (seconds for a large mesh) off the event loop."""
        registered = {name: tuple(eps) for name, eps in self.registered().items()}
        identity = self.identity()
        snapshots = await asyncio.to_thread(build_snapshots, config, label, registered, identity)
        if registered != {name: tuple(eps) for name, eps in self.registered().items()} or (
            identity != self.identity()
        ):
            # An instance (de)registered meanwhile, or the bundle changed: keep that change.
            snapshots = build_snapshots(config, label, self.registered(), self.identity())
        return self.install(config, label, snapshots)

    def install(self, config: MeshConfig, label: str, snapshots: dict[str, Snapshot]) -> list[str]:
        """Install snapshots already built from `config`; returns the groups that changed."""
        self.config, self.label = config, label
        changed = [
            group for group, snap in snapshots.items() if self.cache.set_snapshot(group, snap)
        ]
        # A group this config no longer builds (a service that lost `inbound`, or went) must
        # not keep serving its last snapshot: its nodes fall back to their parent group.
        for gone in sorted(self._groups - snapshots.keys()):
            self.cache.clear(gone)
            changed.append(gone)
        self._groups = set(snapshots)
        if changed:
            self.stats.snapshots_applied += 1
        return changed

    def refresh(self) -> list[str]:
        """Rebuild from the last good config (the registered endpoints or the CA's trust
        bundle changed)."""
        if self.config is None:
            return []
        return self.publish(self.config, self.label)

    def services(self) -> set[str]:
        return {s.name for s in self.config.services} if self.config else set()


class DirectorySource:
    """Keeps the cache in step with a directory, re-loading on every change."""

    def __init__(
        self,
        directory: Path,
        cache: SnapshotCache,
        stats: ControlPlaneStats | None = None,
        label: Callable[[], str] = lambda: "",
        publisher: Publisher | None = None,
    ) -> None:
        self.directory = directory
        self.publisher = publisher or Publisher(cache, stats)
        self.stats = self.publisher.stats
        self.label = label
        self.last_error: str = ""

    def load_first(self) -> None:
        """The start-up load: raises `FirstLoadError` rather than logging, since nothing is
        served yet and the caller exits instead of serving an empty mesh."""
        try:
            self._install(parse_directory(self.directory))
        except SourceError as exc:
            self._rejected(exc)
            raise FirstLoadError(str(self.directory), [str(e) for e in exc.errors]) from None

    def apply(self) -> bool:
        """Load and install; returns False (keeping the old snapshots) if the directory is bad."""
        try:
            self._install(parse_directory(self.directory))
        except SourceError as exc:
            self._rejected(exc)
            return False
        return True

    async def apply_async(self) -> bool:
        """`apply`, with reading, parsing and building (the input-sized part) off the loop."""
        try:
            config = await asyncio.to_thread(parse_directory, self.directory)
            await self._install_async(config)
        except SourceError as exc:
            self._rejected(exc)
            return False
        return True

    def _rejected(self, exc: SourceError) -> None:
        self.last_error = str(exc)
        self.stats.source_errors += 1
        if self.publisher.config is None:
            log.error("config rejected, nothing is served yet:\n%s", exc)
        else:
            log.error("config rejected, still serving the previous snapshot:\n%s", exc)

    def _install(self, config: MeshConfig) -> None:
        """Publish; raises only `SourceError`, whatever building the snapshots ran into."""
        try:
            changed = self.publisher.publish(config, self.label())
        except SourceError:
            raise
        except Exception as exc:  # a surprise must reject the load, not stop the watch
            raise self._surprise(exc) from None
        self._installed(config, changed)

    async def _install_async(self, config: MeshConfig) -> None:
        try:
            changed = await self.publisher.publish_async(config, self.label())
        except SourceError:
            raise
        except Exception as exc:  # as in `_install`
            raise self._surprise(exc) from None
        self._installed(config, changed)

    def _surprise(self, exc: Exception) -> SourceError:
        log.debug("unexpected failure publishing %s", self.directory, exc_info=exc)
        return SourceError([ConfigError(str(self.directory), unexpected(exc))])

    def _installed(self, config: MeshConfig, changed: list[str]) -> None:
        self.last_error = ""
        warn_if_empty(config, str(self.directory))
        if changed:
            log.info("applied snapshot for %s", ", ".join(changed))

    async def watch(self, ready: asyncio.Event | None = None) -> None:
        """Apply now (unless `load_first` did), then on every change (debounced to 50 ms)."""
        import watchfiles

        if self.publisher.config is None:  # not loaded yet by `load_first`
            await self.apply_async()
        if ready is not None:
            ready.set()
        failure = ""
        while True:
            try:
                async for _changes in watchfiles.awatch(self.directory, debounce=50, step=20):
                    await self.apply_async()
                problem = "the watch ended"
            except Exception as exc:  # say so and watch again, never go quiet
                problem = f"{type(exc).__name__}: {exc}"
            if problem != failure:
                log.error("watching %s: %s; retrying every second", self.directory, problem)
                failure = problem
            await asyncio.sleep(1.0)
            await self.apply_async()
