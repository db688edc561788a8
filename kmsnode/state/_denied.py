"""The refusal of a committed request: the state answers it with an error reply."""

from __future__ import annotations


class Denied(Exception):
    """A request the log committed but the policy or the key's state refuses (an error reply)."""

    def __init__(self, code: str, message: str, key_id: str = "") -> None:
        super().__init__(message)
        self.code = code
        self.message = message
        self.key_id = key_id
        """The key the refused request named, when the operation carries it only inside
        (a decryption's ciphertext header): so the audit says which key was asked for."""
