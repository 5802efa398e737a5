"""The generative refiner: SD 1.5 img2img + tile ControlNet + the detail LoRA, on diffusers.

Arranged so nothing is computed twice in a nine-level run; :func:`refine` numbers the same
steps in its code:
1. each base image is VAE-encoded once and reused by every LoRA scale;
2. one seed gives one noise field over the whole latent canvas, shared by every base and
   scale, so levels differ only through the dial;
then per LoRA scale (the scale is global per forward pass):
3. the prompt is encoded (once per run; once per LoRA scale only if the LoRA also adapts the
   text encoder, since the embedding then depends on the scale);
4. all bases × latent tiles are batched through ControlNet + UNet; noise predictions of
   overlapping tiles are blended with a raised-cosine weight before each scheduler step
   (MultiDiffusion), so no seam can form;
5. each result is VAE-decoded (tiled above ``vae_tile_pixels``) and its colour fixed against
   its base (wavelet: low frequencies from the base, high frequencies from the refinement).

Loading lives in :mod:`pipelines.models`, which builds a :class:`Refiner` with
:func:`refiner_from_parts`; this module imports nothing from it.
"""

from __future__ import annotations

import functools
import hashlib
import logging
import threading
import time
import warnings
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from PIL import Image

import presets
from pipelines.cancel import cancellable, check_cancel
from pipelines.convert import tensor_to_pil
from pipelines.errors import OutOfMemoryError
from pipelines.tiling import blend_tiles, blend_weight

log = logging.getLogger(__name__)

LORA_ADAPTER = "detail"  # the name the detail LoRA is loaded under (pipelines.models.load_refiner)
FAST_ADAPTER = "fast"  # the fast mode's LCM-LoRA, loaded beside it (pipelines.models.load_fast_adapter)

# --------------------------------------------------------------------------- loading


@dataclass
class Refiner:
    """Loaded diffusion parts on one device. Build with :func:`pipelines.models.load_refiner`
    (or :func:`refiner_from_parts` from a loaded pipeline). ``scale_adapter(scale, fast)`` sets
    the weight of the LoRA adapter in the UNet and, where it adapts it, the text encoder, and
    turns the fast mode's adapter on (at its preset weight) or off; ``load_adapter(path)``
    loads that adapter (:meth:`load_fast`; None: this refiner cannot)."""

    tokenizer: Any
    text_encoder: Any
    unet: Any
    controlnet: Any
    vae: Any
    scheduler_config: dict[str, Any]
    device: torch.device
    dtype: torch.dtype
    text_encoder_has_lora: bool
    scale_adapter: Callable[[float, bool], None]
    load_adapter: Callable[[Path], None] | None = None
    vae_tile_pixels: int = 1024 * 1024
    fast_loaded: bool = False
    _prompt_cache: dict[tuple[str, str, tuple[float, bool] | None], torch.Tensor] = field(default_factory=dict)
    _lora_scale: tuple[float, bool] | None = None

    @property
    def vae_scale(self) -> int:
        return 2 ** (len(self.vae.config.block_out_channels) - 1)

    # ----------------------------------------------------------------- prompt
    def encode_prompt(self, prompt: str, negative: str) -> tuple[torch.Tensor, list[str]]:
        """``(2, T, D)`` embeddings [negative, positive] and warnings (truncation)."""
        key_scale = self._lora_scale if self.text_encoder_has_lora else None
        key = (prompt, negative, key_scale)
        warnings: list[str] = []
        limit = int(self.tokenizer.model_max_length)
        for name, text in (("prompt", prompt), ("negative prompt", negative)):
            n = len(self.tokenizer(text, truncation=False).input_ids)
            if n > limit:
                warnings.append(f"{name} is {n} tokens; the text encoder reads the first {limit}")
        if key not in self._prompt_cache:
            ids = self.tokenizer(
                [negative, prompt],
                padding="max_length",
                max_length=limit,
                truncation=True,
                return_tensors="pt",
            ).input_ids.to(self.device)
            with torch.inference_mode():
                emb = self.text_encoder(ids)[0].to(self.dtype)
            self._prompt_cache = {key: emb}  # one entry: prompts change between runs
        return self._prompt_cache[key], warnings

    # ----------------------------------------------------------------- lora
    def set_lora_scale(self, scale: float, *, fast: bool = False) -> None:
        """The detail LoRA at ``scale``; the fast adapter on (``fast``, loaded first) or off."""
        if fast and not self.fast_loaded:
            raise ValueError("the fast adapter is not loaded (pipelines.models.load_fast_adapter)")
        if self._lora_scale != (scale, fast):
            self.scale_adapter(scale, fast)
            self._lora_scale = (scale, fast)

    def load_fast(self, path: Path) -> None:
        """Load the fast mode's LoRA file ``path`` as the adapter :data:`FAST_ADAPTER` (inactive
        until a pass asks for it). Raises what the loader raises."""
        if self.load_adapter is None:
            raise ValueError("this refiner was built without an adapter loader")
        self._lora_scale = None  # the adapters' state is set again before the next pass, even
        try:  # after a load that failed part-way (new PEFT layers may hold the fast adapter)
            self.load_adapter(path)
        finally:
            self._lora_scale = None
        self.fast_loaded = True

    # ----------------------------------------------------------------- vae
    def _vae_tiling(self, pixels: int) -> None:
        if pixels > self.vae_tile_pixels:
            self.vae.enable_tiling()
        else:
            self.vae.disable_tiling()

    def _vae_call(self, fn: Callable[[], torch.Tensor], what: str, pixels: int) -> torch.Tensor:
        """``fn`` (one VAE encode or decode); out of memory without tiling retries it tiled,
        out of memory tiled becomes :class:`OutOfMemoryError` (a message, not a crash)."""
        try:
            return fn()
        except torch.OutOfMemoryError as exc:
            if self.device.type == "cuda":
                torch.cuda.empty_cache()
            if getattr(self.vae, "use_tiling", True):
                raise OutOfMemoryError(f"out of memory in the VAE {what} of a {pixels / 1e6:.1f} MP image") from exc
            log.warning("out of memory in the VAE %s: retrying tiled", what)
            self.vae.enable_tiling()
            try:
                return fn()
            except torch.OutOfMemoryError as again:
                raise OutOfMemoryError(
                    f"out of memory in the VAE {what} of a {pixels / 1e6:.1f} MP image, even tiled"
                ) from again

    def _encode_one(self, x: torch.Tensor) -> torch.Tensor:
        return self.vae.encode(x).latent_dist.mean

    def _decode_one(self, z: torch.Tensor) -> torch.Tensor:
        return self.vae.decode(z).sample

    def encode_images(self, images: torch.Tensor) -> torch.Tensor:
        """``(B, 3, H, W)`` in [0, 1] → fp32 latents ``(B, 4, H/f, W/f)`` (scaled posterior mean)."""
        pixels = images.shape[-1] * images.shape[-2]
        self._vae_tiling(pixels)
        out = []
        with torch.inference_mode():
            for img in images:  # one at a time: bounded memory, each base encoded once
                x = img[None].to(self.device, torch.float32) * 2 - 1
                latent = self._vae_call(functools.partial(self._encode_one, x), "encoder", pixels)
                out.append(latent * self.vae.config.scaling_factor)
        return torch.cat(out)

    def decode_latents(self, latents: torch.Tensor) -> torch.Tensor:
        """Latents ``(B, 4, h, w)`` → images ``(B, 3, 8h, 8w)`` float32 in [0, 1] on the CPU."""
        s = self.vae_scale
        pixels = latents.shape[-1] * latents.shape[-2] * s * s
        self._vae_tiling(pixels)
        out = []
        with torch.inference_mode():
            for lat in latents:
                z = (lat[None] / self.vae.config.scaling_factor).float()
                img = self._vae_call(functools.partial(self._decode_one, z), "decoder", pixels)
                out.append(((img.float() + 1) / 2).clamp(0, 1).cpu())
        return torch.cat(out)


def refiner_from_parts(pipe: Any, controlnet: Any, device: torch.device, dtype: torch.dtype) -> Refiner:
    """Place a loaded SD 1.5 pipeline (with the LoRA adapter :data:`LORA_ADAPTER`) and
    ControlNet on ``device``: ``dtype`` for the UNet, ControlNet and text encoder, the VAE in
    fp32 (SD 1.5's VAE overflows in fp16 at large sizes, and bf16 costs fidelity),
    channels_last on CUDA. The pipeline's ``set_adapters`` becomes the refiner's
    ``scale_adapter`` and its ``load_lora_weights`` the ``load_adapter`` of the fast mode."""
    te_lora = any("lora" in n for n, _ in pipe.text_encoder.named_modules())
    for module in (pipe.unet, controlnet, pipe.text_encoder):
        module.to(device, dtype)
        module.eval()
    pipe.vae.to(device, torch.float32).eval()
    if device.type == "cuda":
        pipe.unet.to(memory_format=torch.channels_last)
        controlnet.to(memory_format=torch.channels_last)

    def scale_adapter(scale: float, fast: bool) -> None:
        names, weights = [LORA_ADAPTER], [scale]
        if fast:
            names.append(FAST_ADAPTER)
            weights.append(presets.FAST_MODE.adapter_weight)
        pipe.set_adapters(names, adapter_weights=weights)  # an adapter not named is inactive

    def load_adapter(path: Path) -> None:
        with warnings.catch_warnings():  # PEFT's "multiple adapters" notice: two adapters is the design
            warnings.filterwarnings("ignore", message="Already found a `peft_config`")
            pipe.load_lora_weights(str(path.parent), weight_name=path.name, adapter_name=FAST_ADAPTER)
        for module in (pipe.unet, pipe.text_encoder):  # its new layers: the model's device and dtype
            module.to(device, dtype)
        if device.type == "cuda":
            pipe.unet.to(memory_format=torch.channels_last)

    return Refiner(
        tokenizer=pipe.tokenizer,
        text_encoder=pipe.text_encoder,
        unet=pipe.unet,
        controlnet=controlnet,
        vae=pipe.vae,
        scheduler_config=dict(pipe.scheduler.config),
        device=device,
        dtype=dtype,
        text_encoder_has_lora=te_lora,
        scale_adapter=scale_adapter,
        load_adapter=load_adapter,
    )


# --------------------------------------------------------------------------- refinement


def as_unit_float(pixels: torch.Tensor) -> torch.Tensor:
    """8-bit pixels (uint8, 0..255) → float32 in [0, 1]; float pixels are returned as they are."""
    return pixels.float() / 255.0 if pixels.dtype == torch.uint8 else pixels


def pad_replicate(pixels: torch.Tensor, right: int, bottom: int) -> torch.Tensor:
    """``(1, C, H, W)`` with its last column repeated ``right`` times and its last row
    ``bottom`` times, in any dtype (torch's replicate padding does not take uint8)."""
    if right:
        pixels = torch.cat([pixels, pixels[..., -1:].expand(*pixels.shape[:-1], right)], dim=-1)
    if bottom:
        pixels = torch.cat([pixels, pixels[..., -1:, :].expand(*pixels.shape[:-2], bottom, pixels.shape[-1])], dim=-2)
    return pixels


COND_CACHE_BYTES = 1 << 30  # the ControlNet conditioning embeddings a run keeps (CondCache)


@dataclass(frozen=True)
class RefineJob:
    """Refine ``bases`` (name → ``(1, 3, H, W)``: uint8 0..255, as the engine holds them —
    a quarter of float32's memory, converted per tile — or float in [0, 1]) at each scale in
    ``scales``."""

    bases: dict[str, torch.Tensor]
    scales: dict[float, list[str]]  # LoRA scale → base names to refine at that scale
    prompt: str
    negative_prompt: str
    seed: int
    settings: Mapping[float, presets.DiffusionSettings]
    batch_size: int = 4
    color_fix: bool = True  # wavelet colour fix against the base (off: the raw decode)
    keep_latents: bool = False  # return the final latents too (for comparisons)
    cond_cache_bytes: int = COND_CACHE_BYTES  # 0: embed the control image on every call (tests)
    fast: bool = False  # the fast mode: its adapter on, LCMScheduler (``settings``: the fast ones)


Progress = Callable[[str, int, int], None]


class EmbeddedOrPixels(torch.nn.Module):
    """The ControlNet's conditioning embedding, taking either the control pixels (3 channels:
    embedded, as before) or an embedding computed earlier (its own output's channel count:
    passed through). Installed once on the ControlNet (:func:`conditioning_embedding`), it is
    the seam through which :class:`CondCache` hands in cached embeddings: stateless, so nothing
    is swapped per call and two engines sharing a ControlNet cannot disturb each other."""

    def __init__(self, embed: Any) -> None:  # diffusers' ControlNetConditioningEmbedding
        super().__init__()
        self.embed = embed
        self.pixel_channels = int(embed.conv_in.in_channels)

    def forward(self, cond: torch.Tensor) -> torch.Tensor:
        return self.embed(cond) if cond.shape[1] == self.pixel_channels else cond


def conditioning_embedding(controlnet: Any) -> Any:
    """The ControlNet's own conditioning embedding, with the :class:`EmbeddedOrPixels` seam
    installed in front of it (once)."""
    seam = controlnet.controlnet_cond_embedding
    if not isinstance(seam, EmbeddedOrPixels):
        seam = EmbeddedOrPixels(seam)
        controlnet.controlnet_cond_embedding = seam
    return seam.embed


class CondCache:
    """The ControlNet's conditioning embedding of each (base, tile), computed once per run.

    The embedding depends only on the control image, not on the step, the LoRA scale or the
    guidance half, yet the ControlNet recomputes it on every call, at full pixel resolution.
    It is the costliest part of a small ControlNet (40% of the tiny test model's step) and a
    few percent of SD 1.5's. Up to ``budget`` bytes are kept; further tiles are embedded per
    call. ControlNets with ``bgr`` channel order are left alone (their forward flips the input).
    The ControlNet takes the cached embedding as its ``controlnet_cond`` through the
    :class:`EmbeddedOrPixels` seam.
    """

    def __init__(self, controlnet: Any, vae_scale: int, budget: int | None = None) -> None:
        self.enabled = getattr(controlnet.config, "controlnet_conditioning_channel_order", "rgb") == "rgb"
        self.embed = conditioning_embedding(controlnet)
        self.device, self.dtype = controlnet.device, next(self.embed.parameters()).dtype
        self.scale = vae_scale
        self.budget = COND_CACHE_BYTES if budget is None else budget
        self.used = 0
        self.store: dict[tuple[str, tuple[int, int, int, int]], torch.Tensor] = {}

    def get(self, base: str, control: torch.Tensor, window: tuple[int, int, int, int]) -> torch.Tensor:
        """The embedding of ``control``'s pixels under the latent ``window`` (top, left, bottom,
        right); the pixels themselves when caching is off."""
        hit = self.store.get((base, window))
        if hit is not None:
            return hit
        s = self.scale
        top, left, bottom, right = window
        pixels = as_unit_float(control[:, :, top * s : bottom * s, left * s : right * s]).to(self.device, self.dtype)
        if not self.enabled:
            return pixels
        emb = self.embed(pixels)
        size = emb.numel() * emb.element_size()
        if self.used + size <= self.budget:
            self.store[(base, window)] = emb
            self.used += size
        return emb

    def clear(self) -> None:
        self.store.clear()
        self.used = 0


def noise_field(seed: int, shape: tuple[int, ...]) -> torch.Tensor:
    """The run's one noise field, drawn on the CPU so every device sees the same numbers."""
    g = torch.Generator("cpu").manual_seed(seed)
    return torch.randn(shape, generator=g, dtype=torch.float32)


def lcm_noise_seed(seed: int) -> int:
    """The seed of the fresh noise LCM adds between its steps, derived from the run's ``seed``
    (a generator seeded with ``seed`` itself would first draw the very noise field the latents
    were noised with: the noise "added back" would not be fresh)."""
    digest = hashlib.sha256(f"{seed}:lcm-step-noise".encode()).digest()
    return int.from_bytes(digest[:8], "little") & (2**63 - 1)


@dataclass
class RefineResult:
    """``images``: ``{(scale, base): PIL RGB}`` (colour-fixed unless the job says not);
    ``warnings``: for the user (prompt truncation); ``latents``: the final fp32 latents per
    ``(scale, base)`` when the job asked to keep them (tests compare them with diffusers)."""

    images: dict[tuple[float, str], Image.Image]
    warnings: list[str]
    latents: dict[tuple[float, str], torch.Tensor] = field(default_factory=dict)


@dataclass(frozen=True)
class DenoisePlan:
    """How one LoRA scale's batch is denoised: its settings, latent tile and overlap, tiles
    per forward pass, and the stage name shown in progress."""

    settings: presets.DiffusionSettings
    tile: int
    overlap: int
    batch_size: int
    stage: str
    fast: bool = False  # LCMScheduler (its adapter is on) instead of DDIM


def img2img_timesteps(sched: Any, settings: presets.DiffusionSettings) -> torch.Tensor:
    """The timesteps an img2img pass runs, as diffusers' ``get_timesteps`` picks them: the last
    ``int(steps × strength)`` of ``steps`` (at least one: a pass that runs nothing is no pass)."""
    sched.set_timesteps(settings.steps)
    n_run = settings.run_steps
    return sched.timesteps[(settings.steps - n_run) * sched.order :]


def refine(
    refiner: Refiner,
    job: RefineJob,
    *,
    progress: Progress | None = None,
    cancel: threading.Event | None = None,
    timings: dict[str, float] | None = None,
    on_image: Callable[[float, str, Image.Image], None] | None = None,
) -> RefineResult:
    """Run the job (steps in the module doc).

    Precision: the UNet and ControlNet run in ``refiner.dtype``; the VAE, the latents, the
    noise, the guidance and the scheduler step stay fp32. Out-of-memory halves the latent tile
    (down to 32 latent px) and retries the scale; then raises OutOfMemoryError. Raises
    Cancelled within one convolution once ``cancel`` is set. ``on_image(scale, base, image)``
    is called as each image is ready (the diffusion time of its scale is in ``timings`` then).
    """
    timings = timings if timings is not None else {}
    padded, latents = _encode_bases(refiner, job, cancel, timings)  # 1. each base once
    _, _, h, w = next(iter(latents.values())).shape
    noise = noise_field(job.seed, (1, 4, h, w)).to(refiner.device)  # 2. one noise field for all
    result = RefineResult(images={}, warnings=[])
    cond_cache = CondCache(refiner.controlnet, refiner.vae_scale, job.cond_cache_bytes)
    for scale in sorted(job.scales, reverse=True):  # then per LoRA scale:
        # 3. the prompt (cached: encoded again only if the LoRA adapts the text encoder)
        bases = job.scales[scale]
        settings = job.settings[scale]
        refiner.set_lora_scale(scale, fast=job.fast)
        t1 = time.perf_counter()
        emb, warns = refiner.encode_prompt(job.prompt, job.negative_prompt)
        timings["prompt"] = timings.get("prompt", 0.0) + time.perf_counter() - t1
        result.warnings.extend(wm for wm in warns if wm not in result.warnings)
        # 4. denoise every base × tile together
        f = refiner.vae_scale
        plan = DenoisePlan(
            settings=settings,
            tile=settings.tile_size // f,
            overlap=settings.tile_overlap // f,
            batch_size=job.batch_size,
            stage=f"diffusion (LoRA {scale:g}{', fast' if job.fast else ''})",
            fast=job.fast,
        )
        t2 = time.perf_counter()
        x0 = torch.cat([latents[b] for b in bases])
        controls = [(b, padded[b]) for b in bases]
        inputs = DenoisePass(refiner, x0, controls, cond_cache, noise, emb, progress, cancel, job.seed)
        x = _denoise_within_memory(inputs, plan)
        timings[f"diffusion_{scale:g}"] = time.perf_counter() - t2
        # 5. decode one base at a time, fix its colour, hand it on
        _decode_scale(refiner, job, scale, x, result, progress, cancel, timings, on_image)
        del x
    return result


def _encode_bases(
    refiner: Refiner, job: RefineJob, cancel: threading.Event | None, timings: dict[str, float]
) -> tuple[dict[str, torch.Tensor], dict[str, torch.Tensor]]:
    """Each base padded to a multiple of the VAE factor (replicating the edge; cropped after
    decoding; 8-bit stays 8-bit) and its fp32 latents, one base at a time."""
    t0 = time.perf_counter()
    names = sorted({n for ns in job.scales.values() for n in ns})
    height, width = next(iter(job.bases.values())).shape[-2:]
    f = refiner.vae_scale
    padded = {n: pad_replicate(job.bases[n], (-width) % f, (-height) % f) for n in names}
    with cancellable(cancel, refiner.vae):
        latents = {n: refiner.encode_images(as_unit_float(padded[n])) for n in names}
    timings["vae_encode"] = timings.get("vae_encode", 0.0) + time.perf_counter() - t0
    return padded, latents


def _decode_scale(
    refiner: Refiner,
    job: RefineJob,
    scale: float,
    x: torch.Tensor,
    result: RefineResult,
    progress: Progress | None,
    cancel: threading.Event | None,
    timings: dict[str, float],
    on_image: Callable[[float, str, Image.Image], None] | None,
) -> None:
    """Decode the final latents ``x`` of ``scale`` one base at a time (one full-size float image
    in memory), crop the padding, fix the colour against the base, store and hand on each."""
    t3 = time.perf_counter()
    bases = job.scales[scale]
    height, width = next(iter(job.bases.values())).shape[-2:]
    if progress:
        progress(f"decode (LoRA {scale:g})", 0, len(bases))
    for i, b in enumerate(bases):
        if job.keep_latents:
            result.latents[(scale, b)] = x[i : i + 1].cpu()
        with cancellable(cancel, refiner.vae):
            image = refiner.decode_latents(x[i : i + 1])[:, :, :height, :width]
        if job.color_fix:
            image = wavelet_color_fix(image, as_unit_float(job.bases[b]))
        result.images[(scale, b)] = tensor_to_pil(image)
        del image
        if on_image is not None:  # the caller may show it now (its time is not the decoder's)
            t_shown = time.perf_counter()
            on_image(scale, b, result.images[(scale, b)])
            t3 += time.perf_counter() - t_shown
    timings["vae_decode"] = timings.get("vae_decode", 0.0) + time.perf_counter() - t3


@dataclass(frozen=True)
class DenoisePass:
    """What one scale's denoising works on (the plan says how): the fp32 latents ``x0`` of
    each base ``(B, 4, h, w)``, each base's control pixels, the conditioning cache, the run's
    noise field, the prompt embeddings ``[negative, positive]``, progress and cancel, and the
    run's seed (a multistep LCM pass draws its fresh noise from it)."""

    refiner: Refiner
    x0: torch.Tensor
    controls: list[tuple[str, torch.Tensor]]
    cond_cache: CondCache
    noise: torch.Tensor
    emb: torch.Tensor
    progress: Progress | None
    cancel: threading.Event | None
    seed: int = 0


def _denoise_within_memory(p: DenoisePass, plan: DenoisePlan) -> torch.Tensor:
    """:func:`_denoise`, halving the latent tile on out-of-memory (down to 32 latent px)."""
    refiner, cond_cache = p.refiner, p.cond_cache
    while True:
        try:
            with cancellable(p.cancel, refiner.unet, refiner.controlnet):
                return _denoise(p, plan)
        except torch.OutOfMemoryError as exc:
            cond_cache.clear()
            if refiner.device.type == "cuda":
                torch.cuda.empty_cache()
            if plan.tile // 2 < 32:
                raise OutOfMemoryError(
                    f"out of memory in the diffusion pass even with {plan.tile * refiner.vae_scale}px tiles"
                ) from exc
            tile = plan.tile // 2
            plan = replace(plan, tile=tile, overlap=min(plan.overlap, tile // 4))
            log.warning("out of memory: retrying %s with %d px tiles", plan.stage, tile * refiner.vae_scale)


class _Steps:
    """The scheduler side of one pass. Normal mode: one DDIM scheduler (deterministic steps)
    over the whole batch. Fast mode: LCMScheduler, which adds fresh noise between its steps;
    one scheduler per base, each with a CPU generator seeded with the run's seed, so every base
    draws the same noise at each step (one noise field for all levels, like the first noise)
    and a level's image does not depend on which other bases share its batch."""

    def __init__(self, p: DenoisePass, plan: DenoisePlan) -> None:
        from diffusers import DDIMScheduler, LCMScheduler

        kind = LCMScheduler if plan.fast else DDIMScheduler
        count = p.x0.shape[0] if plan.fast else 1
        self.scheds = [kind.from_config(p.refiner.scheduler_config) for _ in range(count)]
        self.timesteps = [img2img_timesteps(sched, plan.settings) for sched in self.scheds][0]
        seed = lcm_noise_seed(p.seed)  # not p.seed: its first draw would be the noise field again
        self.generators = [torch.Generator("cpu").manual_seed(seed) for _ in range(count)] if plan.fast else []

    def add_noise(self, x0: torch.Tensor, noise: torch.Tensor) -> torch.Tensor:
        """``x0`` noised to the first timestep with the run's noise field (the same for every base)."""
        b = x0.shape[0]
        first = self.timesteps[:1].repeat(b).to(x0.device)
        return self.scheds[0].add_noise(x0.float(), noise.float().expand(b, -1, -1, -1), first)

    def step(self, eps: torch.Tensor, t: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
        if not self.generators:
            return self.scheds[0].step(eps, t, x).prev_sample
        return torch.cat(
            [
                sched.step(eps[i : i + 1], int(t), x[i : i + 1], generator=g).prev_sample
                for i, (sched, g) in enumerate(zip(self.scheds, self.generators, strict=True))
            ]
        )


def _predict(
    refiner: Refiner,
    lat: torch.Tensor,
    t: torch.Tensor,
    emb: torch.Tensor,
    cond: torch.Tensor,
    settings: presets.DiffusionSettings,
    *,
    fast: bool = False,
) -> torch.Tensor:
    """The noise prediction of ControlNet + UNet for the tiles ``lat`` (model dtype) and their
    embedded control images ``cond``, fp32: with classifier-free guidance over ``emb`` =
    [negative, positive]; in the fast mode at guidance 1 the positive half alone, one batch
    instead of two (as diffusers does at guidance ≤ 1). The normal mode always guides, so a
    custom level at guidance 1 gives the pixels it gave before the fast mode existed."""
    n = lat.shape[0]
    neg, pos = emb[0:1], emb[1:2]
    guided = not (fast and settings.guidance_scale <= 1.0)
    lat_in = torch.cat([lat, lat]) if guided else lat
    emb_in = torch.cat([neg.expand(n, -1, -1), pos.expand(n, -1, -1)]) if guided else pos.expand(n, -1, -1)
    with torch.inference_mode():
        down, mid = refiner.controlnet(
            lat_in,
            t,
            encoder_hidden_states=emb_in,
            controlnet_cond=torch.cat([cond, cond]) if guided else cond,  # embedded already: through the seam
            conditioning_scale=settings.controlnet_scale,
            return_dict=False,
        )
        pred = refiner.unet(
            lat_in,
            t,
            encoder_hidden_states=emb_in,
            down_block_additional_residuals=down,
            mid_block_additional_residual=mid,
            return_dict=False,
        )[0]
    if not guided:
        return pred.float()
    p_neg, p_pos = pred.float().chunk(2)
    return p_neg + settings.guidance_scale * (p_pos - p_neg)


def _denoise(p: DenoisePass, plan: DenoisePlan) -> torch.Tensor:
    """Img2img from the fp32 latents ``x0`` (B, 4, h, w) with the shared ``noise``; each step
    predicts noise per tile (:func:`_predict`), blends the tiles' predictions and steps in
    fp32 (:class:`_Steps`: DDIM, or LCM in the fast mode)."""
    refiner, x0, controls, cond_cache = p.refiner, p.x0, p.controls, p.cond_cache
    steps = _Steps(p, plan)
    timesteps = steps.timesteps.to(refiner.device)
    b, _, h, w = x0.shape
    x = steps.add_noise(x0, p.noise)
    windows = blend_tiles(h, w, plan.tile, plan.overlap)
    th, tw = windows[0][2] - windows[0][0], windows[0][3] - windows[0][1]
    weight = blend_weight(th, tw, plan.overlap).to(refiner.device, torch.float32)
    norm = torch.zeros((h, w), device=refiner.device, dtype=torch.float32)
    for top, left, bottom, right in windows:
        norm[top:bottom, left:right] += weight
    items = [(i, win) for i in range(b) for win in windows]
    total = len(timesteps) * len(items)
    done = 0
    for t in timesteps:
        eps = torch.zeros((b, 4, h, w), device=refiner.device, dtype=torch.float32)
        for start in range(0, len(items), plan.batch_size):
            check_cancel(p.cancel)
            chunk = items[start : start + plan.batch_size]
            lat = torch.cat([x[i : i + 1, :, t0:b0, l0:r0] for i, (t0, l0, b0, r0) in chunk]).to(refiner.dtype)
            with torch.inference_mode():
                cond = torch.cat([cond_cache.get(*controls[i], win) for i, win in chunk])
            guided = _predict(refiner, lat, t, p.emb, cond, plan.settings, fast=plan.fast)
            for j, (i, (t0, l0, b0, r0)) in enumerate(chunk):
                eps[i, :, t0:b0, l0:r0] += guided[j] * weight
            done += len(chunk)
            if p.progress:
                p.progress(plan.stage, done, total)
        eps /= norm
        x = steps.step(eps, t, x)
    return x


WAVELET_LEVELS = 5
WAVELET_HALO = sum(2**i for i in range(WAVELET_LEVELS))  # 31 rows: the blurs' total reach
WAVELET_STRIP = 256


def wavelet_levels(height: int, width: int) -> int:
    """How many dilated blurs fit the image (each needs more than its dilation in pixels)."""
    return sum(1 for i in range(WAVELET_LEVELS) if min(height, width) - 1 >= 2**i)


def wavelet_lowpass(x: torch.Tensor, levels: int) -> torch.Tensor:
    """Low frequencies by a stack of dilated 3×3 binomial blurs (à trous wavelet)."""
    k = torch.tensor([[1, 2, 1], [2, 4, 2], [1, 2, 1]], dtype=x.dtype, device=x.device) / 16
    k = k.expand(x.shape[1], 1, 3, 3)
    for i in range(levels):
        d = 2**i
        x = F.conv2d(F.pad(x, (d, d, d, d), mode="replicate"), k, dilation=d, groups=x.shape[1])
    return x


def wavelet_color_fix(image: torch.Tensor, reference: torch.Tensor) -> torch.Tensor:
    """Keep ``image``'s high frequencies, take the low ones (tone, colour) from ``reference``.

    Both ``(1, 3, H, W)`` float in [0, 1]; returns the same shape, clamped to [0, 1]. Worked
    in row strips with 31 rows of context each side (the blurs' total reach), so it equals the
    whole-image computation while its temporaries stay a few strips in size.
    """
    height, width = image.shape[-2:]
    levels = wavelet_levels(height, width)
    ref = reference.to(image.dtype)
    out = torch.empty_like(image)
    for y0 in range(0, height, WAVELET_STRIP):
        y1 = min(height, y0 + WAVELET_STRIP)
        a0, a1 = max(0, y0 - WAVELET_HALO), min(height, y1 + WAVELET_HALO)
        part = image[:, :, a0:a1]
        fixed = part - wavelet_lowpass(part, levels) + wavelet_lowpass(ref[:, :, a0:a1], levels)
        out[:, :, y0:y1] = fixed[:, :, y0 - a0 : y1 - a0].clamp(0, 1)
    return out


def unet_call_counter(refiner: Refiner) -> Callable[[], int]:
    """Count UNet forward calls (for tests and benchmarks); returns a reader."""
    count = [0]

    def hook(*_: Sequence[Any]) -> None:
        count[0] += 1

    refiner.unet.register_forward_hook(hook)
    return lambda: count[0]
