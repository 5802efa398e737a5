"""Jobs over REST, in Deep-Image's shape: ``POST /api/v1/jobs`` takes the JSON of
``/api/v1/upscale`` and answers 202 with a job id at once; ``GET /api/v1/jobs/{id}`` tells its
status, stage, progress and estimated time; ``GET /api/v1/jobs/{id}/result`` gives the answer the
upscale door would have given (409 until done, 410 once expired); ``DELETE /api/v1/jobs/{id}``
cancels it. An optional ``webhook`` URL is called when the job ends.

Jobs run one at a time in one worker thread, through the supervision every run uses
(``supervision.engine_run``), so they share the engine with the UI and the upscale door. The
job table is SQLite under the cache folder (any SQLAlchemy URL via ``UPSCALE_LAB_JOBS_DB``); the
answers are files in a folder beside it (``UPSCALE_LAB_JOBS_DIR``), written atomically.

The restart rule: a job's input image is held in memory only, never written to disk, so a job
queued or running when the server stopped cannot go on; the next start marks it ``interrupted``
(submit it again). Every finished answer stays downloadable until it expires
(``UPSCALE_LAB_JOB_TTL_S``, default 24 h). One server process per jobs database: a starting
server takes every unfinished job in it for one its own crash left behind.
"""

from __future__ import annotations

import asyncio
import dataclasses
import hashlib
import hmac
import http.client
import json
import logging
import math
import os
import queue
import secrets
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import sqlalchemy as sa
from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse, Response
from starlette.requests import ClientDisconnect

from lab import supervision
from lab.form import fetch_policy
from lab.rest import (
    API_KEY_ENV,
    Refused,
    answer,
    check_key,
    check_media_type,
    error,
    given_key,
    read_json,
    request_and_image,
)
from pipelines.cache import cache_dir
from pipelines.database import open_database
from pipelines.engine import RunResult
from pipelines.errors import Cancelled, LabError, RequestError, URLFetchError

# fetch.py's connections go to the address that was checked (no second lookup to rebind)
from pipelines.fetch import FetchPolicy, _PinnedHTTP, _PinnedHTTPS, check_address, system_resolver
from pipelines.files import write_atomic
from pipelines.imaging import LoadedImage
from pipelines.request import UpscaleRequest

log = logging.getLogger("upscale-lab.jobs")

JOBS_DB_ENV = "UPSCALE_LAB_JOBS_DB"
JOBS_DIR_ENV = "UPSCALE_LAB_JOBS_DIR"
JOB_TTL_ENV = "UPSCALE_LAB_JOB_TTL_S"
JOBS_ROUTE = "/api/v1/jobs"
WEBHOOK_FIELD = "webhook"
WEBHOOK_TRIES = 3
WEBHOOK_BACKOFF_S = 2.0  # seconds before the second try; doubled before each further one
ENDED = ("done", "failed", "cancelled", "interrupted")
SWEEP_S = 60.0
INTERRUPTED = (
    "the server stopped before the job finished: submit it again"  # how often an idle worker removes expired answers
)

_META = sa.MetaData()
_JOBS = sa.Table(
    "jobs",
    _META,
    sa.Column("id", sa.String(32), primary_key=True),
    sa.Column("owner", sa.String(64), nullable=False),  # sha256 of the API key that created it; "" without
    sa.Column("status", sa.String(16), nullable=False),
    sa.Column("stage", sa.String(200), nullable=False, default=""),
    sa.Column("progress", sa.Float, nullable=False, default=0.0),
    sa.Column("estimate_s", sa.Float),
    sa.Column("created", sa.Float, nullable=False),  # Unix times
    sa.Column("started", sa.Float),
    sa.Column("finished", sa.Float),
    sa.Column("error", sa.Text),
    sa.Column("error_field", sa.String(100)),
    sa.Column("error_status", sa.Integer),
    sa.Column("media_type", sa.String(100)),  # of the answer's non-JSON form
    sa.Column("headers", sa.Text),  # the answer's X- headers, as JSON
    sa.Column("webhook", sa.Text),
    sa.Column("webhook_outcome", sa.Text),
    sa.Column("base_url", sa.Text, nullable=False),
)


@dataclass(frozen=True)
class Job:
    """One row of the job table (times are Unix seconds)."""

    id: str
    owner: str
    status: str
    stage: str
    progress: float
    estimate_s: float | None
    created: float
    started: float | None
    finished: float | None
    error: str | None
    error_field: str | None
    error_status: int | None
    media_type: str | None
    headers: str | None
    webhook: str | None
    webhook_outcome: str | None
    base_url: str


@dataclass(frozen=True)
class Answer:
    """What the upscale door answers for a run: the image form and the ``?format=json`` form."""

    media_type: str
    body: bytes
    json_body: bytes
    headers: dict[str, str]


class JobStore:
    """The job table (any SQLAlchemy database) and the answer files (``folder``)."""

    def __init__(self, url: str, folder: Path, ttl_s: float) -> None:
        self.folder, self.ttl_s = folder, ttl_s
        self._db = open_database(url, _META)
        folder.mkdir(parents=True, exist_ok=True)

    @classmethod
    def from_env(cls) -> JobStore:
        """``UPSCALE_LAB_JOBS_DB`` (default: ``jobs.sqlite`` in the cache folder), the answers
        in ``UPSCALE_LAB_JOBS_DIR`` (default: ``jobs`` beside a SQLite file, else in the cache
        folder), kept ``UPSCALE_LAB_JOB_TTL_S`` seconds (default 24 h)."""
        url = os.environ.get(JOBS_DB_ENV) or f"sqlite:///{cache_dir() / 'jobs.sqlite'}"
        database = sa.make_url(url).database
        beside = Path(database).parent if url.startswith("sqlite") and database not in (None, "", ":memory:") else None
        folder = Path(os.environ.get(JOBS_DIR_ENV) or (beside or cache_dir()) / "jobs")
        ttl = float(os.environ.get(JOB_TTL_ENV, str(24 * 3600)))
        if not math.isfinite(ttl) or ttl <= 0:
            raise ValueError(f"{JOB_TTL_ENV} must be a positive number of seconds, got {ttl}")
        return cls(url, folder, ttl)

    def add(self, job_id: str, *, owner: str, base_url: str, webhook: str | None, estimate: float | None) -> Job:
        values = dict(id=job_id, owner=owner, status="queued", created=time.time(), base_url=base_url)
        with self._db.begin() as db:
            db.execute(_JOBS.insert().values(**values, webhook=webhook, estimate_s=estimate))
        job = self.get(job_id)
        assert job is not None  # just written
        return job

    def get(self, job_id: str) -> Job | None:
        with self._db.connect() as db:
            row = db.execute(_JOBS.select().where(_JOBS.c.id == job_id)).mappings().first()
        return Job(**row) if row is not None else None

    def update(self, job_id: str, **values: Any) -> None:
        with self._db.begin() as db:
            db.execute(_JOBS.update().where(_JOBS.c.id == job_id).values(**values))

    def finish(self, job_id: str, status: str, **values: Any) -> None:
        """End the job with ``status`` unless it has ended already."""
        with self._db.begin() as db:
            db.execute(
                _JOBS.update()
                .where(_JOBS.c.id == job_id, _JOBS.c.status.not_in(ENDED))
                .values(status=status, finished=time.time(), **values)
            )

    def save(self, job_id: str, result: Answer) -> None:
        """Write the answer files (atomically), then mark the job done: the row is the commit."""
        write_atomic(self._path(job_id, json_form=True), result.json_body, sync=True)
        write_atomic(self._path(job_id, json_form=False), result.body, sync=True)
        self.finish(job_id, "done", progress=1.0, media_type=result.media_type, headers=json.dumps(result.headers))

    def read(self, job: Job, *, json_form: bool) -> bytes:
        """The answer's bytes. Raises OSError when the file is gone (expired)."""
        return self._path(job.id, json_form=json_form).read_bytes()

    def expired(self, job: Job, now: float | None = None) -> bool:
        return job.finished is not None and (now or time.time()) > job.finished + self.ttl_s

    def recover(self) -> int:
        """Mark every job left queued or running by a previous process ``interrupted`` and
        remove any answer files it had begun; returns how many."""
        with self._db.begin() as db:
            ids = [r.id for r in db.execute(sa.select(_JOBS.c.id).where(_JOBS.c.status.in_(("queued", "running"))))]
        for job_id in ids:
            self.finish(job_id, "interrupted", error=INTERRUPTED)
            for json_form in (True, False):
                self._path(job_id, json_form=json_form).unlink(missing_ok=True)
        return len(ids)

    def sweep(self) -> None:
        """Remove the answer files of expired jobs; forget jobs a TTL after they expired."""
        now = time.time()
        with self._db.begin() as db:
            old = sa.and_(_JOBS.c.finished.is_not(None), _JOBS.c.finished < now - self.ttl_s)
            ids = [r.id for r in db.execute(sa.select(_JOBS.c.id).where(old, _JOBS.c.status == "done"))]
            db.execute(_JOBS.delete().where(_JOBS.c.finished < now - 2 * self.ttl_s))
        for job_id in ids:
            for json_form in (True, False):
                self._path(job_id, json_form=json_form).unlink(missing_ok=True)

    def _path(self, job_id: str, *, json_form: bool) -> Path:
        return self.folder / f"{job_id}.{'json' if json_form else 'image'}"


@dataclass
class _Pending:
    """A job the worker holds: its input (in memory only) and what stops it."""

    job_id: str
    image: LoadedImage
    request: UpscaleRequest
    policy: FetchPolicy  # the URL guard at submission, for the webhook
    sign_key: str | None  # the API key at submission: signs the webhook
    estimate: float | None  # the engine's estimate_seconds, None before it has measured costs
    cancel: threading.Event = dataclasses.field(default_factory=threading.Event)
    ended: threading.Event = dataclasses.field(default_factory=threading.Event)
    stage: str = "queued"
    progress: float = 0.0
    started: float | None = None  # monotonic


def owner_of(http: Request) -> str:
    """Whose job: a hash of the API key the request carries when a key is set, else ""."""
    if not os.environ.get(API_KEY_ENV):
        return ""
    return hashlib.sha256(given_key(http).encode()).hexdigest()


def render(result: RunResult, request: UpscaleRequest, source: LoadedImage) -> Answer | Response:
    """The upscale door's two answers for ``result`` (the image and the JSON), or its error
    response. Raises RequestError when no encoding fits the request (``max_file_size``)."""
    try:
        image = answer(result, request, as_json=False, source=source)
        as_json = answer(result, request, as_json=True, source=source)
    except Refused as exc:
        return exc.response
    if image.status_code != 200:
        return image  # an error() answer
    headers = {k: v for k, v in image.headers.items() if k.lower().startswith("x-")}
    media = image.media_type or image.headers.get("content-type", "application/octet-stream")
    return Answer(media_type=media, body=bytes(image.body), json_body=bytes(as_json.body), headers=headers)


class Jobs:
    """The queue of jobs and the one worker thread that runs them, over a JobStore."""

    def __init__(self, store: JobStore, *, max_queued: int) -> None:
        self.store, self.max_queued = store, max_queued
        self._queue: queue.Queue[_Pending | None] = queue.Queue()
        self._held: dict[str, _Pending] = {}  # queued or running, in submission order
        self._lock = threading.Lock()
        self._thread = threading.Thread(target=self._work, name="jobs", daemon=True)
        self._closing = False

    def start(self) -> None:
        interrupted = self.store.recover()
        if interrupted:
            log.warning("%d job(s) left unfinished by the last server are marked interrupted", interrupted)
        self._thread.start()

    def close(self, timeout: float = 60) -> None:
        """At shutdown: the running job stops at the engine's next check and it, like every
        queued job, ends ``interrupted``; the worker thread ends (within ``timeout`` seconds)."""
        with self._lock:
            self._closing = True
            held = list(self._held.values())
        for pending in held:
            pending.cancel.set()
            if pending.started is None:
                self.store.finish(pending.job_id, "interrupted", error=INTERRUPTED)
        self._queue.put(None)
        if self._thread.is_alive():
            self._thread.join(timeout)

    # ------------------------------------------------------------------ submission
    def full(self) -> bool:
        with self._lock:
            return sum(1 for p in self._held.values() if p.started is None) >= self.max_queued

    async def submit(self, http: Request, data: dict[str, Any]) -> Job:
        """Validate the request JSON as the upscale door does (plus ``webhook``), load its image
        and queue the job. Raises Refused (422 naming the field, 503 when the queue is full)."""
        if self.full():
            raise Refused(503, "the job queue is full: try again shortly")
        policy = fetch_policy()
        webhook = await asyncio.to_thread(take_webhook, data, policy)
        req, image = await request_and_image(data)
        try:
            estimate = supervision.get_engine().estimate_seconds(image.size, req, jpeg=image.jpeg_quality is not None)
        except LabError as exc:
            raise Refused(422, str(exc), getattr(exc, "field", None)) from None
        pending = _Pending(secrets.token_urlsafe(16), image, req, policy, os.environ.get(API_KEY_ENV) or None, estimate)
        with self._lock:
            if sum(1 for p in self._held.values() if p.started is None) >= self.max_queued:
                raise Refused(503, "the job queue is full: try again shortly")
            self._held[pending.job_id] = pending
        base = str(http.base_url).rstrip("/")
        try:
            job = await asyncio.to_thread(
                self.store.add, pending.job_id, owner=owner_of(http), base_url=base, webhook=webhook, estimate=estimate
            )
        except BaseException:
            with self._lock:
                self._held.pop(pending.job_id, None)
            raise
        self._queue.put(pending)
        log.info("job %s queued", pending.job_id)
        return job

    def cancel(self, job_id: str) -> bool:
        """Stop the job: a queued one never starts (cancelled now), a running one stops at the
        engine's next check. False when it is not held (it has ended)."""
        with self._lock:
            pending = self._held.get(job_id)
            if pending is None:
                return False
            pending.cancel.set()
            queued = pending.started is None
            if queued:
                self._held.pop(job_id)
        if queued:
            self.store.finish(job_id, "cancelled", stage="cancelled before it started")
            pending.ended.set()
            self._notify(pending)
        return True

    async def wait(self, job_id: str, seconds: float) -> None:
        """Return when the job has ended or after ``seconds``."""
        with self._lock:
            pending = self._held.get(job_id)
        if pending is not None:
            deadline = time.monotonic() + seconds
            while not pending.ended.is_set() and time.monotonic() < deadline:
                await asyncio.sleep(0.05)

    async def submit_and_wait(self, http: Request, data: dict[str, Any], wait: float) -> Response:
        """The upscale door's ``?wait=``: the run becomes a job; its answer if it ends within
        ``wait`` seconds (a failed one: the door's error), else 202 with the job (it goes on)."""
        try:
            job = await self.submit(http, data)
        except Refused as exc:
            return exc.response
        await self.wait(job.id, wait)
        ended = await asyncio.to_thread(self.store.get, job.id)
        job = ended or job
        if job.status == "done":
            return result_response(self, job, as_json=http.query_params.get("format") == "json")
        if job.status == "failed":
            return error(job.error_status or 500, job.error or "the run failed", job.error_field)
        return accepted(self, job, http)

    # ------------------------------------------------------------------ the worker
    def _work(self) -> None:
        self.store.sweep()
        while True:
            try:
                pending = self._queue.get(timeout=SWEEP_S)
            except queue.Empty:
                self.store.sweep()
                continue
            if pending is None:
                return
            if pending.cancel.is_set():  # cancelled while queued: already recorded
                continue
            try:
                self._run(pending)
            finally:
                with self._lock:
                    self._held.pop(pending.job_id, None)
                pending.ended.set()
            self._notify(pending)

    def _run(self, pending: _Pending) -> None:
        job_id = pending.job_id
        with self._lock:
            if pending.cancel.is_set():  # cancelled (or closing) since it left the queue: recorded there
                return
            pending.started, pending.stage = time.monotonic(), "waiting for the engine"
        self.store.update(job_id, status="running", started=time.time(), stage=pending.stage)
        log.info("job %s running", job_id)
        rendered: Answer | Response
        try:
            report = self._reporter(pending)
            result = supervision.engine_run(pending.image, pending.request, None, report, pending.cancel)
            rendered = render(result, pending.request, pending.image)
        except Cancelled:
            status, why = ("interrupted", INTERRUPTED) if self._closing else ("cancelled", None)
            self.store.finish(job_id, status, stage=pending.stage, progress=pending.progress, error=why)
            return
        except LabError as exc:
            rendered = error(422, str(exc), getattr(exc, "field", None))
        except Exception as exc:  # the worker outlives any one job; the failure is logged and recorded
            log.exception("job %s failed", job_id)
            rendered = error(500, f"internal error: {type(exc).__name__}: {exc}")
        if isinstance(rendered, Answer):
            self.store.save(job_id, rendered)
            log.info("job %s done", job_id)
            return
        doc = json.loads(bytes(rendered.body))
        self.store.finish(
            job_id,
            "failed",
            stage=pending.stage,
            progress=pending.progress,
            error=doc.get("error"),
            error_field=doc.get("field"),
            error_status=rendered.status_code,
        )

    def _reporter(self, pending: _Pending) -> Callable[[str, int, int], None]:
        """The engine's progress as the job's stage and progress (against the estimate when
        there is one, as the UI's bar does, else each stage's steps)."""

        def report(stage: str, done: int, total: int) -> None:
            with self._lock:
                pending.stage = stage
                if pending.estimate and pending.started is not None:
                    pending.progress = min(0.99, (time.monotonic() - pending.started) / pending.estimate)
                else:
                    pending.progress = min(0.99, done / max(total, 1))

        return report

    def _notify(self, pending: _Pending) -> None:
        job = self.store.get(pending.job_id)
        if job is None or not job.webhook:
            return
        self.store.update(job.id, webhook_outcome="sending")
        threading.Thread(
            target=deliver_webhook, args=(self.store, job, pending.policy, pending.sign_key), daemon=True
        ).start()

    # ------------------------------------------------------------------ views
    def view(self, job: Job, base: str) -> dict[str, Any]:
        """The job as the API shows it (``base``: the server's URL as the client reached it)."""
        with self._lock:
            pending = self._held.get(job.id) if job.status not in ENDED else None  # else the row is final
            stage, progress = (pending.stage, pending.progress) if pending else (job.stage, job.progress)
            started = pending.started if pending else None
            ahead = list(self._held).index(job.id) if pending and started is None else None
        status = "running" if started is not None else job.status  # the row follows in a moment
        eta = None
        if job.estimate_s is not None and status in ("queued", "running"):
            eta = max(0.0, job.estimate_s - (time.monotonic() - started if started is not None else 0.0))
        return {
            "job_id": job.id,
            "status": status,
            "stage": stage or status,
            "progress": round(progress if status != "queued" else 0.0, 3),
            "estimate_seconds": job.estimate_s,
            "eta_seconds": None if eta is None else round(eta, 1),
            "jobs_ahead": ahead,
            "created_at": _iso(job.created),
            "started_at": _iso(job.started),
            "finished_at": _iso(job.finished),
            "expires_at": _iso(job.finished + self.store.ttl_s) if job.status == "done" and job.finished else None,
            "expired": self.store.expired(job) if job.status == "done" else False,
            "error": job.error,
            "field": job.error_field,
            "webhook": {"url": job.webhook, "outcome": job.webhook_outcome} if job.webhook else None,
            "links": links(base, job.id),
        }


def _iso(t: float | None) -> str | None:
    return datetime.fromtimestamp(t, UTC).isoformat(timespec="seconds") if t is not None else None


def links(base: str, job_id: str) -> dict[str, str]:
    here = f"{base}{JOBS_ROUTE}/{job_id}"
    return {"self": here, "result": f"{here}/result", "cancel": here}


# ---------------------------------------------------------------------- webhooks
@dataclass(frozen=True)
class WebhookTarget:
    """A checked webhook URL: every address its host resolves to passed the URL guard."""

    scheme: str
    host: str
    port: int
    path: str
    addresses: list[str]


def check_webhook(url: Any, policy: FetchPolicy) -> WebhookTarget:
    """The webhook URL checked by the rules of image URLs (``pipelines/fetch.py``): http(s),
    an allowed port, every resolved address public. Raises RequestError naming ``webhook``."""
    if not isinstance(url, str) or not url.strip() or len(url) > 2000:
        raise RequestError(WEBHOOK_FIELD, "must be an http(s) URL of at most 2000 characters")
    parts = urlsplit(url.strip())
    scheme = parts.scheme.lower()
    if scheme not in ("http", "https") or not parts.hostname:
        raise RequestError(WEBHOOK_FIELD, f"must be an http(s) URL with a host, got {url[:120]!r}")
    try:
        port = parts.port or (443 if scheme == "https" else 80)
    except ValueError as exc:
        raise RequestError(WEBHOOK_FIELD, "has an invalid port") from exc
    if port not in policy.allowed_ports:
        raise RequestError(WEBHOOK_FIELD, f"port {port} is not allowed; allowed ports are {policy.allowed_ports}")
    try:
        addresses = system_resolver(parts.hostname, port)
        if not addresses:
            raise URLFetchError(f"cannot resolve host {parts.hostname!r}")
        for address in addresses:  # every address, not just the first
            check_address(address, allow_loopback=port in policy.loopback_ports)
    except URLFetchError as exc:
        raise RequestError(WEBHOOK_FIELD, str(exc)) from exc
    path = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
    return WebhookTarget(scheme, parts.hostname, port, path, addresses)


def take_webhook(data: dict[str, Any], policy: FetchPolicy) -> str | None:
    """Remove ``webhook`` from the request JSON (so that ``parse_request`` sees the API's
    fields only) and return it checked (None when absent). Raises Refused 422 naming it."""
    url = data.pop(WEBHOOK_FIELD, None)
    if url is None:
        return None
    try:
        check_webhook(url, policy)
    except RequestError as exc:
        raise Refused(422, str(exc), WEBHOOK_FIELD) from None
    return str(url).strip()


def post_webhook(url: str, body: bytes, headers: dict[str, str], policy: FetchPolicy) -> int:
    """POST ``body`` to ``url``, checked again now (the name may resolve elsewhere than at
    submission) and sent to the checked address; returns the HTTP status. Raises RequestError,
    OSError or http.client.HTTPException."""
    target = check_webhook(url, policy)
    conn_cls = _PinnedHTTPS if target.scheme == "https" else _PinnedHTTP
    conn = conn_cls(target.host, target.port, target.addresses[0], policy.connect_timeout)
    try:
        conn.request("POST", target.path, body=body, headers={"Content-Type": "application/json", **headers})
        resp = conn.getresponse()
        resp.read(65536)
        return resp.status
    finally:
        conn.close()


def webhook_body(job: Job) -> bytes:
    here = links(job.base_url, job.id)
    return json.dumps(
        {
            "job_id": job.id,
            "status": job.status,
            "result": here["result"] if job.status == "done" else None,
            "error": job.error,
            "links": here,
        }
    ).encode()


def deliver_webhook(store: JobStore, job: Job, policy: FetchPolicy, sign_key: str | None) -> None:
    """Call the job's webhook (the ended job's JSON, signed ``X-Signature: sha256=<hex HMAC>``
    with the API key when one is set), up to WEBHOOK_TRIES times with doubling pauses; the
    outcome is recorded on the job."""
    assert job.webhook is not None
    body = webhook_body(job)
    headers = {"User-Agent": "upscale-lab/1"}
    if sign_key:
        headers["X-Signature"] = "sha256=" + hmac.new(sign_key.encode(), body, hashlib.sha256).hexdigest()
    outcome = ""
    for attempt in range(1, WEBHOOK_TRIES + 1):
        try:
            status = post_webhook(job.webhook, body, headers, policy)
            if 200 <= status < 300:
                store.update(job.id, webhook_outcome=f"delivered: HTTP {status} (try {attempt} of {WEBHOOK_TRIES})")
                return
            outcome = f"HTTP {status}"
        except (RequestError, OSError, http.client.HTTPException) as exc:
            outcome = str(exc) or type(exc).__name__
        log.info("job %s webhook try %d failed: %s", job.id, attempt, outcome)
        if attempt < WEBHOOK_TRIES:
            time.sleep(WEBHOOK_BACKOFF_S * 2 ** (attempt - 1))
    store.update(job.id, webhook_outcome=f"failed after {WEBHOOK_TRIES} tries: {outcome}")


# ---------------------------------------------------------------------- routes
def add_jobs(api: FastAPI, *, queue_max: int, store: JobStore | None = None) -> Jobs:
    """Add the job routes to ``api`` and start the worker (``store``: the one from the
    environment by default); at most ``queue_max`` jobs wait at once. ``api.state.jobs`` is
    the Jobs (the upscale door's ``?wait=`` hands its runs to it)."""
    jobs = Jobs(store or JobStore.from_env(), max_queued=max(1, queue_max))
    jobs.start()
    api.router.add_event_handler("shutdown", jobs.close)
    api.state.jobs = jobs

    @api.post(JOBS_ROUTE, status_code=202)
    async def submit_job(http: Request) -> Response:
        try:
            check_key(http)
            check_media_type(http)
            if jobs.full():  # before the body is read
                raise Refused(503, "the job queue is full: try again shortly")
            job = await jobs.submit(http, await read_json(http))
        except Refused as exc:
            return exc.response
        except ClientDisconnect:
            return error(499, "the client closed the connection")
        return accepted(jobs, job, http)

    @api.get(JOBS_ROUTE + "/{job_id}")
    def job_status(job_id: str, http: Request) -> Response:
        try:
            return JSONResponse(jobs.view(visible_job(jobs, job_id, http), base_of(http)))
        except Refused as exc:
            return exc.response

    @api.get(JOBS_ROUTE + "/{job_id}/result")
    def job_result(job_id: str, http: Request) -> Response:
        try:
            return result_response(
                jobs, visible_job(jobs, job_id, http), as_json=http.query_params.get("format") == "json"
            )
        except Refused as exc:
            return exc.response

    @api.delete(JOBS_ROUTE + "/{job_id}")
    def cancel_job(job_id: str, http: Request) -> Response:
        try:
            job = visible_job(jobs, job_id, http)
        except Refused as exc:
            return exc.response
        if not jobs.cancel(job.id):
            return error(409, f"the job has already ended ({job.status})")
        job = jobs.store.get(job.id) or job
        return JSONResponse(
            {**jobs.view(job, base_of(http)), "cancel_requested": True}, status_code=200 if job.status in ENDED else 202
        )

    return jobs


def base_of(http: Request) -> str:
    return str(http.base_url).rstrip("/")


def accepted(jobs: Jobs, job: Job, http: Request) -> JSONResponse:
    """202 with the job: its id, status and links (``Location``: where to poll)."""
    doc = jobs.view(job, base_of(http))
    return JSONResponse(doc, status_code=202, headers={"Location": doc["links"]["self"]})


def visible_job(jobs: Jobs, job_id: str, http: Request) -> Job:
    """The job, if the caller may see it: 401 without the API key (when set), 404 when there
    is no such job or another key created it."""
    check_key(http)
    job = jobs.store.get(job_id) if len(job_id) <= 64 else None
    if job is None or not hmac.compare_digest(job.owner, owner_of(http)):
        raise Refused(404, f"no job {job_id[:64]!r}")
    return job


def result_response(jobs: Jobs, job: Job, *, as_json: bool) -> Response:
    """The job's answer as the upscale door gives it: 409 until done (a failed job: its error
    and status), 410 once expired."""
    if job.status != "done":
        detail = f": {job.error}" if job.error else ""
        return error(409, f"the job is {job.status}, not done{detail}", job.error_field)
    if jobs.store.expired(job):
        return error(410, "the job's result has expired")
    try:
        body = jobs.store.read(job, json_form=as_json)
    except OSError:
        return error(410, "the job's result is gone (expired or removed)")
    headers = json.loads(job.headers or "{}")
    media = "application/json" if as_json else job.media_type or "application/octet-stream"
    return Response(body, media_type=media, headers=headers)
