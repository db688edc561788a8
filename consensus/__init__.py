"""consensus: a HotStuff-style (2-chain, DiemBFT v4 / Jolteon) BFT log with an opaque payload.

Tiers:

- everyday API: ``Node`` (the trio driver: submit payloads, iterate committed blocks,
  ``status()``), ``Config``, ``Signer``, ``SQLiteStore``, ``Transport``, ``MemoryNetwork``;
- low level (sans-I/O): ``Replica`` with its events, actions, messages and rules;
- ``consensus.testing``: the seeded simulator, byzantine wrappers and Twins scenarios.

Where things live: ``_rules`` (vote, timeout, commit and propose rules of DESIGN §5),
``_replica`` (the sans-I/O state machine), ``_messages`` (wire types and strict codecs),
``_events`` (events in, actions out), ``_mempool``, ``_pacemaker``, ``_leader``, ``_sync``
(catch-up checks), ``_storage`` (SQLite and in-memory stores), ``_driver`` (trio).

``consensus`` never imports ``kmsnode``: the log knows nothing about keys.
"""

from __future__ import annotations

from ._config import Config as Config
from ._crypto import Committee as Committee
from ._crypto import Signer as Signer
from ._driver import MemoryNetwork as MemoryNetwork
from ._driver import Node as Node
from ._driver import Transport as Transport
from ._events import Action as Action
from ._events import Broadcast as Broadcast
from ._events import CommittedBlock as CommittedBlock
from ._events import Deliver as Deliver
from ._events import Event as Event
from ._events import MessageReceived as MessageReceived
from ._events import PayloadSubmitted as PayloadSubmitted
from ._events import Persist as Persist
from ._events import Send as Send
from ._events import ServeSync as ServeSync
from ._events import SetTimer as SetTimer
from ._events import Start as Start
from ._events import TimerFired as TimerFired
from ._leader import LeaderElection as LeaderElection
from ._leader import RoundRobin as RoundRobin
from ._locks import QuickLock as QuickLock
from ._locks import QuickSemaphore as QuickSemaphore
from ._mempool import Mempool as Mempool
from ._messages import Block as Block
from ._messages import Message as Message
from ._messages import Proposal as Proposal
from ._messages import QuorumCert as QuorumCert
from ._messages import SyncRequest as SyncRequest
from ._messages import SyncResponse as SyncResponse
from ._messages import TimeoutCert as TimeoutCert
from ._messages import TimeoutMsg as TimeoutMsg
from ._messages import Vote as Vote
from ._messages import decode_message as decode_message
from ._messages import encode_message as encode_message
from ._messages import genesis_block as genesis_block
from ._messages import genesis_qc as genesis_qc
from ._messages import is_catch_up as is_catch_up
from ._pacemaker import Pacemaker as Pacemaker
from ._ratelimit import TokenBucket as TokenBucket
from ._recorder import FlightRecorder as FlightRecorder
from ._replica import PeerStatus as PeerStatus
from ._replica import Replica as Replica
from ._replica import ReplicaStats as ReplicaStats
from ._replica import Status as Status
from ._rules import CommitRule as CommitRule
from ._rules import ProposeRule as ProposeRule
from ._rules import SafetyData as SafetyData
from ._rules import TimeoutRule as TimeoutRule
from ._rules import VoteRule as VoteRule
from ._storage import SYNC_BUCKETS as SYNC_BUCKETS
from ._storage import MemoryStore as MemoryStore
from ._storage import SQLiteStore as SQLiteStore
from ._storage import Store as Store
from ._storage import StoredState as StoredState
from ._storage import SyncTimings as SyncTimings
from ._types import BlockId as BlockId
from ._types import ChainId as ChainId
from ._types import Height as Height
from ._types import NodeId as NodeId
from ._types import Round as Round

__all__ = [
    "SYNC_BUCKETS",
    "Action",
    "Block",
    "BlockId",
    "Broadcast",
    "ChainId",
    "CommitRule",
    "CommittedBlock",
    "Committee",
    "Config",
    "Deliver",
    "Event",
    "FlightRecorder",
    "Height",
    "LeaderElection",
    "MemoryNetwork",
    "MemoryStore",
    "Mempool",
    "Message",
    "MessageReceived",
    "Node",
    "NodeId",
    "Pacemaker",
    "PayloadSubmitted",
    "PeerStatus",
    "Persist",
    "Proposal",
    "ProposeRule",
    "QuickLock",
    "QuickSemaphore",
    "QuorumCert",
    "Replica",
    "ReplicaStats",
    "Round",
    "RoundRobin",
    "SQLiteStore",
    "SafetyData",
    "Send",
    "ServeSync",
    "SetTimer",
    "Signer",
    "Start",
    "Status",
    "Store",
    "StoredState",
    "SyncRequest",
    "SyncResponse",
    "SyncTimings",
    "TimeoutCert",
    "TimeoutMsg",
    "TimeoutRule",
    "TimerFired",
    "TokenBucket",
    "Transport",
    "Vote",
    "VoteRule",
    "decode_message",
    "encode_message",
    "genesis_block",
    "genesis_qc",
    "is_catch_up",
]
