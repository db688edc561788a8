"""Benchmark the network layer on loopback against raw trio TCP measured in the same run.

Measures, with the same framing (``encode_frame`` / ``FrameDecoder``) on both sides so the
ratio isolates libp2p (Noise + yamux + multistream) and the mesh:

* round-trip latency over one long-lived stream (ping-pong, one frame each way);
* round-trip latency through the ``Mesh`` (send -> channel -> send back -> channel);
* one-way messages/s through the ``Mesh`` (queued, batched writes) and over a raw TCP socket
  (one ``send_all`` per message, as a straightforward implementation would).

The libp2p side runs twice: as the node runs it (with ``kmsnode.net._fastpath``) and, in a
child process, with py-libp2p as shipped (``KMS_NET_FASTPATH=0``); the last column compares
the two. CPU per mesh round trip counts both ends (one process).

Usage: ``python scripts/bench_net.py [--rtt 2000] [--messages 20000] [--size 128]``
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import resource
import statistics
import subprocess
import sys
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


def _cpu() -> float:
    r = resource.getrusage(resource.RUSAGE_SELF)
    return r.ru_utime + r.ru_stime


async def libp2p_side(
    rtt_n: int, msgs: int, size: int
) -> tuple[list[float], list[float], float, float]:
    """Stream round trips, mesh round trips, CPU seconds per mesh round trip, and mesh
    one-way msgs/s between two hosts."""
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

    hosts[1].libp2p.set_stream_handler(ECHO, echo)
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
        cpu0 = _cpu()
        for _ in range(rtt_n):
            t0 = time.perf_counter()
            meshes[0].send(NodeId(2), CONSENSUS_PROTOCOL, Envelope("ping", payload))
            await chans[0].receive()
            mesh_rtts.append(time.perf_counter() - t0)
        mesh_cpu = (_cpu() - cpu0) / rtt_n
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
    return stream_rtts, mesh_rtts, mesh_cpu, rate


def ms(xs: list[float]) -> str:
    return f"{statistics.median(xs) * 1000:.3f}"


def p99(xs: list[float]) -> str:
    return f"{sorted(xs)[int(len(xs) * 0.99) - 1] * 1000:.3f}"


def _plain_libp2p(args: argparse.Namespace) -> dict[str, float]:
    """The libp2p measurements in a child process running py-libp2p as shipped."""
    cmd = [sys.executable, __file__, "--rtt", str(args.rtt), "--messages", str(args.messages)]
    cmd += ["--size", str(args.size), "--libp2p-only"]
    env = {**os.environ, "KMS_NET_FASTPATH": "0"}
    out = subprocess.run(cmd, env=env, check=True, capture_output=True, text=True).stdout
    return json.loads(out.strip().splitlines()[-1])  # type: ignore[no-any-return]


async def libp2p_summary(args: argparse.Namespace) -> dict[str, float]:
    """Medians of one libp2p run (what ``--libp2p-only`` prints)."""
    stream_rtts, mesh_rtts, mesh_cpu, rate = await libp2p_side(args.rtt, args.messages, args.size)
    from kmsnode.net import _fastpath

    return {
        "fastpath": float(_fastpath.installed()),
        "stream_p50": statistics.median(stream_rtts),
        "stream_p99": sorted(stream_rtts)[int(len(stream_rtts) * 0.99) - 1],
        "mesh_p50": statistics.median(mesh_rtts),
        "mesh_cpu": mesh_cpu,
        "mesh_rate": rate,
    }


async def main(args: argparse.Namespace) -> None:
    if args.libp2p_only:
        print(json.dumps(await libp2p_summary(args)))
        return
    raw_rtts, raw_rate = await raw_tcp(args.rtt, args.messages, args.size)
    ours = await libp2p_summary(args)
    plain = _plain_libp2p(args)
    raw_med = statistics.median(raw_rtts)
    print(
        f"loopback, {args.size}-byte payloads, {args.rtt} round trips, "
        f"{args.messages} one-way messages; 'ours' = py-libp2p with kmsnode.net._fastpath "
        f"({'on' if ours['fastpath'] else 'NOT installed'}), 'shipped' = without it"
    )
    head = f"{'measure':<36}{'ours':>10}{'shipped':>10}{'raw TCP':>10}{'ours/raw':>10}"
    print(head + f"{'ours/shipped':>14}")

    def row(name: str, a: float, b: float, raw: float | None, fmt: str = "{:.3f}") -> None:
        raw_s = "" if raw is None else fmt.format(raw)
        vs_raw = "" if raw is None else f"{a / raw:.2f}x"
        print(
            f"{name:<36}{fmt.format(a):>10}{fmt.format(b):>10}{raw_s:>10}{vs_raw:>10}"
            f"{a / b:>13.2f}x"
        )

    row(
        "RTT long-lived stream, p50 (ms)",
        ours["stream_p50"] * 1e3,
        plain["stream_p50"] * 1e3,
        raw_med * 1e3,
    )
    row(
        "RTT long-lived stream, p99 (ms)",
        ours["stream_p99"] * 1e3,
        plain["stream_p99"] * 1e3,
        sorted(raw_rtts)[int(len(raw_rtts) * 0.99) - 1] * 1e3,
    )
    row(
        "RTT through the Mesh, p50 (ms)",
        ours["mesh_p50"] * 1e3,
        plain["mesh_p50"] * 1e3,
        raw_med * 1e3,
    )
    row("CPU per Mesh round trip (ms)", ours["mesh_cpu"] * 1e3, plain["mesh_cpu"] * 1e3, None)
    row(
        "one-way msgs/s through the Mesh",
        ours["mesh_rate"],
        plain["mesh_rate"],
        raw_rate,
        "{:,.0f}",
    )


if __name__ == "__main__":
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--rtt", type=int, default=2000, help="round trips per measurement")
    p.add_argument("--messages", type=int, default=20000, help="one-way messages")
    p.add_argument("--size", type=int, default=128, help="payload bytes")
    p.add_argument("--libp2p-only", action="store_true", help=argparse.SUPPRESS)
    trio.run(main, p.parse_args())
