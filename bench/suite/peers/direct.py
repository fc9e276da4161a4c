"""No proxy at all: the load generator talks to the upstream directly.

It is the floor of the fixed-rate scenarios: the latency that the generator, the upstream and
this machine's scheduler produce on their own. Any proxy's number is that plus the proxy's cost.
Nothing runs for it but a placeholder process, so it has no CPU or memory of its own to report.
"""

from __future__ import annotations

import shutil
from pathlib import Path

from suite.peers.base import Launch, Listener, Mode, Peer


class Direct(Peer):
    name = "direct"
    title = "no proxy: load generator straight to the upstream (the floor)"
    modes: frozenset[Mode] = frozenset({"http"})
    process_costs = False
    calibration_only = True

    def version(self) -> str:
        return "-"

    def launch(self, listener: Listener, workdir: Path) -> Launch:
        sleep = shutil.which("sleep") or "/bin/sleep"
        return Launch(argv=[sleep, "infinity"], target_port=listener.upstream_port)
