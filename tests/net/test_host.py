"""The host offers Noise and nothing else: a plaintext-only dialer cannot connect."""

from __future__ import annotations

import multiaddr
import pytest
import trio
from libp2p import new_host
from libp2p.custom_types import TProtocol
from libp2p.peer.peerinfo import PeerInfo
from libp2p.security.insecure.transport import PLAINTEXT_PROTOCOL_ID, InsecureTransport

from kmsnode.net import Host, NetworkIdentity

from .conftest import wait_for


async def test_only_noise_and_yamux_are_offered() -> None:
    host = Host(NetworkIdentity.generate())
    assert host.security_protocols() == ["/noise"]
    assert host.muxer_protocols() == ["/yamux/1.0.0"]
    assert Host(NetworkIdentity.generate(), muxer="mplex").muxer_protocols() == ["/mplex/6.7.0"]


async def test_start_and_stop_cleanly() -> None:
    host = Host(NetworkIdentity.generate())
    async with trio.open_nursery() as nursery:
        addrs = await nursery.start(host.run)
        assert host.running
        assert len(addrs) == 1 and addrs[0].startswith("/ip4/127.0.0.1/tcp/")
        assert not addrs[0].endswith("/tcp/0")
        nursery.cancel_scope.cancel()
    assert not host.running


async def test_noise_hosts_connect_authenticate_disconnect_and_dial_again() -> None:
    a, b = Host(NetworkIdentity.generate()), Host(NetworkIdentity.generate())
    async with trio.open_nursery() as nursery:
        await nursery.start(a.run)
        b_addrs = await nursery.start(b.run)
        with trio.fail_after(10):
            await a.connect(b.peer_id, b_addrs)
            assert a.is_connected(b.peer_id)
            await wait_for(lambda: b.is_connected(a.peer_id))
            # Closed at both ends; the next connect really dials.
            await a.disconnect(b.peer_id)
            assert not a.is_connected(b.peer_id)
            await wait_for(lambda: not b.is_connected(a.peer_id))
            await a.disconnect(b.peer_id)  # none left: a no-op
            await a.connect(b.peer_id, b_addrs)
            assert a.is_connected(b.peer_id)
        nursery.cancel_scope.cancel()


async def test_plaintext_only_dialer_cannot_connect() -> None:
    server = Host(NetworkIdentity.generate())
    ident = NetworkIdentity.generate()
    plaintext = new_host(
        key_pair=ident.key_pair,
        sec_opt={TProtocol(PLAINTEXT_PROTOCOL_ID): InsecureTransport(ident.key_pair)},
        listen_addrs=[multiaddr.Multiaddr("/ip4/127.0.0.1/tcp/0")],
    )
    async with trio.open_nursery() as nursery:
        addrs = await nursery.start(server.run)
        async with plaintext.run([multiaddr.Multiaddr("/ip4/127.0.0.1/tcp/0")]):
            info = PeerInfo(server.peer_id, [multiaddr.Multiaddr(a) for a in addrs])
            with trio.fail_after(15), pytest.raises(Exception) as err:
                await plaintext.connect(info)
            assert not isinstance(err.value, trio.TooSlowError)
            chain = _chain(err.value)
            assert "failed to negotiate the secure protocol" in chain, chain
            assert not server.is_connected(ident.peer_id)
            assert not plaintext.get_network().connections.get(server.peer_id)
        nursery.cancel_scope.cancel()


def _chain(exc: BaseException | None) -> str:
    """Every message along an exception's cause/context chain (to see why a dial failed)."""
    parts = []
    while exc is not None:
        parts.append(f"{type(exc).__name__}: {exc}")
        exc = exc.__cause__ or exc.__context__
    return " <- ".join(parts)


async def test_yamux_credits_the_window_in_batches_and_bulk_transfers_flow(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from libp2p.stream_muxer.yamux.yamux import YamuxStream

    from kmsnode.net._yamux import CREDIT_THRESHOLD

    updates: list[int] = []
    original = YamuxStream.send_window_update

    async def counting(self: YamuxStream, delta: int, skip_lock: bool = False) -> None:
        updates.append(delta)
        await original(self, delta, skip_lock=skip_lock)

    monkeypatch.setattr(YamuxStream, "send_window_update", counting)
    proto = TProtocol("/kms/test-window/1")
    received = bytearray()
    done = trio.Event()
    total = 200 * 1500 + 3 * 1024 * 1024  # many small messages, then a bulk transfer

    async def reader(stream: object) -> None:
        while len(received) < total:
            received.extend(await stream.read(65536))  # type: ignore[attr-defined]
        done.set()

    a, b = Host(NetworkIdentity.generate()), Host(NetworkIdentity.generate())
    b.libp2p.set_stream_handler(proto, reader)
    async with trio.open_nursery() as nursery:
        await nursery.start(a.run)
        b_addrs = await nursery.start(b.run)
        with trio.fail_after(30):
            await a.connect(b.peer_id, b_addrs)
            stream = await a.libp2p.new_stream(b.peer_id, [proto])
            for i in range(200):
                await stream.write(bytes([i % 256]) * 1500)
            await stream.write(b"\x07" * (3 * 1024 * 1024))  # 12x the initial window
            await done.wait()
        nursery.cancel_scope.cancel()
    assert len(received) == total and received[:1500] == b"\x00" * 1500
    # One update per half window consumed (not one per read), each for that much.
    assert len(updates) <= total // CREDIT_THRESHOLD + 1
    assert all(u >= CREDIT_THRESHOLD for u in updates)
