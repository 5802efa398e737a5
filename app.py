"""Generative Upscale Lab — the Gradio Blocks app, the REST endpoint, and the Space entry.

The only module that imports gradio. Nothing loads at import: models load on the first run,
and ``launch`` sits under ``__main__``. Each event builds a frozen request on its first line
and calls one engine function; our exceptions become messages.

    python app.py                       # http://127.0.0.1:7860 (PORT / HOST to change)
    UPSCALE_LAB_API_KEY=secret python app.py   # REST requests then need the key
"""

from __future__ import annotations

try:  # ZeroGPU wants `spaces` imported before torch initialises CUDA
    import spaces  # type: ignore[import-not-found]
except ImportError:
    spaces = None

import asyncio
import base64
import binascii
import json
import logging
import os
import queue
import secrets
import shutil
import tempfile
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, TypeVar

import gradio as gr
from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse, Response
from PIL import Image

import presets
from pipelines.engine import Engine, EngineConfig, LevelResult, RunResult, recommend_level
from pipelines.errors import Cancelled, LabError, RequestError
from pipelines.fetch import FetchPolicy
from pipelines.imaging import LoadedImage, enable_heif, load_image
from pipelines.metrics import LEVEL_METRICS, caption_scores, json_number
from pipelines.models import download_models, hub_offline
from pipelines.recommend import Recommendation
from pipelines.report import (
    TABLE_COLUMNS,
    metrics_rows,
    placeholder,
    png_bytes,
    zip_run,
)
from pipelines.request import FITS, RequestFields, UpscaleRequest, draw_seed, parse_request
from views import HEATMAP_FULL_SCALE, change_heatmap, run_quality_figure, scores_figure

log = logging.getLogger("upscale-lab.app")

ROOT = Path(__file__).resolve().parent
EXAMPLES = [
    [str(ROOT / "examples" / "astronaut_portrait.png")],
    [str(ROOT / "examples" / "rocket_640x427.png")],
    [str(ROOT / "examples" / "chelsea_q25.jpg")],
]
MAX_UPLOAD = f"{presets.MAX_UPLOAD_BYTES // (1024 * 1024)}mb"
QUEUE_MAX = int(os.environ.get("UPSCALE_LAB_QUEUE_MAX", "16"))
RUN_TIME_LIMIT = float(os.environ.get("UPSCALE_LAB_TIME_LIMIT", "900"))
API_KEY_ENV = "UPSCALE_LAB_API_KEY"
WARM_UP_ENV = "UPSCALE_LAB_WARM_UP"  # "0": load the models on the first run instead of at start-up
RECOMMEND_BADGE = "★ recommended"


def scores_note(table: presets.LevelTable) -> str:
    """What the Scores tab's numbers mean (the baseline level from ``table``)."""
    return (
        f"Distance from bicubic measures **change, not quality**: a low PSNR against level {table.baseline_level} "
        "means the level departed further from a plain bicubic upscale — for better or worse. "
        "The quality scores need no reference: **NIQE** (lower = more natural), **colour drift** "
        "(ΔE00 against bicubic, low-passed; about 1 is just noticeable) and **tile seams** (1.0 = none). "
        "The plot below puts each level on both axes: faithful to the input (right) and natural (up)."
    )


def level_choices(table: presets.LevelTable) -> list[tuple[str, int]]:
    """The compare dropdowns' choices: ``"5: bicubic · medium (LoRA 0.5)"`` → 5."""
    return [(f"{lv.level}: {lv.recipe}", lv.level) for lv in table.levels]


# --------------------------------------------------------------------------- ZeroGPU


def _estimate_gpu_seconds(*args: Any, **kwargs: Any) -> int:
    """ZeroGPU duration: about 10 s per output megapixel per diffusion level, at least 60 s."""
    request: UpscaleRequest | None = next((a for a in args if isinstance(a, UpscaleRequest)), None)
    image: LoadedImage | None = next((a for a in args if isinstance(a, LoadedImage)), None)
    if request is None or image is None:
        return 120
    from pipelines.request import plan_size

    try:
        plan = plan_size(image.size, request)
    except LabError:
        return 60
    mp = plan.content[0] * plan.content[1] / 1e6
    generative = sum(1 for n in request.effective_levels if request.table.get(n).generative)
    return int(min(300, max(60, 20 + 10 * mp * max(1, generative))))


if spaces is not None:  # on a ZeroGPU Space the GPU is attached only inside spaces.GPU functions
    gpu = spaces.GPU(duration=_estimate_gpu_seconds)
else:  # anywhere else: run plainly

    def gpu(fn):  # type: ignore[no-untyped-def]
        return fn


# --------------------------------------------------------------------------- engine

_ENGINE: Engine | None = None
_ENGINE_LOCK = threading.Lock()
# session hash → the cancel events of that session's runs (a gradio_client may run several)
_CANCELS: dict[str, set[threading.Event]] = {}
_CANCELS_LOCK = threading.Lock()
T = TypeVar("T")


def get_engine() -> Engine:
    global _ENGINE
    with _ENGINE_LOCK:
        if _ENGINE is None:
            _ENGINE = Engine(EngineConfig())
        return _ENGINE


def set_engine(engine: Engine | None) -> Engine | None:
    """Make ``engine`` the one every event uses (None: the default, created lazily on the
    next event); returns the one it replaces."""
    global _ENGINE
    with _ENGINE_LOCK:
        previous, _ENGINE = _ENGINE, engine
    return previous


@gpu
def engine_run(
    image: LoadedImage,
    request: UpscaleRequest,
    session: str | None,
    progress: Any = None,
    cancel: threading.Event | None = None,
    on_level: Callable[[LevelResult], None] | None = None,
    *,
    time_limit: float = RUN_TIME_LIMIT,
) -> RunResult:
    """The one function that does GPU work: run the engine with cancel and a time limit
    (``time_limit`` seconds).

    ``cancel`` is set by whoever stops the run: the Cancel button or a closed page (by
    session), a cancelled gradio_client job or a REST client that hung up (by the caller), or
    the time limit here. The engine checks it at every tile and stage.
    """
    engine = get_engine()
    cancel = cancel or threading.Event()
    if session:
        with _CANCELS_LOCK:
            _CANCELS.setdefault(session, set()).add(cancel)
    timed_out = threading.Event()

    def time_up() -> None:
        timed_out.set()
        cancel.set()

    timer = threading.Timer(time_limit, time_up)
    timer.start()
    try:
        return engine.run(image, request, progress=progress, cancel=cancel, on_level=on_level)
    except Cancelled as exc:
        if timed_out.is_set():
            raise LabError(f"the run took longer than the {time_limit:g} s limit and was stopped") from exc
        raise
    finally:
        timer.cancel()
        if session:
            with _CANCELS_LOCK:
                events = _CANCELS.get(session, set())
                events.discard(cancel)
                if not events:
                    _CANCELS.pop(session, None)
        if engine.device.type == "cuda":
            import torch

            torch.cuda.empty_cache()


async def run_cancellable(cancel: threading.Event, fn: Callable[..., T], *args: Any) -> T:
    """Run ``fn(*args)`` in a worker thread and await it.

    Gradio stops an event by cancelling the task that awaits its handler (the Cancel button,
    a gradio_client ``job.cancel()``). A plain sync handler would run on to the end; here the
    cancellation sets ``cancel`` (the engine stops within one convolution) and waits for the worker,
    so the queue slot is handed on only when the engine is free again.
    """
    work = asyncio.ensure_future(asyncio.to_thread(fn, *args))
    try:
        return await asyncio.shield(work)
    except asyncio.CancelledError:
        await stop_worker(cancel, work)
        raise


async def stop_worker(cancel: threading.Event, work: asyncio.Future[Any]) -> None:
    """The client went away: stop the engine and wait until it is free (the queue slot is
    handed on only then)."""
    cancel.set()
    log.info("run cancelled by its client: stopping the engine")
    await asyncio.wait({work})
    if not work.cancelled():
        work.exception()  # retrieved: the Cancelled it ends with is expected


# --------------------------------------------------------------------------- UI helpers


@dataclass(frozen=True)
class UIInput:
    """Everything the run buttons read, frozen on the first line of each handler."""

    image: Any
    url: str
    width: str
    height: str
    fit: str
    padding: str
    prompt: str
    negative_prompt: str
    seed: float | None
    random_seed: bool

    @classmethod
    def of(
        cls,
        image: Any,
        url: Any,
        width: Any,
        height: Any,
        fit: Any,
        padding: Any,
        prompt: Any,
        negative: Any,
        seed: Any,
        random_seed: Any,
    ) -> UIInput:
        """From the raw component values (None for empty text boxes)."""
        return cls(
            image,
            url or "",
            width or "",
            height or "",
            fit or "canvas",
            padding or "",
            prompt or "",
            negative or "",
            seed,
            bool(random_seed),
        )

    def run(
        self,
        fields: RequestFields,
        request: gr.Request,
        progress: Any,
        cancel: threading.Event | None = None,
        on_level: Callable[[LevelResult], None] | None = None,
        on_estimate: Callable[[float | None], None] | None = None,
    ) -> RunResult:
        """Build the request from ``fields`` (see :meth:`fields`), load the image, estimate
        its time on this device, run the engine (the progress bar follows the estimate when
        there is one); our errors become gr.Error."""
        try:
            req = fields.build(table=get_engine().config.table)  # its levels: before the image loads
            loaded = self.load()
            estimate = get_engine().estimate_seconds(loaded.size, req, jpeg=loaded.jpeg_quality is not None)
            if on_estimate is not None:
                on_estimate(estimate)
            session = getattr(request, "session_hash", None)
            return engine_run(loaded, req, session, gradio_progress(progress, estimate), cancel, on_level)
        except LabError as exc:
            raise gr.Error(str(exc)) from exc

    def fields(
        self,
        *,
        upscale_strength: int | None = None,
        generative_upscale: bool | None = None,
        levels: tuple[int, ...] | None = None,
    ) -> RequestFields:
        """The form as request fields, plus what the button adds. A blank negative prompt box
        means the preset list (its placeholder); the random-seed box draws the seed here."""
        return RequestFields(
            width=self.width,
            height=self.height,
            padding=self.padding,
            fit=self.fit,
            prompt=self.prompt,
            negative_prompt=self.negative_prompt if self.negative_prompt.strip() else None,
            seed=draw_seed() if self.random_seed or self.seed is None else self.seed,
            upscale_strength=upscale_strength,
            generative_upscale=generative_upscale,
            levels=levels,
        )

    def load(self) -> LoadedImage:
        if self.image is not None:
            path = Path(self.image)
            if path.stat().st_size > presets.MAX_UPLOAD_BYTES:
                raise LabError(f"upload is {path.stat().st_size / 1e6:.1f} MB; the limit is {MAX_UPLOAD}")
            return load_image(path)
        if self.url.strip():
            return get_engine().load(self.url.strip(), policy=fetch_policy())
        raise LabError("upload an image, paste an image URL, or pick an example")


def fetch_policy() -> FetchPolicy:
    """The URL guard; tests may widen it to their own loopback port via the environment."""
    port = os.environ.get("UPSCALE_LAB_TEST_LOOPBACK_PORT")
    if port:
        return FetchPolicy(allowed_ports=(80, 443, int(port)), loopback_ports=(int(port),))
    return FetchPolicy()


def gradio_progress(progress: gr.Progress | None, estimate: float | None = None):  # -> Callable[[str, int, int], None]
    """The engine's progress as a gradio bar: with a time estimate the bar follows the clock
    against it (and says the time left), else each stage fills it."""
    start = time.monotonic()

    def report(stage: str, done: int, total: int) -> None:
        if progress is None:
            return
        if estimate:
            elapsed = time.monotonic() - start
            left = max(0.0, estimate - elapsed)
            progress(min(0.99, elapsed / estimate), desc=f"{stage} · about {left:.0f} s left of ~{estimate:.0f} s")
        else:
            progress((done, max(total, 1)), desc=stage, unit="steps")

    return report


def level_images(result: RunResult, recommended: int | None = None) -> list[tuple[Any, str]]:
    """Gallery items in grid order; levels that did not run get a cell that says why; the
    ``recommended`` level's caption carries the badge."""
    size = result.plan.canvas
    cell = (min(512, size[0]), max(1, round(min(512, size[0]) * size[1] / size[0])))
    in_grid = sorted(result.levels, key=lambda lv: (lv.preset.row, lv.preset.column))
    return level_items(in_grid, cell, recommended)


def recommendation_markdown(advice: Recommendation) -> str:
    if advice.level is None:
        return f"No recommendation: {advice.reason}"
    return f"**{RECOMMEND_BADGE}: level {advice.level}** — {advice.reason.split(': ', 1)[-1]}"


def recommendation_view(result: RunResult | None, floor: float | None) -> tuple[Any, Any, Any]:
    """The recommendation at the floor now set (no re-run): the grid with the badge on the
    recommended cell, the line under the grid, and the fidelity–naturalness plot."""
    if result is None:
        return gr.skip(), gr.skip(), gr.skip()
    try:
        floor_db = UpscaleRequest(fidelity_floor=floor).floor  # the API's check and default
    except RequestError as exc:
        raise gr.Error(str(exc)) from None
    advice = recommend_level(result.levels, floor_db)
    return level_images(result, advice.level), recommendation_markdown(advice), run_quality_figure(result, advice)


def level_items(
    levels: list[LevelResult], cell: tuple[int, int], recommended: int | None = None
) -> list[tuple[Any, str]]:
    items = []
    for lv in levels:
        caption = f"{lv.level} · {lv.preset.recipe}"
        if lv.level == recommended:
            caption = f"{RECOMMEND_BADGE} · {caption}"
        if lv.image is not None:
            items.append((lv.image, f"{caption}\n{caption_scores(lv.metrics)}"))  # two lines: the scores are never cut
        else:
            items.append(
                (placeholder(cell, f"Level {lv.level} not run. {lv.reason or lv.message}"), f"{caption}\n{lv.status}")
            )
    return items


def score_table(result: RunResult) -> list[list[str]]:
    """The Scores tab's rows: ``TABLE_COLUMNS`` (every level metric of the registry)."""
    return [[row[k] for k in TABLE_COLUMNS] for row in metrics_rows(result)]


SCORE_HEADERS = ["level", "recipe", "status", *[m.label for m in LEVEL_METRICS], "time (s)"]
# level and status narrow, the recipe wide, every score alike: headers wrap between words
SCORE_COLUMN_WIDTHS: list[str | int] = [
    "5%",
    "17%",
    "7%",
    *[f"{71 / (len(SCORE_HEADERS) - 3):.1f}%"] * (len(SCORE_HEADERS) - 3),
]


def out_dir() -> Path:
    base = Path(tempfile.gettempdir()) / "upscale-lab-runs"
    base.mkdir(exist_ok=True)
    runs = sorted(base.iterdir(), key=lambda p: p.stat().st_mtime)
    for old in runs[:-20]:  # keep the last 20 runs' downloads
        shutil.rmtree(old, ignore_errors=True)
    return Path(tempfile.mkdtemp(dir=base))


def compare_pair(result: RunResult | None, a: int, b: int) -> tuple[Any, Any] | None:
    if result is None:
        return None
    by = {lv.level: lv for lv in result.levels}
    la, lb = by.get(int(a)), by.get(int(b))
    if la is None or lb is None or la.image is None or lb.image is None:
        raise gr.Error(f"levels {a} and {b} must both have run (see the grid)")
    return (la.image, lb.image)


def heatmaps(result: RunResult) -> list[tuple[Any, str]]:
    baseline_level = result.table.baseline_level
    baseline = result.level(baseline_level).image
    white = f"white = ≥{HEATMAP_FULL_SCALE}/255"
    out = []
    for lv in result.levels:
        if lv.image is not None and baseline is not None and lv.level != baseline_level:
            out.append((change_heatmap(lv.image, baseline), f"{lv.level}: change vs bicubic ({white})"))
    return out


def status_markdown() -> str:
    engine = get_engine()
    lines = [f"**Device:** {engine.device_detail()}"]
    for mid, state in engine.model_status().items():
        lines.append(f"- `{mid}`: {state}")
    reason = fetch_unavailable_reason(engine)
    if reason:
        lines.append(f"\n*Fetch weights:* {reason}")
    return "\n".join(lines)


def fetch_unavailable_reason(engine: Engine) -> str | None:
    """Why the Fetch weights action is off here, or None when it may fetch."""
    if os.environ.get("SPACE_ID"):
        return "on a Space the weights come with the build (README's preload_from_hub), not from here."
    if hub_offline():
        return "HF_HUB_OFFLINE=1 is set: this server does not reach the Hugging Face Hub."
    if not any(state.startswith("missing") for state in engine.model_status().values()):
        return "every model is here."
    return None


def fetch_button_state() -> tuple[str, Any]:
    """The status panel and the Fetch weights button, enabled only where fetching can help."""
    reason = fetch_unavailable_reason(get_engine())
    return status_markdown(), gr.Button(interactive=reason is None)


def fetch_weights(report: Callable[[str, int, int], None], *, engine: Engine | None = None) -> list[str]:
    """Fetch the missing diffusion weights for ``engine`` (None: the lab's; self-hosted use);
    the next run finds them. Raises LabError (offline, unreachable hub, a file the repo lacks)."""
    engine = engine or get_engine()
    reason = fetch_unavailable_reason(engine)
    if reason:
        raise RequestError("fetch", reason)
    lines: list[str] = []

    def on_step(message: str, done: int, total: int) -> None:
        lines.append(message)
        report(message, done, total)

    download_models(engine.config.models, report=on_step)
    engine.models_changed()
    return lines


def fetch_weights_event(progress: Any = gr.Progress()) -> tuple[str, Any]:
    """The Fetch weights button: per-file progress, then the refreshed status panel."""
    try:
        fetch_weights(lambda message, done, total: progress((done, max(total, 1)), desc=message))
    except LabError as exc:
        raise gr.Error(str(exc)) from exc
    return fetch_button_state()


# --------------------------------------------------------------------------- events


async def run_grid(
    image,
    url,
    width,
    height,
    fit,
    padding,
    prompt,
    negative,
    seed,
    random_seed,
    request: gr.Request,
    progress=gr.Progress(),
):
    """All levels (nine by default): grid, scores, plot, compare, heatmaps, downloads. The grid fills in
    as levels finish (the levels without diffusion within seconds, each diffusion level when
    its pass ends); the last update carries everything."""
    ui = UIInput.of(image, url, width, height, fit, padding, prompt, negative, seed, random_seed)
    cancel = threading.Event()
    arrived: queue.SimpleQueue[Any] = queue.SimpleQueue()
    work = asyncio.ensure_future(asyncio.to_thread(grid_outputs, ui, request, progress, cancel, arrived.put))
    ready: dict[int, LevelResult] = {}
    estimate: float | None = None
    try:
        while not work.done():
            await asyncio.wait({work}, timeout=STREAM_POLL_S)
            fresh = False
            while not arrived.empty():
                item = arrived.get()
                if isinstance(item, LevelResult):
                    ready[item.level] = item
                    fresh = True
                else:
                    estimate = item
            if fresh and not work.done():
                yield partial_outputs(ready, estimate, get_engine().config.table)
        final = work.result()
    finally:
        # cancelled while waiting (CancelledError) or closed while paused at a yield
        # (gradio's /cancel acloses the generator: GeneratorExit): stop the engine either way
        if not work.done():
            await stop_worker(cancel, work)
    yield final


STREAM_POLL_S = 0.25


def preview(level: LevelResult, cell: tuple[int, int]) -> LevelResult:
    """The level with its image shrunk to the grid cell: partial updates stay small whatever
    the output size (the last update carries the full-size images)."""
    if level.image is None or level.image.width <= cell[0]:
        return level
    small = level.image.copy()
    small.thumbnail(cell, Image.Resampling.LANCZOS)
    return replace(level, image=small)


def partial_outputs(
    ready: dict[int, LevelResult], estimate: float | None, table: presets.LevelTable
) -> tuple[Any, ...]:
    """A grid update while the run goes on: finished levels, a placeholder for the others
    (``table``'s levels in grid order); every other output unchanged."""
    first = next(iter(ready.values()))
    size = first.image.size if first.image is not None else (512, 512)
    cell = (min(512, size[0]), max(1, round(min(512, size[0]) * size[1] / size[0])))
    items = []
    for lv in table.in_grid_order:
        got = ready.get(lv.level)
        if got is None:
            items.append((placeholder(cell, f"Level {lv.level}: running…"), f"{lv.level} · {lv.recipe}\nrunning…"))
        else:
            items.extend(level_items([preview(got, cell)], cell))
    note = f"{len(ready)} of {len(table.levels)} levels ready"
    if estimate:
        note += f" · estimated ~{estimate:.0f} s in all on {get_engine().device_label()}"
    skip = gr.skip()
    return (items, skip, skip, skip, skip, skip, skip, skip, skip, note, skip)


def grid_outputs(
    ui: UIInput,
    request: gr.Request,
    progress: Any,
    cancel: threading.Event,
    post: Callable[[Any], None] | None = None,
) -> tuple[Any, ...]:
    """The run of every level and everything the grid view shows (in a worker thread); ``post``
    receives the time estimate and then each level as it finishes."""
    levels = get_engine().config.table.numbers
    result = ui.run(ui.fields(levels=levels), request, progress, cancel, post, post)
    baseline = result.table.baseline_level
    folder = out_dir()
    archive = zip_run(result, folder / f"upscale-lab-seed{result.seed}.zip")
    manifest = folder / "manifest.json"
    manifest.write_text(result.manifest_json())
    ran = [lv.level for lv in result.levels if lv.image is not None]
    first = next((n for n in ran if n != baseline), baseline)
    notes = [
        f"Seed **{result.seed}** · output {result.plan.canvas[0]}×{result.plan.canvas[1]} · {result.timings['total']:.1f} s"
    ]
    notes += [f"⚠️ {w}" for w in result.warnings]
    missing = [lv for lv in result.levels if lv.status != "ok"]
    if missing:
        notes.append(
            f"Levels {', '.join(str(lv.level) for lv in missing)} did not run: {missing[0].reason or missing[0].message}"
        )
    return (
        level_images(result),
        score_table(result),
        scores_figure(result),
        result.seed,
        [str(archive), str(manifest)],
        compare_pair(result, first, baseline),
        gr.update(value=first),
        gr.update(value=baseline),
        heatmaps(result),
        "\n\n".join(notes),
        result,
    )


async def run_single(
    image,
    url,
    width,
    height,
    fit,
    padding,
    prompt,
    negative,
    seed,
    random_seed,
    strength,
    generative,
    request: gr.Request,
    progress=gr.Progress(),
):
    """One strength, one image: the commercial API's semantics."""
    ui = UIInput.of(image, url, width, height, fit, padding, prompt, negative, seed, random_seed)
    fields = ui.fields(upscale_strength=int(strength), generative_upscale=bool(generative))
    cancel = threading.Event()
    return await run_cancellable(cancel, single_outputs, ui, fields, request, progress, cancel)


def single_outputs(
    ui: UIInput, fields: RequestFields, request: gr.Request, progress: Any, cancel: threading.Event
) -> tuple[Any, ...]:
    """One level and its download (in a worker thread)."""
    result = ui.run(fields, request, progress, cancel)
    lv = result.levels[0]
    if lv.image is None:
        raise gr.Error(f"level {lv.level} did not run: {lv.message}")
    folder = out_dir()
    target = folder / f"upscaled_level{lv.level}_seed{result.seed}.png"
    target.write_bytes(png_bytes(lv.image))
    info = f"Level {lv.level} ({lv.preset.recipe}) · {lv.image.size[0]}×{lv.image.size[1]} · seed {result.seed} · {lv.seconds:.1f} s"
    return lv.image, str(target), info, result.seed


def cancel_run(request: gr.Request) -> str:
    """Stop every run of this session (the Cancel button; a closed page through cancel_on_leave)."""
    with _CANCELS_LOCK:
        events = list(_CANCELS.get(getattr(request, "session_hash", "") or "", ()))
    for event in events:
        event.set()
    return "Cancelling…" if events else "Nothing to cancel."


def cancel_on_leave(request: gr.Request) -> None:
    """The page was closed or reloaded (gradio's unload event): stop that session's run."""
    cancel_run(request)


# --------------------------------------------------------------------------- layout

CSS = """
#grid .caption-label {
  font-size: 0.8em; line-height: 1.3; white-space: pre-line !important;
  overflow: visible !important; text-overflow: clip !important; max-width: none !important;
}
.lab-note { font-size: 0.9em; opacity: 0.85; }
"""


def served_table(engine: Engine | None = None) -> presets.LevelTable:
    """The level table the UI lays out: ``engine``'s, else the served engine's, else the
    default engine's (read from its configuration: no engine is created here)."""
    with _ENGINE_LOCK:
        served = engine or _ENGINE
    return served.config.table if served is not None else EngineConfig().table


def build_ui(engine: Engine | None = None, *, queue_max: int | None = None) -> gr.Blocks:
    """The Blocks UI. ``engine`` injects a ready engine (tests: tiny models); None = the
    default engine, created lazily on the first event. Level choices, the grid's columns and
    labels, the compare defaults and the strength slider come from the engine's level table."""
    if engine is not None:
        set_engine(engine)
    level_table = served_table(engine)
    count = level_table.count_text
    off = presets.number_ranges(lv.level for lv in level_table.levels if not lv.generative)
    choices = level_choices(level_table)
    enable_heif()  # gradio opens uploads with Pillow before our handler sees them: phone photos too
    with gr.Blocks(title="Generative Upscale Lab", delete_cache=(3600, 3600)) as demo:
        gr.Markdown(
            f"# Generative Upscale Lab\n{count.capitalize()} strengths of diffusion upscaling side by side, "
            "each scored against a plain bicubic upscale. Lower levels are more generative; "
            f"{off} use no diffusion."
        )
        with gr.Accordion("Device and models", open=False):
            status_md = gr.Markdown("Checking…", elem_id="model-status")
            fetch_btn = gr.Button("Fetch weights", size="sm", interactive=False, elem_id="fetch-weights")
        with gr.Row():
            with gr.Column(scale=1, min_width=320):
                with gr.Tab("Upload"):
                    image_in = gr.Image(
                        type="filepath",
                        image_mode=None,  # the file as sent: alpha, grayscale and a JPEG's quality survive
                        label="Photo",
                        sources=["upload", "clipboard"],
                        height=280,
                    )
                with gr.Tab("URL"):
                    url_in = gr.Textbox(label="Image URL (http/https, public hosts only)", placeholder="https://…")
                gr.Examples(
                    EXAMPLES, inputs=[image_in], label="Examples (portrait, landscape, JPEG q=25)", cache_examples=False
                )
                with gr.Row():
                    width_in = gr.Textbox(
                        label="Width", placeholder="px or %, e.g. 1024 or 200%", max_lines=1, elem_id="width-in"
                    )
                    height_in = gr.Textbox(label="Height", placeholder="px or %", max_lines=1, elem_id="height-in")
                with gr.Row():
                    fit_in = gr.Dropdown(list(FITS), value="canvas", label="Fit (width and height both set)")
                    padding_in = gr.Textbox(label="Padding", placeholder="px or %", max_lines=1)
                prompt_in = gr.Textbox(
                    label="Prompt (guides the diffusion)",
                    placeholder=presets.DEFAULT_PROMPT,
                    max_length=presets.MAX_PROMPT_CHARS,
                    lines=2,
                )
                negative_in = gr.Textbox(
                    label="Negative prompt",
                    placeholder=presets.DEFAULT_NEGATIVE_PROMPT,
                    max_length=presets.MAX_PROMPT_CHARS,
                )
                with gr.Row():
                    seed_in = gr.Number(label="Seed", value=1, precision=0, minimum=0, maximum=2**32 - 1)
                    random_in = gr.Checkbox(label="Random seed", value=False)
                with gr.Row():
                    run_btn = gr.Button(f"Run all {count} levels", variant="primary")
                    cancel_btn = gr.Button("Cancel", variant="stop")
            with gr.Column(scale=2):
                # the run's status (progress, estimate, seed, messages), right above its results
                message = gr.Markdown(elem_classes=["lab-note"], elem_id="run-note", min_height=40)
                with gr.Tab("Grid"):
                    gallery = gr.Gallery(
                        label=f"Rows: {' / '.join(level_table.row_labels)} · columns: {' / '.join(level_table.column_labels)}",
                        columns=level_table.shape[1],
                        format="png",
                        object_fit="contain",
                        height=900,
                        elem_id="grid",
                    )
                    recommendation_md = gr.Markdown(elem_id="recommendation")
                    floor_in = gr.Slider(
                        0,
                        60,
                        value=presets.DEFAULT_FIDELITY_FLOOR_DB,
                        step=0.5,
                        label="Fidelity floor: recommend only levels with LR-consistency at least (dB)",
                        info="the most natural level (lowest NIQE) above it is recommended; ties go to the less generative",
                        elem_id="floor",
                    )
                with gr.Tab("Scores"):
                    gr.Markdown(scores_note(level_table))
                    table = gr.Dataframe(
                        headers=SCORE_HEADERS,
                        label="Scores per level",
                        interactive=False,
                        wrap=True,
                        column_widths=SCORE_COLUMN_WIDTHS,
                        max_height=720,
                        elem_id="scores",
                    )
                    plot = gr.Plot(label="Scores against level")
                    quality_plot = gr.Plot(label="Fidelity against naturalness", elem_id="pd-plot")
                with gr.Tab("Compare"):
                    with gr.Row():
                        level_a = gr.Dropdown(choices, value=level_table.default_strength, label="Left")
                        level_b = gr.Dropdown(
                            choices, value=level_table.baseline_level, label="Right (default: bicubic baseline)"
                        )
                    slider = gr.ImageSlider(
                        label="Drag to compare", type="pil", format="png", max_height=640, elem_id="slider"
                    )
                    heat = gr.Gallery(
                        label="Change heatmaps: where each level departs from the bicubic baseline",
                        columns=4,
                        format="png",
                        height="auto",
                    )
                with gr.Tab("Single level"):
                    gr.Markdown(
                        "The commercial API's semantics: one `upscale_strength`, one image (size, prompt and seed from the left)."
                    )
                    with gr.Row():
                        strength_in = gr.Slider(
                            level_table.min_level,
                            level_table.max_level,
                            value=level_table.default_strength,
                            step=1,
                            label="upscale_strength (1 = most generative)",
                        )
                        generative_in = gr.Checkbox(value=True, label="generative_upscale")
                    single_btn = gr.Button("Upscale", variant="primary")
                    single_out = gr.Image(label="Result", type="pil", format="png")
                    single_file = gr.File(label="Download PNG")
                    single_info = gr.Markdown()
                with gr.Tab("Downloads"):
                    files = gr.File(
                        label=f"All {count} (zip with PNGs, grid, scores, manifest) and the manifest",
                        file_count="multiple",
                    )
        state = gr.State(None)
        inputs = [image_in, url_in, width_in, height_in, fit_in, padding_in, prompt_in, negative_in, seed_in, random_in]
        run_event = run_btn.click(
            run_grid,
            inputs=inputs,
            outputs=[gallery, table, plot, seed_in, files, slider, level_a, level_b, heat, message, state],
            api_name="grid",
            show_progress_on=[message],  # the grid stays visible while it fills in
            concurrency_limit=1,
            concurrency_id="gpu",
        )
        recommended = [gallery, recommendation_md, quality_plot]
        run_event.then(recommendation_view, inputs=[state, floor_in], outputs=recommended, api_visibility="private")
        floor_in.change(recommendation_view, inputs=[state, floor_in], outputs=recommended, api_visibility="private")
        single_event = single_btn.click(
            run_single,
            inputs=[*inputs, strength_in, generative_in],
            outputs=[single_out, single_file, single_info, seed_in],
            api_name="upscale",
            concurrency_limit=1,
            concurrency_id="gpu",
        )
        cancel_btn.click(
            cancel_run, outputs=[message], cancels=[run_event, single_event], api_visibility="private", queue=False
        )
        for dd in (level_a, level_b):
            dd.change(
                compare_pair, inputs=[state, level_a, level_b], outputs=[slider], api_visibility="private", queue=False
            )
        demo.load(fetch_button_state, outputs=[status_md, fetch_btn], api_visibility="private", queue=False)
        fetch_btn.click(
            fetch_weights_event, outputs=[status_md, fetch_btn], api_visibility="private", concurrency_id="gpu"
        )
        demo.unload(cancel_on_leave)
    demo.queue(max_size=queue_max or QUEUE_MAX, default_concurrency_limit=1)
    return demo


# --------------------------------------------------------------------------- REST


def _error(status: int, message: str, field: str | None = None) -> JSONResponse:
    return JSONResponse({"error": message, **({"field": field} if field else {})}, status_code=status)


_REST_SLOTS = threading.BoundedSemaphore(max(1, QUEUE_MAX))
HANGUP_POLL_S = 0.25


async def run_until_hangup(http: Request, image: LoadedImage, req: UpscaleRequest) -> RunResult:
    """Run the engine for a REST request; if the client hangs up meanwhile, stop the run
    (the engine raises Cancelled at its next tile) instead of finishing work nobody will read."""
    cancel = threading.Event()
    work = asyncio.ensure_future(run_cancellable(cancel, engine_run, image, req, None, None, cancel))
    while not work.done():
        await asyncio.wait({work}, timeout=HANGUP_POLL_S)
        if not work.done() and not cancel.is_set() and await http.is_disconnected():
            cancel.set()
    return await work


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


def add_rest(api: FastAPI) -> None:
    """POST /api/v1/upscale: the commercial API's JSON → the PNG (or JSON with ?format=json)."""

    @api.post("/api/v1/upscale")
    async def rest_upscale(http: Request):
        refused = _check_key(http)
        if refused is not None:
            return refused
        try:
            data = await _read_json(http)
            req, loaded = await _request_and_image(data)
        except _Refused as exc:
            return exc.response
        if not _REST_SLOTS.acquire(blocking=False):
            return _error(503, "queue full: try again shortly")
        try:
            result = await run_until_hangup(http, loaded, req)
        except Cancelled:
            log.info("REST client hung up: its run was stopped")
            return _error(499, "the client closed the connection; the run was stopped")
        except LabError as exc:
            return _error(422, str(exc))
        finally:
            _REST_SLOTS.release()
        return _answer(result, as_json=http.query_params.get("format") == "json")


class _Refused(Exception):
    """A REST request refused before any work: carries the error response."""

    def __init__(self, response: JSONResponse) -> None:
        self.response = response


def _check_key(http: Request) -> JSONResponse | None:
    """401 unless the request carries the API key (when one is set)."""
    key = os.environ.get(API_KEY_ENV)
    if not key:
        return None
    given = http.headers.get("x-api-key") or http.headers.get("authorization", "").removeprefix("Bearer ").strip()
    if secrets.compare_digest(given, key):
        return None
    return _error(401, "missing or wrong API key (send X-API-Key or Authorization: Bearer)")


async def _read_json(http: Request) -> dict[str, Any]:
    """The body as a JSON object, read within the limit: 413 over it, 400 if not JSON."""
    try:
        raw = await read_body(http, presets.MAX_REQUEST_BODY_BYTES)
    except BodyTooLarge as exc:
        raise _Refused(_error(413, str(exc))) from None
    try:
        data = json.loads(raw or b"null")
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise _Refused(_error(400, f"malformed JSON: {exc}")) from None
    except ValueError as exc:  # e.g. an integer of thousands of digits
        raise _Refused(_error(400, f"malformed JSON: {exc}")) from None
    except RecursionError:
        raise _Refused(_error(400, "malformed JSON: nested too deeply")) from None
    if not isinstance(data, dict):
        raise _Refused(_error(400, "the body must be a JSON object"))
    return data


async def _request_and_image(data: dict[str, Any]) -> tuple[UpscaleRequest, LoadedImage]:
    """The validated request (levels checked against the served engine's table) and its image,
    from ``url`` or the lab extra ``image_base64``, decoded off the event loop; 422 otherwise."""
    b64 = data.pop("image_base64", None)
    try:
        if b64 is not None and data.get("url") is not None:
            raise RequestError("url", "give either 'url' or 'image_base64', not both")
        req = parse_request(data, table=served_table())  # levels: the engine's, before any image
        if b64 is not None:
            try:
                blob = base64.b64decode(b64, validate=True)
            except (binascii.Error, ValueError, TypeError) as exc:
                raise RequestError("image_base64", "is not valid base64") from exc
            return req, await asyncio.to_thread(load_image, blob)
        if req.url:
            return req, await asyncio.to_thread(get_engine().load, req.url, policy=fetch_policy())
        raise RequestError("url", "give 'url' (or the lab extra 'image_base64')")
    except LabError as exc:
        raise _Refused(_error(422, str(exc), getattr(exc, "field", None))) from None


def _answer(result: RunResult, *, as_json: bool) -> Response:
    """The PNG of the level asked for (of several: the recommended one) with its headers, or
    with ``as_json`` the JSON answer (scores of every level, the recommendation, the manifest)."""
    advice = result.recommendation
    lv = result.levels[0]
    if len(result.levels) > 1:  # several levels asked for: the answer is the recommended one
        if advice is None or advice.level is None:
            return _error(422, advice.reason if advice else "no recommendation", "fidelity_floor")
        lv = result.level(advice.level)
    if lv.image is None:
        return _error(503, f"level {lv.level} did not run: {lv.message}")
    headers = {
        "X-Seed": str(result.seed),
        "X-Level": str(lv.level),
        "X-Size": f"{lv.image.size[0]}x{lv.image.size[1]}",
    }
    if advice is not None and advice.level is not None:
        headers["X-Recommended-Level"] = str(advice.level)
    if not as_json:
        return Response(png_bytes(lv.image), media_type="image/png", headers=headers)
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
            "image_base64": base64.b64encode(png_bytes(lv.image)).decode(),
            "manifest": result.manifest,
        },
        headers=headers,
    )


def create_app(engine: Engine | None = None, *, queue_max: int | None = None) -> FastAPI:
    """FastAPI app: the REST endpoint plus the Gradio UI mounted at /."""
    api = FastAPI(title="Generative Upscale Lab")
    add_rest(api)
    demo = build_ui(engine, queue_max=queue_max)
    if os.environ.get(WARM_UP_ENV, "1") != "0":  # load the models now, not in the first run
        threading.Thread(target=get_engine().warm_up, name="warm-up", daemon=True).start()
    return gr.mount_gradio_app(api, demo, path="/", max_file_size=MAX_UPLOAD, css=CSS, footer_links=["api", "gradio"])


if __name__ == "__main__":
    import uvicorn

    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    host = os.environ.get("HOST", "0.0.0.0" if os.environ.get("SPACE_ID") else "127.0.0.1")
    port = int(os.environ.get("PORT", "7860"))
    print(f"Generative Upscale Lab on http://{host}:{port}  (REST: POST /api/v1/upscale)", flush=True)  # noqa: T201
    uvicorn.run(create_app(), host=host, port=port, timeout_keep_alive=30)
