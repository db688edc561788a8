"""The client's error tree (what callers of ``DistributedKMS`` catch).

::

    ClientError
    ├── AccessDenied          the nodes refused: the client lacks permission (f+1 agree)
    ├── KeyNotFound           no such key
    ├── KeyUnavailable        the key exists but cannot serve (DKG running, failed, disabled)
    ├── InvalidCiphertextError opaque: tampered ciphertext, wrong key or wrong context
    ├── NonceReused           another request of this client had this nonce (retried once)
    ├── RequestRejected       any other refusal the nodes agree on; ``code`` says which
    ├── SumOutOfBound         a decrypted sum lies outside [0, bound): ask with a larger one
    ├── StaleKeyMaterial      partials of a newer share epoch (refetched and retried first)
    ├── SignersFailed         FROST signers the log chose did not all sign (retried first)
    ├── QuorumUnavailable     not enough valid answers in time; says how many answered, which
    │                         nodes misbehaved and which run another genesis
    └── GenesisMismatch       f + 1 nodes run another genesis than the client's configuration

Every error that results from a node's answer carries ``code`` (the wire error code).
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any


class ClientError(Exception):
    """Base of every error the client raises."""

    code = "client_error"


class RequestRejected(ClientError):
    """The nodes agree the request cannot be served; ``code`` and the message say why."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(f"{code}: {message}" if message else code)
        self.code = code


class AccessDenied(RequestRejected):
    """The client has no permission for this operation on this key."""


class KeyNotFound(RequestRejected):
    """No key with that id exists."""


class KeyUnavailable(RequestRejected):
    """The key cannot serve now (still being generated, failed, or of another kind)."""


class InvalidCiphertextError(RequestRejected):
    """Opaque: the ciphertext was tampered with, or the key or encryption context is wrong."""

    def __init__(self, code: str = "invalid_ciphertext", message: str = "") -> None:
        super().__init__(code, message or "invalid ciphertext")


class NonceReused(RequestRejected):
    """The nodes had served another request of this client under the same nonce (the client
    library signs the request again with a fresh one, once, before raising this)."""


class SumOutOfBound(ClientError):
    """A sum decrypted correctly (t proven partials) but its value is not in ``[0, bound)``:
    ask again with a larger bound (up to 2^40), or the total is negative."""

    code = "sum_out_of_bound"

    def __init__(self, bound: int) -> None:
        super().__init__(f"the decrypted sum is not in [0, {bound}): try a larger bound")
        self.bound = bound


class StaleKeyMaterial(ClientError):
    """At least ``f + 1`` nodes answered with partials of a newer share epoch (or, for a
    signature, key version) than the client held keys for (the key was refreshed or rotated
    since it fetched them).

    The client library fetches the key's current verification keys and asks again (up to
    ``STALE_RETRIES`` times); callers see this only if refreshes keep completing meanwhile,
    or when they drive the sans-I/O core themselves.
    """

    code = "stale_key_material"
    prepared: Any = None
    """The request that was answered (``client._core.Prepared``), set by the client: the
    nodes keep their answers to it, which the newer keys can check."""

    def __init__(self, epoch: int, version: int) -> None:
        super().__init__(
            f"the nodes answered under key version {version}, share epoch {epoch}: "
            "fetch the key again"
        )
        self.epoch = epoch
        self.version = version


class SignersFailed(ClientError):
    """Some of the signers the log chose for a FROST signature refused, went silent or sent
    an invalid share (``nodes``; those among ``misbehaving`` sent a share that does not
    verify). The client library asks again with them to be avoided (up to ``SIGN_ATTEMPTS``
    times); callers see this only if every attempt failed so."""

    code = "signers_failed"

    def __init__(self, nodes: Iterable[int], misbehaving: Iterable[int] = ()) -> None:
        self.nodes = tuple(sorted(set(nodes)))
        self.misbehaving = tuple(sorted(set(misbehaving)))
        super().__init__(f"FROST signers {list(self.nodes)} did not deliver valid shares")


class QuorumUnavailable(ClientError):
    """Too few valid answers arrived in time."""

    code = "quorum_unavailable"

    def __init__(
        self,
        answered: int,
        needed: int,
        misbehaving: Iterable[int] = (),
        genesis_differs: Iterable[int] = (),
    ) -> None:
        self.answered = answered
        self.needed = needed
        self.misbehaving = tuple(sorted(set(misbehaving)))
        self.genesis_differs = tuple(sorted(set(genesis_differs)))
        """Nodes that said they run another genesis than this client's (a stale or wrong
        client configuration, or misconfigured nodes)."""
        bad = f"; misbehaving nodes: {list(self.misbehaving)}" if self.misbehaving else ""
        if self.genesis_differs:
            bad += (
                f"; nodes {list(self.genesis_differs)} run another genesis than this client's "
                "(check the client configuration's genesis file, or those nodes')"
            )
        super().__init__(
            f"only {answered} valid answers, {needed} needed: too many nodes are down or "
            f"unreachable{bad}"
        )


class GenesisMismatch(ClientError):
    """At least f + 1 nodes run another genesis than this client's, and at most f run it: the
    client's configuration is stale or wrong (e.g. from another network), so nothing it asks
    can be served right."""

    code = "genesis_mismatch"

    def __init__(self, nodes: Iterable[int], cause: ClientError) -> None:
        self.nodes = tuple(sorted(set(nodes)))
        super().__init__(
            f"nodes {list(self.nodes)} run another genesis than this client's: check the "
            f"client configuration's genesis file ({cause})"
        )


ERRORS: dict[str, type[RequestRejected]] = {
    "access_denied": AccessDenied,
    "key_not_found": KeyNotFound,
    "key_unavailable": KeyUnavailable,
    "wrong_key_kind": KeyUnavailable,
    "invalid_ciphertext": InvalidCiphertextError,
    "nonce_reused": NonceReused,
}


def error_for(code: str, message: str) -> RequestRejected:
    """The typed error for a wire error code."""
    cls = ERRORS.get(code, RequestRejected)
    if cls is InvalidCiphertextError:
        return InvalidCiphertextError(code)
    return cls(code, message)
