"""A client that cancels or disconnects mid-run: the run stops (it does not finish unread),
the engine is free again, and nothing is left behind.

The browser case (closing the tab) is in test_browser.py. Figures go to
out/reliability/load.json for docs/reliability.md."""

from __future__ import annotations

import base64
import json
import os
import socket
import subprocess
import sys
import time
from pathlib import Path
from urllib.parse import urlparse

from conftest import record

ROOT = Path(__file__).resolve().parents[1]
PORTRAIT = ROOT / "examples" / "astronaut_portrait.png"
# 256 px → 1024 px: long enough with the tiny models (tens of seconds) to stop it mid-run
GRID_ARGS = ("", "1024", "", "canvas", "", "", "", 1, False)


def test_gradio_client_job_cancel_stops_the_run(lab_server, run_outcomes):
    from gradio_client import Client, handle_file

    client = Client(lab_server + "/", verbose=False)
    try:
        job = client.submit(handle_file(str(PORTRAIT)), *GRID_ARGS, api_name="/grid")
        run_outcomes.wait_started()
        t = time.monotonic()
        assert job.cancel()  # returns once gradio's /cancel has stopped the handler
        run_outcomes.wait_done()
        stopped_in = time.monotonic() - t
    finally:
        client.close()  # (the fixture stops any run still going)
    assert run_outcomes.outcomes == ["Cancelled"], "the run went on after job.cancel()"
    assert stopped_in < 30
    record("gradio_client_cancel", {"outcome": "Cancelled", "engine_free_after_s": round(stopped_in, 2)})


def test_killed_gradio_client_process_stops_the_run(lab_server, run_outcomes):
    """The client process dies (no goodbye): its heartbeat connection drops, gradio fires the
    unload event for that session, and the session's run is cancelled."""
    script = (
        "import sys, time\n"
        "from gradio_client import Client, handle_file\n"
        "c = Client(sys.argv[1], verbose=False)\n"
        f"c.submit(handle_file(sys.argv[2]), *{GRID_ARGS!r}, api_name='/grid')\n"
        "time.sleep(600)\n"
    )
    proc = subprocess.Popen([sys.executable, "-c", script, lab_server + "/", str(PORTRAIT)], env=os.environ.copy())
    try:
        run_outcomes.wait_started()
    finally:
        proc.kill()
        proc.wait(10)
    stopped_in = run_outcomes.wait_done()
    assert run_outcomes.outcomes == ["Cancelled"], "the run went on after its client died"
    record("gradio_client_killed", {"outcome": "Cancelled", "engine_free_after_s": round(stopped_in, 2)})


def test_rest_client_hanging_up_stops_the_run(lab_server, run_outcomes):
    body = json.dumps(
        {"image_base64": base64.b64encode(PORTRAIT.read_bytes()).decode(), "width": 1024, "upscale_strength": 1}
    ).encode()
    url = urlparse(lab_server)
    sock = socket.create_connection((url.hostname, url.port), timeout=10)
    try:
        sock.sendall(
            b"POST /api/v1/upscale HTTP/1.1\r\nHost: lab\r\nContent-Type: application/json\r\n"
            + f"Content-Length: {len(body)}\r\n\r\n".encode()
            + body
        )
        run_outcomes.wait_started()
    finally:
        sock.close()  # hang up mid-run
    stopped_in = run_outcomes.wait_done()
    assert run_outcomes.outcomes == ["Cancelled"], "the run went on after the REST client hung up"
    record("rest_hangup", {"outcome": "Cancelled", "engine_free_after_s": round(stopped_in, 2)})


def test_server_keeps_serving_after_cancellations(lab_server, run_outcomes):
    """After the cancellations above, a normal request still runs to the end."""
    from gradio_client import Client, handle_file

    client = Client(lab_server + "/", verbose=False)
    t = time.monotonic()
    try:
        img, *_ = client.predict(
            handle_file(str(PORTRAIT)), "", "128", "", "canvas", "", "", "", 1, False, 5, True, api_name="/upscale"
        )
    finally:
        client.close()
    assert Path(img).exists() and run_outcomes.outcomes == ["finished"]
    assert time.monotonic() - t < 120
