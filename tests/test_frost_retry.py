"""The client's FROST retry policy, sans I/O: which signers it passes over and for how long,
and when a failed attempt is tried again (times are plain numbers: no clock, no network)."""

from __future__ import annotations

from kmsnode.client._core import (
    AVOID_SECONDS,
    BUSY_RETRIES,
    SIGN_ATTEMPTS,
    FrostRetry,
    SignerAvoidance,
)
from kmsnode.client.errors import AccessDenied, RequestRejected, SignersFailed


def test_a_failed_signer_is_passed_over_for_a_while_or_until_it_signs() -> None:
    avoidance = SignerAvoidance()
    avoidance.failed((3,), now=100.0)
    avoidance.failed((1,), now=130.0)
    assert avoidance.avoid(131.0) == (1, 3)
    assert avoidance.avoid(100.0 + AVOID_SECONDS) == (1,)  # node 3's time is up
    assert avoidance.avoid(130.0 + AVOID_SECONDS) == ()
    avoidance.signed((1, 2))  # node 1 signed validly after all (the log needed it)
    assert avoidance.avoid(131.0) == (3,)


def test_lost_signers_are_retried_at_once_without_them_then_the_call_fails() -> None:
    avoidance = SignerAvoidance()
    retry = FrostRetry(avoidance)
    for attempt in range(1, SIGN_ATTEMPTS):
        assert retry.after(SignersFailed([attempt]), now=10.0) == 0.0
        assert attempt in avoidance.avoid(10.0) and attempt in retry.avoid(10.0)
    assert retry.after(SignersFailed([4]), now=10.0) is None  # the last attempt: give up
    assert avoidance.avoid(10.0) == (1, 2, 3, 4)  # later calls pass them all over first


def test_after_a_failure_the_other_suspects_get_their_chance() -> None:
    # Nodes 1 and 3 failed earlier calls. Node 3 is back from a restart; node 1 is down now.
    # With both avoided the log must take one of them (t = 3 of 4), and it took node 1: the
    # next attempt avoids only node 1, so the log can take node 3.
    avoidance = SignerAvoidance()
    avoidance.failed((1, 3), now=0.0)
    retry = FrostRetry(avoidance)
    assert retry.avoid(1.0) == (1, 3)
    assert retry.after(SignersFailed([1]), now=1.0) == 0.0
    assert retry.avoid(1.0) == (1,)
    assert avoidance.avoid(1.0) == (1, 3)  # the client-wide suspects stay for later calls


def test_busy_answers_back_off_exponentially_then_the_call_fails() -> None:
    retry = FrostRetry(SignerAvoidance())
    delays = [
        retry.after(RequestRejected(code, ""), now=0.0)
        for code in ["throttled", "signers_unavailable"] * BUSY_RETRIES
    ][:BUSY_RETRIES]
    assert delays == [0.2, 0.4, 0.8, 1.6, 2.0, 2.0]
    assert retry.after(RequestRejected("throttled", ""), now=0.0) is None


def test_other_errors_are_final() -> None:
    retry = FrostRetry(SignerAvoidance())
    assert retry.after(AccessDenied("access_denied", "no"), now=0.0) is None
    assert retry.after(RequestRejected("key_unavailable", "disabled"), now=0.0) is None
    assert retry.after(ValueError("x"), now=0.0) is None
    assert retry.failures == retry.busy == 0
