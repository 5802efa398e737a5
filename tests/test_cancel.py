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


def test_a_run_waiting_for_a_model_load_can_be_cancelled(tiny_models, photo):
    """While another thread (the app's warm-up) holds the model-loading lock, a run that needs
    the ×4 network waits for it, and a cancel ends that wait (the load itself goes on)."""
    from pipelines.engine import Engine, EngineConfig
    from pipelines.request import UpscaleRequest
    from testing.tiny import tiny_settings

    engine = Engine(EngineConfig(models=tiny_models, settings=tiny_settings(), device="cpu", dtype="fp32"))
    loading, release = threading.Event(), threading.Event()

    def slow_load() -> None:  # holds the lock as a long load would
        with engine.loading_lock():
            loading.set()
            release.wait(120)

    holder = threading.Thread(target=slow_load)
    holder.start()
    assert loading.wait(30)
    cancel, reached, outcome = threading.Event(), threading.Event(), []

    def progress(stage: str, _done: int, _total: int) -> None:
        if stage == "base: upscale_4":  # next: the ×4 network, whose lock the load holds
            reached.set()

    def run() -> None:
        try:
            engine.run(photo, UpscaleRequest(width=128, levels=(7,)), cancel=cancel, progress=progress)
            outcome.append("finished")
        except Cancelled:
            outcome.append("Cancelled")

    runner = threading.Thread(target=run)
    runner.start()
    assert reached.wait(60)
    cancel.set()  # no other cancel check lies between that report and the lock
    runner.join(60)
    still_loading = holder.is_alive()
    release.set()
    holder.join(30)
    assert outcome == ["Cancelled"] and still_loading  # it stopped while the load still held the lock
    assert engine.run(photo, UpscaleRequest(width=128, levels=(7,))).level(7).status == "ok"  # and serves again
