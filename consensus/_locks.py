"""Trio lock and semaphore whose uncontended acquire is not a scheduler pass.

``trio.Lock.acquire`` and ``trio.Semaphore.acquire`` always yield to the scheduler, even when
the lock is free; in code that takes several locks per message (py-libp2p's stream stack, the
consensus driver) those yields are whole event-loop passes that do nothing. These keep the
mutual exclusion and the FIFO hand-off to waiters and park only under contention.
"""

from __future__ import annotations

from types import TracebackType

import trio

__all__ = ["QuickLock", "QuickSemaphore"]


class QuickLock:
    """A lock for trio tasks like ``trio.Lock``, except that acquiring a free lock is not a
    checkpoint: it neither yields to the scheduler nor raises ``Cancelled``.

    Waiters queue in FIFO order and ``release`` hands the lock to the first one, so a task
    that finds waiters never barges ahead of them.
    """

    __slots__ = ("_lot", "_owner")

    def __init__(self) -> None:
        self._owner: trio.lowlevel.Task | None = None
        self._lot = trio.lowlevel.ParkingLot()

    def locked(self) -> bool:
        """Whether some task holds the lock."""
        return self._owner is not None

    def acquire_nowait(self) -> None:
        """Take the lock if it is free and nobody waits for it.

        Raises:
            trio.WouldBlock: it is held or has waiters.
            RuntimeError: the calling task already holds it.
        """
        task = trio.lowlevel.current_task()
        if self._owner is task:
            raise RuntimeError("attempt to re-acquire an already held lock")
        if self._owner is not None or self._lot:
            raise trio.WouldBlock
        self._owner = task

    async def acquire(self) -> None:
        """Take the lock, parking (a checkpoint) only while another task holds it."""
        try:
            self.acquire_nowait()
        except trio.WouldBlock:
            await self._lot.park()  # ``release`` made us the owner before waking us

    def release(self) -> None:
        """Give the lock up, to the longest waiter if there is one.

        Raises:
            RuntimeError: the calling task does not hold it.
        """
        if trio.lowlevel.current_task() is not self._owner:
            raise RuntimeError("can't release a lock you don't own")
        if self._lot:
            (self._owner,) = self._lot.unpark(count=1)
        else:
            self._owner = None

    async def __aenter__(self) -> None:
        await self.acquire()

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.release()

    def statistics(self) -> trio.LockStatistics:
        """Like ``trio.Lock.statistics``."""
        return trio.LockStatistics(
            locked=self.locked(), owner=self._owner, tasks_waiting=len(self._lot)
        )


class QuickSemaphore:
    """A counting semaphore like ``trio.Semaphore`` (no owner: any task may release), except
    that acquiring an available unit is not a checkpoint. Waiters are served in FIFO order."""

    __slots__ = ("_lot", "_value")

    def __init__(self, value: int) -> None:
        if value < 0:
            raise ValueError("a semaphore's initial value must be >= 0")
        self._value = value
        self._lot = trio.lowlevel.ParkingLot()

    @property
    def value(self) -> int:
        """Units available now."""
        return self._value

    def acquire_nowait(self) -> None:
        """Take a unit if one is available and nobody waits.

        Raises:
            trio.WouldBlock: none is available, or others wait.
        """
        if self._value <= 0 or self._lot:
            raise trio.WouldBlock
        self._value -= 1

    async def acquire(self) -> None:
        """Take a unit, parking (a checkpoint) only when none is available."""
        try:
            self.acquire_nowait()
        except trio.WouldBlock:
            await self._lot.park()  # ``release`` handed its unit to us before waking us

    def release(self) -> None:
        """Return a unit: to the longest waiter if there is one."""
        if self._lot:
            self._lot.unpark(count=1)
        else:
            self._value += 1

    async def __aenter__(self) -> None:
        await self.acquire()

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.release()
