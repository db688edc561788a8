"""Errors raised by the network layer (``kmsnode.net``).

The tree::

    NetError                     base of everything raised here
    ├── FrameError               a peer sent bytes we refuse; the stream that carried them is closed
    │   ├── FrameTooLarge        length prefix (or an encoded message) above the protocol's limit
    │   ├── MalformedFrame       not one valid msgpack object, or cut short at end of stream
    │   ├── UnsupportedVersion   a version field this protocol does not speak
    │   └── UnexpectedShape      valid msgpack, but not ``[version, kind, body]`` with sane types
    ├── IdentityError            bad key bytes or peer id for a node identity (also ValueError)
    ├── CommitteeError           a committee description that cannot work (also ValueError)
    ├── UnknownNode              ``send`` to a node id outside the committee (also KeyError)
    ├── RequestFailed            a ``/kms/client/1`` request got no complete answer
    └── MeshNotRunning           the mesh was used before ``run`` started or after it stopped

``FrameError`` is what a *remote* peer can cause: the receiving side logs it with a reason and
closes that one stream; it never escapes into the node. ``FrameTooLarge`` is also raised to a
local caller whose own message is too big for the protocol (a programmer error at that point).
"""

from __future__ import annotations

__all__ = [
    "CommitteeError",
    "FrameError",
    "FrameTooLarge",
    "IdentityError",
    "MalformedFrame",
    "MeshNotRunning",
    "NetError",
    "RequestFailed",
    "UnexpectedShape",
    "UnknownNode",
    "UnsupportedVersion",
]


class NetError(Exception):
    """Base class of the network layer's errors."""


class FrameError(NetError):
    """A frame was refused; the stream it came on cannot be trusted any more.

    Attributes:
        reason: a short, payload-free explanation that is safe to log.
    """

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


class FrameTooLarge(FrameError):
    """A frame's length exceeds the protocol's limit.

    Attributes:
        size: the announced or encoded size in bytes.
        limit: the protocol's limit in bytes.
    """

    def __init__(self, size: int, limit: int) -> None:
        super().__init__(f"frame of {size} bytes exceeds the limit of {limit}")
        self.size = size
        self.limit = limit


class MalformedFrame(FrameError):
    """A frame body is not exactly one well-formed msgpack object, or the stream ended mid-frame."""


class UnsupportedVersion(FrameError):
    """A frame carries a version this protocol does not accept.

    Attributes:
        version: the version the peer sent.
        accepted: the versions this side accepts.
    """

    def __init__(self, version: int, accepted: frozenset[int]) -> None:
        super().__init__(f"frame version {version} not in {sorted(accepted)}")
        self.version = version
        self.accepted = accepted


class UnexpectedShape(FrameError):
    """A frame decodes but is not ``[version: int, kind: str, body]`` within limits."""


class IdentityError(NetError, ValueError):
    """Key material or a peer id that cannot serve as a node's network identity."""


class CommitteeError(NetError, ValueError):
    """A committee description that cannot work (duplicate ids, a peer id not matching its key)."""


class UnknownNode(NetError, KeyError):
    """A node id that is not a member of the committee.

    Attributes:
        node_id: the id asked for.
    """

    def __init__(self, node_id: int) -> None:
        super().__init__(node_id)
        self.node_id = node_id

    def __str__(self) -> str:
        return f"node {self.node_id} is not in the committee"


class RequestFailed(NetError):
    """A request/response exchange ended without a complete answer.

    Attributes:
        peer_id: the peer asked.
        reason: what went wrong (connection, timeout, a refused frame); safe to log.
    """

    def __init__(self, peer_id: str, reason: str) -> None:
        super().__init__(f"request to {peer_id} failed: {reason}")
        self.peer_id = peer_id
        self.reason = reason


class MeshNotRunning(NetError, RuntimeError):
    """The mesh was asked to send before ``run`` started it, or after it stopped."""
