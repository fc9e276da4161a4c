"""Envoy's /listeners output: `name::address:port` lines, or the `envoy.admin.v3.Listeners` proto
as JSON (printed by protobuf, so it matches Envoy's field spelling)."""

from __future__ import annotations

from collections.abc import Sequence

from envoy.admin.v3 import listeners_pb2
from google.protobuf import json_format

from .addresses import address_string, socket_address
from .context import ListenerStatus


def listeners_text(listeners: Sequence[ListenerStatus]) -> str:
    return "".join(f"{ls.name}::{address_string(ls.address, ls.port)}\n" for ls in listeners)


def listeners_json(listeners: Sequence[ListenerStatus]) -> str:
    message = listeners_pb2.Listeners()
    for ls in listeners:
        message.listener_statuses.add(
            name=ls.name, local_address=socket_address(ls.address, ls.port)
        )
    return json_format.MessageToJson(message, preserving_proto_field_name=True)
