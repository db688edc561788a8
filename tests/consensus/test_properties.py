"""Hypothesis: random schedules of submissions, crashes, restarts and partitions (with one
byzantine replica) never break safety, and everything commits once the network heals."""

from __future__ import annotations

from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, initialize, invariant, precondition, rule

from consensus.testing import Byzantine, Equivocator, Silent, Simulation, VoteForger

BYZANTINE: list[type[Byzantine] | None] = [None, Equivocator, Silent, VoteForger]


class ConsensusMachine(RuleBasedStateMachine):
    """Drives a 4-replica simulation; replica 3 may be byzantine, one honest may be down."""

    sim: Simulation

    @initialize(seed=st.integers(0, 2**16), byz=st.sampled_from(BYZANTINE))
    def setup(self, seed: int, byz: type[Byzantine] | None) -> None:
        byzantine = {} if byz is None else {3: byz}
        self.sim = Simulation(4, seed, byzantine=byzantine)
        self.sim.start()
        self.down: str | None = None
        self.count = 0

    @rule(k=st.integers(1, 5))
    def submit(self, k: int) -> None:
        for _ in range(k):
            self.count += 1
            self.sim.submit(b"h-%d-%d" % (self.sim.seed, self.count))

    @rule(t=st.floats(0.01, 2.0))
    def run(self, t: float) -> None:
        self.sim.run_for(t)

    @precondition(lambda self: self.down is None)
    @rule(i=st.integers(0, 2))
    def crash(self, i: int) -> None:
        node = self.sim.node(f"n{i}")
        self.sim.crash(node)
        self.down = node.name

    @precondition(lambda self: self.down is not None)
    @rule()
    def restart(self) -> None:
        assert self.down is not None
        self.sim.restart(self.sim.node(self.down))
        self.down = None

    @rule(i=st.integers(0, 3), length=st.floats(0.1, 3.0))
    def isolate(self, i: int, length: float) -> None:
        others = {f"n{j}" for j in range(4) if j != i}
        self.sim.partition([{f"n{i}"}, others], self.sim.now, self.sim.now + length)

    @invariant()
    def safe(self) -> None:
        self.sim.check_safety()

    def teardown(self) -> None:
        if self.down is not None:
            self.sim.restart(self.sim.node(self.down))
        heal = max((end for _, end, _ in self.sim.partitions), default=0.0)
        self.sim.client_retries()  # crashes empty mempools: honest clients resubmit
        ok = self.sim.run_until(lambda: self.sim.now >= heal and self.sim.all_committed(), 300)
        self.sim.check_safety()
        assert ok, f"payloads not committed after healing (seed={self.sim.seed})"


ConsensusMachine.TestCase.settings = settings(
    max_examples=40,
    stateful_step_count=15,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow],
)
TestConsensusProperties = ConsensusMachine.TestCase
