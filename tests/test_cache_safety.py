"""Processes sharing the weight cache: conversions raced by several processes, a full or
unwritable cache, and the engine's learned costs written by several processes at once."""

from __future__ import annotations

import errno
import hashlib
import json
import os
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PROCESSES = 3
TRIALS = 20

# One worker process: for each trial it waits for the barrier file ``go_<trial>``, converts the
# waifu2x model into that trial's (empty) cache folder and prints the file's sha256 or the error.
WORKER = textwrap.dedent(
    """
    import hashlib, json, pathlib, sys, time
    from pipelines import waifu2x

    root, trials = pathlib.Path(sys.argv[1]), int(sys.argv[2])
    print("ready", flush=True)
    for trial in range(trials):
        go = root / f"go_{trial}"
        while not go.exists():
            time.sleep(0.0005)
        try:
            path = waifu2x.converted(3, root / f"cache_{trial}")
            out = hashlib.sha256(path.read_bytes()).hexdigest()
        except BaseException as exc:
            out = f"error: {type(exc).__name__}: {exc}"
        print(json.dumps({"trial": trial, "result": out}), flush=True)
    """
)


def test_processes_converting_into_one_empty_cache_at_once(tmp_path):
    """Three processes start the same conversion on an empty cache at the same moment, 20
    times: every one succeeds, all read byte-identical files, no temporary file stays."""
    from pipelines import waifu2x

    reference = hashlib.sha256(waifu2x.converted(3, tmp_path / "alone").read_bytes()).hexdigest()
    workers = [
        subprocess.Popen(
            [sys.executable, "-c", WORKER, str(tmp_path), str(TRIALS)],
            cwd=ROOT,
            stdout=subprocess.PIPE,
            text=True,
        )
        for _ in range(PROCESSES)
    ]
    results: list[list[str]] = []
    try:
        for w in workers:
            assert w.stdout is not None and w.stdout.readline().strip() == "ready"
        t0 = time.perf_counter()
        for trial in range(TRIALS):
            (tmp_path / f"go_{trial}").touch()  # the barrier: all three start now
            lines = [json.loads(w.stdout.readline()) for w in workers if w.stdout is not None]
            results.append([line["result"] for line in lines])
        seconds = time.perf_counter() - t0
    finally:
        for w in workers:
            w.kill()
            w.wait()
    failures = [(i, r) for i, rs in enumerate(results) for r in rs if r != reference]
    assert not failures, f"{len(failures)} of {TRIALS * PROCESSES} conversions failed or differ: {failures[:3]}"
    leftovers = [p.name for p in tmp_path.glob("cache_*/*") if p.suffix not in (".safetensors", ".json", ".lock")]
    assert not leftovers, leftovers
    print(f"{TRIALS} trials × {PROCESSES} processes: all identical, {seconds:.1f} s")


def test_conversion_waits_for_the_lock_and_reads_the_first_ones_file(tmp_path, monkeypatch):
    """A second converter that finds the lock taken waits, then takes the first one's file
    instead of converting again."""
    import threading

    from pipelines import ncnn, waifu2x

    calls = []
    real = waifu2x.convert_ncnn
    entered, release = threading.Event(), threading.Event()

    def slow_convert(param, binf):
        calls.append(threading.current_thread().name)
        entered.set()
        release.wait(10)
        return real(param, binf)

    monkeypatch.setattr(waifu2x, "convert_ncnn", slow_convert)
    paths: list[Path] = []
    first = threading.Thread(target=lambda: paths.append(waifu2x.converted(0, tmp_path)), name="first")
    first.start()
    assert entered.wait(10)
    second = threading.Thread(target=lambda: paths.append(waifu2x.converted(0, tmp_path)), name="second")
    second.start()
    time.sleep(0.2)
    assert second.is_alive()  # waiting on the lock, not converting
    release.set()
    first.join(10)
    second.join(10)
    assert calls == ["first"] and len(paths) == 2 and paths[0] == paths[1]
    assert ncnn.sha256_file(paths[0]) == json.loads((tmp_path / f"{paths[0].stem}.json").read_text())["sha256"]


def _full_disk(*args, **kwargs):
    raise OSError(errno.ENOSPC, "No space left on device")


@pytest.mark.parametrize("where", ["write", "serialise"])
def test_full_cache_disk_is_a_clear_error_and_leaves_nothing(tmp_path, monkeypatch, where):
    """The cache write fails (ENOSPC while writing; safetensors' own error while serialising):
    a LabError naming the folder and UPSCALE_LAB_CACHE, no temporary or partial file left."""
    from safetensors import SafetensorError

    from pipelines import files, waifu2x
    from pipelines.errors import LabError

    if where == "write":
        monkeypatch.setattr(files.os, "write", _full_disk)
    else:

        def broken(*args, **kwargs):
            raise SafetensorError("Error while serializing: IoError(No space left on device)")

        monkeypatch.setattr("safetensors.torch.save", broken)
    cache = tmp_path / "cache"
    with pytest.raises(LabError) as info:
        waifu2x.converted(3, cache)
    message = str(info.value)
    assert str(cache) in message and "UPSCALE_LAB_CACHE" in message, message
    assert sorted(p.name for p in cache.iterdir()) == ["waifu2x_photo_up2x_denoise3x.lock"]


def test_costs_written_by_several_processes_keep_every_entry(tmp_path):
    """Each engine records its learned costs under its own key; writers that overlap (three
    processes, 100 writes each, started together) keep each other's entries (the
    read-modify-write holds the file's lock), no temporary stays."""
    cache = tmp_path / "cache"
    code = textwrap.dedent(
        """
        import pathlib, sys, time
        from pipelines.engine import Engine, EngineConfig
        engine = Engine(EngineConfig(device="cpu"))
        engine.cost_key = lambda: sys.argv[1]
        print("ready", flush=True)
        while not pathlib.Path(sys.argv[2]).exists():
            time.sleep(0.0005)
        for i in range(100):
            engine._store_costs({"x4_per_input_mp": float(i)})
        """
    )
    go = tmp_path / "go"
    env = {**os.environ, "UPSCALE_LAB_CACHE": str(cache)}
    procs = [
        subprocess.Popen(
            [sys.executable, "-c", code, f"key{n}", str(go)], cwd=ROOT, env=env, stdout=subprocess.PIPE, text=True
        )
        for n in range(PROCESSES)
    ]
    try:
        for p in procs:
            assert p.stdout is not None and p.stdout.readline().strip() == "ready"
        go.touch()
        assert [p.wait(120) for p in procs] == [0] * PROCESSES
    finally:
        for p in procs:
            p.kill()
            p.wait()
    data = json.loads((cache / "costs.json").read_text())
    assert data == {f"key{n}": {"x4_per_input_mp": 99.0} for n in range(PROCESSES)}
    assert sorted(p.name for p in cache.iterdir()) == ["costs.json", "costs.json.lock"]
