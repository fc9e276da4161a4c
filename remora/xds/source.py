"""Config sources: a directory of YAML files (mesh schema or raw resources) feeding the cache.

Loading is all-or-nothing: every file is parsed and every resource built before anything is
installed, so an invalid file (named with its field path) leaves the previous snapshots serving.
Raw `resources:` files are served as-is to every node group.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml
from envoy.config.core.v3 import base_pb2
from google.protobuf import any_pb2, json_format
from google.protobuf.message import Message

import remora.config.typeregistry  # noqa: F401  (registers typed_config types for Any parsing)
from remora.config.bootstrap import load_yaml, yaml_error
from remora.config.errors import ConfigError, ErrorCollector
from remora.config.parse_errors import find_errors
from remora.config.support import unpack_any
from remora.config.typeregistry import find_type
from remora.xds import mesh, types
from remora.xds.cache import GROUP_METADATA_KEY, SnapshotCache
from remora.xds.snapshot import DuplicateResource, Snapshot
from remora.xds.stats import ControlPlaneStats

log = logging.getLogger("remora.xds.source")

_SUFFIXES = (".yaml", ".yml", ".json")


def mesh_group(node: base_pb2.Node) -> str:
    """`remora.group` metadata if set, else sidecar for remora proxies, proxyless for the rest."""
    fields = node.metadata.fields
    if GROUP_METADATA_KEY in fields and fields[GROUP_METADATA_KEY].string_value:
        return str(fields[GROUP_METADATA_KEY].string_value)
    return mesh.SIDECAR if str(node.user_agent_name).startswith("remora") else mesh.PROXYLESS


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
    """A parsed and validated source: mesh services plus raw resources (served as-is)."""

    services: tuple[mesh.Service, ...]
    raw: tuple[Message, ...]


def load_directory(directory: Path, label: str = "") -> dict[str, Snapshot]:
    """Build one snapshot per node group from `directory`; raises `SourceError`."""
    return build_snapshots(parse_directory(directory), label)


def build_snapshots(
    config: MeshConfig,
    label: str = "",
    registered: Mapping[str, Sequence[mesh.Endpoint]] | None = None,
) -> dict[str, Snapshot]:
    """One snapshot per node group; `registered` endpoints join their services' own."""
    services = [
        mesh.with_endpoints(s, registered[s.name]) if registered and s.name in registered else s
        for s in config.services
    ]
    snapshots: dict[str, Snapshot] = {}
    for group, messages in mesh.generate(services).items():
        try:
            snapshots[group] = Snapshot.build([*messages, *config.raw], label)
        except DuplicateResource as exc:
            raise SourceError([ConfigError("resources", str(exc))]) from None
    return snapshots


def parse_directory(directory: Path) -> MeshConfig:
    """Parse and validate every file under `directory`; raises `SourceError` naming them."""
    errors = ErrorCollector()
    services: list[mesh.Service] = []
    raw: list[Message] = []
    files = sorted(p for p in directory.rglob("*") if p.suffix in _SUFFIXES and p.is_file())
    service_files: dict[str, str] = {}
    for file in files:
        rel = str(file.relative_to(directory))
        try:
            data = load_yaml(file.read_text(), rel)
        except OSError as exc:
            errors.add(rel, f"cannot read: {exc.strerror}")
            continue
        except UnicodeDecodeError as exc:
            errors.add(rel, f"not UTF-8 text ({exc.reason})")
            continue
        except yaml.YAMLError as exc:
            errors.add("", yaml_error(exc, rel))
            continue
        if data is None:
            continue
        if not isinstance(data, dict) or not ({"services", "resources"} & data.keys()):
            errors.add(rel, "the top level must be a mapping with `services:` or `resources:`")
            continue
        for key in data:
            if key not in ("services", "resources"):
                errors.add(f"{rel}: {key}", "unknown top-level field")
        if "services" in data:
            file_errors = ErrorCollector()
            for service in mesh.parse_services(data["services"], "services", file_errors):
                if service.name in service_files:
                    file_errors.add(
                        f"services.{service.name}",
                        f"duplicate service (also in {service_files[service.name]})",
                    )
                service_files[service.name] = rel
                services.append(service)
            errors.extend(_in_file(rel, file_errors.errors))
        if "resources" in data:
            raw.extend(_raw_resources(data["resources"], rel, errors))
    reference_errors = ErrorCollector()
    mesh.check_references(services, "services", reference_errors)
    errors.extend(
        _in_file(service_files.get(e.path.split(".")[1], "?"), [e])[0]
        for e in reference_errors.errors
    )
    if errors.errors:
        raise SourceError(errors.errors)
    config = MeshConfig(tuple(services), tuple(raw))
    _check_unique(config)
    return config


def _check_unique(config: MeshConfig) -> None:
    """Two resources of one type with one name (say a raw cluster shadowing a service's)."""
    for group, messages in mesh.generate(list(config.services)).items():
        seen: set[tuple[str, str]] = set()
        for message in [*messages, *config.raw]:
            key = (types.type_url_of(message), types.resource_name(message))
            if key in seen:
                raise SourceError(
                    [ConfigError("resources", f"two {key[0]} resources named {key[1]!r} ({group})")]
                )
            seen.add(key)


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
        packed = any_pb2.Any()
        find_type(str(item["@type"]).rpartition("/")[2])  # imports its generated module if needed
        try:
            json_format.ParseDict(item, packed)
        except (json_format.ParseError, TypeError, ValueError):
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
            out.append(unpack_any(packed, path))
        except ConfigError as exc:
            errors.extend([exc])
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
    ) -> None:
        self.cache = cache
        self.stats = stats or ControlPlaneStats()
        self.registered = registered
        self.config: MeshConfig | None = None
        self.label = ""

    def publish(self, config: MeshConfig, label: str = "") -> list[str]:
        """Install `config`; returns the groups whose snapshot changed."""
        snapshots = build_snapshots(config, label, self.registered())
        self.config, self.label = config, label
        changed = [
            group for group, snap in snapshots.items() if self.cache.set_snapshot(group, snap)
        ]
        if changed:
            self.stats.snapshots_applied += 1
        return changed

    def refresh(self) -> list[str]:
        """Rebuild from the last good config (the registered endpoints changed)."""
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
            self._load()
        except SourceError as exc:
            self.last_error = str(exc)
            self.stats.source_errors += 1
            raise FirstLoadError(str(self.directory), [str(e) for e in exc.errors]) from None

    def apply(self) -> bool:
        """Load and install; returns False (keeping the old snapshots) if the directory is bad."""
        try:
            self._load()
        except SourceError as exc:
            self.last_error = str(exc)
            self.stats.source_errors += 1
            if self.publisher.config is None:
                log.error("config rejected, nothing is served yet:\n%s", exc)
            else:
                log.error("config rejected, still serving the previous snapshot:\n%s", exc)
            return False
        return True

    def _load(self) -> None:
        config = parse_directory(self.directory)
        changed = self.publisher.publish(config, self.label())
        self.last_error = ""
        warn_if_empty(config, str(self.directory))
        if changed:
            log.info("applied snapshot for %s", ", ".join(changed))

    async def watch(self, ready: asyncio.Event | None = None) -> None:
        """Apply now (unless `load_first` did), then on every change (debounced to 50 ms)."""
        import watchfiles

        if self.publisher.config is None:  # not loaded yet by `load_first`
            self.apply()
        if ready is not None:
            ready.set()
        async for _changes in watchfiles.awatch(self.directory, debounce=50, step=20):
            self.apply()
