"""Stopping a step when its kernel is interrupted (Kernel > Interrupt, nbclient's timeout).

An interrupt is a SIGINT to the kernel process. Where the step was started from a cell (or
headless), it becomes a KeyboardInterrupt in the main thread, which is only waiting for the
step's worker thread (`widgets.run_with_progress`). A Run button is different: JupyterLab
4.6 with ipykernel 7 sends widget messages to a kernel *subshell*, so the click handler runs
in a thread of its own, and there a KeyboardInterrupt never arrives (the idle main thread
ignores SIGINT). `interruptible` covers that case: while such a run lasts, a SIGINT handler
installed in the main thread (through the event loop the panel was built on) cancels it.

Either way the worker has to stop too, or the run goes on in the background:
`Cancellation.cancel()` cancels every task of the event loop the worker's fetch runs on, so
requests in flight are dropped at once (the journal keeps what finished, a cassette being
recorded is not saved), and synchronous work such as the mappings build stops at its next
progress event (`checking`).
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import signal
import threading
from collections.abc import Coroutine, Iterator
from contextvars import ContextVar
from types import FrameType
from typing import Any, TypeVar

from registry_tools.progress import Reporter

T = TypeVar("T")


class Interrupted(KeyboardInterrupt):
    """The step stopped because it was interrupted; nothing it would have written was."""


class Cancellation:
    """A one-way switch a step's event loops and progress events obey, from any thread."""

    def __init__(self) -> None:
        self._event = threading.Event()
        self._lock = threading.Lock()
        self._loops: set[asyncio.AbstractEventLoop] = set()

    @property
    def cancelled(self) -> bool:
        return self._event.is_set()

    def cancel(self) -> None:
        """Stop the work: cancel the tasks of every loop running under this switch."""
        with self._lock:
            self._event.set()
            loops = list(self._loops)
        for loop in loops:
            with contextlib.suppress(RuntimeError):  # the loop closed meanwhile
                loop.call_soon_threadsafe(_cancel_tasks, loop)

    def check(self) -> None:
        """Raise `Interrupted` once cancelled (called between units of synchronous work)."""
        if self.cancelled:
            raise Interrupted("interrupted")

    def run(self, coro: Coroutine[Any, Any, T]) -> T:
        """`asyncio.run(coro)` in this thread, stopped by `cancel()` from any other."""
        with asyncio.Runner() as runner:
            loop = runner.get_loop()
            with self._lock:
                if self.cancelled:
                    coro.close()
                    raise Interrupted("interrupted")
                self._loops.add(loop)
            try:
                return runner.run(coro)
            except asyncio.CancelledError:
                if self.cancelled:
                    raise Interrupted("interrupted") from None
                raise
            finally:
                with self._lock:
                    self._loops.discard(loop)

    @contextlib.contextmanager
    def active(self) -> Iterator[Cancellation]:
        """Make this the switch `current()` returns in this thread while the block runs."""
        token = _CURRENT.set(self)
        try:
            yield self
        finally:
            _CURRENT.reset(token)


def _cancel_tasks(loop: asyncio.AbstractEventLoop) -> None:
    for task in asyncio.all_tasks(loop):
        task.cancel()


_CURRENT: ContextVar[Cancellation | None] = ContextVar("registry_tools_cancellation", default=None)


def current() -> Cancellation:
    """The switch of the step running in this thread (a fresh one nobody cancels if none)."""
    return _CURRENT.get() or Cancellation()


def run_async(coro: Coroutine[Any, Any, T]) -> T:
    """Run `coro` under `current()`; from a thread whose loop is running (a notebook cell
    calling a step directly), in a worker thread of its own."""
    cancellation = current()
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        return cancellation.run(coro)
    with concurrent.futures.ThreadPoolExecutor(1, thread_name_prefix="registry-async") as pool:
        return pool.submit(cancellation.run, coro).result()


class CheckingReporter:
    """A `Reporter` that stops synchronous work at its next progress event once cancelled."""

    def __init__(self, reporter: Reporter, cancellation: Cancellation) -> None:
        self._reporter = reporter
        self._cancellation = cancellation

    def start(self, phase: str, total: int) -> None:
        self._cancellation.check()
        self._reporter.start(phase, total)

    def grow(self, phase: str, extra: int) -> None:
        self._cancellation.check()
        self._reporter.grow(phase, extra)

    def advance(self, phase: str, n: int = 1) -> None:
        self._cancellation.check()
        self._reporter.advance(phase, n)

    def finish(self, phase: str) -> None:
        self._cancellation.check()
        self._reporter.finish(phase)


def checking(reporter: Reporter) -> Reporter:
    """`reporter`, stopping the work that reports to it when `current()` is cancelled."""
    return CheckingReporter(reporter, current())


# ---- interrupting a run that is not in the main thread -------------------------------------

_MAIN_LOOP: asyncio.AbstractEventLoop | None = None  # the kernel's, seen by `remember_main_loop`
_RUNNING: set[Cancellation] = set()  # runs outside the main thread a SIGINT must stop
_RUNNING_LOCK = threading.Lock()
_previous_handler: Any = signal.SIG_IGN


def remember_main_loop() -> None:
    """Note the main thread's running event loop (called where a cell runs: the kernel's)."""
    global _MAIN_LOOP
    if threading.current_thread() is threading.main_thread():
        with contextlib.suppress(RuntimeError):
            _MAIN_LOOP = asyncio.get_running_loop()


@contextlib.contextmanager
def interruptible(cancellation: Cancellation) -> Iterator[None]:
    """While the block runs, a SIGINT to the process cancels `cancellation`.

    In the main thread nothing is needed (the interrupt is a KeyboardInterrupt there); from
    another thread the handler is installed by the main thread's loop, and removed after the
    last such run, unless something else replaced it meanwhile.
    """
    loop = _MAIN_LOOP
    if threading.current_thread() is threading.main_thread() or loop is None:
        yield
        return
    with _RUNNING_LOCK:
        _RUNNING.add(cancellation)
    with contextlib.suppress(RuntimeError):  # a closed loop: nothing can deliver it anyway
        loop.call_soon_threadsafe(_install)
    try:
        yield
    finally:
        with _RUNNING_LOCK:
            _RUNNING.discard(cancellation)
        with contextlib.suppress(RuntimeError):
            loop.call_soon_threadsafe(_uninstall)


def _install() -> None:
    global _previous_handler
    current = signal.getsignal(signal.SIGINT)
    if current is not _on_interrupt:
        _previous_handler = current
        signal.signal(signal.SIGINT, _on_interrupt)


def _uninstall() -> None:
    with _RUNNING_LOCK:
        busy = bool(_RUNNING)
    if not busy and signal.getsignal(signal.SIGINT) is _on_interrupt:
        signal.signal(signal.SIGINT, _previous_handler)


def _on_interrupt(signum: int, frame: FrameType | None) -> None:
    """Stop the runs, then do what the handler before us did (ignore it, or interrupt a cell
    that is running in the main thread meanwhile)."""
    with _RUNNING_LOCK:
        running = list(_RUNNING)
    for cancellation in running:
        cancellation.cancel()
    if callable(_previous_handler):
        _previous_handler(signum, frame)
