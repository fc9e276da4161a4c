"""Secrets for TLS contexts: Envoy's SDS references, resolved at config time.

A context names a secret by `tls_certificate_sds_secret_configs` or
`validation_context_sds_secret_config` (also inside `combined_validation_context`). Without
`sds_config` the name is one of the bootstrap's `static_resources.secrets`; with
`sds_config.path_config_source` it is read from that file (a YAML or JSON document with a
`resources` list of `Secret`s, as Envoy's file SDS), and the file's `watched_directory` (or,
without one, the file's own directory) is watched so a rewritten secret reaches new
handshakes. The resolved secret's fields are merged into the context, which is then compiled
like an inline one.

The bootstrap's secrets reach the compilers through a context variable set around one
compilation (`static_secrets`), so the listener and cluster compilers, which xDS shares, keep
their signatures; `compile_transport_socket` captures the value for its rebuilds.
"""

from __future__ import annotations

import contextvars
import os
import types
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path

import yaml
from envoy.extensions.transport_sockets.tls.v3 import secret_pb2, tls_pb2
from google.protobuf import json_format

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
support.register("envoy.config.core.v3.ConfigSource", {"path_config_source"})

Secrets = Mapping[str, secret_pb2.Secret]
_NONE: Secrets = types.MappingProxyType({})
_static: contextvars.ContextVar[Secrets] = contextvars.ContextVar("static_secrets", default=_NONE)


@contextmanager
def static_secrets(secrets: Secrets) -> Iterator[None]:
    token = _static.set(secrets)
    try:
        yield
    finally:
        _static.reset(token)


def current() -> Secrets:
    return _static.get()


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
    secrets: Secrets,
    watched: list[str],
) -> secret_pb2.Secret | None:
    if not ref.name:
        errors.add(f"{where}.name", "an SDS secret config needs the secret's name")
        return None
    if not ref.HasField("sds_config"):
        found = secrets.get(ref.name)
        if found is None:
            known = ", ".join(sorted(secrets)) or "none"
            errors.add(
                f"{where}.name",
                f"no static secret named {ref.name!r} (static_resources.secrets has: {known})",
            )
        return found
    source = ref.sds_config
    if not source.HasField("path_config_source"):
        errors.add(f"{where}.sds_config", "only path_config_source (file-based SDS) is supported")
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
    common: tls_pb2.CommonTlsContext, path: str, errors: ErrorCollector, secrets: Secrets
) -> tuple[tls_pb2.CommonTlsContext, tuple[str, ...]]:
    """`common` with every SDS reference replaced by the secret's fields; and the directories
    file-based secrets come from."""
    merged = tls_pb2.CommonTlsContext()
    merged.CopyFrom(common)
    watched: list[str] = []
    merged.ClearField("tls_certificate_sds_secret_configs")
    for index, ref in enumerate(common.tls_certificate_sds_secret_configs):
        where = f"{path}.tls_certificate_sds_secret_configs[{index}]"
        secret = _lookup(ref, where, errors, secrets, watched)
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
        secret = _lookup(ref, where, errors, secrets, watched)
        if secret is not None:
            if not secret.HasField("validation_context"):
                errors.add(where, f"secret {ref.name!r} holds no validation_context")
            else:
                # As Envoy merges a combined context: the secret's fields over the default's.
                merged.validation_context.MergeFrom(secret.validation_context)
    return merged, tuple(watched)
