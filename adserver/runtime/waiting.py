"""Waiting on Redis with a deadline, without cancelling the command waited on.

Cutting a Redis command in two spoils its connection, so a request that gives up leaves the
command to finish in the background. `asyncio.wait_for(asyncio.shield(...))` does the same at
the cost of two extra futures and a timeout context per call; on the hot paths this is one
future and one timer.
"""

from __future__ import annotations

import asyncio
from collections.abc import Coroutine
from typing import Any, TypeVar

T = TypeVar("T")


def _observe(future: asyncio.Future[Any]) -> None:
    """Mark an abandoned future's error as seen (it is handled where the write is retried)."""
    if not future.cancelled():
        future.exception()


def deadline_waiter(future: asyncio.Future[Any], seconds: float) -> asyncio.Future[None]:
    """A future done when `future` is or `seconds` have passed, whichever comes first; `future`
    itself is never touched. Cancelling the waiter cancels its timer."""
    loop = future.get_loop()
    waiter: asyncio.Future[None] = loop.create_future()

    def wake(_: object = None) -> None:
        if not waiter.done():
            waiter.set_result(None)

    timer = loop.call_later(seconds, wake)
    future.add_done_callback(wake)
    waiter.add_done_callback(lambda _: timer.cancel())
    return waiter


async def settled_within(future: asyncio.Future[Any], seconds: float) -> bool:
    """Wait at most `seconds` for `future` to finish; True if it did. Never cancels it."""
    if future.done():
        return True
    await deadline_waiter(future, seconds)
    return future.done()


async def within(call: Coroutine[Any, Any, T], seconds: float) -> T:
    """The result of `call` if it arrives within `seconds`, else TimeoutError (the call goes on
    in the background and its outcome is dropped)."""
    task = asyncio.ensure_future(call)
    task.add_done_callback(_observe)
    if not await settled_within(task, seconds):
        raise TimeoutError(f"no answer within {seconds * 1000:.0f} ms")
    return task.result()


async def pause(seconds: float) -> None:
    """`asyncio.sleep` for background loops, which also stops a loop whose cancellation a
    library swallowed. On Python 3.11 `asyncio.wait_for` (redis-py sends every command through
    it) returns the result and drops the cancellation when both land in the same tick (CPython
    gh-86296, fixed in 3.12): a loop calling Redis then never stopped, and `kaeru serve` hung
    in its clean-up. The task still counts the request (`Task.cancelling()`), so honour it."""
    task = asyncio.current_task()
    if task is not None and task.cancelling():
        raise asyncio.CancelledError
    await asyncio.sleep(seconds)
