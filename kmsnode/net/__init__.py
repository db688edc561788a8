"""kmsnode.net: the node's network layer on py-libp2p (the only package that imports libp2p).

Tiers:

- everyday API: ``Host`` (TCP + Noise only + yamux), ``NetworkIdentity``, ``Committee`` /
  ``Member`` / ``NodeId``, ``Mesh`` with ``ProtocolSpec`` (committee protocols over
  long-lived streams), ``RequestServer`` / ``request`` / ``Session`` (the client protocol
  shape: one stream per request, or one long-lived tagged session stream per node),
  ``ConsensusTransport`` (``consensus.Transport`` over the mesh), ``ConnectionGuard`` (bounds
  the connections of peers outside the committee, evicting the idlest);
- framing (sans-I/O): ``Envelope``, ``FrameFormat``, ``FrameDecoder``, ``encode_frame``;
- errors: ``kmsnode.net.errors`` (the tree is drawn there).

Clients send to every node they reach over ``/kms/client-session/1`` (``/kms/client/1`` for
one-off requests); a client that reaches only some asks them to relay, and each such node
passes the request once to every committee member over ``/kms/relay/1`` on the mesh's direct
streams (over a full mesh of n members, flooding is what gossip comes down to).

Not over a gossipsub topic, though DESIGN §6 names one: py-libp2p's pubsub was wired in and
reviewed, and one Byzantine member could crash every other node with a single message (a
malformed publisher key makes its signature check raise inside a pubsub service task), and
could grow its peers' memory without bound through extra topic ids and PRUNE back-offs. The
relay carries nothing but framed request bytes that the receiving node checks like a
client's, from members only.
"""

from __future__ import annotations

import logging as _logging

from .committee import Committee as Committee
from .committee import Member as Member
from .committee import NodeId as NodeId
from .consensus_transport import ConsensusTransport as ConsensusTransport
from .consensus_transport import consensus_frame_limit as consensus_frame_limit
from .consensus_transport import sync_frame_limit as sync_frame_limit
from .errors import CommitteeError as CommitteeError
from .errors import FrameError as FrameError
from .errors import FrameTooLarge as FrameTooLarge
from .errors import IdentityError as IdentityError
from .errors import MalformedFrame as MalformedFrame
from .errors import MeshNotRunning as MeshNotRunning
from .errors import NetError as NetError
from .errors import RequestFailed as RequestFailed
from .errors import UnexpectedShape as UnexpectedShape
from .errors import UnknownNode as UnknownNode
from .errors import UnsupportedVersion as UnsupportedVersion
from .framing import DEFAULT_MAX_FRAME_BYTES as DEFAULT_MAX_FRAME_BYTES
from .framing import Envelope as Envelope
from .framing import FrameDecoder as FrameDecoder
from .framing import FrameFormat as FrameFormat
from .framing import encode_frame as encode_frame
from .guard import DEFAULT_CLIENT_CONNECTIONS as DEFAULT_CLIENT_CONNECTIONS
from .guard import DEFAULT_PER_ADDRESS as DEFAULT_PER_ADDRESS
from .guard import ConnectionGuard as ConnectionGuard
from .guard import host_connection_cap as host_connection_cap
from .host import Host as Host
from .identity import NetworkIdentity as NetworkIdentity
from .identity import parse_peer_id as parse_peer_id
from .identity import peer_id_from_public_key as peer_id_from_public_key
from .mesh import CONSENSUS_PROTOCOL as CONSENSUS_PROTOCOL
from .mesh import RELAY_PROTOCOL as RELAY_PROTOCOL
from .mesh import SYNC_PROTOCOL as SYNC_PROTOCOL
from .mesh import Backoff as Backoff
from .mesh import Mesh as Mesh
from .mesh import MeshStatistics as MeshStatistics
from .mesh import PeerStatistics as PeerStatistics
from .mesh import ProtocolSpec as ProtocolSpec
from .reqresp import CLIENT_PROTOCOL as CLIENT_PROTOCOL
from .reqresp import SESSION_PROTOCOL as SESSION_PROTOCOL
from .reqresp import Request as Request
from .reqresp import RequestHandler as RequestHandler
from .reqresp import RequestServer as RequestServer
from .reqresp_client import Session as Session
from .reqresp_client import SessionStatistics as SessionStatistics
from .reqresp_client import request as request

# py-libp2p logs routine dial failures at ERROR level. Applications that configure logging
# (the node does) still see them; a library user's program is not spammed on stderr.
_logging.getLogger("libp2p").addHandler(_logging.NullHandler())

__all__ = [
    "CLIENT_PROTOCOL",
    "CONSENSUS_PROTOCOL",
    "DEFAULT_MAX_FRAME_BYTES",
    "RELAY_PROTOCOL",
    "SESSION_PROTOCOL",
    "SYNC_PROTOCOL",
    "Backoff",
    "Committee",
    "CommitteeError",
    "ConsensusTransport",
    "Envelope",
    "FrameDecoder",
    "FrameError",
    "FrameFormat",
    "FrameTooLarge",
    "Host",
    "IdentityError",
    "MalformedFrame",
    "Member",
    "Mesh",
    "MeshNotRunning",
    "MeshStatistics",
    "NetError",
    "NetworkIdentity",
    "NodeId",
    "PeerStatistics",
    "ProtocolSpec",
    "Request",
    "RequestFailed",
    "RequestHandler",
    "RequestServer",
    "Session",
    "SessionStatistics",
    "UnexpectedShape",
    "UnknownNode",
    "UnsupportedVersion",
    "consensus_frame_limit",
    "encode_frame",
    "parse_peer_id",
    "peer_id_from_public_key",
    "request",
    "sync_frame_limit",
]
