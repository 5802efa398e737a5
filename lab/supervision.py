"""Run supervision: the one engine every event uses, the cancel registry by session, the time
limit, and the worker threads that keep the event loop free while the engine works."""

from __future__ import annotations

import asyncio
import logging
import os
import threading
from collections.abc import Callable
from typing import Any, TypeVar

import presets
from lab.zerogpu import gpu
from pipelines.engine import Engine, EngineConfig, LevelResult, RunResult
from pipelines.errors import Cancelled, LabError
from pipelines.imaging import LoadedImage
from pipelines.request import UpscaleRequest

log = logging.getLogger("upscale-lab.app")

RUN_TIME_LIMIT = float(os.environ.get("UPSCALE_LAB_TIME_LIMIT", "900"))
T = TypeVar("T")

_ENGINE: Engine | None = None
_ENGINE_LOCK = threading.Lock()


def get_engine() -> Engine:
    """The engine every event uses (the default one is created on first use)."""
    global _ENGINE
    with _ENGINE_LOCK:
        if _ENGINE is None:
            _ENGINE = Engine(EngineConfig())
        return _ENGINE


def set_engine(engine: Engine | None) -> Engine | None:
    """Make ``engine`` the one every event uses (None: the default, created lazily on the
    next event); returns the one it replaces."""
    global _ENGINE
    with _ENGINE_LOCK:
        previous, _ENGINE = _ENGINE, engine
    return previous


def served_table(engine: Engine | None = None) -> presets.LevelTable:
    """The level table the lab serves: ``engine``'s, else the served engine's, else the
    default engine's (read from its configuration: no engine is created here)."""
    with _ENGINE_LOCK:
        served = engine or _ENGINE
    return served.config.table if served is not None else EngineConfig().table


class CancelRegistry:
    """The cancel events of each session's runs (a gradio_client may run several at once)."""

    def __init__(self) -> None:
        self._events: dict[str, set[threading.Event]] = {}
        self._lock = threading.Lock()

    def add(self, session: str, cancel: threading.Event) -> None:
        with self._lock:
            self._events.setdefault(session, set()).add(cancel)

    def discard(self, session: str, cancel: threading.Event) -> None:
        with self._lock:
            events = self._events.get(session, set())
            events.discard(cancel)
            if not events:
                self._events.pop(session, None)

    def cancel(self, session: str) -> int:
        """Set every cancel event of ``session``; returns how many runs were told to stop."""
        with self._lock:
            events = list(self._events.get(session, ()))
        for event in events:
            event.set()
        return len(events)

    def sessions(self) -> list[str]:
        """The sessions that hold a run now."""
        with self._lock:
            return list(self._events)


CANCELS = CancelRegistry()


@gpu
def engine_run(
    image: LoadedImage,
    request: UpscaleRequest,
    session: str | None,
    progress: Any = None,
    cancel: threading.Event | None = None,
    on_level: Callable[[LevelResult], None] | None = None,
    *,
    time_limit: float = RUN_TIME_LIMIT,
) -> RunResult:
    """The one function that does GPU work: run the engine with cancel and a time limit
    (``time_limit`` seconds).

    ``cancel`` is set by whoever stops the run: the Cancel button or a closed page (by
    session), a cancelled gradio_client job or a REST client that hung up (by the caller), or
    the time limit here. The engine checks it at every tile and stage.
    """
    engine = get_engine()
    cancel = cancel or threading.Event()
    if session:
        CANCELS.add(session, cancel)
    timed_out = threading.Event()

    def time_up() -> None:
        timed_out.set()
        cancel.set()

    timer = threading.Timer(time_limit, time_up)
    timer.start()
    try:
        return engine.run(image, request, progress=progress, cancel=cancel, on_level=on_level)
    except Cancelled as exc:
        if timed_out.is_set():
            raise LabError(f"the run took longer than the {time_limit:g} s limit and was stopped") from exc
        raise
    finally:
        timer.cancel()
        if session:
            CANCELS.discard(session, cancel)
        if engine.device.type == "cuda":
            import torch

            torch.cuda.empty_cache()


async def run_cancellable(cancel: threading.Event, fn: Callable[..., T], *args: Any) -> T:
    """Run ``fn(*args)`` in a worker thread and await it.

    Gradio stops an event by cancelling the task that awaits its handler (the Cancel button,
    a gradio_client ``job.cancel()``). A plain sync handler would run on to the end; here the
    cancellation sets ``cancel`` (the engine stops within one convolution) and waits for the worker,
    so the queue slot is handed on only when the engine is free again.
    """
    work = asyncio.ensure_future(asyncio.to_thread(fn, *args))
    try:
        return await asyncio.shield(work)
    except asyncio.CancelledError:
        await stop_worker(cancel, work)
        raise


async def stop_worker(cancel: threading.Event, work: asyncio.Future[Any]) -> None:
    """The client went away: stop the engine and wait until it is free (the queue slot is
    handed on only then)."""
    cancel.set()
    log.info("run cancelled by its client: stopping the engine")
    await asyncio.wait({work})
    if not work.cancelled():
        work.exception()  # retrieved: the Cancelled it ends with is expected
