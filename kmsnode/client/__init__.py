"""The client library: ``DistributedKMS`` (blocking) and ``AsyncDistributedKMS`` (trio)."""

from ._async import AsyncDistributedKMS as AsyncDistributedKMS
from ._config import ClientConfig as ClientConfig
from ._results import KeyMetadata as KeyMetadata
from ._results import KeyPolicy as KeyPolicy
from ._results import KeyVersionInfo as KeyVersionInfo
from ._sync import DistributedKMS as DistributedKMS
from .errors import AccessDenied as AccessDenied
from .errors import ClientError as ClientError
from .errors import GenesisMismatch as GenesisMismatch
from .errors import InvalidCiphertextError as InvalidCiphertextError
from .errors import KeyNotFound as KeyNotFound
from .errors import KeyUnavailable as KeyUnavailable
from .errors import NonceReused as NonceReused
from .errors import QuorumUnavailable as QuorumUnavailable
from .errors import RequestRejected as RequestRejected
from .errors import SignersFailed as SignersFailed
from .errors import SumOutOfBound as SumOutOfBound

__all__ = [
    "AccessDenied",
    "AsyncDistributedKMS",
    "ClientConfig",
    "ClientError",
    "DistributedKMS",
    "GenesisMismatch",
    "InvalidCiphertextError",
    "KeyMetadata",
    "KeyNotFound",
    "KeyPolicy",
    "KeyUnavailable",
    "KeyVersionInfo",
    "NonceReused",
    "QuorumUnavailable",
    "RequestRejected",
    "SignersFailed",
    "SumOutOfBound",
]
