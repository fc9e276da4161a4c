"""The proxies compared, each configured from a file generated to match remora's for a scenario.

Adding a peer means adding a module with a `Peer` subclass and listing it in `ALL`.
"""

from __future__ import annotations

from suite.peers.base import Launch, Listener, Peer
from suite.peers.caddy import Caddy
from suite.peers.direct import Direct
from suite.peers.haproxy import HAProxy
from suite.peers.nginx import Nginx
from suite.peers.remora import Remora
from suite.peers.threads import Threads

ALL: tuple[Peer, ...] = (Remora(), HAProxy(), Nginx(), Caddy(), Threads(), Direct())
BY_NAME: dict[str, Peer] = {peer.name: peer for peer in ALL}

__all__ = ["ALL", "BY_NAME", "Launch", "Listener", "Peer"]
