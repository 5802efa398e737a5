"""The engine's diffusion pass against an independent reference: diffusers' own
``StableDiffusionControlNetImg2ImgPipeline``, loaded by diffusers from the same tiny files (the
real hub layouts), the Kohya-format LoRA loaded with ``load_lora_weights`` and scaled as
diffusers documents (``cross_attention_kwargs={"scale": s}``, which scales the UNet and the
text encoder). One tile (no tiling), colour fix off, the same noise (one seeded CPU generator),
the VAE posterior mean. The two must agree to float noise: latents within 1e-5, pixels within
one 8-bit step."""

from __future__ import annotations

import numpy as np
import pytest
import torch

import presets
from pipelines.convert import pil_to_tensor
from pipelines.refiner import RefineJob, refine

PROMPT, NEGATIVE, SEED = "a red brick house, sharp", "blurry, noise", 7


def preset_settings(scale: float, *, steps: int | None = None) -> presets.DiffusionSettings:
    s = presets.DIFFUSION_SETTINGS[scale]
    return s if steps is None else presets.DiffusionSettings(**{**vars(s), "steps": steps})


@pytest.fixture(scope="module")
def reference_pipe(tiny_models):
    """diffusers' pipeline, loaded by diffusers alone (nothing of ours on the way)."""
    from diffusers import ControlNetModel, DDIMScheduler, StableDiffusionControlNetImg2ImgPipeline

    controlnet = ControlNetModel.from_pretrained(tiny_models.controlnet)
    pipe = StableDiffusionControlNetImg2ImgPipeline.from_pretrained(
        tiny_models.sd15,
        controlnet=controlnet,
        safety_checker=None,
        feature_extractor=None,
        requires_safety_checker=False,
    )
    pipe.scheduler = DDIMScheduler.from_config(pipe.scheduler.config)  # the engine's scheduler
    pipe.load_lora_weights(tiny_models.lora, weight_name=tiny_models.lora_file)
    pipe.set_progress_bar_config(disable=True)
    return pipe


def run_reference(pipe, image, settings: presets.DiffusionSettings, monkeypatch, output_type: str):
    from diffusers.pipelines.controlnet import pipeline_controlnet_img2img as module

    real = module.retrieve_latents
    # the engine encodes each base to its posterior mean (no sampling): ask diffusers for the mode
    monkeypatch.setattr(
        module, "retrieve_latents", lambda out, generator=None, sample_mode="sample": real(out, generator, "argmax")
    )
    out = pipe(
        prompt=PROMPT,
        negative_prompt=NEGATIVE,
        image=image,
        control_image=image,
        strength=settings.denoise_strength,
        num_inference_steps=settings.steps,
        guidance_scale=settings.guidance_scale,
        controlnet_conditioning_scale=settings.controlnet_scale,
        cross_attention_kwargs={"scale": settings.lora_scale},
        generator=torch.Generator("cpu").manual_seed(SEED),
        output_type=output_type,
    )
    return out.images


def run_engine(refiner, image, settings: presets.DiffusionSettings):
    job = RefineJob(
        bases={"base": pil_to_tensor(image)},
        scales={settings.lora_scale: ["base"]},
        prompt=PROMPT,
        negative_prompt=NEGATIVE,
        seed=SEED,
        settings={settings.lora_scale: settings},
        color_fix=False,
        keep_latents=True,
    )
    out = refine(refiner, job)
    return out.latents[(settings.lora_scale, "base")], out.images[(settings.lora_scale, "base")]


@pytest.mark.parametrize("scale", [1.0, 0.5])
@pytest.mark.parametrize("steps", [None, 5], ids=["preset-steps", "5-steps"])
def test_one_tile_equals_diffusers_controlnet_img2img(tiny_engine, reference_pipe, photo, monkeypatch, scale, steps):
    settings = preset_settings(scale, steps=steps)
    image = photo.rgb  # 64×64: one tile at the preset tile size
    refiner = tiny_engine.refiner()
    assert settings.tile_size >= max(image.size)
    latents, pixels = run_engine(refiner, image, settings)
    want_latents = run_reference(reference_pipe, image, settings, monkeypatch, "latent")
    assert want_latents.shape == latents.shape
    assert torch.allclose(latents, want_latents.float(), atol=1e-5, rtol=0), (latents - want_latents).abs().max()
    want = run_reference(reference_pipe, image, settings, monkeypatch, "np")[0]
    diff = np.abs(np.asarray(pixels).astype(int) - np.round(want * 255).astype(int))
    assert diff.max() <= 1, diff.max()
    # the comparison can see the pass: it moved the latents well away from the clean encoding
    clean = refiner.encode_images(pil_to_tensor(image))
    assert (latents - clean).abs().mean() > 0.01


def test_step_count_follows_diffusers(tiny_engine):
    """``int(steps × strength)`` timesteps, as diffusers' img2img runs (round would differ)."""
    from diffusers import DDIMScheduler

    from pipelines.refiner import img2img_timesteps

    sched = DDIMScheduler.from_config(tiny_engine.refiner().scheduler_config)
    settings = presets.DiffusionSettings(**{**vars(presets.DIFFUSION_SETTINGS[1.0]), "steps": 5})  # 5 × 0.45 = 2.25
    assert len(img2img_timesteps(sched, settings)) == 2
    settings = presets.DiffusionSettings(**{**vars(presets.DIFFUSION_SETTINGS[1.0]), "steps": 4})  # 1.8: int → 1
    assert len(img2img_timesteps(sched, settings)) == 1
