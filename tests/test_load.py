"""Load against the running app (tiny models): concurrent clients, a bounded queue, no leak.

Marked ``load``; they run in the normal suite (and CI). Figures are printed (-s) and written
to out/reliability/load.json for docs/reliability.md."""

from __future__ import annotations

import base64
import io
import json
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import psutil
import pytest
from conftest import record
from PIL import Image

ROOT = Path(__file__).resolve().parents[1]
pytestmark = pytest.mark.load


def flat_png(tmp_path: Path, i: int) -> tuple[Path, tuple[int, int, int]]:
    colour = (30 + 25 * i, 200 - 20 * i, 60 + 10 * i)
    p = tmp_path / f"client{i}.png"
    Image.new("RGB", (32 + 4 * i, 24 + 4 * i), colour).save(p)
    return p, colour


def test_eight_concurrent_clients_each_get_their_own_result(lab_server, tmp_path):
    from gradio_client import Client, handle_file

    def one(i: int):
        path, colour = flat_png(tmp_path, i)
        client = Client(lab_server + "/", verbose=False)
        width = 64 + 8 * i
        t = time.monotonic()
        img, _file, info, _seed = client.predict(
            handle_file(str(path)), "", str(width), "", "canvas", "", "", "", i, False, 5, True, api_name="/upscale"
        )
        out = Image.open(img).convert("RGB")
        return i, width, colour, out.size, np.asarray(out, np.float64).reshape(-1, 3).mean(0), time.monotonic() - t

    t0 = time.monotonic()
    with ThreadPoolExecutor(8) as pool:
        results = list(pool.map(one, range(8)))
    wall = time.monotonic() - t0
    for i, width, colour, size, mean, _ in results:
        assert size[0] == width, f"client {i} got someone else's size {size}"
        assert np.abs(mean - colour).max() < 12, f"client {i} got someone else's colour {mean} vs {colour}"
    record(
        "concurrent_clients",
        {
            "clients": 8,
            "all_own_result": True,
            "wall_s": round(wall, 1),
            "max_client_s": round(max(r[5] for r in results), 1),
        },
    )


def test_queue_is_bounded_and_nobody_hangs(tiny_engine, tmp_path):
    import uvicorn
    from conftest import free_port
    from gradio_client import Client, handle_file

    import app as lab_app

    port = free_port()
    server = uvicorn.Server(
        uvicorn.Config(lab_app.create_app(tiny_engine, queue_max=2), host="127.0.0.1", port=port, log_level="warning")
    )
    threading.Thread(target=server.run, daemon=True).start()
    url = f"http://127.0.0.1:{port}/"
    deadline = time.monotonic() + 60
    while not server.started and time.monotonic() < deadline:
        time.sleep(0.1)
    path, _ = flat_png(tmp_path, 1)

    def one(i: int) -> str:
        client = Client(url, verbose=False)
        job = client.submit(handle_file(str(path)), "", "256", "", "canvas", "", "", "", i, False, api_name="/grid")
        try:
            job.result(timeout=180)
            return "ok"
        except Exception as exc:  # classify every outcome
            return "queue full" if "queue" in str(exc).lower() and "full" in str(exc).lower() else f"error: {exc}"

    t0 = time.monotonic()
    with ThreadPoolExecutor(10) as pool:
        outcomes = list(pool.map(one, range(10)))
    server.should_exit = True
    assert all(o in ("ok", "queue full") for o in outcomes), outcomes
    assert outcomes.count("queue full") >= 1 and outcomes.count("ok") >= 1
    record(
        "bounded_queue",
        {
            "clients": 10,
            "queue_max": 2,
            "ok": outcomes.count("ok"),
            "queue_full": outcomes.count("queue full"),
            "wall_s": round(time.monotonic() - t0, 1),
        },
    )


def test_fifty_runs_do_not_leak(lab_server):
    import urllib.request

    buf = io.BytesIO()
    Image.open(ROOT / "examples" / "astronaut_portrait.png").resize((40, 40)).save(buf, "PNG")
    body = json.dumps(
        {"image_base64": base64.b64encode(buf.getvalue()).decode(), "width": 96, "upscale_strength": 5, "seed": 1}
    ).encode()
    proc = psutil.Process()
    rss = []
    for _ in range(50):
        req = urllib.request.Request(
            lab_server + "/api/v1/upscale", data=body, headers={"Content-Type": "application/json"}, method="POST"
        )
        with urllib.request.urlopen(req, timeout=60) as resp:
            assert resp.status == 200
            resp.read()
        rss.append(proc.memory_info().rss / 2**20)
    growth = rss[-1] - rss[0]
    record(
        "fifty_runs",
        {
            "runs": 50,
            "rss_after_first_mb": round(rss[0]),
            "rss_after_last_mb": round(rss[-1]),
            "growth_mb": round(growth, 1),
            "margin_mb": 100,
        },
    )
    assert growth < 100, f"RSS grew {growth:.0f} MB over 50 runs"
