"""The replicated KMS state machine (pure): keys, policies, DKG sessions, replay window, audit."""

from ..genesis import RULES_VERSION as RULES_VERSION
from ..genesis import SUPPORTED_RULES as SUPPORTED_RULES
from ._audit import GENESIS_HASH as GENESIS_HASH
from ._audit import AuditEntry as AuditEntry
from ._audit import AuditTrail as AuditTrail
from ._audit import entry_from_json as entry_from_json
from ._audit import verify_chain as verify_chain
from ._effects import ComputeFrostShare as ComputeFrostShare
from ._effects import ComputePartial as ComputePartial
from ._effects import ComputeSignaturePartial as ComputeSignaturePartial
from ._effects import ComputeSumPartial as ComputeSumPartial
from ._effects import DeliverDkg as DeliverDkg
from ._effects import Effect as Effect
from ._effects import KeyActivated as KeyActivated
from ._effects import KeyDeleted as KeyDeleted
from ._effects import PartialWork as PartialWork
from ._effects import Reply as Reply
from ._effects import RulesActivated as RulesActivated
from ._effects import SharesRefreshed as SharesRefreshed
from ._effects import StartDkg as StartDkg
from ._keys import GROUPS as GROUPS
from ._keys import KeyRecord as KeyRecord
from ._keys import KeyState as KeyState
from ._keys import KeyVersion as KeyVersion
from ._keys import VersionState as VersionState
from ._machine import CommittedBatch as CommittedBatch
from ._machine import KMSState as KMSState
from ._nonces import MAX_POOL as MAX_POOL
from ._nonces import PACKAGE_ENTRY_SIZE as PACKAGE_ENTRY_SIZE
from ._nonces import NodePool as NodePool
from ._nonces import NonceRef as NonceRef
from ._nonces import entry_signer as entry_signer
from ._nonces import logged_commitments as logged_commitments
from ._nonces import package_entry as package_entry
from ._receiving import ReceivingKey as ReceivingKey
from ._replay import NONCE_WINDOW_MS as NONCE_WINDOW_MS

__all__ = [
    "GENESIS_HASH",
    "GROUPS",
    "MAX_POOL",
    "NONCE_WINDOW_MS",
    "PACKAGE_ENTRY_SIZE",
    "RULES_VERSION",
    "SUPPORTED_RULES",
    "AuditEntry",
    "AuditTrail",
    "CommittedBatch",
    "ComputeFrostShare",
    "ComputePartial",
    "ComputeSignaturePartial",
    "ComputeSumPartial",
    "DeliverDkg",
    "Effect",
    "KMSState",
    "KeyActivated",
    "KeyDeleted",
    "KeyRecord",
    "KeyState",
    "KeyVersion",
    "NodePool",
    "NonceRef",
    "PartialWork",
    "ReceivingKey",
    "Reply",
    "RulesActivated",
    "SharesRefreshed",
    "StartDkg",
    "VersionState",
    "entry_from_json",
    "entry_signer",
    "logged_commitments",
    "package_entry",
    "verify_chain",
]
