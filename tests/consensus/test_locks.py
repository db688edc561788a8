"""``QuickLock`` / ``QuickSemaphore``: trio's lock semantics (exclusion, FIFO hand-off,
cancellation) without a scheduler pass when free."""

from __future__ import annotations

import pytest
import trio
import trio.testing

from consensus import QuickLock, QuickSemaphore


async def test_a_free_lock_is_taken_without_yielding() -> None:
    lock = QuickLock()
    ran: list[str] = []

    async def other() -> None:
        ran.append("other")

    async with trio.open_nursery() as nursery:
        nursery.start_soon(other)
        async with lock:
            assert lock.locked()
            assert ran == []  # no scheduler pass happened, so the other task has not run
        assert not lock.locked()
    assert ran == ["other"]


async def test_mutual_exclusion_and_fifo_hand_off() -> None:
    lock = QuickLock()
    order: list[int] = []
    inside = 0

    async def worker(i: int) -> None:
        nonlocal inside
        async with lock:
            inside += 1
            assert inside == 1
            order.append(i)
            await trio.sleep(0.001)  # hold it across real scheduling
            inside -= 1

    async with trio.open_nursery() as nursery:
        for i in range(20):
            nursery.start_soon(worker, i)
            await trio.testing.wait_all_tasks_blocked()  # each parks before the next starts
    assert order == list(range(20))
    stats = lock.statistics()
    assert not stats.locked and stats.tasks_waiting == 0


async def test_a_cancelled_waiter_is_skipped() -> None:
    lock = QuickLock()
    got: list[str] = []

    async def waiter(name: str, scope_out: list[trio.CancelScope]) -> None:
        with trio.CancelScope() as scope:
            scope_out.append(scope)
            async with lock:
                got.append(name)

    await lock.acquire()
    scopes: list[trio.CancelScope] = []
    async with trio.open_nursery() as nursery:
        nursery.start_soon(waiter, "a", scopes)
        await trio.testing.wait_all_tasks_blocked()
        nursery.start_soon(waiter, "b", scopes)
        await trio.testing.wait_all_tasks_blocked()
        assert lock.statistics().tasks_waiting == 2
        scopes[0].cancel()
        await trio.testing.wait_all_tasks_blocked()
        lock.release()
    assert got == ["b"]
    assert not lock.locked()


async def test_misuse_is_refused() -> None:
    lock = QuickLock()
    with pytest.raises(RuntimeError, match="don't own"):
        lock.release()
    await lock.acquire()
    with pytest.raises(RuntimeError, match="re-acquire"):
        lock.acquire_nowait()

    async def steal() -> None:
        with pytest.raises(trio.WouldBlock):
            lock.acquire_nowait()
        with pytest.raises(RuntimeError, match="don't own"):
            lock.release()

    async with trio.open_nursery() as nursery:
        nursery.start_soon(steal)
    lock.release()


async def test_semaphore_counts_hands_over_in_order_and_is_ownerless() -> None:
    sem = QuickSemaphore(2)
    ran: list[str] = []

    async def other() -> None:
        ran.append("other")

    async with trio.open_nursery() as nursery:
        nursery.start_soon(other)
        await sem.acquire()
        await sem.acquire()
        assert sem.value == 0 and ran == []  # available units are taken without yielding
        with pytest.raises(trio.WouldBlock):
            sem.acquire_nowait()
    order: list[int] = []

    async def waiter(i: int) -> None:
        await sem.acquire()
        order.append(i)

    async with trio.open_nursery() as nursery:
        for i in range(5):
            nursery.start_soon(waiter, i)
            await trio.testing.wait_all_tasks_blocked()
        for _ in range(5):
            sem.release()  # released by a task that never acquired: no owner
            await trio.testing.wait_all_tasks_blocked()
    assert order == list(range(5))
    assert sem.value == 0
    sem.release()
    assert sem.value == 1
    with pytest.raises(ValueError):
        QuickSemaphore(-1)
