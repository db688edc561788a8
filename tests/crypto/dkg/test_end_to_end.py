"""End to end in one process: DKG, refresh and reshare, then the schemes that use the keys."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

from kmsnode.crypto import shamir, tdh2
from kmsnode.crypto.dkg import (
    Completed,
    DkgResult,
    EraseShare,
    Kind,
    Participant,
    Session,
)
from kmsnode.crypto.dkg.testing import Identity, Simulation, committee
from kmsnode.crypto.errors import NotEnoughPartials
from kmsnode.crypto.groups import BLS12_381_G1, ED25519, RISTRETTO255, Group
from kmsnode.crypto.shamir import Share

from ._sim import DEADLINES, LAST_HEIGHT, assert_agreement, previous_from, results, run_dkg


def test_dkg_over_every_group(group: Group[Any]) -> None:
    sim, _, _ = run_dkg(group, 4, 3)
    rs = results(sim, [1, 2, 3, 4])
    assert_agreement(group, rs, 3)
    assert rs[0].qualified == (1, 2, 3, 4)


# -- the schemes, given shares and public outputs -------------------------------------------------
def tdh2_works(result: DkgResult[Any], shares: list[Share]) -> None:
    ct = tdh2.encrypt(result.public_key, b"attack at dawn", key_id="key-1", key_version=1)
    partials = [tdh2.partial_decrypt(s, result.public_key, ct) for s in shares]
    plaintext, culprits = tdh2.combine(
        result.public_key, ct, partials, result.verification_keys, result.threshold
    )
    assert plaintext == b"attack at dawn" and culprits == ()


def frost_works(result: DkgResult[Any], shares: list[Share]) -> None:
    from kmsnode.crypto import frost

    suite = frost.FROST_ED25519_SHA512
    g = suite.group
    t = result.threshold
    public = frost.PublicKeyPackage(dict(result.verification_keys), result.public_key, t)
    keys = [
        frost.KeyPackage(s.id, s.value, result.verification_keys[s.id], result.public_key, t)
        for s in shares[:t]
    ]
    message = b"pay 10 to bob"
    rounds = [frost.commit(suite, k) for k in keys]
    package = frost.SigningPackage(tuple(c for _, c in rounds), message)
    sig_shares = [
        frost.sign(suite, package, nonces, k, message)
        for (nonces, _), k in zip(rounds, keys, strict=True)
    ]
    signature = frost.aggregate(suite, package, sig_shares, public)
    # OpenSSL, through `cryptography`, is the independent verifier.
    Ed25519PublicKey.from_public_bytes(g.encode(result.public_key)).verify(signature, message)


def bls_works(result: DkgResult[Any], shares: list[Share]) -> None:
    from py_ecc.bls import G2ProofOfPossession  # type: ignore[attr-defined]

    from kmsnode.crypto import bls

    message = b"block 42"
    partials = [bls.partial_sign(s, message) for s in shares]
    signature = bls.combine(partials, message, result.verification_keys, result.threshold)
    pk = BLS12_381_G1.encode(result.public_key)
    assert G2ProofOfPossession.Verify(pk, message, signature)  # type: ignore[arg-type]


SCHEMES = [
    pytest.param(RISTRETTO255, tdh2_works, id="tdh2"),
    pytest.param(ED25519, frost_works, id="frost-openssl"),
    pytest.param(BLS12_381_G1, bls_works, id="bls-py_ecc"),
]


def refresh(
    group: Group[Any], ids: Mapping[int, Identity], before: list[DkgResult[Any]]
) -> Simulation[int, Any]:
    prev = previous_from(before[0], ids, epoch=before[0].epoch)
    session = Session(
        key_id="key-1",
        version=1,
        epoch=prev.epoch + 1,
        group=group,
        kind=Kind.REFRESH,
        committee=committee(ids),
        threshold=prev.threshold,
        previous=prev,
        **DEADLINES,
    )
    parts = {
        i: Participant(
            session,
            signing_key=k.signing_key,
            sealing_key=k.sealing_key,
            id=i,
            old_share=before[i - 1].share,
        )
        for i, k in ids.items()
    }
    sim: Simulation[int, Any] = Simulation(group, parts)
    sim.run(LAST_HEIGHT)
    return sim


@pytest.mark.parametrize(("group", "works"), SCHEMES)
def test_dkg_then_scheme(group: Group[Any], works: Any) -> None:
    sim, _, _ = run_dkg(group, 4, 3)
    rs = results(sim, [1, 2, 3, 4])
    works(rs[0], [r.share for r in rs[1:]])  # any t of them


@pytest.mark.parametrize(("group", "works"), SCHEMES)
def test_refresh_keeps_the_key_and_old_new_mix_fails(group: Group[Any], works: Any) -> None:
    sim, _, ids = run_dkg(group, 4, 3)
    old = results(sim, [1, 2, 3, 4])
    sim2 = refresh(group, ids, old)
    new = results(sim2, [1, 2, 3, 4])
    assert_agreement(group, new, 3)
    assert group.eq(new[0].public_key, old[0].public_key)
    assert new[0].threshold == 3 and new[0].epoch == 1
    old_shares = [r.share for r in old]
    new_shares = [r.share for r in new]
    assert all(o.value != n.value for o, n in zip(old_shares, new_shares, strict=True))  # type: ignore[union-attr]
    works(new[0], new_shares[:3])
    # The old share is erased only after the new result is final, and only then.
    for i in ids:
        kinds = [type(a) for a in sim2.actions[i] if isinstance(a, (Completed, EraseShare))]
        assert kinds == [Completed, EraseShare]
        erase = next(a for a in sim2.actions[i] if isinstance(a, EraseShare))
        assert (erase.key_id, erase.version, erase.epoch) == ("key-1", 1, 0)
    # Old and new shares mixed interpolate to garbage.
    mixed = [old_shares[0], new_shares[1], new_shares[2]]
    secret = shamir.recover(group, mixed, 3)  # type: ignore[arg-type]
    assert not group.eq(group.base_mul(secret), old[0].public_key)
    if works is tdh2_works:
        with pytest.raises(NotEnoughPartials):
            tdh2_works(new[0], mixed)


def test_reshare_4_to_7_with_a_new_threshold_keeps_the_public_key() -> None:
    g = RISTRETTO255
    sim, _, old_ids = run_dkg(g, 4, 3)
    old = results(sim, [1, 2, 3, 4])
    # Members 1..3 stay (same ids), 4 leaves, four newcomers take ids 4..7; t' = 5.
    new_ids = {i: old_ids[i] for i in (1, 2, 3)} | {j: Identity.generate() for j in range(4, 8)}
    prev = previous_from(old[0], old_ids, epoch=0)
    session = Session(
        key_id="key-1",
        version=1,
        epoch=1,
        group=g,
        kind=Kind.RESHARE,
        committee=committee(new_ids),
        threshold=5,
        previous=prev,
        **DEADLINES,
    )
    parts: dict[str, Participant[Any]] = {}
    for i in (1, 2, 3):
        k = old_ids[i]
        parts[f"stay{i}"] = Participant(
            session,
            signing_key=k.signing_key,
            sealing_key=k.sealing_key,
            id=i,
            old_id=i,
            old_share=old[i - 1].share,
        )
    k4 = old_ids[4]
    parts["leave4"] = Participant(
        session,
        signing_key=k4.signing_key,
        sealing_key=None,
        id=None,
        old_id=4,
        old_share=old[3].share,
    )
    for j in range(4, 8):
        k = new_ids[j]
        parts[f"new{j}"] = Participant(
            session, signing_key=k.signing_key, sealing_key=k.sealing_key, id=j
        )
    sim2: Simulation[str, Any] = Simulation(g, parts)
    sim2.run(LAST_HEIGHT)
    receivers = ["stay1", "stay2", "stay3", "new4", "new5", "new6", "new7"]
    new = results(sim2, receivers)
    assert_agreement(g, new, 5)
    assert g.eq(new[0].public_key, old[0].public_key)
    assert new[0].threshold == 5 and len(new[0].verification_keys) == 7
    tdh2_works(new[0], [r.share for r in new[2:]])  # type: ignore[misc]
    with pytest.raises(NotEnoughPartials):  # four new shares are below t' = 5
        tdh2_works(new[0], [r.share for r in new[3:]])  # type: ignore[misc]
    leaving = [a for a in sim2.actions["leave4"] if isinstance(a, (Completed, EraseShare))]
    assert [type(a) for a in leaving] == [Completed, EraseShare]
    assert leaving[0].result.share is None  # type: ignore[union-attr]
    assert all(any(isinstance(a, EraseShare) for a in sim2.actions[f"stay{i}"]) for i in (1, 2, 3))
    assert not any(isinstance(a, EraseShare) for a in sim2.actions["new4"])


def test_reshare_rejects_a_dealer_that_changes_its_share() -> None:
    """A reshare deal whose constant commitment is not the dealer's old Y_i is refused."""
    g = RISTRETTO255
    sim, _, ids = run_dkg(g, 4, 3)
    old = results(sim, [1, 2, 3, 4])
    prev = previous_from(old[0], ids, epoch=0)
    session = Session(
        key_id="key-1",
        version=1,
        epoch=1,
        group=g,
        kind=Kind.RESHARE,
        committee=committee(ids),
        threshold=3,
        previous=prev,
        **DEADLINES,
    )
    cheat = Share(2, (old[1].share.value + 1) % g.order)  # type: ignore[union-attr]
    parts = {
        i: Participant(
            session,
            signing_key=k.signing_key,
            sealing_key=k.sealing_key,
            id=i,
            old_id=i,
            old_share=cheat if i == 2 else old[i - 1].share,
        )
        for i, k in ids.items()
    }
    sim2: Simulation[int, Any] = Simulation(g, parts)
    sim2.run(LAST_HEIGHT)
    new = results(sim2, [1, 2, 3, 4])
    assert_agreement(g, new, 3)
    assert 2 in new[0].disqualified and "verification key" in new[0].disqualified[2]
    assert g.eq(new[0].public_key, old[0].public_key)


def test_progress_reports_public_state_only() -> None:
    sim, session, _ = run_dkg(RISTRETTO255, 4, 3)
    p = sim.participants[2]
    progress = p.progress()
    assert progress["status"] == "completed" and progress["deals"] == 4
    assert progress["disqualified"] == {}
    assert (progress["key_id"], progress["version"], progress["epoch"]) == ("key-1", 1, 0)
    assert progress["deadlines"]["deal"] == session.deal_deadline
    # Nothing secret: the share value appears nowhere in what the console would show.
    assert p.result is not None and p.result.share is not None
    assert str(p.result.share.value) not in repr(progress)
