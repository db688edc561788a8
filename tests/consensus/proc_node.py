"""One consensus replica in its own process, for the SIGKILL-restart test.

Test-only UDP transport on localhost (the real network is ``kmsnode.net``): a peer is
identified by its source port. Every vote is appended to ``<dir>/votes-<id>.log`` with an
unbuffered write right before it is sent, so the log survives SIGKILL; committed block ids
go to ``<dir>/commits-<id>.log``.

    python tests/consensus/proc_node.py DIR ID N BASE_PORT
"""

from __future__ import annotations

import contextlib
import os
import sys

import trio

from consensus import (
    ChainId,
    Config,
    Node,
    NodeId,
    Pacemaker,
    Signer,
    SQLiteStore,
    Vote,
    decode_message,
)

CHAIN = ChainId(b"proc-test")


class UdpTransport:
    """Datagrams on 127.0.0.1; the sender is whoever owns the source port."""

    def __init__(self, me: int, n: int, base: int, vote_log: int) -> None:
        self.me, self.n, self.base, self.vote_log = me, n, base, vote_log
        self.sock = trio.socket.socket(trio.socket.AF_INET, trio.socket.SOCK_DGRAM)

    async def bind(self) -> None:
        await self.sock.bind(("127.0.0.1", self.base + self.me))

    async def send(self, to: NodeId, data: bytes) -> None:
        msg = decode_message(data, CHAIN)
        if isinstance(msg, Vote):
            os.write(self.vote_log, b"%d %s\n" % (msg.round, msg.block_id.hex().encode()))
        with contextlib.suppress(OSError):  # a dead peer's port: datagrams may be lost
            await self.sock.sendto(data, ("127.0.0.1", self.base + to))

    async def receive(self) -> tuple[NodeId, bytes]:
        while True:
            data, (_, port) = await self.sock.recvfrom(65536)
            peer = port - self.base
            if 0 <= peer < self.n and peer != self.me:
                return NodeId(peer), data


async def main(directory: str, me: int, n: int, base: int) -> None:
    signers = [Signer.from_seed(b"proc/%d" % i) for i in range(n)]
    cfg = Config(
        chain_id=CHAIN,
        me=NodeId(me),
        public_keys=tuple(s.public_key() for s in signers),
        pacemaker=Pacemaker(base=0.3, backoff=1.5, max_timeout=2.0),
        max_block_payloads=40,
        sync_batch=8,
    )
    votes = os.open(
        os.path.join(directory, f"votes-{me}.log"), os.O_WRONLY | os.O_APPEND | os.O_CREAT
    )
    commits = os.open(
        os.path.join(directory, f"commits-{me}.log"), os.O_WRONLY | os.O_APPEND | os.O_CREAT
    )
    transport = UdpTransport(me, n, base, votes)
    await transport.bind()
    store = SQLiteStore(os.path.join(directory, f"node-{me}.db"), CHAIN)
    node = Node(cfg, signers[me], store, transport)
    async with trio.open_nursery() as nursery:
        await nursery.start(node.run)

        async def record() -> None:
            async for block in node.committed():
                os.write(commits, b"%d %s\n" % (block.height, block.block_id.hex().encode()))

        nursery.start_soon(record)
        seq = 0
        while True:
            seq += 1
            await node.submit(b"node-%d-pid-%d-%d" % (me, os.getpid(), seq))
            await trio.sleep(0.01)


if __name__ == "__main__":
    d, i, n, base = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4])
    trio.run(main, d, i, n, base)
