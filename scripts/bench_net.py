"""Benchmark the network layer on loopback against raw trio TCP measured in the same run.

Measures, with the same framing (``encode_frame`` / ``FrameDecoder``) on both sides so the
ratio isolates libp2p (Noise + yamux + multistream) and the mesh:

* round-trip latency over one long-lived stream (ping-pong, one frame each way);
* round-trip latency through the ``Mesh`` (send -> channel -> send back -> channel);
* one-way messages/s through the ``Mesh`` (queued, batched writes) and over a raw TCP socket
  (one ``send_all`` per message, as a straightforward implementation would).

Usage: ``python scripts/bench_net.py [--rtt 2000] [--messages 20000] [--size 128]``
"""

from __future__ import annotations

import argparse
import logging
import statistics
import time
from functools import partial

import trio
from libp2p.custom_types import TProtocol

from kmsnode.net import (
    CONSENSUS_PROTOCOL,
    Committee,
    Envelope,
    FrameDecoder,
    FrameFormat,
    Host,
    Member,
    Mesh,
    NetworkIdentity,
    NodeId,
    ProtocolSpec,
    encode_frame,
)

FMT = FrameFormat()
ECHO = TProtocol("/kms/bench-echo/1")
logging.getLogger("libp2p").setLevel(logging.CRITICAL)


# ---- raw trio TCP ------------------------------------------------------------------------------


async def raw_tcp(rtt_n: int, msgs: int, size: int) -> tuple[list[float], float]:
    """Round trips and one-way msgs/s over plain trio TCP sockets with our framing."""
    payload = b"x" * size
    results: dict[str, float] = {}
    rtts: list[float] = []
    got_all = trio.Event()

    async def serve(stream: trio.SocketStream) -> None:
        dec = FrameDecoder(FMT)
        count = 0
        async for data in stream:
            for env in dec.feed(data):
                if env.kind == "ping":
                    await stream.send_all(encode_frame(Envelope("pong", env.body), FMT))
                else:
                    count += 1
                    if count == msgs:
                        results["t_end"] = time.perf_counter()
                        got_all.set()

    async with trio.open_nursery() as nursery:
        listeners = await nursery.start(partial(trio.serve_tcp, serve, 0, host="127.0.0.1"))
        port = listeners[0].socket.getsockname()[1]
        stream = await trio.open_tcp_stream("127.0.0.1", port)
        dec = FrameDecoder(FMT)
        for _ in range(rtt_n):
            t0 = time.perf_counter()
            await stream.send_all(encode_frame(Envelope("ping", payload), FMT))
            envs: list[Envelope] = []
            while not envs:
                envs = dec.feed(await stream.receive_some(65536))
            rtts.append(time.perf_counter() - t0)
        t0 = time.perf_counter()
        for _ in range(msgs):
            await stream.send_all(encode_frame(Envelope("c", payload), FMT))
        await got_all.wait()
        rate = msgs / (results["t_end"] - t0)
        await stream.aclose()
        nursery.cancel_scope.cancel()
    return rtts, rate


# ---- libp2p ------------------------------------------------------------------------------------


async def libp2p_side(rtt_n: int, msgs: int, size: int) -> tuple[list[float], list[float], float]:
    """Stream round trips, mesh round trips and mesh one-way msgs/s between two hosts."""
    payload = b"x" * size
    ids = [NetworkIdentity.generate() for _ in range(2)]
    hosts = [Host(i) for i in ids]

    async def echo(stream: object) -> None:
        dec = FrameDecoder(FMT)
        try:
            while True:
                data = await stream.read(65536)  # type: ignore[attr-defined]
                if not data:
                    return
                for env in dec.feed(data):
                    await stream.write(encode_frame(Envelope("pong", env.body), FMT))  # type: ignore[attr-defined]
        except Exception:
            return  # EOF/reset when the client closes: stream handlers must not raise

    hosts[1].libp2p.set_stream_handler(ECHO, echo)  # type: ignore[arg-type]
    async with trio.open_nursery() as nursery:
        addrs = [await nursery.start(h.run) for h in hosts]
        committee = Committee(
            Member(NodeId(k + 1), ids[k].peer_id_str, tuple(addrs[k]), ids[k].public_key)
            for k in range(2)
        )
        meshes = [Mesh(hosts[k], committee, NodeId(k + 1)) for k in range(2)]
        spec = ProtocolSpec(CONSENSUS_PROTOCOL, queue_max_messages=msgs + 10)
        chans = [m.add_protocol(spec) for m in meshes]
        for m in meshes:
            await nursery.start(m.run)

        # 1. a long-lived libp2p stream, ping-pong
        await hosts[0].connect(hosts[1].peer_id, addrs[1])
        stream = await hosts[0].libp2p.new_stream(hosts[1].peer_id, [ECHO])
        dec = FrameDecoder(FMT)
        stream_rtts: list[float] = []
        for _ in range(rtt_n):
            t0 = time.perf_counter()
            await stream.write(encode_frame(Envelope("ping", payload), FMT))
            envs: list[Envelope] = []
            while not envs:
                envs = dec.feed(await stream.read(65536))
            stream_rtts.append(time.perf_counter() - t0)
        await stream.close()

        # 2. ping-pong through the mesh (queues, writer tasks, channels)
        async def ponger() -> None:
            async for sender, env in chans[1]:
                if env.kind == "ping":
                    meshes[1].send(sender, CONSENSUS_PROTOCOL, Envelope("pong", env.body))
                elif env.kind == "last":
                    return

        nursery.start_soon(ponger)
        meshes[0].send(NodeId(2), CONSENSUS_PROTOCOL, Envelope("ping", payload))  # warm both links
        await chans[0].receive()
        mesh_rtts: list[float] = []
        for _ in range(rtt_n):
            t0 = time.perf_counter()
            meshes[0].send(NodeId(2), CONSENSUS_PROTOCOL, Envelope("ping", payload))
            await chans[0].receive()
            mesh_rtts.append(time.perf_counter() - t0)
        meshes[0].send(NodeId(2), CONSENSUS_PROTOCOL, Envelope("last"))
        await trio.sleep(0.2)  # let the ponger finish before the one-way run takes the channel

        # 3. one-way throughput through the mesh
        t0 = time.perf_counter()
        for i in range(msgs):
            meshes[0].send(NodeId(2), CONSENSUS_PROTOCOL, Envelope("c", payload))
            if i % 512 == 0:
                await trio.sleep(0)  # let the writer run, as a real producer would
        for _ in range(msgs):
            await chans[1].receive()
        rate = msgs / (time.perf_counter() - t0)
        dropped = meshes[0].statistics().links[CONSENSUS_PROTOCOL][NodeId(2)].frames_dropped
        assert dropped == 0, f"{dropped} frames dropped"
        nursery.cancel_scope.cancel()
    return stream_rtts, mesh_rtts, rate


def ms(xs: list[float]) -> str:
    return f"{statistics.median(xs) * 1000:.3f}"


def p99(xs: list[float]) -> str:
    return f"{sorted(xs)[int(len(xs) * 0.99) - 1] * 1000:.3f}"


async def main(args: argparse.Namespace) -> None:
    raw_rtts, raw_rate = await raw_tcp(args.rtt, args.messages, args.size)
    stream_rtts, mesh_rtts, mesh_rate = await libp2p_side(args.rtt, args.messages, args.size)
    raw_med = statistics.median(raw_rtts)
    print(
        f"loopback, {args.size}-byte payloads, {args.rtt} round trips, "
        f"{args.messages} one-way messages"
    )
    print(f"{'measure':<44}{'libp2p':>12}{'raw trio TCP':>14}{'ratio':>9}")
    rows = [
        (
            "RTT long-lived stream, p50 (ms)",
            ms(stream_rtts),
            ms(raw_rtts),
            statistics.median(stream_rtts) / raw_med,
        ),
        ("RTT long-lived stream, p99 (ms)", p99(stream_rtts), p99(raw_rtts), None),
        (
            "RTT through the Mesh, p50 (ms)",
            ms(mesh_rtts),
            ms(raw_rtts),
            statistics.median(mesh_rtts) / raw_med,
        ),
        (
            "one-way msgs/s through the Mesh",
            f"{mesh_rate:,.0f}",
            f"{raw_rate:,.0f}",
            mesh_rate / raw_rate,
        ),
    ]
    for name, a, b, r in rows:
        print(f"{name:<44}{a:>12}{b:>14}{'' if r is None else f'{r:.2f}x':>9}")


if __name__ == "__main__":
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--rtt", type=int, default=2000, help="round trips per measurement")
    p.add_argument("--messages", type=int, default=20000, help="one-way messages")
    p.add_argument("--size", type=int, default=128, help="payload bytes")
    trio.run(main, p.parse_args())
