"""Imports the generated modules of every `typed_config` remora understands.

`json_format` resolves `@type` through the default descriptor pool, which only knows modules that
have been imported. Importing them here, once, makes `@type` resolution explicit; `find_type`
imports the rest of xds-protos on demand.
"""

from __future__ import annotations

import importlib
import importlib.util
import pkgutil

# ruff: noqa: F401
from envoy.config.bootstrap.v3 import bootstrap_pb2
from envoy.config.cluster.v3 import cluster_pb2
from envoy.config.endpoint.v3 import endpoint_pb2
from envoy.config.listener.v3 import listener_pb2
from envoy.config.route.v3 import route_pb2
from envoy.extensions.access_loggers.file.v3 import file_pb2
from envoy.extensions.access_loggers.stream.v3 import stream_pb2
from envoy.extensions.filters.http.router.v3 import router_pb2
from envoy.extensions.filters.network.http_connection_manager.v3 import (
    http_connection_manager_pb2,
)
from envoy.extensions.filters.network.tcp_proxy.v3 import tcp_proxy_pb2
from google.protobuf import descriptor_pool
from google.protobuf.descriptor import Descriptor

# Only the generated API packages are searched, so a config's @type can never import other code.
_API_PACKAGES = ("envoy.", "xds.", "udpa.", "validate.", "google.protobuf.", "google.rpc.")


def find_type(full_name: str) -> Descriptor | None:
    """The descriptor for a message name, importing its generated package on first use.

    Only the types remora compiles are imported up front (start-up cost). Any other Envoy type a
    config names, such as a filter remora does not implement, is found here, so it is refused as
    `not supported: <path>` rather than as an unknown type.
    """
    pool = descriptor_pool.Default()
    try:
        return pool.FindMessageTypeByName(full_name)
    except KeyError:
        pass
    if not full_name.startswith(_API_PACKAGES):
        return None
    package = full_name
    while "." in package:
        package = package.rsplit(".", 1)[0]
        try:
            spec = importlib.util.find_spec(package)
        except (ImportError, ValueError):
            continue
        if spec is None or not spec.submodule_search_locations:
            continue
        for module in pkgutil.iter_modules(spec.submodule_search_locations):
            if module.name.endswith("_pb2"):
                try:
                    importlib.import_module(f"{package}.{module.name}")
                except ImportError:
                    continue
        break
    try:
        return pool.FindMessageTypeByName(full_name)
    except KeyError:
        return None
