"""The crypto-bound ceiling of one decrypt, for ``bench_e2e.py``: every cryptographic step the
n nodes and the client perform, timed on one core with no network and no consensus, plus the
whole in-process pipeline (``kmsnode.testing.LocalNetwork``) as a cross-check."""

from __future__ import annotations

import cProfile
import io
import pstats
import statistics
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from kmsnode.crypto import tdh2
from kmsnode.crypto.groups import RISTRETTO255
from kmsnode.crypto.sealing import SealingPrivateKey, SealingPublicKey, open_sealed, seal
from kmsnode.crypto.shamir import Share
from kmsnode.crypto.signatures import verify_ed25519
from kmsnode.executor import share_record
from kmsnode.testing import LocalNetwork
from kmsnode.wire.requests import Decrypt, KeyKind, Request
from kmsnode.wire.responses import Response, sealed_aad

CONTEXT = {"app": "bench"}
PLAINTEXT = b"a 32-byte data key for the bench"


def _best(fn: Callable[[], Any], reps: int) -> float:
    """Median seconds per call of ``fn`` (after one warm-up)."""
    fn()
    times = []
    for _ in range(reps):
        t = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t)
    return statistics.median(times)


@dataclass
class Ceiling:
    steps: list[tuple[str, int, float]]  # (step, times per decrypt, seconds each)
    pipeline_s: float
    profile_top: list[str]

    @property
    def crypto_s(self) -> float:
        return sum(k * s for _, k, s in self.steps)


def measure_ceiling(reps: int, pipeline_n: int) -> Ceiling:
    """See the module docstring (step 1); one thread, this process."""
    with tempfile.TemporaryDirectory(prefix="bench-e2e-ceiling-") as d:
        net = LocalNetwork(Path(d))
        try:
            core = net.client
            key_id = net.create_key(KeyKind.ENCRYPT, "bench")
            material = net.key_material(key_id)
            public_key, vks = material.public_key, material.verification_keys
            ct = tdh2.encrypt(
                public_key, PLAINTEXT, key_id=key_id, key_version=material.version, context=CONTEXT
            )
            n, t = net.n, net.t
            g = RISTRETTO255

            # The real objects of one decrypt, built once, each step then timed on its own.
            prepared = core.prepare(Decrypt(ct, dict(CONTEXT)), now_ms=net.time_ms)
            req = prepared.request
            reply_pub = SealingPublicKey.decode(req.reply_key)  # type: ignore[arg-type]
            ex = net.executors[1]
            record = share_record(key_id, material.version, material.epoch)
            share = Share(1, g.decode_scalar(ex.keystore.get(record)))
            vk = g.base_mul(share.value)
            partial = tdh2.partial_decrypt(share, public_key, ct, CONTEXT, verification_key=vk)
            aad = sealed_aad(req.request_id, 1)
            sealed = seal(reply_pub, partial.encode(g), aad)
            resp = Response(
                net.genesis.chain_id,
                req.request_id,
                1,
                1,
                "decrypt",
                result={"key_id": key_id, "version": material.version, "epoch": material.epoch},
                sealed=sealed,
            )
            signed = resp.signed(net.identities[1].signing_key)
            node_pub = net.genesis.node(1).signing_key
            # t real partials for the combination step.
            partials = []
            for i in range(1, t + 1):
                sh = Share(i, g.decode_scalar(net.executors[i].keystore.get(record)))
                partials.append(
                    tdh2.partial_decrypt(
                        sh, public_key, ct, CONTEXT, verification_key=g.base_mul(sh.value)
                    )
                )
            reply_key = prepared.reply_key
            assert reply_key is not None

            def sign_request() -> None:
                Request(req.chain_id, req.client, req.nonce, req.op, req.reply_key).signed(
                    net.admin
                )

            steps: list[tuple[str, int, Callable[[], Any]]] = [
                (
                    "client: ephemeral reply key (X25519 + ML-KEM-768)",
                    1,
                    SealingPrivateKey.generate,
                ),
                ("client: request signature (Ed25519)", 1, sign_request),
                # Not ``req.verify``: it memoizes signatures that verified (a node checks each
                # request twice), so timing it in a loop would time a dictionary look-up.
                (
                    "node: request signature check",
                    n,
                    lambda: verify_ed25519(req.client, req.signature, req.signing_bytes()),
                ),
                ("node: share read (keystore AES-GCM)", n, lambda: ex.keystore.get(record)),
                (
                    "node: ciphertext check + partial + DLEQ proof",
                    n,
                    lambda: tdh2.partial_decrypt(
                        share, public_key, ct, CONTEXT, verification_key=vk
                    ),
                ),
                (
                    "node: seal partial to reply key",
                    n,
                    lambda: seal(reply_pub, partial.encode(g), aad),
                ),
                ("node: response signature", n, lambda: resp.signed(net.identities[1].signing_key)),
                ("client: response signature check", t, lambda: signed.verify(node_pub)),
                ("client: open sealed partial", t, lambda: open_sealed(reply_key, sealed, aad)),
                (
                    "client: verify partials + combine + DEM",
                    1,
                    lambda: tdh2.combine(public_key, ct, partials, vks, t, CONTEXT),
                ),
            ]
            timed = [(name, k, _best(fn, reps)) for name, k, fn in steps]

            # The whole pipeline (crypto + state machines + encodings), with its profile.
            def one() -> None:
                c = net.run(core.prepare(Decrypt(ct, dict(CONTEXT)), now_ms=net.time_ms), material)
                assert c.done and c.result == PLAINTEXT

            one()
            t0 = time.perf_counter()
            for _ in range(pipeline_n):
                one()
            pipeline_s = (time.perf_counter() - t0) / pipeline_n
            prof = cProfile.Profile()
            prof.enable()
            for _ in range(max(20, pipeline_n // 4)):
                one()
            prof.disable()
            buf = io.StringIO()
            pstats.Stats(prof, stream=buf).sort_stats("tottime").print_stats(8)
            top = [
                ln
                for ln in buf.getvalue().splitlines()
                if ln.strip()[:1].isdigit() and "function calls" not in ln
            ][:8]
            return Ceiling(timed, pipeline_s, top)
        finally:
            net.close()


# -- the testnet ----------------------------------------------------------------------------------
