"""The composition root: one KMS node = libp2p mesh + consensus + state + executor + keystore.

Wiring only: the protocol logic lives in the sans-I/O cores (``consensus.Replica``,
``kmsnode.state``, ``kmsnode.crypto``); this module moves bytes and blocks between them.
On start the node replays its committed log from its consensus store into a fresh state
machine (effects of already-executed heights are not run again), then follows new blocks.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import logging
import os
import time
from collections import OrderedDict
from pathlib import Path
from typing import Any

import trio

import consensus
from consensus.errors import MempoolFull, PayloadTooLarge

from . import gc_policy, net
from .audit_store import AuditStore
from .config import NodeConfig
from .console import Console, load_or_create_token, parse_listen
from .crypto.groups.ed25519 import verify_signature as ed25519_verify_signature
from .errors import ConfigError, LogRulesMismatch, MalformedMessage
from .executor import Executor
from .genesis import Genesis
from .genesis_check import GenesisCheck, Unanswered, follow_peer, parse_answer
from .identity import NodeIdentity
from .keystore import Keystore
from .node_report import FLIGHT_RECORDER_ENV, NodeReport, NodeStats, RequestTimings
from .state import (
    SUPPORTED_RULES,
    KeyActivated,
    KeyDeleted,
    KMSState,
    RulesActivated,
    SharesRefreshed,
    StartDkg,
)
from .wire.payload import RulesPayload, TickPayload, client_payload
from .wire.requests import ActivateRules, Request
from .wire.vouch import vouch_valid

log = logging.getLogger(__name__)

RESPONSE_CACHE = 4096
"""Answers kept for late fetches (by request id)."""
ANSWER_TIMEOUT = 30.0
TICK_INTERVAL = 0.05
GENESIS_REQUEST_TIMEOUT = 5.0
"""Seconds a peer has to answer a genesis check."""
SCRUB_RETRY = 1.0
"""Seconds between tries to scrub the keystore file while another reader holds it."""
RULES_CONFIRM_REPOST = 0.5
"""Seconds between posts of this node's confirmation while a pending activation waits for it."""
RULES_REPOST = 5.0
"""Seconds before a node says again (in the log) which state rules its software applies, while
the log does not show its latest statement (lost with a mempool, or never made)."""
CATCHING_UP_MS = 60_000
"""A block committed longer ago than this (by the proposer's clock) is applied by a node
catching up: it posts no nonce batch then (generous: clocks may differ by seconds; the ticker
posts for a quiet log whatever the clocks say, and a batch made from a stale view is only
refused by the log and its nonces erased)."""
DEDUP_WINDOW_BYTES = 16 * 1024 * 1024
REQUEST_FRAME_SLACK = 1024
"""Bytes a client's frame may carry beyond one payload (the envelope and its tags)."""
REQUEST_FRAME_MAX_ITEMS = 16
"""The longest array or map in a client's frame (envelopes hold a few fields)."""
EXECUTED_MARK_EVERY = 64
"""Blocks between durable "executed up to" marks. Re-running the effects of a few blocks after
a crash is harmless (answers are recomputed; a re-posted deal is ignored: the first committed
deal counts), so the mark need not cost an fsync per block."""


PARTITION_FILE = "partition.json"
"""With ``fault_injection`` on: ``{"cut": [node ids]}`` in the data directory simulates a
partition from those peers (``testnet partition``); read every ``PARTITION_POLL`` seconds."""
PARTITION_POLL = 0.2

RELAY_KIND = "req"
"""Envelope kind of a relayed client request (its body: the request's bytes)."""
STRANGER_RATE = 20.0
"""Requests per second this node lets into the log from clients the replicated state does not
know (no genesis admin, no grant on any key). Their refusals are audited, as the issue wants,
but anyone can make a key pair: without a budget, strangers could fill the log and every
node's audit trail at the rate the nodes accept requests."""
STRANGER_BURST = 40
"""Stranger requests accepted back to back before ``STRANGER_RATE`` applies."""
_SUBMIT_FIELDS = (frozenset({"request", "relay"}), frozenset({"request", "relay", "vouch"}))
"""The field sets a submit body given as a mapping may have (see ``KMSNode._submit``)."""


def check_rules_version(genesis: Genesis, keystore: Keystore) -> None:
    """Refuse to apply a log under rules this software cannot apply: the genesis's (where the
    log starts), or the newest this node's log was applied under so far (the keystore's mark,
    moved on by upgrades in the log; a fresh node records the genesis's).

    Raises:
        LogRulesMismatch: the genesis or the keystore names rules this software cannot apply,
            or the keystore older rules than the genesis (it belongs to another log).
    """
    if genesis.rules_version not in SUPPORTED_RULES:
        raise LogRulesMismatch(genesis.rules_version, SUPPORTED_RULES, "the genesis file")
    recorded = keystore.rules_version()
    if recorded is None:
        if keystore.executed_height() == 0:
            keystore.set_rules_version(genesis.rules_version)
            return
        recorded = 1  # executed blocks before versions were recorded
    if recorded not in SUPPORTED_RULES or recorded < genesis.rules_version:
        raise LogRulesMismatch(recorded, SUPPORTED_RULES, "this node's keystore")


class NotServed(MalformedMessage):
    """A well-formed, signed request the log would not serve under its current rules."""


class KMSNode:
    """A running node; ``await nursery.start(node.run)``."""

    def __init__(
        self, config: NodeConfig, passphrase: bytes, *, freeze_startup_heap: bool = False
    ) -> None:
        """``freeze_startup_heap``: once running, exempt the objects alive then from the
        garbage collector (a process-wide choice: for the node's own process, not tests)."""
        self.config = config
        self.freeze_startup_heap = freeze_startup_heap
        self.genesis = Genesis.load(config.genesis)
        self.me = config.node_id
        self.info = self.genesis.node(self.me)
        self.keystore = Keystore.open(config.keystore, passphrase, self.me)
        self.keystore.executed_height()  # an altered mark stops the start here, by name
        check_rules_version(self.genesis, self.keystore)
        # The genesis sealing key stays in the keystore only (read when a session needs it,
        # erased after its use): not in this process's memory for its whole life.
        self.identity = dataclasses.replace(NodeIdentity.load(self.keystore), sealing_key=None)
        if self.identity.signing_public != self.info.signing_key:
            raise ValueError(
                f"this keystore's signing key is not node {self.me}'s in the genesis file"
            )
        self.state = KMSState(self.genesis)
        self.audit_store = AuditStore(config.data_dir / "audit.db")
        self.executor = Executor(self.me, self.genesis, self.identity, self.keystore)
        self.stats = NodeStats()
        self._answers: OrderedDict[bytes, bytes] = OrderedDict()
        self._waiters: dict[bytes, trio.Event] = {}
        self._arrived: dict[bytes, float] = {}  # request id -> when a client submitted it here
        self._applying_since = 0.0  # when the block being applied was delivered
        self._mid_block = False
        """Whether a block's effects are being executed (between checkpoints)."""
        self.timings = RequestTimings()
        self.report = NodeReport(self)
        self.gc_pauses = gc_policy.PauseMeter()
        self._stranger_budget = consensus.TokenBucket(
            STRANGER_RATE, STRANGER_BURST, time.monotonic()
        )
        self._tick_seq = int(time.time() * 1000)
        self._rules_seq = int(time.time() * 1000)  # above any this node signed before
        self._rules_posted_at = -RULES_REPOST
        self._rules_posted_for: int | None = None
        """The activation height the last statement confirmed (None: none pending)."""
        self._scrub_at = 0.0

        net_identity = net.NetworkIdentity.from_private_bytes(
            self.identity.network_key.private_bytes_raw()
        )
        self.committee = net.Committee(
            net.Member(net.NodeId(i.id), i.peer_id, i.addrs, i.network_key)
            for i in self.genesis.nodes
        )
        self.host = net.Host(
            net_identity,
            listen=[config.listen],
            max_connections=net.host_connection_cap(
                config.max_client_connections, len(self.genesis.nodes)
            ),
        )
        self.guard = net.ConnectionGuard(
            self.host,
            self.committee,
            config.max_client_connections,
            per_address=config.max_client_connections_per_address,
        )
        self.mesh = net.Mesh(self.host, self.committee, net.NodeId(self.me))
        self.genesis_check = GenesisCheck(
            self.genesis.digest(), tuple(i.id for i in self.genesis.nodes if i.id != self.me)
        )
        self._partition_cut: frozenset[net.NodeId] = frozenset()
        self._apply_cut()  # no consensus message from a peer until it showed its genesis
        ids = [i.id for i in self.genesis.nodes]
        self.consensus_config = consensus.Config(
            chain_id=consensus.ChainId(self.genesis.chain_id.encode()),
            me=consensus.NodeId(ids.index(self.me)),
            public_keys=tuple(i.signing_key for i in self.genesis.nodes),
            # The dedup window holds whole payloads in memory (DKG deals are kilobytes).
            dedup_window_bytes=DEDUP_WINDOW_BYTES,
            # Votes go to the next leader only. Broadcasting them (every node forms the QC)
            # saves a message delay in theory, but measured on a 4-node testnet it cost ~25%
            # more node CPU per request (n^2 messages through py-libp2p) for no lower latency.
            broadcast_votes=False,
            # libsodium's Ed25519 check: ~2x OpenSSL's here, and the one requests use too.
            signature_verifier=ed25519_verify_signature,
        )
        self.store = consensus.SQLiteStore(str(config.consensus_db), self.consensus_config.chain_id)
        self.recorder = flight_recorder_from_env()
        transport = net.ConsensusTransport(self.mesh, self.consensus_config)
        self._relay_inbox = self.mesh.add_protocol(
            net.ProtocolSpec(
                net.RELAY_PROTOCOL,
                fmt=net.FrameFormat(max_frame_bytes=self.consensus_config.max_payload_bytes + 1024),
            )
        )
        self.consensus = consensus.Node(
            self.consensus_config,
            consensus.Signer(self.identity.signing_key),
            self.store,
            transport,
            recorder=self.recorder,
        )
        # What a client may send is one request (at most a consensus payload) in a small
        # envelope: decoding a frame costs the event loop, so no frame may be much bigger.
        self.server = net.RequestServer(
            self.host,
            self._handle,
            committee=self.committee,
            on_activity=self.guard.touch,
            request_fmt=net.FrameFormat(
                max_frame_bytes=self.consensus_config.max_payload_bytes + REQUEST_FRAME_SLACK,
                max_items=REQUEST_FRAME_MAX_ITEMS,
            ),
        )
        self.guard.busy = self.server.peer_busy  # a client being served is never evicted
        self.chain_id = self.genesis.chain_id
        self.console: Console | None = None
        if config.console:
            host, port = parse_listen(config.console)
            token = load_or_create_token(config.data_dir)
            self.console = Console(self.report, self.me, host, port, token)

    # -- lifecycle --------------------------------------------------------------------------
    async def run(
        self,
        *,
        task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED,  # type: ignore[name-defined,unused-ignore]
    ) -> None:
        """Run until cancelled: network, consensus, block application, ticks."""
        try:
            async with trio.open_nursery() as nursery:
                self.server.install()
                await nursery.start(self.guard.run)
                await nursery.start(self.host.run)
                await nursery.start(self.mesh.run)
                blocks = self.consensus.committed()
                await nursery.start(self.consensus.run)
                backlog = self._replay()
                nursery.start_soon(self._follow, blocks, backlog)
                nursery.start_soon(self._ticker)
                nursery.start_soon(self._relayed)
                nursery.start_soon(self._check_genesis)
                if self.console is not None:
                    await nursery.start(self.console.run)
                if self.config.fault_injection:
                    log.warning("fault injection on: obeying %s (testnets only)", PARTITION_FILE)
                    nursery.start_soon(self._follow_partition_file)
                if self.freeze_startup_heap:
                    # The startup heap lives as long as the process: out of the collector's
                    # walk, a full collection stops the event loop for ms, not ~100 ms.
                    frozen = gc_policy.freeze_startup_heap()
                    log.info("froze %d startup objects out of the garbage collector", frozen)
                self.gc_pauses.install()
                log.info("node %d running, listening on %s", self.me, self.host.addrs())
                task_status.started()
        finally:
            self.gc_pauses.uninstall()
            self.keystore.close()
            self.audit_store.close()

    def _replay(self) -> list[bytes]:
        """Re-apply the committed log from the store; returns payloads still to post."""
        executed = self.executor_height()
        backlog: list[bytes] = []
        for block in self._stored_blocks(1, None):
            self._stop_before_unknown_rules(block.height)
            effects = self.state.apply(block)
            self.audit_store.append(self.state.audit.drain())
            self.stats.replayed_blocks += 1
            if block.height > executed:
                # Committed but not executed before the crash: do this node's part now
                # (posting deals again is harmless: the first committed deal counts).
                backlog.extend(self._execute(effects))
                self.keystore.set_executed_height(block.height)
            else:
                for effect in effects:
                    self.executor.replay(effect)
        # DKG messages decided before the crash that never reached the log (the mempool is
        # memory): without them an honest dealer would be disqualified.
        backlog.extend(p for p in self.executor.unsettled_posts() if p not in backlog)
        return backlog

    def _stored_blocks(self, start: int, stop: int | None) -> Any:
        """Committed blocks ``start..stop-1`` (or to the end) from the consensus store."""
        height = start
        while stop is None or height < stop:
            page = self.store.committed_log(consensus.Height(height), 256)
            if not page:
                return
            for block in page:
                if stop is not None and block.height >= stop:
                    return
                yield block
            height = page[-1].height + 1

    @property
    def partition_cut(self) -> frozenset[net.NodeId]:
        """The peers a simulated partition (``partition.json``) cuts this node off from."""
        return self._partition_cut

    @property
    def answers_cached(self) -> int:
        """Answers kept for late fetches (at most RESPONSE_CACHE)."""
        return len(self._answers)

    @property
    def waiting(self) -> int:
        """Requests submitted here whose answer is not ready yet."""
        return len(self._waiters)

    def executor_height(self) -> int:
        """The last height whose effects this node executed (persisted in the keystore DB)."""
        return self.keystore.executed_height()

    async def _follow(self, blocks: Any, backlog: list[bytes]) -> None:
        for payload in backlog:
            await self.consensus.submit(payload)
        async for block in blocks:
            if block.height <= self.state.height:
                continue
            if block.height != self.state.height + 1:
                # A gap means the consensus delivered past what we replayed: read it from disk.
                for missing in self._stored_blocks(self.state.height + 1, block.height):
                    await self._apply(missing)
            await self._apply(block)

    async def _apply(self, block: Any) -> None:
        self._applying_since = time.monotonic()
        if self.recorder is not None:
            self.recorder.record("apply", int(block.height), len(block.payloads))
        # The commit that delivered this block also queued this node's vote or proposal:
        # let those writes (and any consensus message waiting) go before the crypto below,
        # which holds the event loop for a millisecond or more per request.
        await trio.lowlevel.checkpoint()
        if block.payloads:
            await self.mesh.flush()
        self._stop_before_unknown_rules(block.height)
        effects = self.state.apply(block)
        self.audit_store.append(self.state.audit.drain())
        self.stats.blocks_applied += 1
        posts: list[bytes] = []
        self._mid_block = True
        try:
            for i, effect in enumerate(effects):
                if i:
                    await trio.lowlevel.checkpoint()  # a partial costs ~1-2 ms: interleave
                posts.extend(self._execute_one(effect))
        finally:
            self._mid_block = False
        # Not while catching up: the pool as of an old block is not the log's (the batch
        # number may be taken already), so a batch made now would only be refused.
        caught_up = time.time() * 1000 - block.timestamp_ms < CATCHING_UP_MS
        if caught_up:
            nonces = self._nonce_batch()
            if nonces is not None:
                posts.append(nonces)
        key = self._tend_receiving_keys()
        if key is not None and caught_up:  # (as for nonces: a stale view's key is refused)
            posts.append(key)
        if block.height % EXECUTED_MARK_EVERY == 0 or any(
            isinstance(e, (StartDkg, KeyActivated, SharesRefreshed, KeyDeleted, RulesActivated))
            for e in effects
        ):
            self.keystore.set_executed_height(block.height)
        for payload in posts:
            await self.consensus.submit(payload)

    def _stop_before_unknown_rules(self, height: int) -> None:
        """Stop before applying the block at ``height`` if it puts in force rules this
        software does not know (a node left behind by an upgrade, or downgraded since): none
        of its payloads is applied, audited or answered under rules guessed at.

        Raises:
            LogRulesMismatch: the block activates rules outside ``SUPPORTED_RULES``.
        """
        version = self.state.upgrades.activating_at(height)
        if version is not None and version not in SUPPORTED_RULES:
            raise LogRulesMismatch(version, SUPPORTED_RULES, "the log")

    def _execute(self, effects: list[Any]) -> list[bytes]:
        return [p for effect in effects for p in self._execute_one(effect)]

    def _execute_one(self, effect: Any) -> list[bytes]:
        """Run one effect: answers go to the answer cache; returns payloads to post."""
        out = self.executor.run(effect)
        for response in out.responses:
            self._answer(response.request_id, response.encode())
        return list(out.posts)

    def _nonce_batch(self) -> bytes | None:
        """A batch of FROST nonce commitments to post, if this node's pool in the log is low
        (only between blocks: see ``NonceSupply.wanted``)."""
        if self._mid_block:
            return None
        return self.executor.nonce_supply.wanted(
            self.state.nonce_pools.pool(self.me), time.monotonic()
        )

    def _tend_receiving_keys(self) -> bytes | None:
        """Rules v3: a fresh receiving key to post once the current one was used, and the
        private halves no open session seals to erased (then the keystore scrubbed)."""
        if self.state.rules_version < 3:
            return None
        post, erased = self.executor.receiving.tend(
            self.state.receiving_keys[self.me],
            self.state.receiving_keys_in_use(self.me),
            time.monotonic(),
        )
        if erased:
            self.executor.scrub_pending = True
            self.executor.retry_scrub()
        return post

    def _rules_statement(self) -> bytes | None:
        """This node's signed statement of the rules its software applies, if the log lacks
        it, or lacks one from after a pending activation (the upgrade takes effect only if
        every node's statement lists the version, confirmed after the activation)."""
        logged = self.state.rules_support.get(self.me)
        pending = self.state.pending_rules
        now = time.monotonic()
        current = (
            logged is not None
            and logged[1] == SUPPORTED_RULES
            and (pending is None or logged[2] > pending[2])  # confirmed after an activation
        )
        # At once for a new activation, and often while it waits for this node (its window is
        # a few blocks, and a post can be lost to a full mempool), else at a gentle rate.
        reason = None if pending is None else pending[2]
        interval = RULES_REPOST if pending is None else RULES_CONFIRM_REPOST
        if current or (reason == self._rules_posted_for and now - self._rules_posted_at < interval):
            return None
        self._rules_posted_for = reason
        self._rules_posted_at = now
        # Newer than any statement of ours in the log, whatever the clock did since.
        self._rules_seq = max(self._rules_seq, logged[0] if logged else 0) + 1
        statement = RulesPayload(self.me, self._rules_seq, SUPPORTED_RULES)
        return statement.signed(self.genesis.chain_id, self.identity.signing_key).encode()

    async def _ticker(self) -> None:
        # The log only makes blocks when there is something to order; a DKG waiting for a
        # deadline height needs blocks, so nodes post empty ticks while one is open, and a
        # key deletion comes due only in a block after its time, and activated rules only at
        # their height.
        # Only when the log is quiet: a busy log advances heights without them (posting one
        # from every node every interval filled the dedup window with tiny payloads).
        while True:
            await trio.sleep(TICK_INTERVAL)
            quiet = time.monotonic() - self._applying_since >= TICK_INTERVAL
            # A quiet log still needs this node's nonce pool filled (at the start) and a lost
            # batch posted again.
            nonces = self._nonce_batch() if quiet else None
            if nonces is not None:
                with contextlib.suppress(MempoolFull):
                    await self.consensus.submit(nonces, wait=False)
            key = self._tend_receiving_keys() if quiet and not self._mid_block else None
            if key is not None:  # (a lost one, posted again)
                with contextlib.suppress(MempoolFull):
                    await self.consensus.submit(key, wait=False)
            now = time.monotonic()
            if self.executor.scrub_pending and not self._mid_block and now >= self._scrub_at:
                self._scrub_at = now + SCRUB_RETRY
                self.executor.retry_scrub()
            statement = self._rules_statement()
            if statement is not None:
                with contextlib.suppress(MempoolFull):
                    await self.consensus.submit(statement, wait=False)
            due = self.state.next_deletion_ms
            deletion_due = due is not None and due <= time.time() * 1000
            upgrade_pending = self.state.pending_rules is not None
            if quiet and (
                self.executor.waiting_for_height
                or self.state.sessions
                or deletion_due
                or upgrade_pending
            ):
                self._tick_seq += 1
                with contextlib.suppress(MempoolFull):  # busy enough: no tick needed
                    await self.consensus.submit(
                        TickPayload(self.me, self._tick_seq).encode(), wait=False
                    )

    async def _follow_partition_file(self) -> None:
        """Apply ``partition.json`` to the mesh whenever it changes (fault drills only); no
        file means no cut, and a bad file is reported once and leaves the cut as it was."""
        path = self.config.data_dir / PARTITION_FILE
        seen: tuple[int, int, int] | None = None  # (inode, mtime, size): a rewrite changes it
        while True:
            try:
                st = path.stat()
                version: tuple[int, int, int] | None = (st.st_ino, st.st_mtime_ns, st.st_size)
            except FileNotFoundError:
                version = None
            if version != seen:
                seen = version
                cut = self._read_partition_file(path) if version is not None else frozenset()
                if cut is not None and cut != self._partition_cut:
                    log.warning("simulated partition: cut off from %s", sorted(cut) or "nobody")
                    self._partition_cut = cut
                    self._apply_cut()
            await trio.sleep(PARTITION_POLL)

    def _apply_cut(self) -> None:
        """Cut the mesh off from the simulated partition's peers and those whose genesis
        differs from ours (or is not known yet)."""
        unchecked = {net.NodeId(p) for p in self.genesis_check.cut_off}
        self.mesh.cut = self._partition_cut | unchecked

    async def _check_genesis(self) -> None:
        """Ask each peer for its genesis digest, now and then; cut off those that differ."""
        log.info("genesis digest %s", self.genesis_check.mine.hex())
        async with trio.open_nursery() as nursery:
            for peer in self.genesis_check.peers:
                nursery.start_soon(self._check_peer_genesis, peer)

    async def _check_peer_genesis(self, peer: int) -> None:
        node_id = net.NodeId(peer)
        peer_id = self.committee.peer_id(node_id)

        async def ask() -> bytes | None:
            try:
                frames = await net.request(
                    self.host,
                    peer_id,
                    self.committee.member(node_id).addrs,
                    net.Envelope("genesis", None),
                    timeout=GENESIS_REQUEST_TIMEOUT,
                )
            except net.RequestFailed as exc:
                raise Unanswered(replied=False) from exc
            try:
                return parse_answer((f.kind, f.body) for f in frames)
            except ValueError as exc:
                raise Unanswered(replied=True) from exc

        async def wait(seconds: float) -> None:
            await self._sleep_unless_reconnected(node_id, seconds)

        await follow_peer(
            self.genesis_check,
            peer,
            ask,
            lambda: self.host.disconnect(peer_id),
            wait,
            self._genesis_news,
        )

    def _genesis_news(self, peer: int, digest: bytes | None) -> None:
        """A peer's first or changed genesis answer: re-cut the mesh, and say why."""
        self._apply_cut()
        if peer in self.genesis_check.mismatched:
            log.error(
                "node %d runs another genesis (digest %s, ours %s): cut off from it "
                "until it runs ours",
                peer,
                digest.hex() if digest else "?",
                self.genesis_check.mine.hex(),
            )
        elif digest is None:
            log.warning("node %d has no genesis check (older software): let in", peer)

    async def _sleep_unless_reconnected(self, node_id: net.NodeId, seconds: float) -> None:
        """Sleep ``seconds``, or less if the consensus link to ``node_id`` is opened anew."""
        seen = self.mesh.connects(node_id, net.CONSENSUS_PROTOCOL)
        deadline = trio.current_time() + seconds
        while (left := deadline - trio.current_time()) > 0:
            await trio.sleep(min(left, 0.5))
            if self.mesh.connects(node_id, net.CONSENSUS_PROTOCOL) != seen:
                return

    def _read_partition_file(self, path: Path) -> frozenset[net.NodeId] | None:
        """The peers ``path`` lists, or None (logged) when it is not a valid partition file."""
        members = {i.id for i in self.genesis.nodes} - {self.me}
        try:
            listed = json.loads(path.read_text(encoding="utf-8"))["cut"]
            if not isinstance(listed, list) or not all(
                type(i) is int and i in members for i in listed
            ):
                raise ValueError(f"'cut' must list peers among {sorted(members)}")
        except (OSError, ValueError, KeyError, TypeError) as exc:
            log.error("ignoring %s: %s", path, exc)
            return None
        return frozenset(net.NodeId(i) for i in listed)

    # -- answers ------------------------------------------------------------------------------
    def _answer(self, request_id: bytes, data: bytes) -> None:
        if self.recorder is not None:
            self.recorder.record("answer", request_id.hex()[:16])
        self._answers[request_id] = data
        self._answers.move_to_end(request_id)
        while len(self._answers) > RESPONSE_CACHE:
            self._answers.popitem(last=False)
        arrived = self._arrived.pop(request_id, None)
        if arrived is not None:
            self.timings.add(arrived, self._applying_since, time.monotonic())
        event = self._waiters.pop(request_id, None)
        if event is not None:
            event.set()

    # -- the client protocol --------------------------------------------------------------------
    async def _handle(self, request: net.Request) -> Any:
        env = request.envelope
        if env.kind == "submit":
            peer = request.peer_id if request.node_id is None else None
            async for out in self._submit(env.body, peer):
                yield out
        elif env.kind == "fetch":
            data = self._answers.get(env.body) if isinstance(env.body, bytes) else None
            if data is None:
                yield net.Envelope("err", {"reason": "unknown request"})
            else:
                yield net.Envelope("resp", data)
        elif env.kind == "status":
            body = env.body if isinstance(env.body, dict) else {}
            window = body.get("latency_window", 60.0)
            if not isinstance(window, (int, float)) or not 1 <= window <= 3600:
                window = 60.0
            yield net.Envelope("status", self.report.status(float(window)))
        elif env.kind == "audit":
            yield net.Envelope("audit", self.report.audit(env.body))
        elif env.kind == "genesis":
            yield net.Envelope("genesis", self.genesis_check.mine)
        else:
            yield net.Envelope("err", {"reason": f"unknown kind {env.kind[:32]}"})

    def _admit(self, data: Any) -> Request:
        """Decode a client request and check its chain and signature (before the log).

        Raises:
            Exception: a malformed, foreign or badly signed request.
        """
        if not isinstance(data, bytes):
            raise MalformedMessage("a request must be bytes")
        req = Request.decode(data)
        if req.chain_id != self.genesis.chain_id:
            raise MalformedMessage("request for another chain")
        if not self.state.serves(req.op.name):
            raise NotServed(
                f"not_supported: the log's rules (v{self.state.rules_version}) do not serve "
                f"{req.op.name}"
            )
        if (
            isinstance(req.op, ActivateRules)
            and req.op.leave_behind
            and self.state.rules_version < 4
        ):
            raise NotServed(
                f"not_supported: the log's rules (v{self.state.rules_version}) cannot leave "
                "nodes behind in an upgrade (v4 can; this upgrade needs every node)"
            )
        req.verify()
        if isinstance(req.op, ActivateRules) and self.state.rules_version < 3:
            # Under v2 rules the log drops a refused activation without a word (as v2
            # software did), so the reason is only given here.
            refusal = self.state.activation_refusal(req, req.op)
            if refusal is not None:
                raise NotServed(f"{refusal.code}: {refusal.message}")
        return req

    def _within_budget(self, known: bool) -> bool:
        """Whether a request may go into the log now: always from a client the state knows
        (``known``); from a stranger, if the stranger budget has a token left (else it is
        counted)."""
        if known or self._stranger_budget.take(time.monotonic()):
            return True
        self.stats.strangers_throttled += 1
        return False

    async def _submit(self, body: Any, peer: str | None) -> Any:
        # The body is the request's bytes, or {"request": bytes, "relay": bool} with an
        # optional "vouch" (``wire.vouch``: the client's proof that this connection is its
        # own). "relay" true comes from a client that reaches only some nodes: this node then
        # passes the request on to the others, so that whichever node leads next can propose
        # it. ``peer``: the connection's peer id (base58) when it is not a committee member.
        relay = False
        vouch = None
        if isinstance(body, dict) and frozenset(body) in _SUBMIT_FIELDS:
            relay = body["relay"] is True
            vouch = body.get("vouch")
            body = body["request"]
        if not isinstance(body, bytes):
            yield net.Envelope("err", {"reason": "submit needs the request bytes"})
            return
        try:
            req = self._admit(body)
        except NotServed as exc:  # a well-formed request the log would refuse: say why
            self.stats.refused_before_log += 1
            yield net.Envelope("err", {"reason": f"refused: {exc}"})
            return
        except Exception as exc:
            self.stats.refused_before_log += 1
            yield net.Envelope("err", {"reason": f"refused: {type(exc).__name__}"})
            return
        known = self.state.knows(req.client)
        if (
            known
            and peer is not None
            and vouch is not None
            and not self.guard.is_vouched(peer)
            and vouch_valid(req.client, vouch, self.chain_id, peer)
            # A registered client's own connection: strangers are evicted before it.
            and self.guard.vouch(peer, req.client)
        ):
            self.stats.peers_vouched += 1
        rid = req.request_id
        if self.recorder is not None:
            self.recorder.record("request", rid.hex()[:16])
        if rid not in self._answers:
            if rid not in self._waiters and not self._within_budget(known):
                yield net.Envelope("err", {"reason": "busy"})  # the client asks again later
                return
            event = self._waiters.setdefault(rid, trio.Event())
            self._arrived.setdefault(rid, time.monotonic())
            try:
                try:
                    await self.consensus.submit(client_payload(req), wait=False)
                except MempoolFull:
                    yield net.Envelope("err", {"reason": "busy"})
                    return
                except PayloadTooLarge:
                    yield net.Envelope("err", {"reason": "refused: request too large"})
                    return
                self.stats.submitted += 1
                if relay:
                    self.mesh.broadcast(net.RELAY_PROTOCOL, net.Envelope(RELAY_KIND, body))
                    self.stats.relayed_out += 1
                with trio.move_on_after(ANSWER_TIMEOUT):
                    await event.wait()
            finally:
                # A request that is never answered (refused as a replay, or lost) must not
                # leave its waiter behind; the answer, if it comes, is cached anyway.
                if self._waiters.get(rid) is event and not event.is_set():
                    del self._waiters[rid]
                    self._arrived.pop(rid, None)
        else:
            self.stats.answered_from_cache += 1
        data = self._answers.get(rid)
        if data is None:
            yield net.Envelope("err", {"reason": "timeout"})
        else:
            yield net.Envelope("resp", data)

    async def _relayed(self) -> None:
        """Requests other committee members pass on: checked like a client's, then queued."""
        async for _sender, envelope in self._relay_inbox:
            try:
                if envelope.kind != RELAY_KIND:
                    raise MalformedMessage("not a relayed request")
                req = self._admit(envelope.body)
            except Exception:
                self.stats.relays_refused += 1
                continue
            if req.request_id in self._answers:
                continue  # already committed and answered here
            if not self._within_budget(self.state.knows(req.client)):
                continue
            with contextlib.suppress(MempoolFull, PayloadTooLarge):  # best effort, as gossip is
                await self.consensus.submit(client_payload(req), wait=False)
                self.stats.relayed_in += 1


def flight_recorder_from_env() -> consensus.FlightRecorder | None:
    """A recorder of ``$KMSNODE_FLIGHT_RECORDER`` events, or None when it is unset or empty.

    Raises:
        ConfigError: the variable is set but not a positive number of events.
    """
    raw = os.environ.get(FLIGHT_RECORDER_ENV, "").strip()
    if not raw:
        return None
    if not raw.isdigit() or not 0 < int(raw) <= 10_000_000:
        raise ConfigError(f"{FLIGHT_RECORDER_ENV} must be a number of events, 1 to 10000000")
    return consensus.FlightRecorder(int(raw))
