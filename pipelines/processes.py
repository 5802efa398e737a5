"""Several processes over one list (``torchrun`` / ``accelerate launch``): the evaluation and
``cli.py batch`` split their sorted inputs with accelerate, no scheduler of their own."""

from __future__ import annotations

import os
from collections.abc import Sequence
from typing import Any, TypeVar

T = TypeVar("T")


def distributed() -> Any:
    """Under torchrun / accelerate launch (``WORLD_SIZE`` > 1): accelerate's ``PartialState``
    (gloo, used only to share the list and wait; the CPU cores split between processes);
    else None."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world <= 1:
        return None
    import torch
    from accelerate import PartialState

    torch.set_num_threads(max(1, (os.cpu_count() or 1) // world))
    return PartialState(backend="gloo", cpu=True)


def my_share(items: Sequence[T], state: Any) -> list[T]:
    """The items this process runs: all, or its contiguous part of the list under
    :func:`distributed`."""
    if state is None:
        return list(items)
    with state.split_between_processes(list(items)) as part:
        return list(part)
