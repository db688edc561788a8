"""The blocking client: the async client run on a trio loop in a background thread."""

from __future__ import annotations

import contextlib
import os
import threading
from collections.abc import Callable, Mapping, Sequence
from typing import Any, TypeVar

import trio
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from ..genesis import Genesis
from ..wire.requests import DEFAULT_DELETION_WAIT_S
from ._async import ACTIVATION_DELAY, AsyncDistributedKMS
from ._audit import AuditPage
from ._config import ClientConfig
from ._results import KeyMetadata, KeyPolicy

T = TypeVar("T")


class DistributedKMS:
    """``with DistributedKMS.from_config(path) as kms: kms.encrypt(...)`` — one loop thread.

    Every method mirrors ``AsyncDistributedKMS`` and blocks until it returns.
    """

    def __init__(self, *, genesis: Genesis, identity: Ed25519PrivateKey, **kw: Any) -> None:
        self._async = AsyncDistributedKMS(genesis=genesis, identity=identity, **kw)
        self._token: trio.lowlevel.TrioToken | None = None
        self._stop: trio.Event | None = None
        self._ready = threading.Event()
        self._failure: BaseException | None = None
        self._thread = threading.Thread(target=self._loop, name="kms-client", daemon=True)
        self._thread.start()
        self._ready.wait()
        if self._failure is not None:
            raise self._failure

    @classmethod
    def from_config(cls, path: str | os.PathLike[str] | None = None, **kw: Any) -> DistributedKMS:
        """From a client config file (default ``$KMS_CONFIG``)."""
        cfg = ClientConfig.load(path)
        return cls(genesis=cfg.genesis, identity=cfg.identity, **kw)

    def _loop(self) -> None:
        async def main() -> None:
            self._token = trio.lowlevel.current_trio_token()
            self._stop = trio.Event()
            try:
                async with self._async:
                    self._ready.set()
                    await self._stop.wait()
            except BaseException as exc:  # reported to the constructor or the next call
                self._failure = exc
                self._ready.set()
                raise

        with contextlib.suppress(BaseException):  # kept in self._failure
            trio.run(main)

    def _run(self, fn: Callable[..., Any], *args: Any) -> Any:
        if self._failure is not None:
            raise RuntimeError("the client's loop has stopped") from self._failure
        return trio.from_thread.run(fn, *args, trio_token=self._token)

    def close(self) -> None:
        """Stop the loop thread and its connections."""
        if self._stop is not None and self._thread.is_alive():
            trio.from_thread.run_sync(self._stop.set, trio_token=self._token)
            self._thread.join(timeout=10)

    def __enter__(self) -> DistributedKMS:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    @property
    def last_misbehaving(self) -> tuple[int, ...]:
        """Nodes whose answers to the last call were invalid."""
        return self._async.last_misbehaving

    def create_key(
        self, kind: str = "encrypt", description: str = "", *, wait: bool = True
    ) -> KeyMetadata:
        return self._run(lambda: self._async.create_key(kind, description, wait=wait))  # type: ignore[no-any-return]

    def describe_key(self, key_id: str) -> KeyMetadata:
        return self._run(self._async.describe_key, key_id)  # type: ignore[no-any-return]

    def list_keys(self) -> list[str]:
        return self._run(self._async.list_keys)  # type: ignore[no-any-return]

    def audit(self, start: int = 0, limit: int = 100) -> AuditPage:
        return self._run(self._async.audit, start, limit)  # type: ignore[no-any-return]

    @property
    def genesis_digest(self) -> bytes:
        """The digest of this client's genesis (what ``check_genesis`` compares)."""
        return self._async.genesis_digest

    def check_genesis(self) -> dict[int, str]:
        return self._run(self._async.check_genesis)  # type: ignore[no-any-return]

    def encrypt(
        self, key_id: str, plaintext: bytes, context: Mapping[str, str] | None = None
    ) -> bytes:
        return self._run(self._async.encrypt, key_id, plaintext, context)  # type: ignore[no-any-return]

    def decrypt(self, ciphertext: bytes, context: Mapping[str, str] | None = None) -> bytes:
        return self._run(self._async.decrypt, ciphertext, context)  # type: ignore[no-any-return]

    def encrypt_int(self, key_id: str, value: int) -> bytes:
        return self._run(self._async.encrypt_int, key_id, value)  # type: ignore[no-any-return]

    @staticmethod
    def add(*ciphertexts: bytes) -> bytes:
        """See ``AsyncDistributedKMS.add`` (local, no node involved)."""
        return AsyncDistributedKMS.add(*ciphertexts)

    @staticmethod
    def scale(ciphertext: bytes, k: int) -> bytes:
        """See ``AsyncDistributedKMS.scale`` (local, no node involved)."""
        return AsyncDistributedKMS.scale(ciphertext, k)

    def decrypt_sum(self, ciphertext: bytes, bound: int = 2**32) -> int:
        return self._run(self._async.decrypt_sum, ciphertext, bound)  # type: ignore[no-any-return]

    def sign(self, key_id: str, message: bytes) -> bytes:
        return self._run(self._async.sign, key_id, message)  # type: ignore[no-any-return]

    def verify(
        self, key_id: str, message: bytes, signature: bytes, version: int | None = None
    ) -> bool:
        return self._run(self._async.verify, key_id, message, signature, version)  # type: ignore[no-any-return]

    def signing_version(self, key_id: str) -> int | None:
        return self._async.signing_version(key_id)

    def generate_data_key(
        self, key_id: str, context: Mapping[str, str] | None = None, size: int = 32
    ) -> tuple[bytes, bytes]:
        return self._run(self._async.generate_data_key, key_id, context, size)  # type: ignore[no-any-return]

    def set_policy(self, key_id: str, client: bytes, permissions: Sequence[str]) -> None:
        self._run(self._async.set_policy, key_id, client, permissions)

    def rotate_key(self, key_id: str, timeout: float = 60.0) -> KeyMetadata:
        return self._run(self._async.rotate_key, key_id, timeout)  # type: ignore[no-any-return]

    def refresh_key(self, key_id: str, timeout: float = 60.0) -> KeyMetadata:
        return self._run(self._async.refresh_key, key_id, timeout)  # type: ignore[no-any-return]

    def disable_key(self, key_id: str) -> None:
        self._run(self._async.disable_key, key_id)

    def enable_key(self, key_id: str) -> None:
        self._run(self._async.enable_key, key_id)

    def schedule_key_deletion(
        self, key_id: str, wait_seconds: int = DEFAULT_DELETION_WAIT_S
    ) -> int:
        return self._run(self._async.schedule_key_deletion, key_id, wait_seconds)  # type: ignore[no-any-return]

    def set_sum_limit(self, key_id: str, max_sums: int, window_s: int) -> None:
        self._run(self._async.set_sum_limit, key_id, max_sums, window_s)

    def cancel_key_deletion(self, key_id: str) -> str:
        return self._run(self._async.cancel_key_deletion, key_id)  # type: ignore[no-any-return]

    def activate_rules(
        self, version: int, after_blocks: int = ACTIVATION_DELAY, leave_behind: Sequence[int] = ()
    ) -> int:
        return self._run(self._async.activate_rules, version, after_blocks, leave_behind)  # type: ignore[no-any-return]

    def get_policy(self, key_id: str) -> KeyPolicy:
        return self._run(self._async.get_policy, key_id)  # type: ignore[no-any-return]
