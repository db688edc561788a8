"""The node's libp2p host: TCP, Noise as the only security, yamux (or mplex) as the muxer.

py-libp2p's ``new_host()`` offers Noise, TLS, SECIO *and plaintext* unless told otherwise; a
peer could then negotiate an unauthenticated, unencrypted connection. ``Host`` passes
``sec_opt`` with Noise alone, so multistream-select refuses every other security protocol,
and exposes ``security_protocols()`` so a test (and the console) can show what is offered.

Dial retries and the auto-connector inside libp2p are turned off (the ``Mesh`` owns
reconnection and backoff), and
the swarm's 60-second "negative cache" of unreachable peers is lifted before each of our
dials (``allow_redial``): a committee member that restarts must be reachable again at once.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Sequence
from typing import Literal

import multiaddr
import trio
from libp2p import new_host
from libp2p.abc import IHost
from libp2p.crypto.x25519 import create_new_key_pair as _new_x25519_key_pair
from libp2p.custom_types import TProtocol
from libp2p.network.config import ConnectionConfig, RetryConfig
from libp2p.peer.id import ID
from libp2p.peer.peerinfo import PeerInfo
from libp2p.security.noise.transport import PROTOCOL_ID as NOISE_PROTOCOL_ID
from libp2p.security.noise.transport import Transport as NoiseTransport
from libp2p.stream_muxer.mplex.mplex import MPLEX_PROTOCOL_ID, Mplex
from libp2p.stream_muxer.yamux.yamux import PROTOCOL_ID as YAMUX_PROTOCOL_ID
from libp2p.stream_muxer.yamux.yamux import Yamux

from . import _fastpath, _yamux
from .identity import NetworkIdentity

__all__ = ["DEFAULT_LISTEN", "Host"]

_log = logging.getLogger("kmsnode.net.host")

# py-libp2p's yamux credits the peer's send window after (almost) every read: one extra frame,
# Noise message and syscall per message each way. Credit is returned in batches at half the
# window instead (go-yamux's rule, see ``_yamux``); ``PY_YAMUX_RELEASE_ON_READ=0`` turns off
# the other per-read path of the method it replaces, for any code that still reaches it.
os.environ.setdefault("PY_YAMUX_RELEASE_ON_READ", "0")
_yamux.install()
# Fewer event-loop passes per message: locks that do not yield when free, one recv per Noise
# frame (see ``_fastpath``). ``KMS_NET_FASTPATH=0`` keeps py-libp2p as shipped (to compare).
if os.environ.get("KMS_NET_FASTPATH", "1") != "0":
    _fastpath.install()

DEFAULT_LISTEN = ("/ip4/127.0.0.1/tcp/0",)
"""Loopback on an ephemeral port: tests and the local testnet."""


class Host:
    """A running-or-not libp2p host for one node identity.

    Start it with ``addrs = await nursery.start(host.run)``; cancel the nursery (or the scope
    around it) to stop it: listeners and connections are closed on the way out.

    Args:
        identity: the node's network identity.
        listen: multiaddrs to listen on (``/ip4/127.0.0.1/tcp/0`` picks a free port).
        muxer: ``"yamux"`` (default) or ``"mplex"``.
        negotiate_timeout: seconds allowed for multistream-select on a new stream.
        max_connections: connections held at once, all peers together; one more is refused
            (a backstop: a node bounds its clients below this with a ``ConnectionGuard``).
    """

    def __init__(
        self,
        identity: NetworkIdentity,
        *,
        listen: Sequence[str] = DEFAULT_LISTEN,
        muxer: Literal["yamux", "mplex"] = "yamux",
        negotiate_timeout: int = 10,
        max_connections: int = 300,
    ) -> None:
        self.identity = identity
        self._listen = [multiaddr.Multiaddr(a) for a in listen]
        key_pair = identity.key_pair
        # A fresh static Noise key per host, as libp2p intends: the libp2p identity key signs
        # it inside the handshake, which is what authenticates the remote peer id.
        noise = NoiseTransport(key_pair, noise_privkey=_new_x25519_key_pair().private_key)
        muxers = (
            {TProtocol(YAMUX_PROTOCOL_ID): Yamux}
            if muxer == "yamux"
            else {TProtocol(MPLEX_PROTOCOL_ID): Mplex}
        )
        self.libp2p: IHost = new_host(
            key_pair=key_pair,
            sec_opt={TProtocol(NOISE_PROTOCOL_ID): noise},
            muxer_opt=muxers,
            listen_addrs=self._listen,
            negotiate_timeout=negotiate_timeout,
            # No auto-connector: by default libp2p dials every peer in its peerstore (clients
            # included) until it holds 50 connections. The mesh dials the committee itself.
            # Its pruner would close stream-less connections past the high watermark, members
            # included: set at the cap, it never acts (a ConnectionGuard bounds clients).
            connection_config=ConnectionConfig(
                min_connections=0,
                low_watermark=0,
                max_connections=max_connections,
                high_watermark=max_connections,
            ),
        )
        network = self.libp2p.get_network()
        if hasattr(network, "retry_config"):
            network.retry_config = RetryConfig(max_retries=0)
        connector = getattr(network, "auto_connector", None)
        if connector is not None:
            # Its target is the midpoint of the watermarks whatever min_connections says, and
            # a zero high watermark would make the pruner drop every connection: switch the
            # dialling itself off.
            connector.maybe_connect = _no_auto_connect
        self._running = False

    @property
    def peer_id(self) -> ID:
        """This host's peer id."""
        return self.identity.peer_id

    @property
    def running(self) -> bool:
        """Whether ``run`` is listening right now."""
        return self._running

    def addrs(self) -> list[str]:
        """The transport addresses actually listened on (ports resolved), without ``/p2p/``."""
        return [str(a) for a in self.libp2p.get_transport_addrs()]

    def security_protocols(self) -> list[str]:
        """The security protocols this host offers and accepts, in preference order."""
        upgrader = self.libp2p.get_network().upgrader  # type: ignore[attr-defined]
        return [str(p) for p in upgrader.security_multistream.transports]

    def muxer_protocols(self) -> list[str]:
        """The stream muxers this host offers and accepts, in preference order."""
        upgrader = self.libp2p.get_network().upgrader  # type: ignore[attr-defined]
        return [str(p) for p in upgrader.muxer_multistream.transports]

    async def run(
        self,
        *,
        task_status: trio.TaskStatus[list[str]] = trio.TASK_STATUS_IGNORED,  # type: ignore[name-defined,unused-ignore]
    ) -> None:
        """Listen until cancelled; reports the listen addresses once they are bound."""
        async with self.libp2p.run(self._listen):
            self._running = True
            try:
                addrs = self.addrs()
                _log.info(
                    "host listening peer=%s addrs=%s security=%s",
                    self.identity.peer_id_str,
                    addrs,
                    self.security_protocols(),
                    extra={"event": "host_listening", "peer": self.identity.peer_id_str},
                )
                task_status.started(addrs)
                await trio.sleep_forever()
            finally:
                self._running = False
                _log.info(
                    "host stopping peer=%s",
                    self.identity.peer_id_str,
                    extra={"event": "host_stopping", "peer": self.identity.peer_id_str},
                )

    def allow_redial(self, peer_id: ID) -> None:
        """Forget that ``peer_id`` was recently unreachable, so the next dial really dials."""
        unblock = getattr(self.libp2p.get_network(), "unblock_peer", None)
        if unblock is not None:
            unblock(peer_id)

    async def connect(self, peer_id: ID, addrs: Sequence[str]) -> None:
        """Make sure a connection to ``peer_id`` exists, dialling ``addrs`` if needed.

        The Noise handshake checks that the remote key matches ``peer_id``.

        Raises:
            Exception: whatever libp2p raises for an unreachable or mismatched peer; callers
                at the edge (the mesh) catch it and retry.
        """
        self.allow_redial(peer_id)
        await self.libp2p.connect(PeerInfo(peer_id, [multiaddr.Multiaddr(a) for a in addrs]))

    async def disconnect(self, peer_id: ID, timeout: float = 2.0) -> None:
        """Close every connection to ``peer_id`` open now (no-op when none): the next dial
        really dials. Failures are logged at debug level only: the peer may already be gone.

        Each connection is closed on its own, and removes itself from the swarm when done:
        py-libp2p's ``close_peer`` instead drops the peer's whole entry after closing what it
        saw, so a connection the peer redialled meanwhile (within the ~0.2 s a close takes)
        would stay open but unknown to the swarm. One whose close did not finish in time is
        forgotten here, so that ``connect`` does not reuse a connection that is closing.
        """
        network = self.libp2p.get_network()
        conns = list(network.get_connections(peer_id))
        if not conns:
            return
        with trio.move_on_after(timeout):
            for conn in conns:
                try:
                    await conn.close()
                except Exception as exc:
                    _log.debug("disconnect failed peer=%s error=%s", peer_id, type(exc).__name__)
        for conn in conns:
            if conn in network.get_connections(peer_id):
                network.remove_conn(conn)  # type: ignore[attr-defined]

    def is_connected(self, peer_id: ID) -> bool:
        """Whether a live connection to ``peer_id`` exists."""
        return bool(self.libp2p.get_network().connections.get(peer_id))


async def _no_auto_connect() -> None:
    """Stands in for libp2p's auto-connector, which would dial peers we never asked for."""
