"""Running an analysis job's slow part off the event loop without letting it hold the server hostage.

`asyncio.to_thread` uses the loop's default executor, whose threads the interpreter joins at exit:
one job stuck in a system call (a FIFO, a hung filesystem, a wedged git) would keep the server from
stopping after SIGTERM. Here each job runs in its own daemon thread; cancelling the awaiting task
(what stop does) returns at once and the process may exit while the thread is still stuck.
"""

from __future__ import annotations

import asyncio
import contextlib
import threading
from collections.abc import Callable
from typing import TypeVar

T = TypeVar("T")


async def in_daemon_thread(name: str, fn: Callable[[], T]) -> T:
    """Runs `fn()` in a new daemon thread and waits for its result (cancellable at any time)."""
    loop = asyncio.get_running_loop()
    future: asyncio.Future[T] = loop.create_future()

    def settle(result: T | None, error: BaseException | None) -> None:
        if future.done():  # cancelled while the thread ran: nobody wants the result any more
            return
        if error is not None:
            future.set_exception(error)
        else:
            future.set_result(result)  # type: ignore[arg-type]

    def work() -> None:
        result: T | None = None
        error: BaseException | None = None
        try:
            result = fn()
        except BaseException as exc:  # handed to the awaiting task, which decides
            error = exc
        with contextlib.suppress(RuntimeError):  # the loop closed while we were stuck
            loop.call_soon_threadsafe(settle, result, error)

    threading.Thread(target=work, name=name, daemon=True).start()
    return await future
