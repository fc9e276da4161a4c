from __future__ import annotations

import json

from remora.proxy.admin.listeners import listeners_json, listeners_text

from .support import StaticContext


def test_text() -> None:
    assert (
        listeners_text(StaticContext().listeners()) == "ingress::127.0.0.1:10000\nv6::[::1]:10001\n"
    )


def test_json_is_envoy_admin_listeners_proto() -> None:
    doc = json.loads(listeners_json(StaticContext().listeners()))
    assert doc == {
        "listener_statuses": [
            {
                "name": "ingress",
                "local_address": {"socket_address": {"address": "127.0.0.1", "port_value": 10000}},
            },
            {
                "name": "v6",
                "local_address": {"socket_address": {"address": "::1", "port_value": 10001}},
            },
        ]
    }
