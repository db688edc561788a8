"""The kmsnode error tree (crypto errors live in ``kmsnode.crypto.errors`` and are re-used).

::

    KMSError
    ├── KeystoreError                 the node's local secret store
    │   ├── KeystoreLocked            wrong passphrase, or none given
    │   ├── KeystoreCorrupted         a record or the file fails authentication: refuse to start
    │   └── KeystoreRecordMissing     no such secret (key id / version / epoch)
    ├── ConfigError                   a config or genesis file that cannot be used
    ├── LogRulesMismatch              the node's log was written under other state rules
    └── MalformedMessage              bytes from the network that do not decode strictly

Operational errors carry fields and say what to do; nothing secret is ever in a message.
"""

from __future__ import annotations


class KMSError(Exception):
    """Base class of every error raised by kmsnode outside the crypto core."""


class KeystoreError(KMSError):
    """A problem with the node's encrypted keystore."""


class KeystoreLocked(KeystoreError):
    """The keystore cannot be opened with the passphrase given."""


class KeystoreCorrupted(KeystoreError):
    """A keystore record or file failed its integrity check; the node must not start."""


class KeystoreRecordMissing(KeystoreError, KeyError):
    """The keystore holds no record under that name."""

    def __str__(self) -> str:
        return str(self.args[0]) if self.args else "record missing"


class ConfigError(KMSError, ValueError):
    """A configuration or genesis file that cannot be used; the message says what to fix."""


class LogRulesMismatch(KMSError):
    """The network's log is applied under another version of the state machine's rules than
    this software's: replaying it would derive other keys, epochs and answers than the ones
    the keystores and the other nodes hold, so the node refuses to start."""

    def __init__(self, found: int, supported: tuple[int, ...], where: str) -> None:
        versions = ", ".join(f"v{v}" for v in supported)
        super().__init__(
            f"{where} says state rules v{found}; this node can apply only {versions} here and "
            "cannot replay such a log to the same keys and answers: run the release that wrote "
            "it, or start a new network"
        )
        self.found = found
        self.supported = supported


class MalformedMessage(KMSError, ValueError):
    """Bytes from outside (a peer, a client, the log) that are not a valid message."""
