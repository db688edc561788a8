"""Distributed key generation, proactive refresh and resharing over the ordered log.

The everyday API: describe a ``Session`` (``Kind.DKG``, ``REFRESH`` or ``RESHARE``), build one
``Participant`` per node, and drive it with ``handle(event) -> list[Action]``: ``Start()``,
then every ``Committed(height, bytes)`` in log order and ``HeightReached(height)`` marks. Post
what it asks you to post; store ``Completed.result``; only then obey ``EraseShare``.
``kmsnode.crypto.dkg.testing`` simulates a whole session in one process.
"""

from ._events import Action as Action
from ._events import Committed as Committed
from ._events import Completed as Completed
from ._events import DkgResult as DkgResult
from ._events import EraseShare as EraseShare
from ._events import Event as Event
from ._events import Failed as Failed
from ._events import HeightReached as HeightReached
from ._events import Post as Post
from ._events import Rejected as Rejected
from ._events import Start as Start
from ._machine import TRANSITIONS as TRANSITIONS
from ._machine import Participant as Participant
from ._machine import SessionStateError as SessionStateError
from ._machine import Status as Status
from ._messages import Complaint as Complaint
from ._messages import Deal as Deal
from ._messages import Justification as Justification
from ._messages import Message as Message
from ._messages import decode_message as decode_message
from ._session import Kind as Kind
from ._session import Member as Member
from ._session import Previous as Previous
from ._session import Session as Session

__all__ = [
    "TRANSITIONS",
    "Action",
    "Committed",
    "Complaint",
    "Completed",
    "Deal",
    "DkgResult",
    "EraseShare",
    "Event",
    "Failed",
    "HeightReached",
    "Justification",
    "Kind",
    "Member",
    "Message",
    "Participant",
    "Post",
    "Previous",
    "Rejected",
    "Session",
    "SessionStateError",
    "Start",
    "Status",
    "decode_message",
]
