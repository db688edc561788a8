"""Demo of the threshold-encryption core: 4 parties, threshold 3, TDH2 with a context.

Until the node network exists this is the main job: it deals a ristretto255 key to four
parties, encrypts under the public key with an encryption context, has each party produce a
DLEQ-proven partial decryption, combines three of them, and shows a corrupted partial being
caught and named. (The key is dealt by a trusted dealer *in this demo only*; the nodes will
generate keys with the DKG, so that no key is ever whole anywhere.)
"""

from __future__ import annotations

import time
from dataclasses import replace

from kmsnode.crypto import elgamal, feldman, shamir, tdh2
from kmsnode.crypto.errors import InvalidCiphertext, NotEnoughPartials
from kmsnode.crypto.groups import RISTRETTO255 as G


def step(text: str) -> None:
    print(f"\n== {text}")


def main() -> None:
    n, t = 4, 3
    step(f"deal a ristretto255 key to {n} parties, threshold {t}")
    shares, coefficients = shamir.split(G, G.random_scalar(), n, t)
    commitments = feldman.commit(G, coefficients)
    del coefficients  # the demo dealer forgets the polynomial at once
    for share in shares:
        feldman.verify_share(G, commitments, share, t)
    public_key = commitments[0]
    vks = feldman.verification_keys(G, commitments, range(1, n + 1))
    print(f"public key   {public_key.hex()}")
    for i, vk in vks.items():
        print(f"party {i}      verification key {vk.hex()[:32]}... share {shares[i - 1]!r}")

    step("encrypt with an encryption context")
    context = {"app": "payroll", "tenant": "acme"}
    message = b"the quarterly numbers"
    ct = tdh2.encrypt(public_key, message, key_id="demo-key", key_version=1, context=context)
    print(f"context      {context}")
    print(f"ciphertext   {len(ct)} bytes: {ct.hex()[:64]}...")

    step("each party checks the ciphertext and returns a DLEQ-proven partial")
    partials = []
    for share in shares:
        start = time.perf_counter()
        partials.append(tdh2.partial_decrypt(share, public_key, ct, context))
        print(f"party {share.id}      partial in {(time.perf_counter() - start) * 1e3:.2f} ms")

    step(f"the client verifies and combines {t} partials")
    plaintext, culprits = tdh2.combine(public_key, ct, partials[:t], vks, t, context)
    print(f"plaintext    {plaintext!r}   (invalid partials: {list(culprits) or 'none'})")
    assert plaintext == message

    step("a corrupted partial from party 2 is caught and named")
    corrupted = replace(partials[1], value=G.base_mul(12345))
    plaintext, culprits = tdh2.combine(
        public_key, ct, [partials[0], corrupted, partials[2], partials[3]], vks, t, context
    )
    print(f"plaintext    {plaintext!r}   decrypted anyway with parties 1, 3, 4")
    print(f"culprits     {list(culprits)}")
    try:
        tdh2.combine(public_key, ct, [partials[0], corrupted, partials[2]], vks, t, context)
    except NotEnoughPartials as exc:
        print(f"with only 1, 2*, 3: {exc}")

    step("a wrong context gets one opaque error, and no party releases a partial")
    try:
        tdh2.partial_decrypt(shares[0], public_key, ct, {"app": "Payroll", "tenant": "acme"})
    except InvalidCiphertext as exc:
        print(f"party 1 refuses: {exc}")

    step("homomorphic sum: encrypted counters added without decrypting them")
    values = [17, 25, 1000]
    total = elgamal.add(*[elgamal.encrypt_int(public_key, v) for v in values])
    eg_partials = [elgamal.partial_decrypt(s, total) for s in shares[:t]]
    value, _ = elgamal.decrypt_sum(total, eg_partials, vks, t, bound=2**20)
    print(f"encrypted {values} -> threshold-decrypted sum {value}")
    print("\n(for the demo one key serves TDH2 and ElGamal; the service gives every key one kind)")


if __name__ == "__main__":
    main()
