"""Tiny random diffusion parts (UNet, ControlNet, VAE, CLIP text encoder, a tokenizer from a
small vocabulary, a LoRA with non-zero init), saved in the real folder layouts so the engine
loads them through the same code as the real weights. For tests and benchmarks only: their
output is noise-like and says nothing about image quality.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import presets
from pipelines.refiner import DiffusionModels


def _write_tokenizer(folder: Path) -> None:
    from transformers import CLIPTokenizer

    chars = list("abcdefghijklmnopqrstuvwxyz0123456789,.-'!?")
    vocab = {"<|startoftext|>": 0, "<|endoftext|>": 1, "!": 2}
    for c in chars:
        for piece in (c, c + "</w>"):
            vocab.setdefault(piece, len(vocab))
    tmp = folder / "_src"
    tmp.mkdir(parents=True, exist_ok=True)
    (tmp / "vocab.json").write_text(json.dumps(vocab))
    (tmp / "merges.txt").write_text("#version: 0.2\n")
    tok: Any = CLIPTokenizer(
        vocab_file=str(tmp / "vocab.json"),
        merges_file=str(tmp / "merges.txt"),
        model_max_length=77,
        pad_token="<|endoftext|>",
    )
    tok.save_pretrained(str(folder))


def assemble_pipeline(unet: Any, vae: Any, text_encoder: Any, tokenizer: Any) -> Any:
    """An SD 1.5 pipeline object (DDIM scheduler with SD 1.5's betas) around the given parts."""
    from diffusers import DDIMScheduler, StableDiffusionPipeline

    scheduler = DDIMScheduler(
        beta_start=0.00085,
        beta_end=0.012,
        beta_schedule="scaled_linear",
        clip_sample=False,
        set_alpha_to_one=False,
        steps_offset=1,
    )
    return StableDiffusionPipeline(
        unet=unet,
        vae=vae,
        text_encoder=text_encoder,
        tokenizer=tokenizer,
        scheduler=scheduler,
        safety_checker=None,
        feature_extractor=None,
        requires_safety_checker=False,
    )


def add_random_lora(unet: Any, *, rank: int, adapter_name: str | None = None) -> None:
    """A LoRA with random (non-zero) A and B on the attention projections: every scale
    changes the output, as a trained adapter would."""
    from peft import LoraConfig

    config = LoraConfig(
        r=rank, lora_alpha=rank, target_modules=["to_q", "to_k", "to_v", "to_out.0"], init_lora_weights=False
    )
    if adapter_name is None:
        unet.add_adapter(config)
    else:
        unet.add_adapter(config, adapter_name=adapter_name)


def build_tiny_models(folder: str | Path, *, seed: int = 0, vae_factor: int = 2) -> DiffusionModels:
    """Write tiny SD 1.5-shaped parts under ``folder`` and return the paths as DiffusionModels.

    ``vae_factor`` 2 (two VAE blocks) keeps tests fast; 8 (four blocks, like SD 1.5) makes the
    latent grid, and so the diffusion cost per output pixel, shaped like the real model's (for
    benchmarks). The engine reads the factor from the VAE config either way.
    """
    if vae_factor not in (2, 8):
        raise ValueError(f"vae_factor must be 2 or 8, got {vae_factor}")
    n_blocks = 2 if vae_factor == 2 else 4
    import torch
    from diffusers import AutoencoderKL, ControlNetModel, StableDiffusionPipeline, UNet2DConditionModel
    from peft.utils import get_peft_model_state_dict
    from transformers import CLIPTextConfig, CLIPTextModel, CLIPTokenizer

    root = Path(folder)
    torch.manual_seed(seed)
    unet: Any = UNet2DConditionModel(
        block_out_channels=(32, 64),
        layers_per_block=1,
        sample_size=32,
        in_channels=4,
        out_channels=4,
        down_block_types=("DownBlock2D", "CrossAttnDownBlock2D"),
        up_block_types=("CrossAttnUpBlock2D", "UpBlock2D"),
        cross_attention_dim=32,
    )
    cond_channels = (16, 32) if vae_factor == 2 else (16, 16, 32, 32)
    controlnet = ControlNetModel.from_unet(unet, conditioning_embedding_out_channels=cond_channels)
    vae = AutoencoderKL(
        block_out_channels=[32, 64] if vae_factor == 2 else [32, 32, 64, 64],
        in_channels=3,
        out_channels=3,
        down_block_types=["DownEncoderBlock2D"] * n_blocks,
        up_block_types=["UpDecoderBlock2D"] * n_blocks,
        latent_channels=4,
        sample_size=64,
    )
    text_encoder = CLIPTextModel(
        CLIPTextConfig(
            bos_token_id=0,
            eos_token_id=1,
            pad_token_id=1,
            hidden_size=32,
            intermediate_size=37,
            layer_norm_eps=1e-05,
            num_attention_heads=4,
            num_hidden_layers=5,
            vocab_size=1000,
        )
    )
    _write_tokenizer(root / "tokenizer_src")
    tokenizer = CLIPTokenizer.from_pretrained(str(root / "tokenizer_src"))
    pipe = assemble_pipeline(unet, vae, text_encoder, tokenizer)
    pipe.save_pretrained(str(root / "sd15"))
    controlnet.save_pretrained(str(root / "controlnet"))
    add_random_lora(unet, rank=4)
    StableDiffusionPipeline.save_lora_weights(
        str(root / "lora"),
        unet_lora_layers=get_peft_model_state_dict(unet),
        safe_serialization=True,
    )
    return DiffusionModels(
        sd15=str(root / "sd15"),
        controlnet=str(root / "controlnet"),
        lora=str(root / "lora"),
        lora_file="pytorch_lora_weights.safetensors",
    )


def tiny_settings(
    *, tile_size: int = 64, tile_overlap: int = 16, steps: int = 4
) -> dict[float, presets.DiffusionSettings]:
    """The preset diffusion settings with small tiles and few steps (fast on a CPU)."""
    return {
        scale: presets.DiffusionSettings(
            lora_scale=s.lora_scale,
            denoise_strength=s.denoise_strength,
            steps=steps,
            guidance_scale=s.guidance_scale,
            controlnet_scale=s.controlnet_scale,
            tile_size=tile_size,
            tile_overlap=tile_overlap,
        )
        for scale, s in presets.DIFFUSION_SETTINGS.items()
    }
