"""The prime-order group abstraction that every scheme is written against.

One implementation of Shamir, Feldman, DLEQ, TDH2, ElGamal, FROST and BLS works over any
``Group``: the group supplies arithmetic, strict encodings and hashing. Scalars are Python ints
in ``[0, order)``; elements are whatever the backend uses (canonical bytes for the libsodium
groups, library objects for BLS12-381) and are only ever created by the group itself, so every
element inside the code is valid.

Security: ``base_mul`` and ``mul`` may receive secret scalars and must be constant time;
``lincomb`` is for public scalars and points only and may be variable time.
"""

from __future__ import annotations

import secrets
from abc import ABC, abstractmethod
from collections.abc import Callable, Sequence
from typing import Generic, TypeVar

from ..errors import InvalidEncoding

E = TypeVar("E")

Rng = Callable[[int], bytes]
"""A source of random bytes, ``rng(n) -> n bytes``; ``secrets.token_bytes`` by default."""

default_rng: Rng = secrets.token_bytes


class Group(ABC, Generic[E]):
    """A cyclic group of prime order with strict encodings and domain-separated hashing."""

    name: str
    """Short stable name, bound into every transcript over this group."""
    order: int
    """The prime order ``q`` of the group (and so the scalar field's modulus)."""
    element_size: int
    scalar_size: int
    scalar_byteorder: str = "little"
    """Byte order of ``encode_scalar`` ("little" for the 25519 groups, "big" for BLS12-381)."""

    # -- arithmetic -------------------------------------------------------------------------
    @abstractmethod
    def identity(self) -> E:
        """The neutral element."""

    @abstractmethod
    def generator(self) -> E:
        """The standard generator."""

    @abstractmethod
    def base_mul(self, k: int) -> E:
        """``k * G`` in constant time (``k`` may be secret)."""

    @abstractmethod
    def mul(self, element: E, k: int) -> E:
        """``k * element`` in constant time (``k`` may be secret)."""

    @abstractmethod
    def add(self, a: E, b: E) -> E:
        """``a + b``."""

    @abstractmethod
    def sub(self, a: E, b: E) -> E:
        """``a - b``."""

    @abstractmethod
    def eq(self, a: E, b: E) -> bool:
        """Whether two elements are equal."""

    def is_identity(self, element: E) -> bool:
        """Whether ``element`` is the neutral element."""
        return self.eq(element, self.identity())

    def lincomb(self, elements: Sequence[E], scalars: Sequence[int]) -> E:
        """``sum(s_i * P_i)`` for *public* scalars and points (may be variable time)."""
        acc = self.identity()
        for element, k in zip(elements, scalars, strict=True):
            acc = self.add(acc, self.mul(element, k % self.order))
        return acc

    def sum(self, elements: Sequence[E]) -> E:
        """The sum of ``elements`` (the identity for none)."""
        acc = self.identity()
        for element in elements:
            acc = self.add(acc, element)
        return acc

    # -- encodings --------------------------------------------------------------------------
    @abstractmethod
    def encode(self, element: E) -> bytes:
        """The canonical encoding of ``element``."""

    @abstractmethod
    def decode(self, data: bytes, *, allow_identity: bool = False) -> E:
        """Decode a canonical, on-curve, prime-order-subgroup element.

        Raises:
            InvalidEncoding: wrong length, non-canonical, off the curve or subgroup, or the
                identity when ``allow_identity`` is false.
        """

    @abstractmethod
    def encode_scalar(self, k: int) -> bytes:
        """The canonical ``scalar_size``-byte encoding of ``k`` (reduced mod ``order``)."""

    @abstractmethod
    def decode_scalar(self, data: bytes) -> int:
        """Decode a canonical scalar.

        Raises:
            InvalidEncoding: wrong length or not below ``order``.
        """

    # -- hashing and randomness ---------------------------------------------------------------
    @abstractmethod
    def hash_to_scalar(self, dst: bytes, msg: bytes) -> int:
        """A uniformly distributed scalar from ``msg`` under domain tag ``dst``."""

    @abstractmethod
    def hash_to_element(self, dst: bytes, msg: bytes) -> E:
        """A group element with unknown discrete log from ``msg`` under domain tag ``dst``."""

    def random_scalar(self, rng: Rng = default_rng) -> int:
        """A uniformly random non-zero scalar (64 bytes reduced: bias below 2^-250)."""
        while True:
            k = int.from_bytes(rng(64), "little") % self.order
            if k:
                return k

    # -- helpers shared by the backends -------------------------------------------------------
    def _check_length(self, data: bytes, size: int, what: str) -> None:
        if not isinstance(data, (bytes, bytearray)) or len(data) != size:
            raise InvalidEncoding(f"{self.name}: {what} must be {size} bytes")

    def __repr__(self) -> str:
        return f"<Group {self.name}>"
