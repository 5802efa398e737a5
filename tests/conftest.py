"""Shared fixtures: offline, CPU, tiny random diffusion parts built once per session."""

from __future__ import annotations

import os
import sys
from contextlib import contextmanager
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
FIGURES = ROOT / "out" / "reliability"
sys.path.insert(0, str(ROOT))
os.environ["HF_HUB_OFFLINE"] = "1"
os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")


@pytest.fixture(scope="session", autouse=True)
def _cache_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A fresh weight cache per session: the Real-ESRGAN conversion runs for real once."""
    path = tmp_path_factory.mktemp("cache")
    os.environ["UPSCALE_LAB_CACHE"] = str(path)
    # An empty hub cache: diffusion weights a developer has downloaded never leak into tests.
    os.environ["HF_HOME"] = str(tmp_path_factory.mktemp("hf_home"))
    return path


@pytest.fixture(scope="session")
def tiny_models(tmp_path_factory: pytest.TempPathFactory):
    from testing.tiny import build_tiny_models

    return build_tiny_models(tmp_path_factory.mktemp("tiny"))


@pytest.fixture(scope="session")
def tiny_engine(tiny_models):
    from pipelines.engine import Engine, EngineConfig
    from testing.tiny import tiny_settings

    # fp32: the oracle and the exact-equality tests compare with fp32 references
    return Engine(EngineConfig(models=tiny_models, settings=tiny_settings(), device="cpu", dtype="fp32"))


@pytest.fixture(scope="session")
def photo():
    """A real photo (scikit-image's astronaut), 64×64, as the engine loads it."""
    from PIL import Image
    from skimage import data

    from pipelines.imaging import load_image

    return load_image(Image.fromarray(data.astronaut()).resize((64, 64), Image.Resampling.LANCZOS))


@pytest.fixture(scope="session")
def missing_engine(tmp_path_factory: pytest.TempPathFactory):
    """An engine whose diffusion weights are absent (hub ids, offline, empty hub cache)."""
    from pipelines.engine import Engine, EngineConfig

    return Engine(EngineConfig(device="cpu"))


def free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="session")
def lab_server(tiny_engine):
    """The real app (REST + Gradio UI) with the tiny engine injected, served on loopback."""
    import threading
    import time
    import urllib.request

    import uvicorn

    import app as lab_app

    port = free_port()
    server = uvicorn.Server(
        uvicorn.Config(lab_app.create_app(tiny_engine), host="127.0.0.1", port=port, log_level="warning")
    )
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        try:
            urllib.request.urlopen(url + "/", timeout=2)
            break
        except OSError:
            time.sleep(0.2)
    else:
        raise RuntimeError("the lab server did not start")
    yield url
    server.should_exit = True
    thread.join(timeout=10)
    for other in threading.enumerate():  # the app's model warm-up: torch must not be mid-load at exit
        if other.name == "warm-up":
            other.join(timeout=300)


@contextmanager
def serving(engine):
    """The lab's run supervision with ``engine`` as the one its events use (None: the
    default); the engine it served before is put back on exit."""
    from lab import supervision

    previous = supervision.set_engine(engine)
    try:
        yield supervision
    finally:
        supervision.set_engine(previous)


@pytest.fixture
def run_outcomes(monkeypatch):
    """Record how each app run ends ("finished" or the exception's name), and helpers to wait
    for a run to be under way and for the engine to be free again.

    On teardown (also when the test failed) every run still going is cancelled and awaited,
    so one slow or failed case never leaves the engine busy for the tests after it."""
    import inspect
    import threading
    import time
    from types import SimpleNamespace

    from lab import supervision

    outcomes: list[str] = []
    started: list[float] = []
    cancels: list[threading.Event] = []  # every recorded run's cancel event
    changed = threading.Condition()
    working = threading.Event()  # the engine reported progress: the run is under way
    real_run = supervision.engine_run

    def ended(outcome: str) -> None:
        with changed:
            outcomes.append(outcome)
            changed.notify_all()

    def recording_run(*args, **kwargs):
        call = inspect.signature(real_run).bind(*args, **kwargs)
        progress = call.arguments.get("progress")

        def observed(*report):
            working.set()
            if progress is not None:
                progress(*report)

        call.arguments["progress"] = observed
        call.arguments["cancel"] = call.arguments.get("cancel") or threading.Event()
        with changed:
            started.append(time.monotonic())
            cancels.append(call.arguments["cancel"])
        try:
            result = real_run(*call.args, **call.kwargs)
        except BaseException as exc:
            ended(type(exc).__name__)
            raise
        ended("finished")
        return result

    def wait_started(timeout: float = 120) -> None:
        assert working.wait(timeout), "the run never started"
        assert supervision.get_engine().busy

    def wait_done(timeout: float = 120) -> float:
        """Seconds until the run ended and the engine was free again."""
        t0 = time.monotonic()
        with changed:
            assert changed.wait_for(lambda: len(outcomes) >= len(started), timeout), "the run did not end"
        assert not supervision.get_engine().busy, "the engine is still busy"
        return time.monotonic() - t0

    monkeypatch.setattr(supervision, "engine_run", recording_run)
    yield SimpleNamespace(outcomes=outcomes, wait_started=wait_started, wait_done=wait_done)
    with changed:
        for cancel in cancels:  # whatever the test did: stop what is still running
            cancel.set()
        assert changed.wait_for(lambda: len(outcomes) >= len(started), 600), "a run did not stop when cancelled"
    deadline = time.monotonic() + 60  # the worker thread returns right after the run ends
    while supervision.get_engine().busy and time.monotonic() < deadline:
        time.sleep(0.1)
    assert not supervision.get_engine().busy, "the engine is still busy after its runs ended"


def record(name: str, data: dict) -> None:
    """Add a figure to out/reliability/load.json (read into docs/reliability.md) and print it."""
    import json

    FIGURES.mkdir(parents=True, exist_ok=True)
    path = FIGURES / "load.json"
    doc = json.loads(path.read_text()) if path.exists() else {}
    doc[name] = data
    path.write_text(json.dumps(doc, indent=2))
    print(name, data)


@contextmanager
def app_process(env: dict[str, str], log_path: Path, *, timeout: float = 300, append: bool = False):
    """``app.py`` started as a user starts it (its own process, ``env`` with ``PORT``), yields
    its URL and the process (so a test can kill it) once it answers, and is stopped on exit if
    still alive. Its output goes to ``log_path`` (``append``: after an earlier run's), shown if
    it dies or never answers."""
    import subprocess
    import time
    import urllib.request

    url = f"http://127.0.0.1:{env['PORT']}"
    with log_path.open("a" if append else "w") as log:
        app = subprocess.Popen([sys.executable, "app.py"], cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT)
        try:
            deadline = time.monotonic() + timeout
            while True:
                try:
                    urllib.request.urlopen(url + "/", timeout=10)
                    break
                except OSError:
                    assert app.poll() is None and time.monotonic() < deadline, log_path.read_text()[-3000:]
                    time.sleep(0.5)
            yield url, app
        finally:
            if app.poll() is None:
                app.terminate()
            app.wait(60)


@contextmanager
def started_app(env: dict[str, str], log_path: Path, *, timeout: float = 300):
    """:func:`app_process`, yielding its URL only."""
    with app_process(env, log_path, timeout=timeout) as (url, _):
        yield url
