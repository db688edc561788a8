"""Sum limits of homomorphic keys: how many ``decrypt_sum`` requests each client has had
served on a key within its window (log time; part of the replicated state, pure).

A client that may decrypt a sum may decrypt any single ciphertext under the key too (the
nodes cannot tell a sum from one contribution), so a key's admins can bound how many
decryptions each such client has per window: rules v4, ``SetSumLimit``. It bounds
decryptions, not values: one sum of contributions scaled by 1, 2, 4, ... (``scale`` and
``add`` are public) reveals several small values at once.
"""

from __future__ import annotations

from collections import deque


class SumUses:
    """Per (key, client): the log times of its served sums still inside the key's window."""

    def __init__(self) -> None:
        self._uses: dict[tuple[str, bytes], deque[int]] = {}

    def take(self, key_id: str, client: bytes, now_ms: int, limit: tuple[int, int]) -> int:
        """Count one more sum for ``client`` on ``key_id`` at ``now_ms`` if ``limit``
        (max_sums, window_s) allows it: returns 0, or the milliseconds until it would
        (nothing counted then)."""
        max_sums, window_s = limit
        window_ms = window_s * 1000
        uses = self._uses.setdefault((key_id, client), deque())
        while uses and uses[0] <= now_ms - window_ms:
            uses.popleft()
        if len(uses) >= max_sums:
            return uses[-max_sums] + window_ms - now_ms
        uses.append(now_ms)
        while len(uses) > max_sums:  # (the limit was lowered): only the last max_sums matter
            uses.popleft()
        return 0

    def forget_key(self, key_id: str) -> None:
        """Drop what is counted on ``key_id`` (its limit changed, or it was deleted)."""
        for pair in [p for p in self._uses if p[0] == key_id]:
            del self._uses[pair]

    def __len__(self) -> int:
        """Sums remembered, for the memory report: at most max_sums per client and limited
        key (those past their window are dropped at the client's next sum on the key)."""
        return sum(len(u) for u in self._uses.values())
