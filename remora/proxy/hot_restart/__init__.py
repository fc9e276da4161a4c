"""Hot restart: a new `remora proxy` process takes the listening sockets of the running one.

Envoy's flags and sequence (docs/architecture.md, "Hot restart"): the process started with
`--restart-epoch N` connects to the one at N-1 over `@remora_hot_restart_<base_id>_<N-1>`, asks
for each listening socket by address and receives the very socket (SCM_RIGHTS), starts its
counters from the parent's, serves, and only then tells the parent to stop accepting and drain.
Both processes accept from the same kernel queue for that moment, so no connection is refused.
"""

from __future__ import annotations

from .protocol import VERSION, socket_name
from .shell import HotRestartChild, HotRestartError, HotRestartParent, ParentHooks, process_age

__all__ = [
    "VERSION",
    "HotRestartChild",
    "HotRestartError",
    "HotRestartParent",
    "ParentHooks",
    "process_age",
    "socket_name",
]
