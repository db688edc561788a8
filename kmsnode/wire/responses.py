"""Node responses: one per node per request, signed by the node, partials sealed to the client.

``[version, chain_id, request_id, node_id, height, op, error, message, result, sealed, sig]``.
``result`` is a map of public values (the same on every honest node, so a client can accept it
once ``f + 1`` nodes agree); ``sealed`` carries what only the requester may see (a partial
decryption sealed to the request's reply key, with AAD naming request and node). The signature
covers everything else under a domain tag and the chain id.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from ..crypto.encoding import transcript, u16
from ..crypto.signatures import verify_ed25519
from ..errors import MalformedMessage
from ._codec import Reader, pack, unpack

VERSION = 1
_SIGN_DST = b"kmsnode/response/v1"
_SEAL_DST = b"kmsnode/sealed-result/v1"


def sealed_aad(request_id: bytes, node_id: int) -> bytes:
    """The AAD a node's sealed result is bound with: this request, this node."""
    return transcript(_SEAL_DST, request_id, u16(node_id))


def _check_result(value: Any, depth: int = 0) -> None:
    if depth > 4:
        raise MalformedMessage("response.result nests too deeply")
    if isinstance(value, dict):
        for k, v in value.items():
            if not isinstance(k, str):
                raise MalformedMessage("response.result keys must be strings")
            _check_result(v, depth + 1)
    elif isinstance(value, list):
        for v in value:
            _check_result(v, depth + 1)
    elif not (value is None or isinstance(value, (str, bytes, int, bool))):
        raise MalformedMessage("response.result holds an unsupported type")


@dataclass(frozen=True)
class Response:
    """A node's signed answer to one request (see the module docstring)."""

    chain_id: str
    request_id: bytes
    node_id: int
    height: int
    op: str
    error: str | None = None
    message: str = ""
    result: dict[str, Any] | None = None
    sealed: bytes | None = field(default=None, repr=False)
    signature: bytes = b""

    def _body(self) -> list[Any]:
        return [
            VERSION,
            self.chain_id,
            self.request_id,
            self.node_id,
            self.height,
            self.op,
            self.error,
            self.message,
            self.result,
            self.sealed,
        ]

    def signing_bytes(self) -> bytes:
        return transcript(_SIGN_DST, self.chain_id.encode(), pack(self._body()))

    def encode(self) -> bytes:
        return pack([*self._body(), self.signature])

    @classmethod
    def decode(cls, data: bytes) -> Response:
        """Strictly decode a response (``verify`` checks the signature).

        Raises:
            MalformedMessage: anything that is not a well-formed response.
        """
        r = Reader(unpack(data), "response", 11)
        if r.integer(0, "version") != VERSION:
            raise MalformedMessage(f"response.version: only version {VERSION} is supported")
        error = r.raw(6)
        if error is not None and (not isinstance(error, str) or not 0 < len(error) <= 64):
            raise MalformedMessage("response.error: expected null or a short string")
        result = r.raw(8)
        if result is not None and not isinstance(result, dict):
            raise MalformedMessage("response.result: expected null or a map")
        _check_result(result)
        return cls(
            chain_id=r.text(1, "chain_id", 64),
            request_id=r.blob(2, "request_id", 32),
            node_id=r.integer(3, "node_id", 1, 2**16 - 1),
            height=r.integer(4, "height"),
            op=r.text(5, "op", 32),
            error=error,
            message=r.text(7, "message", 1024, empty=True),
            result=result,
            sealed=r.optional_blob(9, "sealed"),
            signature=r.blob(10, "signature", 64),
        )

    def signed(self, key: Ed25519PrivateKey) -> Response:
        """This response signed by the node's signing key."""
        return Response(**{**self.__dict__, "signature": key.sign(self.signing_bytes())})

    def verify(self, node_key: bytes) -> None:
        """Check the node's signature against its genesis signing key.

        Raises:
            InvalidSignature: it does not verify.
        """
        verify_ed25519(node_key, self.signature, self.signing_bytes())

    def agreement_key(self) -> bytes:
        """What must match across nodes for a public answer to count (not node, not sealed)."""
        return pack([self.request_id, self.op, self.error, self.result])
