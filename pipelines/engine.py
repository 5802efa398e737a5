"""The engine: one request → any subset of the nine levels, each computed once.

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
import secrets
import threading
import time
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Literal

import torch
from PIL import Image

import presets
from pipelines import base as base_paths
from pipelines.cancel import cancellable, check_cancel
from pipelines.convert import pil_to_tensor
from pipelines.device import dtype_name, dtype_reason, pick_device
from pipelines.errors import LabError, ModelMissingError, WeightsError
from pipelines.fetch import FetchPolicy, fetch_image_bytes
from pipelines.imaging import LoadedImage, load_image
from pipelines.metrics import json_number, score_level
from pipelines.models import DiffusionModels, load_refiner
from pipelines.refiner import RefineJob, Refiner, refine
from pipelines.request import SizePlan, UpscaleRequest, plan_size

log = logging.getLogger(__name__)

Status = Literal["ok", "missing", "error"]
Progress = Callable[[str, int, int], None]


@dataclass(frozen=True)
class EngineConfig:
    """What the engine loads and how it runs. ``upscaler`` None = Real-ESRGAN x4plus."""

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
    """A whole run: levels in order, the seed used, per-stage timings and the manifest."""

    levels: list[LevelResult]
    seed: int
    plan: SizePlan
    timings: dict[str, float]
    warnings: list[str]
    manifest: dict[str, Any]

    def level(self, number: int) -> LevelResult:
        for lv in self.levels:
            if lv.level == number:
                return lv
        raise KeyError(f"level {number} was not run (ran {[x.level for x in self.levels]})")

    def manifest_json(self) -> str:
        return json.dumps(self.manifest, indent=2, sort_keys=False)


class Engine:
    """Holds loaded models (lazily, once) and runs requests. Thread-safe: one run at a time
    per engine (a lock serialises runs; the app queues requests in front of it)."""

    def __init__(self, config: EngineConfig | None = None, *, refiner: Refiner | None = None) -> None:
        self.config = config or EngineConfig()
        self.device, self.dtype = pick_device(self.config.device, self.config.dtype)
        # Batching tiles pays on a GPU (H100, SD 1.5 step: 39 ms for 1 tile, 10 ms per tile at 8)
        # and costs on a CPU (12 s per tile alone, 22.6 s per tile in pairs): docs/performance.md.
        self.batch_size = self.config.batch_size or (8 if self.device.type == "cuda" else 1)
        self._upscaler: torch.nn.Module | None = None
        self._refiner = refiner
        self._refiner_missing: ModelMissingError | WeightsError | None = None
        self._base_cache: OrderedDict[tuple[Any, ...], Image.Image] = OrderedDict()
        self._lock = threading.Lock()
        self.status_note = "not loaded"

    # ----------------------------------------------------------------- models
    def upscaler(self) -> torch.nn.Module:
        if self._upscaler is None:
            from pipelines.realesrgan import load_upscaler

            model = load_upscaler(self.config.upscaler).to(self.device, self.dtype)
            self._upscaler = model.to(memory_format=torch.channels_last)
        return self._upscaler

    def refiner(self) -> Refiner:
        """The diffusion parts; raises ModelMissingError (remembered) when absent."""
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

    def models_changed(self) -> None:
        """Weights were fetched or replaced: look for the diffusion parts again on the next run."""
        self._refiner_missing = None

    def model_status(self) -> dict[str, str]:
        """Per model: "loaded", "available" or "missing: <reason and fetch command>"; a part
        found in the hub cache names the commit it resolves to."""
        from pipelines.models import check_available

        out = {"realesrgan_x4plus": "loaded" if self._upscaler is not None else "available on first use"}
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
    def run(
        self,
        image: LoadedImage,
        request: UpscaleRequest,
        *,
        ground_truth: Image.Image | None = None,
        progress: Progress | None = None,
        cancel: threading.Event | None = None,
    ) -> RunResult:
        """Run ``request.effective_levels`` on ``image``. Raises RequestError for impossible
        sizes; missing diffusion weights make levels 1–6 ``missing``, never a crash."""
        with self._lock:
            return self._run(image, request, ground_truth, progress, cancel)

    def _run(
        self,
        image: LoadedImage,
        request: UpscaleRequest,
        ground_truth: Image.Image | None,
        progress: Progress | None,
        cancel: threading.Event | None,
    ) -> RunResult:
        t_start = time.perf_counter()
        seed = request.seed if request.seed is not None else secrets.randbelow(2**32)
        levels = [presets.get_level(n) for n in request.effective_levels]
        plan = plan_size(image.size, request, max_output_pixels=self.config.max_output_pixels)
        timings: dict[str, float] = {}
        warnings: list[str] = []
        low_res = image.rgb.crop(plan.crop)

        # 2. base paths, each once (the baseline always, for the metrics)
        needed = {lv.base_path for lv in levels} | {"bicubic"}
        bases: dict[str, Image.Image] = {}
        base_seconds: dict[str, float] = {}
        for i, path in enumerate(p for p in presets.BASE_PATHS if p in needed):
            check_cancel(cancel)
            if progress:
                progress(f"base: {path}", i, len(needed))
            t = time.perf_counter()
            bases[path] = self._base(path, image, low_res, plan, progress, cancel)
            base_seconds[path] = time.perf_counter() - t
            timings[f"base_{path}"] = base_seconds[path]
        if progress:
            progress("base paths", len(needed), len(needed))
        same_as = identical_bases(bases, set(bases))  # e.g. bicubic_clean of a PNG is bicubic

        # 3. generative stage
        results: dict[int, LevelResult] = {}
        refined: dict[tuple[float, str], Image.Image] = {}
        gen_levels = [lv for lv in levels if lv.generative]
        diffusion_seconds: dict[float, float] = {}
        passes: dict[float, int] = {}  # distinct bases refined at each scale
        if gen_levels:
            try:
                refiner = self.refiner()
            except ModelMissingError as exc:
                for lv in gen_levels:
                    reason = f"missing weights: {exc.model_id}. Fetch with: {exc.fetch_command}"
                    results[lv.level] = LevelResult(lv.level, lv, "missing", message=str(exc), reason=reason)
            except WeightsError as exc:
                for lv in gen_levels:
                    results[lv.level] = LevelResult(
                        lv.level, lv, "error", message=str(exc), reason="corrupt weights (see message)"
                    )
            else:
                scales: dict[float, list[str]] = {}
                for lv in gen_levels:
                    scales.setdefault(lv.lora_scale, [])
                    base = same_as.get(lv.base_path, lv.base_path)
                    if base not in scales[lv.lora_scale]:
                        scales[lv.lora_scale].append(base)
                job = RefineJob(
                    bases={p: pil_to_tensor(bases[p]) for p in {b for bs in scales.values() for b in bs}},
                    scales=scales,
                    prompt=request.prompt or presets.DEFAULT_PROMPT,
                    negative_prompt=request.negative_prompt
                    if request.negative_prompt is not None
                    else presets.DEFAULT_NEGATIVE_PROMPT,
                    seed=seed,
                    settings=self.config.settings,
                    batch_size=self.batch_size,
                )
                outcome = refine(refiner, job, progress=progress, cancel=cancel, timings=timings)
                refined = outcome.images
                warnings.extend(outcome.warnings)
                for lv in gen_levels:  # identical inputs → the identical result, computed once
                    if lv.base_path in same_as:
                        refined[(lv.lora_scale, lv.base_path)] = refined[(lv.lora_scale, same_as[lv.base_path])]
                diffusion_seconds = {s: timings.get(f"diffusion_{s:g}", 0.0) for s in scales}
                passes = {s: len(bs) for s, bs in scales.items()}

        # 4–5. compose and score (a level whose pixels equal another's reuses its scores)
        t = time.perf_counter()
        baseline = bases["bicubic"]
        network_skipped = "upscale_4" in bases and skips_network(low_res.size, plan.content)
        scored: dict[tuple[float, str], dict[str, float]] = {}
        for lv in levels:
            if lv.level in results:
                continue
            notes = [NETWORK_SKIPPED] if network_skipped and lv.base_path == "upscale_4" else []
            source = same_as.get(lv.base_path, lv.base_path)
            if lv.generative:
                content = refined[(lv.lora_scale, lv.base_path)]
                seconds = base_seconds[lv.base_path] + diffusion_seconds[lv.lora_scale] / passes[lv.lora_scale]
                if lv.base_path in same_as:
                    twin = presets.level_for(same_as[lv.base_path], lv.lora_scale)
                    why = (
                        "the network was skipped"
                        if network_skipped and twin.base_path == "upscale_4"
                        else ("no JPEG grid to clean")
                    )
                    notes.append(
                        f"same result as level {twin.level}: its {lv.base_path} base is identical to the "
                        f"{same_as[lv.base_path]} base ({why}), so it was refined once"
                    )
                key = (lv.lora_scale, source)
            else:
                content = bases[lv.base_path]
                seconds = base_seconds[lv.base_path]
                key = (0.0, source)
            if key not in scored:
                scored[key] = score_level(content, baseline, low_res, ground_truth)
            results[lv.level] = LevelResult(
                lv.level,
                lv,
                "ok",
                image=self._compose(content, image, plan, request),
                message="; ".join(notes) or None,
                metrics=dict(scored[key]),
                seconds=seconds,
            )
        timings["compose_and_metrics"] = time.perf_counter() - t
        timings["total"] = time.perf_counter() - t_start
        ordered = [results[lv.level] for lv in levels]
        manifest = self._manifest(image, request, plan, seed, ordered, timings, warnings)
        return RunResult(levels=ordered, seed=seed, plan=plan, timings=timings, warnings=warnings, manifest=manifest)

    def _base(
        self,
        path: str,
        image: LoadedImage,
        low_res: Image.Image,
        plan: SizePlan,
        progress: Progress | None,
        cancel: threading.Event | None = None,
    ) -> Image.Image:
        key = (image.sha256, plan.crop, plan.content, path, self.config.upscaler)
        if key in self._base_cache:
            self._base_cache.move_to_end(key)
            return self._base_cache[key]
        if path == "bicubic":
            out = base_paths.bicubic(low_res, plan.content)
        elif path == "bicubic_clean":
            # Deblock the whole input (the JPEG grid is anchored there), then crop.
            cleaned, _ = base_paths.deblock(image.rgb)
            out = base_paths.bicubic(cleaned.crop(plan.crop), plan.content)
        elif skips_network(low_res.size, plan.content):
            out = base_paths.bicubic(low_res, plan.content)
        else:
            settings = base_paths.NeuralSettings(
                device=self.device,
                dtype=self.dtype,
                tile=self.config.esrgan_tile,
                pad=self.config.esrgan_pad,
                batch_size=self.batch_size,
            )

            def on_tile(done: int, total: int) -> None:
                check_cancel(cancel)
                if progress:
                    progress("base: upscale_4 tiles", done, total)

            model = self.upscaler()
            with cancellable(cancel, model):
                out = base_paths.neural_upscale(model, low_res, plan.content, settings, on_tile=on_tile)
            check_cancel(cancel)
        self._base_cache[key] = out
        while len(self._base_cache) > self.config.base_cache_size:
            self._base_cache.popitem(last=False)
        return out

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


def skips_network(input_size: tuple[int, int], content: tuple[int, int]) -> bool:
    """True when the neural ×4 would only be shrunk back: the output is no larger than the
    input on either side. Then ``upscale_4`` is the antialiased bicubic resize (its cost follows
    the output, not the input ×16), and the level says so."""
    return content[0] <= input_size[0] and content[1] <= input_size[1]


NETWORK_SKIPPED = (
    "the output is no larger than the input: no ×4 network ran (it would only be shrunk back); "
    "this level's base is the bicubic resize"
)


def identical_bases(bases: dict[str, Image.Image], names: set[str]) -> dict[str, str]:
    """``{name: earlier name}`` for each base among ``names`` whose pixels equal an earlier
    one's (in the presets' base order). ``bicubic_clean`` returns inputs without a JPEG grid
    untouched, so for most PNGs it equals ``bicubic`` and its diffusion passes would repeat
    theirs exactly."""
    same_as: dict[str, str] = {}
    kept: list[str] = []
    for name in (p for p in presets.BASE_PATHS if p in names):
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


def replay_request(manifest: dict[str, Any]) -> UpscaleRequest:
    """The request recorded in a manifest (seed and levels included), ready to run again."""
    from pipelines.request import parse_request

    req = dict(manifest["request"])
    req.pop("url", None)
    return parse_request(req)


__all__ = ["Engine", "EngineConfig", "LabError", "LevelResult", "RunResult", "replay_request"]
