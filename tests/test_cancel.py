"""Cancellation reaches inside one unit of work: a set flag stops a network before its next
convolution, and the hooks that read it are gone after the run."""

from __future__ import annotations

import threading

import pytest
import torch

from pipelines.cancel import cancellable
from pipelines.errors import Cancelled


def _net(n: int) -> torch.nn.Sequential:
    return torch.nn.Sequential(*[torch.nn.Conv2d(2, 2, 3, padding=1) for _ in range(n)])


def test_cancel_set_mid_forward_stops_before_the_next_convolution():
    net = _net(6)
    ran: list[int] = []
    cancel = threading.Event()
    for i, conv in enumerate(net):
        conv.register_forward_hook(lambda *_a, i=i: ran.append(i))
    net[2].register_forward_hook(lambda *_a: cancel.set())  # the caller cancels during the third conv
    with cancellable(cancel, net), pytest.raises(Cancelled):
        net(torch.zeros(1, 2, 8, 8))
    assert ran == [0, 1, 2]


def test_hooks_are_removed_after_the_run_and_an_unset_flag_changes_nothing():
    net = _net(3)
    x = torch.randn(1, 2, 8, 8)
    want = net(x)
    cancel = threading.Event()
    with cancellable(cancel, net, None):
        got = net(x)
    assert torch.equal(got, want)
    cancel.set()  # after the run: the shared network must not be stopped by an old run's flag
    assert torch.equal(net(x), want)
    assert all(not conv._forward_pre_hooks for conv in net)


def test_engine_stops_inside_a_x4_tile(tiny_engine, photo):
    """One ×4 tile covers the whole 64 px photo; the flag is set after its first convolutions,
    so only a check inside the network can stop it before the tile ends."""
    from pipelines.request import UpscaleRequest

    model = tiny_engine.upscaler()
    convs = [m for m in model.modules() if isinstance(m, torch.nn.Conv2d)]
    cancel = threading.Event()
    seen = [0]

    def count(*_a):
        seen[0] += 1
        if seen[0] == 5:
            cancel.set()

    handles = [c.register_forward_hook(count) for c in convs]
    try:
        with pytest.raises(Cancelled):
            tiny_engine.run(
                photo,
                UpscaleRequest(
                    width=197,  # a size no other test uses: no cached base
                    levels=(7,),
                    seed=0,
                ),
                cancel=cancel,
            )
    finally:
        for h in handles:
            h.remove()
    assert seen[0] == 5, f"{seen[0]} convolutions ran after the flag was set at the 5th"
