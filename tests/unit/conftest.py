"""Every async unit test runs under a real-time hang guard, so a bug fails fast
instead of hanging CI.

The guard is a watchdog thread, not a Trio deadline: a test on the virtual clock
(``autojump_clock``) jumps straight to any pending Trio deadline whenever it waits on a
worker thread (the session store's SQLite writes), so a virtual ``fail_after`` would
fire on correct code, while a deadlocked test on the virtual clock sleeps in real time.
After ``GUARD_S`` real seconds the watchdog cancels the test, which then fails with
``trio.TooSlowError``. Tests keep their own tighter ``trio.fail_after`` where a bound
means something.
"""

from __future__ import annotations

import functools
import inspect
import threading

import pytest
import trio

GUARD_S = 60.0


def _guarded(test, seconds: float):
    @functools.wraps(test)
    async def guarded(*args, **kwargs):
        token = trio.lowlevel.current_trio_token()
        with trio.CancelScope() as scope:
            watchdog = threading.Timer(seconds, token.run_sync_soon, (scope.cancel,))
            watchdog.start()
            try:
                return await test(*args, **kwargs)
            finally:
                watchdog.cancel()
        raise trio.TooSlowError(f"the test did not finish within {seconds} real seconds")

    return guarded


@pytest.hookimpl(trylast=True)
def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        test = getattr(item, "obj", None)
        if not inspect.iscoroutinefunction(test) or hasattr(test, "hypothesis"):
            continue  # sync tests run their own trio.run; hypothesis wraps its inner test
        item.obj = _guarded(test, GUARD_S)
