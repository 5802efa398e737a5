"""Stopping a run within a fraction of a second.

A unit of work that a caller sees (one ×4 tile, one UNet call on a 512 px tile) can take
seconds on a CPU; a cancel flag read only between such units leaves a client waiting that
long. :func:`cancellable` reads the flag before every convolution of the given networks
(a few milliseconds apart on a CPU), so the run stops almost as soon as it is asked to.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import torch

from pipelines.errors import Cancelled


def check_cancel(cancel: threading.Event | None) -> None:
    """Raise :class:`Cancelled` if ``cancel`` is set."""
    if cancel is not None and cancel.is_set():
        raise Cancelled("the run was cancelled")


@contextmanager
def cancellable(cancel: threading.Event | None, *networks: torch.nn.Module | None) -> Iterator[None]:
    """Within: every ``Conv2d`` of ``networks`` raises :class:`Cancelled` before it runs once
    ``cancel`` is set. The hooks are removed on exit (the networks are shared across runs)."""
    if cancel is None:
        yield
        return

    def hook(_module: torch.nn.Module, _args: Any) -> None:
        check_cancel(cancel)

    handles = [
        m.register_forward_pre_hook(hook)
        for net in networks
        if net is not None
        for m in net.modules()
        if isinstance(m, torch.nn.Conv2d)
    ]
    try:
        yield
    finally:
        for h in handles:
            h.remove()
