"""Secrets for TLS contexts: Envoy's SDS references, resolved at config time.

A context names a secret by `tls_certificate_sds_secret_configs` or
`validation_context_sds_secret_config` (also inside `combined_validation_context`). Without
`sds_config` the name is one of the static secrets: the bootstrap's `static_resources.secrets`
and those the proxy's identity agent keeps current (its SVID). With `sds_config: {ads: {}}` it
is a secret delivered over the ADS stream. With `sds_config.path_config_source` it is read from
that file (a YAML or JSON document with a `resources` list of `Secret`s, as Envoy's file SDS),
and the file's `watched_directory` (or, without one, the file's own directory) is watched so a
rewritten secret reaches new handshakes. The resolved secret's fields are merged into the
context, which is then compiled like an inline one.

The secrets known at a compilation reach the compilers through a context variable (`using`), so
the listener and cluster compilers, which xDS shares, keep their signatures. A compiled context
records which static and ADS secrets it used (`SecretRef`), so that when one of them changes the
proxy rebuilds exactly the contexts that depend on it.
"""

from __future__ import annotations

import contextlib
import contextvars
import os
import types
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import yaml
from envoy.config.cluster.v3 import cluster_pb2
from envoy.config.core.v3 import base_pb2
from envoy.config.listener.v3 import listener_pb2
from envoy.extensions.transport_sockets.tls.v3 import secret_pb2, tls_pb2
from google.protobuf import json_format
from google.protobuf.message import Message

from remora.config import support
from remora.config.errors import ErrorCollector
from remora.config.yamlload import load_yaml, read_text, yaml_error

_TLS = "envoy.extensions.transport_sockets.tls.v3"
support.register(f"{_TLS}.Secret", {"name", "tls_certificate", "validation_context"})
support.register(f"{_TLS}.SdsSecretConfig", {"name", "sds_config"})
support.register(
    f"{_TLS}.CommonTlsContext.CombinedCertificateValidationContext",
    {"default_validation_context", "validation_context_sds_secret_config"},
)
support.register("envoy.config.core.v3.PathConfigSource", {"path", "watched_directory"})
support.register(
    "envoy.config.core.v3.ConfigSource", {"path_config_source", "ads", "resource_api_version"}
)

Secrets = Mapping[str, secret_pb2.Secret]
_NONE: Secrets = types.MappingProxyType({})

STATIC: Literal["static"] = "static"
ADS: Literal["ads"] = "ads"
# (where it comes from, name): a static secret, or one delivered over ADS.
SecretRef = tuple[Literal["static", "ads"], str]


@dataclass(frozen=True, slots=True)
class SecretView:
    """The secrets a compilation may name: static ones and those delivered over ADS."""

    static: Secrets = field(default_factory=dict)
    ads: Secrets = field(default_factory=dict)

    def get(self, ref: SecretRef) -> secret_pb2.Secret | None:
        return (self.static if ref[0] == STATIC else self.ads).get(ref[1])


NO_SECRETS = SecretView()
_current: contextvars.ContextVar[SecretView] = contextvars.ContextVar("secrets", default=NO_SECRETS)


@contextmanager
def using(view: SecretView) -> Iterator[None]:
    token = _current.set(view)
    try:
        yield
    finally:
        _current.reset(token)


def static_secrets(secrets: Secrets) -> contextlib.AbstractContextManager[None]:
    return using(SecretView(static=secrets))


def current() -> SecretView:
    return _current.get()


# The identity agent's secrets (the workload's SVID): static secrets that the process, not the
# bootstrap file, holds, so a reload of the file compiles with them too.
_local: Secrets = _NONE


def local() -> Secrets:
    return _local


def set_local(secrets: Secrets) -> None:
    global _local
    _local = types.MappingProxyType(dict(secrets))


def changed_refs(old: SecretView, new: SecretView) -> frozenset[SecretRef]:
    """The secrets whose value differs between two views (added, removed or replaced)."""
    out: set[SecretRef] = set()
    for kind, before, after in ((STATIC, old.static, new.static), (ADS, old.ads, new.ads)):
        for name in before.keys() | after.keys():
            if before.get(name) != after.get(name):
                out.add((kind, name))
    return frozenset(out)


def _from_file(
    path: str, name: str, where: str, errors: ErrorCollector
) -> secret_pb2.Secret | None:
    try:
        document = load_yaml(read_text(Path(path)), path)
    except yaml.YAMLError as exc:
        errors.add(where, yaml_error(exc, path))
        return None
    except (OSError, UnicodeDecodeError) as exc:
        errors.add(where, f"cannot read secrets from {path}: {getattr(exc, 'strerror', exc)}")
        return None
    resources = document.get("resources") if isinstance(document, dict) else None
    if not isinstance(resources, list):
        errors.add(where, f"{path}: expected a mapping with a `resources` list of Secrets")
        return None
    for index, entry in enumerate(resources):
        if not isinstance(entry, dict):
            continue
        body = {k: v for k, v in entry.items() if k != "@type"}
        try:
            secret = json_format.ParseDict(body, secret_pb2.Secret())
        except json_format.ParseError as exc:
            errors.add(where, f"{path}: resources[{index}] is not a Secret: {exc}")
            return None
        if secret.name == name:
            return secret
    errors.add(where, f"{path} holds no secret named {name!r}")
    return None


def _lookup(
    ref: secret_pb2.SdsSecretConfig,
    where: str,
    errors: ErrorCollector,
    secrets: SecretView,
    watched: list[str],
    used: list[SecretRef],
) -> secret_pb2.Secret | None:
    if not ref.name:
        errors.add(f"{where}.name", "an SDS secret config needs the secret's name")
        return None
    if not ref.HasField("sds_config"):
        used.append((STATIC, ref.name))
        found = secrets.static.get(ref.name)
        if found is None:
            known = ", ".join(sorted(secrets.static)) or "none"
            hint = ""
            if ref.name == "default":
                hint = (
                    "; 'default' is the workload's SVID, which the proxy holds when started "
                    "with --identity-ca, --identity-token-file and --identity-ca-bundle"
                )
            errors.add(
                f"{where}.name",
                f"no static secret named {ref.name!r} (static_resources.secrets has: "
                f"{known}){hint}",
            )
        return found
    source = ref.sds_config
    if source.HasField("ads"):
        used.append((ADS, ref.name))
        found = secrets.ads.get(ref.name)
        if found is None:
            # xDS resources wait for their secrets (warming) before they are compiled, so this
            # is a bootstrap resource: it has no ADS stream to wait on at start-up.
            errors.add(
                f"{where}.sds_config",
                f"secret {ref.name!r} has not been delivered over ADS (a bootstrap listener or "
                "cluster cannot wait for one: name a static or file-based secret there)",
            )
        return found
    if not source.HasField("path_config_source"):
        errors.add(
            f"{where}.sds_config",
            "supported secret sources: ads {} (over the ADS stream) and path_config_source "
            "(file-based SDS)",
        )
        return None
    file = source.path_config_source
    directory = (
        file.watched_directory.path
        if file.HasField("watched_directory")
        else os.path.dirname(os.path.abspath(file.path))
    )
    if directory not in watched:
        watched.append(directory)
    return _from_file(file.path, ref.name, f"{where}.sds_config.path_config_source", errors)


def resolve(
    common: tls_pb2.CommonTlsContext, path: str, errors: ErrorCollector, secrets: SecretView
) -> tuple[tls_pb2.CommonTlsContext, tuple[str, ...], frozenset[SecretRef]]:
    """`common` with every SDS reference replaced by the secret's fields; the directories
    file-based secrets come from; and the static and ADS secrets it named."""
    merged = tls_pb2.CommonTlsContext()
    merged.CopyFrom(common)
    watched: list[str] = []
    used: list[SecretRef] = []
    merged.ClearField("tls_certificate_sds_secret_configs")
    for index, ref in enumerate(common.tls_certificate_sds_secret_configs):
        where = f"{path}.tls_certificate_sds_secret_configs[{index}]"
        secret = _lookup(ref, where, errors, secrets, watched, used)
        if secret is None:
            continue
        if not secret.HasField("tls_certificate"):
            errors.add(where, f"secret {ref.name!r} holds no tls_certificate")
            continue
        merged.tls_certificates.append(secret.tls_certificate)
    ref = None
    where = ""
    if common.HasField("validation_context_sds_secret_config"):
        ref = common.validation_context_sds_secret_config
        where = f"{path}.validation_context_sds_secret_config"
        merged.ClearField("validation_context_sds_secret_config")
    elif common.HasField("combined_validation_context"):
        combined = common.combined_validation_context
        merged.ClearField("combined_validation_context")
        merged.validation_context.CopyFrom(combined.default_validation_context)
        if combined.HasField("validation_context_sds_secret_config"):
            ref = combined.validation_context_sds_secret_config
            where = f"{path}.combined_validation_context.validation_context_sds_secret_config"
    if ref is not None:
        secret = _lookup(ref, where, errors, secrets, watched, used)
        if secret is not None:
            if not secret.HasField("validation_context"):
                errors.add(where, f"secret {ref.name!r} holds no validation_context")
            else:
                # As Envoy merges a combined context: the secret's fields over the default's.
                merged.validation_context.MergeFrom(secret.validation_context)
    return merged, tuple(watched), frozenset(used)


def ads_references(common: tls_pb2.CommonTlsContext) -> set[str]:
    """The names of the secrets `common` asks the ADS stream for."""
    refs = list(common.tls_certificate_sds_secret_configs)
    if common.HasField("validation_context_sds_secret_config"):
        refs.append(common.validation_context_sds_secret_config)
    combined = common.combined_validation_context
    if combined.HasField("validation_context_sds_secret_config"):
        refs.append(combined.validation_context_sds_secret_config)
    return {ref.name for ref in refs if ref.sds_config.HasField("ads") and ref.name}


def resource_ads_secrets(resource: Message) -> set[str]:
    """The ADS secrets a Listener's or a Cluster's TLS transport sockets name: what an xDS
    resource waits for (warms on) before it can be compiled."""
    sockets: list[base_pb2.TransportSocket] = []
    if isinstance(resource, listener_pb2.Listener):
        chains = list(resource.filter_chains)
        if resource.HasField("default_filter_chain"):
            chains.append(resource.default_filter_chain)
        sockets = [chain.transport_socket for chain in chains if chain.HasField("transport_socket")]
    elif isinstance(resource, cluster_pb2.Cluster):
        if resource.HasField("transport_socket"):
            sockets.append(resource.transport_socket)
        sockets += [m.transport_socket for m in resource.transport_socket_matches]
    names: set[str] = set()
    for socket in sockets:
        for kind in (tls_pb2.DownstreamTlsContext, tls_pb2.UpstreamTlsContext):
            context = kind()
            if socket.typed_config.Is(context.DESCRIPTOR):
                if socket.typed_config.Unpack(context):
                    names |= ads_references(context.common_tls_context)
                break
    return names


_SECRET_FIELDS = frozenset({"private_key", "password"})
_INLINE = frozenset({"inline_string", "inline_bytes"})


def redacted(value: Any) -> Any:
    """A config as JSON with inline private keys and key passwords replaced by `[redacted]`,
    as Envoy's config dump shows them (file names and environment variable names stay)."""
    if isinstance(value, list):
        return [redacted(item) for item in value]
    if not isinstance(value, dict):
        return value
    out: dict[str, Any] = {}
    for key, item in value.items():
        if key in _SECRET_FIELDS and isinstance(item, dict) and _INLINE & item.keys():
            out[key] = {"inline_string": "[redacted]"}
        else:
            out[key] = redacted(item)
    return out
