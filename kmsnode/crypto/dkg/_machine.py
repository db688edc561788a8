"""The DKG / refresh / reshare state machine of one participant, over the committed log.

Pure and deterministic: ``handle(event) -> list[Action]``. Every honest participant that sees
the same committed messages (and the same ``HeightReached`` marks) reaches the same public
decisions: which deals count, which dealers are disqualified, the qualified set, the public
key and every verification key. Only its own share is private.

The flow (DESIGN §4.6, GJKR-style complaints)::

    CREATED --Start--> DEALING --deal deadline--> COMPLAINING --complaint deadline-->
    JUSTIFYING --justification deadline--> COMPLETED | FAILED

A message counts only if it was committed at or before its phase's deadline; phases advance
only on ``HeightReached``, so the decision never depends on when a node happened to look.
"""

from __future__ import annotations

import enum
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Generic, TypeVar

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from .. import feldman, pok
from ..errors import CryptoError, InvalidEncoding, InvalidParameters
from ..groups import Group, Rng, default_rng
from ..sealing import SealingPrivateKey, open_sealed, seal
from ..shamir import Share, evaluate, lagrange_coefficients, random_polynomial
from ._events import (
    Action,
    Committed,
    Completed,
    DkgResult,
    EraseShare,
    Event,
    Failed,
    Post,
    Rejected,
    Start,
)
from ._messages import Complaint, Deal, Justification, Message, decode_message, share_aad
from ._session import Kind, Session

E = TypeVar("E")


class Status(enum.Enum):
    """Where a participant is in the session's lifecycle."""

    CREATED = "created"
    DEALING = "dealing"
    COMPLAINING = "complaining"
    JUSTIFYING = "justifying"
    COMPLETED = "completed"
    FAILED = "failed"


TRANSITIONS: Mapping[Status, frozenset[Status]] = {
    Status.CREATED: frozenset({Status.DEALING}),
    Status.DEALING: frozenset({Status.COMPLAINING, Status.FAILED}),
    Status.COMPLAINING: frozenset({Status.JUSTIFYING}),
    Status.JUSTIFYING: frozenset({Status.COMPLETED, Status.FAILED}),
    Status.COMPLETED: frozenset(),
    Status.FAILED: frozenset(),
}
"""The only lifecycle moves; ``Participant._move`` refuses any other."""


class SessionStateError(CryptoError):
    """The driver used the state machine out of order (an operator or programmer error)."""


@dataclass
class _DealState(Generic[E]):
    commitments: tuple[E, ...]
    height: int
    my_share: int | None = field(default=None, repr=False)
    share_checked: bool = False
    complaints: dict[int, bool] = field(default_factory=dict)
    """complainer -> answered by a valid justification."""


class Participant(Generic[E]):
    """One node's view of one session.

    Args:
        session: the session, identical on every node.
        signing_key: this node's Ed25519 key; must match its entries in the committees.
        sealing_key: this node's hybrid key, to open shares (needed if it receives shares).
        id: this node's id in ``session.committee`` (``None`` for a member leaving in a
            reshare).
        old_id: this node's id in the old committee (reshare only; defaults to ``id`` for a
            refresh, where the committee does not change).
        old_share: the share being refreshed or reshared.
        rng: randomness for the polynomial and the proof (``secrets.token_bytes`` by default).

    Raises:
        InvalidParameters: the node's keys or share do not match the session (the message
            says which).

    Security: holds the dealer's polynomial until the session ends (to justify complaints)
    and the old share until ``EraseShare``; ``repr`` shows neither.
    """

    def __init__(
        self,
        session: Session[E],
        *,
        signing_key: Ed25519PrivateKey | None,
        sealing_key: SealingPrivateKey | None,
        id: int | None,
        old_id: int | None = None,
        old_share: Share | None = None,
        rng: Rng = default_rng,
    ) -> None:
        self.session = session
        self._group: Group[E] = session.group
        self._signing_key = signing_key
        self._sealing_key = sealing_key
        self._rng = rng
        kind = session.kind
        if kind is Kind.REFRESH and old_id is None:
            old_id = id
        if kind is Kind.DKG:
            old_id = id
        self.id = id
        self.dealer_id = old_id if kind is not Kind.DKG else id
        self._old_share = old_share
        if signing_key is None:
            # An observer: no keys, no deal, no share; it follows the log to the public
            # outcome, which is what the replicated state machine needs.
            if id is not None or old_id is not None or old_share is not None:
                raise InvalidParameters("an observer (no signing key) has no id and no share")
            self.id = None
            self.dealer_id = None
            self._init_state()
            return
        own = signing_key.public_key().public_bytes_raw()
        if id is not None:
            if id not in session.committee:
                raise InvalidParameters(f"node id {id} is not in the session's committee")
            if session.committee[id].signing_key != own:
                raise InvalidParameters(
                    f"this node's signing key is not the one the session lists for member {id}"
                )
            if sealing_key is None or sealing_key.public_key != session.committee[id].sealing_key:
                raise InvalidParameters(
                    f"this node's sealing key is not the one the session lists for member {id}"
                )
        dealer = self.dealer_id
        if dealer is not None:
            if dealer not in session.dealers:
                raise InvalidParameters(f"node id {dealer} is not among the session's dealers")
            if session.dealers[dealer].signing_key != own:
                raise InvalidParameters(
                    f"this node's signing key is not the one the session lists for dealer {dealer}"
                )
            if kind is not Kind.DKG and (old_share is None or old_share.id != dealer):
                raise InvalidParameters(
                    f"a {kind.value} dealer needs its current share (id {dealer}); "
                    "restore it from the keystore before joining the session"
                )
        if id is None and dealer is None:
            raise InvalidParameters("this node is neither a dealer nor a recipient")
        self._init_state()

    @classmethod
    def observer(cls, session: Session[E]) -> Participant[E]:
        """A keyless participant that only follows the log to the public outcome.

        It checks deals, complaints and justifications exactly as members do and reaches the
        same ``Completed`` (with ``share=None``) or ``Failed``; it never posts anything.
        """
        return cls(session, signing_key=None, sealing_key=None, id=None)

    def _signer(self) -> Ed25519PrivateKey:
        # Only members post messages, and every member was built with its signing key.
        assert self._signing_key is not None
        return self._signing_key

    def _init_state(self) -> None:
        self.status = Status.CREATED
        self._height = -1
        self._coefficients: list[int] | None = None
        self._deals: dict[int, _DealState[E]] = {}
        self._disqualified: dict[int, str] = {}
        self._rejected_deals: dict[int, str] = {}
        self._posted: list[Message[E]] = []
        """Everything this participant asked to post, in order (see ``unsettled_posts``)."""
        self.result: DkgResult[E] | None = None
        self.failure: str | None = None

    def progress(self) -> dict[str, Any]:
        """Public progress for operators: status, deals seen, who is out and why, deadlines."""
        s = self.session
        return {
            "key_id": s.key_id,
            "version": s.version,
            "epoch": s.epoch,
            "kind": s.kind.value,
            "status": self.status.value,
            "height": self._height,
            "deals": len(self._deals),
            "disqualified": {str(i): why for i, why in sorted(self._disqualified.items())},
            "deadlines": {
                "deal": s.deal_deadline,
                "complaint": s.complaint_deadline,
                "justification": s.justification_deadline,
            },
        }

    def __repr__(self) -> str:
        return (
            f"<Participant {self.id} ({self.session.kind.value} {self.session.key_id} "
            f"v{self.session.version} e{self.session.epoch}) {self.status.value}>"
        )

    # -- driver interface ---------------------------------------------------------------------
    def handle(self, event: Event) -> list[Action[E]]:
        """Consume one event; return what to do, in order.

        Raises:
            SessionStateError: ``Start`` twice, a log event before ``Start``, or heights going
                backwards (the driver must feed the log in order).
        """
        actions = self._handle(event)
        self._posted.extend(a.message for a in actions if isinstance(a, Post))
        return actions

    def unsettled_posts(self) -> list[Post[E]]:
        """What this participant asked to post that the log has not taken yet, while it can
        still count (its phase's deadline has not passed).

        For a driver that replayed the log after a crash: replayed events ask for the same
        posts again, but the driver does not post those (most landed); a post decided just
        before the crash may not have, and without it an honest dealer would be disqualified
        (a lost deal or justification) or a node left without its share (a lost complaint).
        """
        s, h = self.session, self._height
        out: list[Post[E]] = []
        for msg in self._posted:
            if isinstance(msg, Deal):
                pending = msg.dealer not in self._deals and h < s.deal_deadline
            elif isinstance(msg, Complaint):
                st = self._deals.get(msg.dealer)
                pending = (
                    st is not None
                    and msg.complainer not in st.complaints
                    and h < s.complaint_deadline
                )
            else:
                st = self._deals.get(msg.dealer)
                pending = (
                    st is not None
                    and not st.complaints.get(msg.complainer, False)
                    and h < s.justification_deadline
                )
            if pending and self.status not in (Status.COMPLETED, Status.FAILED):
                out.append(Post(msg))
        return out

    def _handle(self, event: Event) -> list[Action[E]]:
        if isinstance(event, Start):
            self._move(Status.DEALING, "start the session")
            return self._deal()
        if self.status is Status.CREATED:
            raise SessionStateError(
                "the session has not started: handle(Start()) before feeding the log"
            )
        if event.height < self._height:
            raise SessionStateError(
                f"log height went back from {self._height} to {event.height}: feed committed "
                "messages in log order"
            )
        self._height = event.height
        if self.status in (Status.COMPLETED, Status.FAILED):
            return []
        if isinstance(event, Committed):
            return self._committed(event)
        return self._reached(event.height)

    def _move(self, to: Status, doing: str) -> None:
        if to not in TRANSITIONS[self.status]:
            raise SessionStateError(
                f"cannot {doing} while {self.status.value}: the session "
                f"{self.session.session_id.hex()[:16]} only moves "
                f"{self.status.value} -> {sorted(s.value for s in TRANSITIONS[self.status])}"
            )
        self.status = to

    # -- dealing ------------------------------------------------------------------------------
    def _deal(self) -> list[Action[E]]:
        s, g, dealer = self.session, self._group, self.dealer_id
        if dealer is None:
            return []
        if s.kind is Kind.DKG:
            constant = g.random_scalar(self._rng)
        elif s.kind is Kind.REFRESH:
            constant = 0
        else:
            assert self._old_share is not None
            constant = self._old_share.value
        coefficients = random_polynomial(g, constant, s.threshold, self._rng)
        self._coefficients = coefficients
        commitments = feldman.commit(g, coefficients)
        proof = pok.prove(
            g, constant, commitments[0], prover=dealer, context=s.session_id, rng=self._rng
        )
        sealed = []
        for j in sorted(s.committee):
            key = s.committee[j].sealing_key
            assert key is not None
            value = g.encode_scalar(evaluate(coefficients, j, g.order))
            sealed.append((j, seal(key, value, share_aad(s.session_id, dealer, j))))
        deal = Deal.create(g, s.session_id, dealer, commitments, proof, sealed, self._signer())
        return [Post(deal)]

    # -- committed messages ---------------------------------------------------------------------
    def _committed(self, event: Committed) -> list[Action[E]]:
        s, h = self.session, event.height
        try:
            msg = decode_message(self._group, event.message)
        except InvalidEncoding as exc:
            return [Rejected(h, None, f"undecodable message: {exc}")]
        if msg.session_id != s.session_id:
            return [Rejected(h, msg.sender, "message belongs to another session")]
        if isinstance(msg, Deal):
            return self._on_deal(h, msg)
        if isinstance(msg, Complaint):
            return self._on_complaint(h, msg)
        return self._on_justification(h, msg)

    def _authentic(self, msg: Any, members: Mapping[int, Any], role: str) -> str | None:
        member = members.get(msg.sender)
        if member is None:
            return f"sender {msg.sender} is not a {role} of this session"
        try:
            msg.verify_signature(member.signing_key)
        except CryptoError:
            return f"signature is not {role} {msg.sender}'s: claimed sender is not the signer"
        return None

    def _on_deal(self, h: int, deal: Deal[E]) -> list[Action[E]]:
        s, g, d = self.session, self._group, deal.dealer
        if h > s.deal_deadline:
            return [
                Rejected(
                    h, d, f"deal committed at height {h}, after the deal deadline {s.deal_deadline}"
                )
            ]
        problem = self._authentic(deal, s.dealers, "dealer")
        if problem:
            return [Rejected(h, d, problem)]
        if d in self._deals:
            return [Rejected(h, d, f"second deal from dealer {d}: the first committed deal counts")]
        problem = self._check_deal(deal)
        if problem:
            self._rejected_deals[d] = problem
            return [Rejected(h, d, f"invalid deal from dealer {d}: {problem}")]
        state = _DealState(deal.commitments, h)
        self._deals[d] = state
        me = self.id
        if me is None:
            return []
        sealed = dict(deal.sealed_shares)[me]
        assert self._sealing_key is not None  # checked in __init__ for every recipient
        try:
            value = g.decode_scalar(
                open_sealed(self._sealing_key, sealed, share_aad(s.session_id, d, me))
            )
        except CryptoError:
            return [Post(Complaint.create(g, s.session_id, me, d, self._signer()))]
        # Checked against the commitments in one batch when the deals close (_check_shares).
        state.my_share = value
        state.share_checked = d == self.dealer_id  # our own share is right by construction
        return []

    def _check_shares(self) -> list[Action[E]]:
        """Check every unchecked share received against its dealer's commitments; complain.

        One random linear combination checks them all (``sum r_i s_i G == sum_i r_i Y_i``,
        with ``Y_i`` the dealer's commitment polynomial at our id, as one multi-scalar
        multiplication); only if it fails are the shares checked one by one to find the
        culprits. The weights come from our own RNG after the deals are fixed, so a dealer
        cannot aim errors that cancel out (probability 2^-128).
        """
        s, g, me = self.session, self._group, self.id
        if me is None:
            return []
        pending = [
            d
            for d, st in sorted(self._deals.items())
            if st.my_share is not None and not st.share_checked
        ]
        powers = _powers(me, s.threshold, g.order)
        bad: list[int] = []
        if len(pending) > 1:
            weights = {d: int.from_bytes(self._rng(16), "big") | 1 for d in pending}
            points: list[E] = []
            scalars: list[int] = []
            total = 0
            for d in pending:
                st = self._deals[d]
                total += weights[d] * (st.my_share or 0)
                points.extend(st.commitments)
                scalars.extend(weights[d] * p % g.order for p in powers)
            batch_ok = g.eq(g.base_mul(total % g.order), g.lincomb(points, scalars))
        else:
            batch_ok = False
        if not batch_ok:
            for d in pending:
                st = self._deals[d]
                expected = g.lincomb(st.commitments, powers)
                if not g.eq(g.base_mul(st.my_share or 0), expected):
                    bad.append(d)
        out: list[Action[E]] = []
        for d in pending:
            st = self._deals[d]
            if d in bad:
                st.my_share = None
                out.append(Post(Complaint.create(g, s.session_id, me, d, self._signer())))
            else:
                st.share_checked = True
        return out

    def _check_deal(self, deal: Deal[E]) -> str | None:
        s, g, d = self.session, self._group, deal.dealer
        if len(deal.commitments) != s.threshold:
            return (
                f"{len(deal.commitments)} commitments, the threshold {s.threshold} needs "
                f"exactly {s.threshold}"
            )
        if [i for i, _ in deal.sealed_shares] != sorted(s.committee):
            return "sealed shares do not cover exactly the receiving committee"
        c0 = deal.commitments[0]
        if s.kind is Kind.DKG and g.is_identity(c0):
            return "constant-term commitment is the identity"
        if s.kind is Kind.REFRESH and not g.is_identity(c0):
            return "a refresh deal must commit to a zero constant term"
        if s.kind is Kind.RESHARE:
            assert s.previous is not None
            if not g.eq(c0, s.previous.verification_keys[d]):
                return "constant-term commitment is not the dealer's current verification key"
        try:
            pok.verify(g, deal.proof, c0, prover=d, context=s.session_id)
        except CryptoError:
            return "proof of knowledge of the constant term fails for this dealer and session"
        return None

    def _on_complaint(self, h: int, c: Complaint[E]) -> list[Action[E]]:
        s, d = self.session, c.dealer
        if h > s.complaint_deadline:
            return [
                Rejected(
                    h,
                    c.complainer,
                    f"complaint committed at height {h}, after the "
                    f"complaint deadline {s.complaint_deadline}",
                )
            ]
        problem = self._authentic(c, s.committee, "recipient")
        if problem:
            return [Rejected(h, c.complainer, problem)]
        state = self._deals.get(d)
        if state is None:
            return [Rejected(h, c.complainer, f"complaint against dealer {d}, who has no deal")]
        if c.complainer in state.complaints:
            return [Rejected(h, c.complainer, f"repeated complaint against dealer {d}")]
        state.complaints[c.complainer] = False
        if d == self.dealer_id and self._coefficients is not None:
            g = self._group
            value = evaluate(self._coefficients, c.complainer, g.order)
            just = Justification.create(g, s.session_id, d, c.complainer, value, self._signer())
            return [Post(just)]
        return []

    def _on_justification(self, h: int, j: Justification[E]) -> list[Action[E]]:
        s, g, d = self.session, self._group, j.dealer
        if h > s.justification_deadline:
            return [
                Rejected(
                    h,
                    d,
                    f"justification committed at height {h}, after the "
                    f"justification deadline {s.justification_deadline}",
                )
            ]
        problem = self._authentic(j, s.dealers, "dealer")
        if problem:
            return [Rejected(h, d, problem)]
        state = self._deals.get(d)
        if state is None or j.complainer not in state.complaints:
            return [Rejected(h, d, f"justification without a complaint by {j.complainer}")]
        if state.complaints[j.complainer] or d in self._disqualified:
            return [Rejected(h, d, f"complaint by {j.complainer} was already decided")]
        try:
            feldman.verify_share(g, state.commitments, Share(j.complainer, j.share), s.threshold, d)
        except CryptoError:
            self._disqualified[d] = (
                f"its justification for the complaint by {j.complainer} fails its commitments"
            )
            return []
        state.complaints[j.complainer] = True
        if j.complainer == self.id:
            state.my_share = j.share
            state.share_checked = True
        return []

    # -- deadlines ------------------------------------------------------------------------------
    def _reached(self, h: int) -> list[Action[E]]:
        s = self.session
        out: list[Action[E]] = []
        if self.status is Status.DEALING and h >= s.deal_deadline:
            if len(self._deals) < s.dealer_threshold:
                return self._fail(
                    f"only {len(self._deals)} valid deals by the deal deadline (height "
                    f"{s.deal_deadline}); {s.dealer_threshold} needed"
                )
            self._move(Status.COMPLAINING, "close the deals")
            out += self._check_shares()
        if self.status is Status.COMPLAINING and h >= s.complaint_deadline:
            self._move(Status.JUSTIFYING, "close the complaints")
        if self.status is Status.JUSTIFYING and h >= s.justification_deadline:
            out += self._finish()
        return out

    def _fail(self, summary: str) -> list[Action[E]]:
        s = self.session
        disq = self._disqualification_report()
        detail = "; ".join(f"dealer {d}: {why}" for d, why in sorted(disq.items()))
        reason = (
            f"{s.kind.value} of key {s.key_id!r} v{s.version} epoch {s.epoch} failed: {summary}"
            + (f". Excluded — {detail}" if detail else "")
            + ". Nothing changed; open a new session to retry."
        )
        self._move(Status.FAILED, "fail")
        self._coefficients = None
        self.failure = reason
        return [Failed(reason, disq)]

    def _disqualification_report(self) -> dict[int, str]:
        s = self.session
        out = dict(self._disqualified)
        for d in s.dealers:
            if d in out:
                continue
            if d not in self._deals:
                out[d] = self._rejected_deals.get(
                    d, f"no deal committed by the deal deadline (height {s.deal_deadline})"
                )
                if d in self._rejected_deals:
                    out[d] = "invalid deal: " + out[d]
                continue
            unanswered = sorted(c for c, ok in self._deals[d].complaints.items() if not ok)
            if unanswered:
                out[d] = (
                    f"did not answer the complaint(s) by {unanswered} before the justification "
                    f"deadline (height {s.justification_deadline})"
                )
        return out

    def _finish(self) -> list[Action[E]]:
        s, g = self.session, self._group
        disq = self._disqualification_report()
        self._disqualified = disq
        qualified = tuple(d for d in sorted(self._deals) if d not in disq)
        need = s.dealer_threshold
        if len(qualified) < need:
            return self._fail(
                f"only {len(qualified)} qualified dealers {list(qualified)}; {need} needed"
            )
        # Which dealers' sharings combine, and with what weights.
        if s.kind is Kind.RESHARE:
            used = qualified[:need]
            weights = lagrange_coefficients(used, g.order)
        else:
            used = qualified
            weights = {d: 1 for d in used}
        t = s.threshold
        if s.kind is Kind.RESHARE:
            combined = tuple(
                g.lincomb([self._deals[d].commitments[k] for d in used], [weights[d] for d in used])
                for k in range(t)
            )
        else:
            combined = feldman.sum_commitments(g, [self._deals[d].commitments for d in used])
        vks = {j: g.lincomb(combined, _powers(j, t, g.order)) for j in sorted(s.committee)}
        prev = s.previous
        if s.kind is Kind.DKG:
            public_key = combined[0]
        else:
            assert prev is not None
            public_key = prev.public_key
            if s.kind is Kind.REFRESH:
                vks = {j: g.add(prev.verification_keys[j], vks[j]) for j in vks}
            elif not g.eq(combined[0], prev.public_key):
                return self._fail("the reshared commitments do not reconstruct the public key")
        share: Share | None = None
        missing: tuple[int, ...] = ()
        me = self.id
        if me is not None:
            missing = tuple(d for d in used if self._deals[d].my_share is None)
            if not missing:
                value = sum(weights[d] * (self._deals[d].my_share or 0) for d in used)
                if s.kind is Kind.REFRESH:
                    assert self._old_share is not None
                    value += self._old_share.value
                candidate = Share(me, value % g.order)
                # Cheap end-to-end check: the share must match its public verification key.
                if g.eq(g.base_mul(candidate.value), vks[me]):
                    share = candidate
        result = DkgResult(
            key_id=s.key_id,
            version=s.version,
            epoch=s.epoch,
            threshold=t,
            public_key=public_key,
            verification_keys=vks,
            qualified=qualified,
            disqualified=disq,
            share=share,
            missing_from=missing,
        )
        self._move(Status.COMPLETED, "complete")
        self._coefficients = None
        self.result = result
        out: list[Action[E]] = [Completed(result)]
        # Security: a recipient that could not form its new share keeps its old one (the
        # operator must see why); everyone else erases it now that the new sharing is final.
        keep_old = me is not None and share is None
        if s.kind is not Kind.DKG and self._old_share is not None and not keep_old:
            assert prev is not None
            out.append(EraseShare(s.key_id, s.version, prev.epoch))
            self._old_share = None
        return out


def _powers(x: int, count: int, order: int) -> list[int]:
    """``[1, x, x^2, ...]`` mod ``order``: evaluating committed coefficients at ``x``."""
    out, acc = [], 1
    for _ in range(count):
        out.append(acc)
        acc = acc * x % order
    return out
