"""Jobs over REST (lab/jobs.py): submitted, polled, fetched, cancelled, waited for, announced
by a signed webhook, kept only for their key, and surviving a server killed mid-job."""

from __future__ import annotations

import base64
import hashlib
import hmac
import io
import json
import os
import signal
import sqlite3
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
from PIL import Image

ROOT = Path(__file__).resolve().parents[1]
PHOTO = ROOT / "examples" / "astronaut_portrait.png"
JOBS = "/api/v1/jobs"
WAIT_S = 600  # generous: a busy machine runs the long jobs slowly
LONG = 256  # 256 px → 1024 px at level 8 (the ×4 network on a CPU): tens of seconds


def call(method: str, url: str, body: dict | None = None, headers: dict | None = None, timeout: float = 120):
    """(status, headers, body) of one HTTP call; a JSON ``body`` is sent as application/json."""
    data = json.dumps(body).encode() if body is not None else None
    req = urllib.request.Request(
        url, data=data, method=method, headers={"Content-Type": "application/json", **(headers or {})}
    )
    try:
        with urllib.request.urlopen(req, timeout=timeout) as resp:
            return resp.status, {k.lower(): v for k, v in resp.headers.items()}, resp.read()
    except urllib.error.HTTPError as err:
        return err.code, {k.lower(): v for k, v in err.headers.items()}, err.read()


def photo_b64(size: int) -> str:
    buf = io.BytesIO()
    Image.open(PHOTO).convert("RGB").resize((size, size)).save(buf, "PNG")
    return base64.b64encode(buf.getvalue()).decode()


def job_request(size: int = 48, **extra) -> dict:
    """Level 8 (the ×4 network, no diffusion) to 4× ``size``: a small one is quick, ``LONG`` is not."""
    return {"image_base64": photo_b64(size), "width": 4 * size, "levels": [8], "seed": 1, **extra}


def submit(base: str, body: dict, headers: dict | None = None) -> dict:
    status, _, raw = call("POST", base + JOBS, body, headers)
    assert status == 202, raw[:300]
    return json.loads(raw)


def poll(base: str, job_id: str, until: Callable[[dict], bool], headers: dict | None = None, timeout=WAIT_S) -> dict:
    """The job's view once ``until`` holds for it (polled; fails after ``timeout`` seconds)."""
    deadline = time.monotonic() + timeout
    while True:
        status, _, raw = call("GET", f"{base}{JOBS}/{job_id}", headers=headers)
        assert status == 200, raw[:300]
        doc = json.loads(raw)
        if until(doc):
            return doc
        assert time.monotonic() < deadline, f"gave up waiting; the job is {doc}"
        time.sleep(0.2)


def ended(doc: dict) -> bool:
    return doc["status"] in ("done", "failed", "cancelled", "interrupted")


def under_way(doc: dict) -> bool:
    """Running, and the engine has reported a stage of its own (it holds the engine)."""
    return ended(doc) or (doc["status"] == "running" and doc["stage"] not in ("queued", "waiting for the engine"))


@contextmanager
def cancelled_at_exit(base: str, headers: dict | None = None) -> Iterator[list[str]]:
    """Job ids to cancel on exit (also when the test failed), waiting until each has ended, so
    no failed case leaves the engine busy for the tests after it."""
    ids: list[str] = []
    try:
        yield ids
    finally:
        for job_id in ids:
            call("DELETE", f"{base}{JOBS}/{job_id}", headers=headers)
        for job_id in ids:
            poll(base, job_id, ended, headers)


def test_a_job_is_accepted_polled_and_its_result_downloaded(lab_server):
    job = submit(lab_server, job_request())
    assert job["status"] in ("queued", "running") and len(job["job_id"]) >= 22
    assert job["links"]["self"].endswith(f"{JOBS}/{job['job_id']}")
    done = poll(lab_server, job["job_id"], ended)
    assert done["status"] == "done" and done["progress"] == 1.0, done
    assert done["started_at"] and done["finished_at"] and done["expires_at"]
    status, headers, raw = call("GET", job["links"]["result"])
    assert status == 200 and headers["content-type"] == "image/png"
    assert Image.open(io.BytesIO(raw)).size == (192, 192) and headers["x-level"] == "8"
    status, _, raw = call("GET", job["links"]["result"] + "?format=json")
    doc = json.loads(raw)
    assert status == 200 and doc["level"] == 8 and (doc["width"], doc["height"]) == (192, 192) and doc["image_base64"]
    assert call("GET", f"{lab_server}{JOBS}/no-such-job")[0] == 404
    assert call("GET", f"{lab_server}{JOBS}/no-such-job/result")[0] == 404


def test_a_running_job_is_cancelled_and_a_queued_one_never_starts(lab_server):
    from lab import supervision

    with cancelled_at_exit(lab_server) as ids:
        long = submit(lab_server, job_request(LONG))
        ids.append(long["job_id"])
        queued = submit(lab_server, job_request())
        ids.append(queued["job_id"])
        running = poll(lab_server, long["job_id"], under_way)
        assert running["status"] == "running", running
        status, _, raw = call("GET", queued["links"]["result"])
        assert status == 409 and b"queued" in raw  # not done yet
        status, _, raw = call("DELETE", queued["links"]["self"])
        assert status == 200 and json.loads(raw)["status"] == "cancelled"
        status, _, raw = call("DELETE", long["links"]["self"])
        assert status in (200, 202) and json.loads(raw)["cancel_requested"], raw
        stopped = poll(lab_server, long["job_id"], ended, timeout=120)  # the engine stops within a convolution
        assert stopped["status"] == "cancelled", stopped
    never = poll(lab_server, queued["job_id"], ended)
    assert never["status"] == "cancelled" and never["started_at"] is None
    assert call("DELETE", long["links"]["self"])[0] == 409  # it has ended
    deadline = time.monotonic() + 60  # the worker returns right after the engine stops
    while supervision.get_engine().busy and time.monotonic() < deadline:
        time.sleep(0.1)
    assert not supervision.get_engine().busy
    assert poll(lab_server, submit(lab_server, job_request())["job_id"], ended)["status"] == "done"  # serves again


def test_upscale_with_wait_answers_the_result_or_the_job(lab_server):
    url = lab_server + "/api/v1/upscale"
    with cancelled_at_exit(lab_server) as ids:
        status, headers, raw = call("POST", url + "?wait=60", job_request())  # a second's work: well within
        ids.extend([json.loads(raw)["job_id"]] if status == 202 else [])
        assert status == 200 and headers["content-type"] == "image/png", raw[:300]
        assert Image.open(io.BytesIO(raw)).size == (192, 192) and headers["x-level"] == "8"
        status, headers, raw = call("POST", url + "?wait=0&format=json", job_request(LONG))
        job = json.loads(raw)
        ids.extend([job["job_id"]] if "job_id" in job else [])
        assert status == 202 and job["status"] in ("queued", "running") and headers["location"] == job["links"]["self"]
    for bad in ("61", "-1", "soon", "nan"):
        status, _, raw = call("POST", f"{url}?wait={bad}", job_request())
        assert status == 422 and json.loads(raw)["field"] == "wait", (bad, raw)


class Receiver(BaseHTTPRequestHandler):
    """A webhook receiver: records each POST (headers, body) on its server."""

    def do_POST(self) -> None:  # noqa: N802  (http.server's name)
        body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
        self.server.calls.append((dict(self.headers), body))  # type: ignore[attr-defined]
        self.server.got.set()  # type: ignore[attr-defined]
        self.send_response(204)
        self.end_headers()

    def log_message(self, *_args) -> None:
        pass


@pytest.fixture
def receiver(monkeypatch):
    """A loopback webhook receiver, and the URL guard widened to its port (as tests do for
    image URLs: UPSCALE_LAB_TEST_LOOPBACK_PORT)."""
    server = ThreadingHTTPServer(("127.0.0.1", 0), Receiver)
    server.calls, server.got = [], threading.Event()  # type: ignore[attr-defined]
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    monkeypatch.setenv("UPSCALE_LAB_TEST_LOOPBACK_PORT", str(server.server_port))
    yield server
    server.shutdown()
    thread.join(10)


def test_the_webhook_is_called_signed_with_the_key(lab_server, receiver, monkeypatch):
    monkeypatch.setenv("UPSCALE_LAB_API_KEY", "s3cret")
    key = {"X-API-Key": "s3cret"}
    hook = f"http://127.0.0.1:{receiver.server_port}/hook?from=lab"
    job = submit(lab_server, job_request(webhook=hook), key)
    assert receiver.got.wait(WAIT_S), "the webhook was never called"
    headers, body = receiver.calls[0]
    want = "sha256=" + hmac.new(b"s3cret", body, hashlib.sha256).hexdigest()
    assert hmac.compare_digest(headers["X-Signature"], want)
    doc = json.loads(body)
    assert doc["job_id"] == job["job_id"] and doc["status"] == "done" and doc["result"] == job["links"]["result"]
    seen = poll(lab_server, job["job_id"], lambda d: (d["webhook"]["outcome"] or "").startswith("delivered"), key)
    assert seen["webhook"]["url"] == hook and "try 1 of 3" in seen["webhook"]["outcome"]


def test_a_webhook_to_a_private_or_loopback_address_is_refused(lab_server):
    with cancelled_at_exit(lab_server) as ids:
        for hook in ("http://10.0.0.1/hook", "http://127.0.0.1/hook", "http://[::1]:80/x", "ftp://example.com/x"):
            status, _, raw = call("POST", lab_server + JOBS, job_request(webhook=hook))
            ids.extend([json.loads(raw)["job_id"]] if status == 202 else [])
            assert status == 422 and json.loads(raw)["field"] == "webhook", (hook, raw)
    # the upscale door runs nothing later, so it has no webhook to call
    status, _, raw = call("POST", lab_server + "/api/v1/upscale", job_request(webhook="http://10.0.0.1/hook"))
    assert status == 422 and json.loads(raw)["field"] == "webhook"


def test_the_door_checks_apply_and_a_job_is_seen_only_with_its_key(lab_server, monkeypatch):
    assert call("POST", lab_server + JOBS, job_request(upscale_strength=10))[0] == 422
    req = urllib.request.Request(lab_server + JOBS, data=b"{}", headers={"Content-Type": "text/plain"}, method="POST")
    with pytest.raises(urllib.error.HTTPError) as err:
        urllib.request.urlopen(req, timeout=60)
    assert err.value.code == 415
    monkeypatch.setenv("UPSCALE_LAB_API_KEY", "first")
    assert call("POST", lab_server + JOBS, job_request())[0] == 401
    job = submit(lab_server, job_request(), {"X-API-Key": "first"})
    poll(lab_server, job["job_id"], ended, {"Authorization": "Bearer first"})
    assert call("GET", job["links"]["self"])[0] == 401
    monkeypatch.setenv("UPSCALE_LAB_API_KEY", "second")  # the key changed: its jobs are not the old key's
    for link in (job["links"]["self"], job["links"]["result"]):
        assert call("GET", link, headers={"X-API-Key": "second"})[0] == 404


def app_process(env: dict[str, str], log_path: Path):
    """conftest's app_process, its log kept across the restarts of one test."""
    from conftest import app_process as started

    return started(env, log_path, append=True)


def test_a_server_killed_mid_job_comes_back_with_the_job_interrupted(tmp_path):
    from conftest import free_port

    env = {k: v for k, v in os.environ.items() if not k.startswith("HF_")}
    env.update(
        HF_HOME=str(tmp_path / "hf"),  # no diffusion weights: level 8 needs none
        HF_HUB_OFFLINE="1",
        GRADIO_ANALYTICS_ENABLED="False",
        UPSCALE_LAB_WARM_UP="0",
        UPSCALE_LAB_JOBS_DB=f"sqlite:///{tmp_path / 'db' / 'jobs.sqlite'}",
        UPSCALE_LAB_JOBS_DIR=str(tmp_path / "results"),
        PORT=str(free_port()),
    )
    env.pop("UPSCALE_LAB_API_KEY", None)
    log = tmp_path / "app.log"
    with app_process(env, log) as (url, app):
        first = submit(url, job_request())
        assert poll(url, first["job_id"], ended)["status"] == "done"
        png = call("GET", first["links"]["result"])[2]
        long = submit(url, job_request(LONG))
        assert poll(url, long["job_id"], under_way)["status"] == "running"
        app.send_signal(signal.SIGKILL)  # mid-run: no shutdown code runs
        app.wait(60)
    assert (tmp_path / "db" / "jobs.sqlite").exists()
    with app_process(env, log) as (url, app):
        status, _, raw = call("GET", f"{url}{JOBS}/{first['job_id']}/result")
        assert status == 200 and raw == png  # the finished answer, intact
        assert json.loads(call("GET", f"{url}{JOBS}/{first['job_id']}")[2])["status"] == "done"
        doc = json.loads(call("GET", f"{url}{JOBS}/{long['job_id']}")[2])
        assert doc["status"] == "interrupted" and "submit it again" in doc["error"], doc
        assert call("GET", f"{url}{JOBS}/{long['job_id']}/result")[0] == 409
        again = submit(url, job_request(LONG))
        assert poll(url, again["job_id"], under_way)["status"] == "running"
        app.terminate()  # a clean stop (SIGTERM): the running job is stopped and recorded at once
        assert app.wait(120) in (0, -signal.SIGTERM)  # uvicorn re-raises the signal after its shutdown
    with sqlite3.connect(tmp_path / "db" / "jobs.sqlite") as db:
        (status,) = db.execute("SELECT status FROM jobs WHERE id = ?", (again["job_id"],)).fetchone()
    assert status == "interrupted"


def test_results_expire_and_are_removed(tmp_path):
    """After UPSCALE_LAB_JOB_TTL_S the result is 410 (even before the sweep), then its files go."""
    from lab.jobs import Answer, Jobs, JobStore, result_response

    store = JobStore(f"sqlite:///{tmp_path / 'jobs.sqlite'}", tmp_path / "results", ttl_s=3600)
    jobs = Jobs(store, max_queued=1)  # not started: no worker
    store.add("j1", owner="", base_url="http://lab", webhook=None, estimate=None)
    store.save("j1", Answer(media_type="image/png", body=b"png", json_body=b"{}", headers={"X-Level": "8"}))
    job = store.get("j1")
    response = result_response(jobs, job, as_json=False)
    assert response.status_code == 200 and response.body == b"png" and response.headers["x-level"] == "8"
    store.update("j1", finished=time.time() - 3601)
    assert result_response(jobs, store.get("j1"), as_json=True).status_code == 410
    store.sweep()
    assert not list((tmp_path / "results").iterdir())
    assert result_response(jobs, store.get("j1"), as_json=False).status_code == 410
