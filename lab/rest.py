"""The REST door: ``POST /api/v1/upscale`` takes the commercial API's JSON and answers the PNG
(or JSON with ``?format=json``).

A request is refused as early as possible: the API key, then a free queue slot (before the
body is read or decoded), then the media type, the body's size and JSON, the fields, the image.
"""

from __future__ import annotations

import asyncio
import base64
import json
import logging
import math
import os
import secrets
import threading
from typing import Any

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse, Response
from starlette.requests import ClientDisconnect

import presets
from lab import supervision
from lab.form import MAX_UPLOAD, fetch_policy
from pipelines.engine import LevelResult, RunResult
from pipelines.errors import Cancelled, LabError, RequestError
from pipelines.imaging import LoadedImage, load_image
from pipelines.metrics import json_number
from pipelines.output import encode_level
from pipelines.request import UpscaleRequest, parse_request, take_inline_image

log = logging.getLogger("upscale-lab.rest")

API_KEY_ENV = "UPSCALE_LAB_API_KEY"
ROUTE = "/api/v1/upscale"
HANGUP_POLL_S = 0.25


class Refused(Exception):
    """A REST request refused before any work: carries the error response."""

    def __init__(self, status: int, message: str, field: str | None = None) -> None:
        super().__init__(message)
        self.response = error(status, message, field)


def error(status: int, message: str, field: str | None = None) -> JSONResponse:
    """The error body every refusal uses: ``{"error": ..., "field": ...}``."""
    return JSONResponse({"error": message, **({"field": field} if field else {})}, status_code=status)


def add_rest(api: FastAPI, *, queue_max: int) -> None:
    """Add the REST routes to ``api``; at most ``queue_max`` requests are admitted at once
    (a slot is taken before the body is read, so a full queue is refused at the door)."""
    slots = threading.BoundedSemaphore(max(1, queue_max))

    @api.post(ROUTE)
    async def rest_upscale(http: Request) -> Response:
        if not slots.acquire(blocking=False):
            return error(503, "queue full: try again shortly")
        try:
            check_key(http)
            check_media_type(http)
            wait = wait_seconds(http)
            if wait is not None:  # the run becomes a job (lab/jobs.py): its answer if ready in time, else 202
                jobs = getattr(http.app.state, "jobs", None)
                if jobs is None:
                    raise Refused(422, "wait: this server runs no jobs", "wait")
                return await jobs.submit_and_wait(http, await read_json(http), wait)
            req, loaded = await request_and_image(await read_json(http))
            result = await run_until_hangup(http, loaded, req)
            return answer(result, req, as_json=http.query_params.get("format") == "json", source=loaded)
        except Refused as exc:
            return exc.response
        except ClientDisconnect:
            log.info("REST client hung up before its request was read")
            return error(499, "the client closed the connection")
        except Cancelled:
            log.info("REST client hung up: its run was stopped")
            return error(499, "the client closed the connection; the run was stopped")
        except LabError as exc:
            return error(422, str(exc), getattr(exc, "field", None))
        finally:
            slots.release()

    @api.api_route(ROUTE, methods=["GET", "PUT", "PATCH", "DELETE"], include_in_schema=False)
    async def rest_wrong_method(http: Request) -> Response:
        response = error(405, f"{http.method} is not allowed here: POST the JSON request to {ROUTE}")
        response.headers["Allow"] = "POST"
        return response


def check_key(http: Request) -> None:
    """401 unless the request carries the API key (when one is set)."""
    key = os.environ.get(API_KEY_ENV)
    if not key:
        return
    if not secrets.compare_digest(given_key(http).encode(), key.encode()):
        raise Refused(401, "missing or wrong API key (send X-API-Key or Authorization: Bearer)")


def given_key(http: Request) -> str:
    """The API key the request carries (``X-API-Key`` or ``Authorization: Bearer``), "" if none."""
    return http.headers.get("x-api-key") or http.headers.get("authorization", "").removeprefix("Bearer ").strip()


WAIT_MAX_S = 60


def wait_seconds(http: Request) -> float | None:
    """The ``?wait=`` seconds (0 to WAIT_MAX_S; None when absent). Raises Refused 422 naming ``wait``."""
    raw = http.query_params.get("wait")
    if raw is None:
        return None
    try:
        wait = float(raw)
    except ValueError:
        wait = math.nan
    if not 0 <= wait <= WAIT_MAX_S:  # NaN fails too
        raise Refused(422, f"wait: must be a number of seconds from 0 to {WAIT_MAX_S}, got {raw[:40]!r}", "wait")
    return wait


def check_media_type(http: Request) -> None:
    """415 unless the body is declared ``application/json``: a web page can send a
    ``text/plain`` body across sites without a preflight, JSON needs the browser's consent."""
    media = http.headers.get("content-type", "").split(";", 1)[0].strip().lower()
    if media != "application/json":
        raise Refused(415, f"send the request as Content-Type: application/json (got {media or 'none'})")


class BodyTooLarge(Exception):
    """A request body over the limit (declared, or counted while reading)."""


async def read_body(http: Request, limit: int) -> bytes:
    """The request body, at most ``limit`` bytes: a larger ``Content-Length`` is refused before
    anything is read, and a chunked body is read only up to the limit. Raises BodyTooLarge."""
    declared = http.headers.get("content-length")
    too_large = f"the request body is over the limit of {limit / 1e6:.0f} MB (a {MAX_UPLOAD} image in base64)"
    if declared is not None and declared.strip().isdigit() and int(declared) > limit:
        raise BodyTooLarge(too_large)
    body = bytearray()
    async for chunk in http.stream():
        body += chunk
        if len(body) > limit:
            raise BodyTooLarge(too_large)
    return bytes(body)


async def read_json(http: Request) -> dict[str, Any]:
    """The body as a JSON object, read within the limit: 413 over it, 400 if not JSON."""
    try:
        raw = await read_body(http, presets.MAX_REQUEST_BODY_BYTES)
    except BodyTooLarge as exc:
        raise Refused(413, str(exc)) from None
    try:
        data = json.loads(raw or b"null")
    except ValueError as exc:  # JSONDecodeError, UnicodeDecodeError, an integer of thousands of digits
        raise Refused(400, f"malformed JSON: {exc}") from None
    except RecursionError:
        raise Refused(400, "malformed JSON: nested too deeply") from None
    if not isinstance(data, dict):
        raise Refused(400, "the body must be a JSON object")
    return data


async def request_and_image(data: dict[str, Any]) -> tuple[UpscaleRequest, LoadedImage]:
    """The validated request (levels checked against the served engine's table) and its image,
    from ``url`` or the lab extra ``image_base64`` (``take_inline_image``: the rule
    ``cli.py upscale --request`` shares), decoded off the event loop; 422 otherwise."""
    try:
        blob = take_inline_image(data)
        req = parse_request(data, table=supervision.served_table())  # levels: the engine's, before any image
        if blob is not None:
            return req, await asyncio.to_thread(load_image, blob)
        if req.url:
            return req, await asyncio.to_thread(supervision.get_engine().load, req.url, policy=fetch_policy())
        raise RequestError("url", "give 'url' (or the lab extra 'image_base64')")
    except LabError as exc:
        raise Refused(422, str(exc), getattr(exc, "field", None)) from None


async def run_until_hangup(http: Request, image: LoadedImage, req: UpscaleRequest) -> RunResult:
    """Run the engine for a REST request; if the client hangs up meanwhile, stop the run
    (the engine raises Cancelled at its next tile) instead of finishing work nobody will read."""
    cancel = threading.Event()
    work = asyncio.ensure_future(
        supervision.run_cancellable(cancel, supervision.engine_run, image, req, None, None, cancel)
    )
    while not work.done():
        await asyncio.wait({work}, timeout=HANGUP_POLL_S)
        if not work.done() and not cancel.is_set() and await http.is_disconnected():
            cancel.set()
    return await work


def answered_level(result: RunResult, req: UpscaleRequest) -> LevelResult:
    """The level whose image is the answer: the only one asked for; of several, the recommended
    one, else (no recommendation) the requested strength if it ran, else the first that ran.
    A ``fidelity_floor`` that scored levels cannot reach is the caller's error (422)."""
    if len(result.levels) == 1:
        return result.levels[0]
    advice = result.recommendation
    if advice is not None and advice.level is not None:
        return result.level(advice.level)
    if any(_finite(lv.metrics.get("niqe")) for lv in result.levels):
        raise Refused(422, advice.reason if advice else "no recommendation", "fidelity_floor")
    ran = [lv for lv in result.levels if lv.image is not None]
    chosen = next((lv for lv in ran if lv.level == req.strength), ran[0] if ran else result.levels[0])
    return chosen


def _finite(value: Any) -> bool:
    return isinstance(value, int | float) and math.isfinite(value)


def answer(result: RunResult, req: UpscaleRequest, *, as_json: bool, source: LoadedImage | None = None) -> Response:
    """The answered level's image, encoded as ``req.output`` says (PNG by default; the
    ``source``'s EXIF, profile and DPI and the run's manifest embedded: ``pipelines.output``),
    with its headers; or with ``as_json`` the JSON answer (scores of every level, the
    recommendation, the manifest with ``output``: what was encoded). Raises RequestError naming
    ``max_file_size`` when no quality fits (422)."""
    lv = answered_level(result, req)
    if lv.image is None:  # missing weights: 503 until fetched; a part that failed: 500
        return error(503 if lv.status == "missing" else 500, f"level {lv.level} did not run: {lv.message}")
    advice = result.recommendation
    headers = {"X-Seed": str(result.seed), "X-Level": str(lv.level), "X-Size": f"{lv.image.size[0]}x{lv.image.size[1]}"}
    if advice is not None and advice.level is not None:
        headers["X-Recommended-Level"] = str(advice.level)
    encoded = encode_level(result, lv, req, source=source)
    if encoded.quality is not None:
        headers["X-Quality"] = str(encoded.quality)
    if not as_json:
        return Response(encoded.data, media_type=encoded.media_type, headers=headers)
    return JSONResponse(
        {
            "level": lv.level,
            "seed": result.seed,
            "width": lv.image.size[0],
            "height": lv.image.size[1],
            "metrics": {k: json_number(v) for k, v in lv.metrics.items()},
            "recommended_level": advice.level if advice else None,
            "recommendation": advice.to_json() if advice else None,
            "levels": {
                str(x.level): {"status": x.status, "metrics": {k: json_number(v) for k, v in x.metrics.items()}}
                for x in result.levels
            },
            "image_base64": base64.b64encode(encoded.data).decode(),
            "manifest": {**result.manifest, "output": {"level": lv.level, **encoded.to_json()}},
        },
        headers=headers,
    )
