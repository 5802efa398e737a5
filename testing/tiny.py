"""Tiny random diffusion parts, written in the *real* hub repos' layouts and formats, so the
engine loads them through the same code as the real weights (and a fake hub can serve them).

- ``sd15/``: ``stable-diffusion-v1-5/stable-diffusion-v1-5`` as the hub holds it: the 2022
  configs (a PNDM ``scheduler_config.json``, a VAE config without ``scaling_factor``), a
  tokenizer folder with ``vocab.json``/``merges.txt``/``tokenizer_config.json``/
  ``special_tokens_map.json`` and no ``tokenizer.json``, a text encoder in transformers 4.22's
  key layout (``text_model.*``, a ``position_ids`` buffer), and ``feature_extractor/`` and
  ``safety_checker/`` folders that must never be needed (their weights are not loadable).
- ``controlnet/``: ``lllyasviel/control_v11f1e_sd15_tile``: ``config.json`` and
  ``diffusion_pytorch_model.bin`` only.
- ``lora/more_details.safetensors``: ``philz1337x/loras``' file: a Kohya/A1111 LoRA
  (``lora_unet_*`` and ``lora_te_*`` keys with ``alpha``, fp16).
- ``fast_lora/pytorch_lora_weights.safetensors``: ``latent-consistency/lcm-lora-sdv1-5``'s
  file (the fast mode), in the layout its training script writes (:func:`lcm_lora`): UNet only,
  Kohya keys, LoRA on linear and conv layers alike.

Every part has an effect, so tests can see it: the tokenizer gives different prompts different
ids, the ControlNet's output layers and conditioning embedding are live (``from_unet`` zeroes
them), and the LoRA adapts the UNet *and* the text encoder. Their output is noise-like and says
nothing about image quality.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import presets
from pipelines.models import DiffusionModels

SD15_DIR, CONTROLNET_DIR, LORA_DIR, FAST_LORA_DIR = "sd15", "controlnet", "lora", "fast_lora"
BOS, EOS = "<|startoftext|>", "<|endoftext|>"
LORA_RANK = 4
UNET_LORA_TARGETS = ("to_q", "to_k", "to_v", "to_out.0")
TE_LORA_TARGETS = ("q_proj", "k_proj", "v_proj", "out_proj")
# What LCM-LoRA adapts: the target modules of diffusers' LCM-LoRA distillation script for SD 1.5
# (examples/consistency_distillation/train_lcm_distill_lora_sd_wds.py; the module names its PEFT
# model lists: latent-consistency-model issue #109): attention, the transformers' projections and
# feed-forward, every resnet conv and time projection, and the down/up samplers. No text encoder.
LCM_LORA_TARGETS = (
    "to_q",
    "to_k",
    "to_v",
    "to_out.0",
    "proj_in",
    "proj_out",
    "ff.net.0.proj",
    "ff.net.2",
    "conv1",
    "conv2",
    "conv_shortcut",
    "downsamplers.0.conv",
    "upsamplers.0.conv",
    "time_emb_proj",
)


def write_tokenizer(folder: Path) -> None:
    """A CLIP BPE tokenizer over single characters, in the SD 1.5 repo's files (no
    ``tokenizer.json``): every character of a prompt gets its own id."""
    folder.mkdir(parents=True, exist_ok=True)
    vocab = {BOS: 0, EOS: 1, "!": 2}
    for c in "abcdefghijklmnopqrstuvwxyz0123456789,.-'!?":
        for piece in (c, c + "</w>"):
            vocab.setdefault(piece, len(vocab))
    (folder / "vocab.json").write_text(json.dumps(vocab))
    (folder / "merges.txt").write_text("#version: 0.2\n")
    special = {"content": EOS, "lstrip": False, "normalized": True, "rstrip": False, "single_word": False}
    (folder / "special_tokens_map.json").write_text(
        json.dumps(
            {"bos_token": {**special, "content": BOS}, "eos_token": special, "pad_token": EOS, "unk_token": special}
        )
    )
    (folder / "tokenizer_config.json").write_text(
        json.dumps(
            {
                "add_prefix_space": False,
                "bos_token": {**special, "content": BOS, "__type": "AddedToken"},
                "do_lower_case": True,
                "eos_token": {**special, "__type": "AddedToken"},
                "errors": "replace",
                "model_max_length": 77,
                "name_or_path": "openai/clip-vit-large-patch14",
                "pad_token": EOS,
                "special_tokens_map_file": "./special_tokens_map.json",
                "tokenizer_class": "CLIPTokenizer",
                "unk_token": {**special, "__type": "AddedToken"},
            }
        )
    )


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
    """A PEFT LoRA with random (non-zero) A and B on the attention projections (benchmarks)."""
    from peft import LoraConfig

    config = LoraConfig(r=rank, lora_alpha=rank, target_modules=list(UNET_LORA_TARGETS), init_lora_weights=False)
    if adapter_name is None:
        unet.add_adapter(config)
    else:
        unet.add_adapter(config, adapter_name=adapter_name)


def make_live(controlnet: Any, *, std: float = 0.02, embedding_std: float = 0.1) -> None:
    """Give the layers that ``ControlNetModel.from_unet`` zero-initialises small random
    weights: its residuals, and so the control image and conditioning scale, then matter."""
    import torch

    with torch.no_grad():
        for conv, sd in [
            *((c, std) for c in controlnet.controlnet_down_blocks),
            (controlnet.controlnet_mid_block, std),
            (controlnet.controlnet_cond_embedding.conv_out, embedding_std),
        ]:
            conv.weight.normal_(0.0, sd)
            conv.bias.normal_(0.0, sd)


def kohya_lora(unet: Any, text_encoder: Any, *, rank: int = LORA_RANK, std: float = 0.1) -> dict[str, Any]:
    """A random LoRA in the Kohya/A1111 format (``lora_unet_<module_path>.lora_down.weight``,
    ``.lora_up.weight``, ``.alpha``; ``lora_te_`` for the text encoder), fp16."""
    import torch

    out: dict[str, Any] = {}
    for prefix, model, targets, root in (
        ("lora_unet_", unet, UNET_LORA_TARGETS, ""),
        ("lora_te_", text_encoder, TE_LORA_TARGETS, "text_model."),
    ):
        for name, module in model.named_modules():
            if not isinstance(module, torch.nn.Linear) or not name.endswith(targets):
                continue
            key = prefix + (root + name).replace(".", "_")
            out[f"{key}.lora_down.weight"] = (torch.randn(rank, module.in_features) * std).half()
            out[f"{key}.lora_up.weight"] = (torch.randn(module.out_features, rank) * std).half()
            out[f"{key}.alpha"] = torch.tensor(float(rank)).half()
    return out


def lcm_lora(unet: Any, *, rank: int = LORA_RANK, std: float = 0.05) -> dict[str, Any]:
    """A random LoRA in LCM-LoRA's file layout, fp16. The script saves its PEFT weights through
    ``get_module_kohya_state_dict``: ``base_model.model`` → ``lora_unet``, ``lora_A``/``lora_B``
    → ``lora_down``/``lora_up``, every dot but the last two → ``_``, and an ``alpha`` per module
    (``lora_unet_down_blocks_0_resnets_0_conv1.lora_down.weight``). A conv layer gets a conv
    LoRA: ``lora_down`` with the layer's kernel ``(r, in, k, k)``, ``lora_up`` ``(out, r, 1, 1)``.
    The weights are not zero, so the fast mode changes the image (tests tell it from normal)."""
    import torch

    out: dict[str, Any] = {}
    for name, module in unet.named_modules():
        if not any(name == t or name.endswith("." + t) for t in LCM_LORA_TARGETS):
            continue
        key = "lora_unet_" + name.replace(".", "_")
        if isinstance(module, torch.nn.Conv2d):
            k = module.kernel_size
            down = torch.randn(rank, module.in_channels, *k) * std
            up = torch.randn(module.out_channels, rank, 1, 1) * std
        elif isinstance(module, torch.nn.Linear):
            down = torch.randn(rank, module.in_features) * std
            up = torch.randn(module.out_features, rank) * std
        else:
            continue
        out[f"{key}.lora_down.weight"] = down.half()
        out[f"{key}.lora_up.weight"] = up.half()
        out[f"{key}.alpha"] = torch.tensor(float(rank)).half()
    return out


def _write_text_encoder(text_encoder: Any, folder: Path) -> None:
    """transformers 4.22's layout: ``text_model.*`` keys and the ``position_ids`` buffer."""
    import torch
    from safetensors.torch import save_file

    folder.mkdir(parents=True, exist_ok=True)
    state = {"text_model." + k: v.contiguous() for k, v in text_encoder.state_dict().items()}
    state["text_model.embeddings.position_ids"] = torch.arange(text_encoder.config.max_position_embeddings)[None]
    save_file(state, str(folder / "model.safetensors"), metadata={"format": "pt"})
    config = text_encoder.config.to_dict()
    config.update(architectures=["CLIPTextModel"], transformers_version="4.22.0.dev0", torch_dtype="float32")
    (folder / "config.json").write_text(json.dumps(config, indent=2))


def _write_sd15_extras(root: Path) -> None:
    """The files of the real repo the lab does not read: model_index as in 2022, the PNDM
    scheduler config, and feature_extractor/ + safety_checker/ whose weights are unloadable."""
    (root / "model_index.json").write_text(
        json.dumps(
            {
                "_class_name": "StableDiffusionPipeline",
                "_diffusers_version": "0.6.0",
                "feature_extractor": ["transformers", "CLIPImageProcessor"],
                "safety_checker": ["stable_diffusion", "StableDiffusionSafetyChecker"],
                "scheduler": ["diffusers", "PNDMScheduler"],
                "text_encoder": ["transformers", "CLIPTextModel"],
                "tokenizer": ["transformers", "CLIPTokenizer"],
                "unet": ["diffusers", "UNet2DConditionModel"],
                "vae": ["diffusers", "AutoencoderKL"],
            },
            indent=2,
        )
    )
    (root / "scheduler").mkdir(exist_ok=True)
    (root / "scheduler" / "scheduler_config.json").write_text(
        json.dumps(
            {
                "_class_name": "PNDMScheduler",
                "_diffusers_version": "0.6.0",
                "beta_end": 0.012,
                "beta_schedule": "scaled_linear",
                "beta_start": 0.00085,
                "num_train_timesteps": 1000,
                "set_alpha_to_one": False,
                "skip_prk_steps": True,
                "steps_offset": 1,
                "trained_betas": None,
                "clip_sample": False,
            },
            indent=2,
        )
    )
    (root / "feature_extractor").mkdir(exist_ok=True)
    (root / "feature_extractor" / "preprocessor_config.json").write_text(
        json.dumps({"crop_size": 224, "do_normalize": True, "image_processor_type": "CLIPImageProcessor"})
    )
    (root / "safety_checker").mkdir(exist_ok=True)
    (root / "safety_checker" / "config.json").write_text(
        json.dumps({"_name_or_path": "CompVis/stable-diffusion-safety-checker"})
    )
    (root / "safety_checker" / "model.safetensors").write_bytes(b"not needed: must never be downloaded or loaded")


# SD 1.5's shapes (the real UNet, ControlNet, VAE and a 12-layer CLIP text encoder) for
# ``build_tiny_models(sd15_sized=True)``: random weights with the real cost (benchmarks only).
SD15_SHAPES: dict[str, dict[str, Any]] = {
    "unet": dict(
        block_out_channels=(320, 640, 1280, 1280),
        layers_per_block=2,
        sample_size=64,
        in_channels=4,
        out_channels=4,
        down_block_types=("CrossAttnDownBlock2D", "CrossAttnDownBlock2D", "CrossAttnDownBlock2D", "DownBlock2D"),
        up_block_types=("UpBlock2D", "CrossAttnUpBlock2D", "CrossAttnUpBlock2D", "CrossAttnUpBlock2D"),
        cross_attention_dim=768,
        attention_head_dim=8,
    ),
    "vae": dict(block_out_channels=[128, 256, 512, 512], layers_per_block=2, sample_size=512),
    "text": dict(hidden_size=768, intermediate_size=3072, num_attention_heads=12, num_hidden_layers=12),
}


def build_tiny_models(
    folder: str | Path, *, seed: int = 0, vae_factor: int = 2, sd15_sized: bool = False
) -> DiffusionModels:
    """Write tiny parts under ``folder`` in the real repos' layouts (see module doc) and return
    them as DiffusionModels (local folders).

    ``vae_factor`` 2 (two VAE blocks) keeps tests fast; 8 (four blocks, like SD 1.5) makes the
    latent grid, and so the diffusion cost per output pixel, shaped like the real model's (for
    benchmarks). The engine reads the factor from the VAE config either way. ``sd15_sized``:
    every part with SD 1.5's shapes (:data:`SD15_SHAPES`, ×8 VAE; about 4 GB on disk) and the
    tiny tokenizer, random weights: the real cost without a download (benchmarks).
    """
    if sd15_sized:
        vae_factor = 8
    if vae_factor not in (2, 8):
        raise ValueError(f"vae_factor must be 2 or 8, got {vae_factor}")
    n_blocks = 2 if vae_factor == 2 else 4
    import torch
    from diffusers import AutoencoderKL, ControlNetModel, UNet2DConditionModel
    from transformers import CLIPTextConfig, CLIPTextModel

    root = Path(folder)
    sd = root / SD15_DIR
    torch.manual_seed(seed)
    unet: Any = UNet2DConditionModel(
        **SD15_SHAPES["unet"]
        if sd15_sized
        else dict(
            block_out_channels=(32, 64),
            layers_per_block=1,
            sample_size=32,
            in_channels=4,
            out_channels=4,
            down_block_types=("DownBlock2D", "CrossAttnDownBlock2D"),
            up_block_types=("CrossAttnUpBlock2D", "UpBlock2D"),
            cross_attention_dim=32,
        )
    )
    cond_channels = (16, 32) if vae_factor == 2 else (16, 32, 96, 256) if sd15_sized else (16, 16, 32, 32)
    controlnet = ControlNetModel.from_unet(unet, conditioning_embedding_out_channels=cond_channels)
    make_live(controlnet)
    vae: Any = AutoencoderKL(  # Any: mypy reads diffusers' top-level names as its torch-less dummies
        in_channels=3,
        out_channels=3,
        down_block_types=["DownEncoderBlock2D"] * n_blocks,
        up_block_types=["UpDecoderBlock2D"] * n_blocks,
        latent_channels=4,
        **SD15_SHAPES["vae"]
        if sd15_sized
        else dict(block_out_channels=[32, 64] if vae_factor == 2 else [32, 32, 64, 64], sample_size=64),
    )
    text_encoder = CLIPTextModel(
        CLIPTextConfig(
            bos_token_id=0,
            eos_token_id=1,
            pad_token_id=1,
            layer_norm_eps=1e-05,
            vocab_size=1000,
            **SD15_SHAPES["text"]
            if sd15_sized
            else dict(hidden_size=32, intermediate_size=37, num_attention_heads=4, num_hidden_layers=5),
        )
    )
    unet.save_pretrained(str(sd / "unet"))
    vae.save_pretrained(str(sd / "vae"))
    vae_config = json.loads((sd / "vae" / "config.json").read_text())
    vae_config.pop("scaling_factor", None)  # the 2022 config: diffusers defaults it to 0.18215
    (sd / "vae" / "config.json").write_text(json.dumps(vae_config, indent=2))
    _write_text_encoder(text_encoder, sd / "text_encoder")
    write_tokenizer(sd / "tokenizer")
    _write_sd15_extras(sd)
    controlnet.save_pretrained(str(root / CONTROLNET_DIR), safe_serialization=False)  # the repo's .bin
    return DiffusionModels(
        sd15=str(sd), controlnet=str(root / CONTROLNET_DIR), **_write_loras(root, unet, text_encoder)
    )


def _write_loras(root: Path, unet: Any, text_encoder: Any) -> dict[str, str]:
    """The detail LoRA and the fast mode's LCM-LoRA under ``root``, each under its repo's file
    name; their :class:`DiffusionModels` fields."""
    from safetensors.torch import save_file

    out: dict[str, str] = {}
    for mid, folder, state, field in (
        ("detail_lora", LORA_DIR, kohya_lora(unet, text_encoder), "lora"),
        ("fast_lora", FAST_LORA_DIR, lcm_lora(unet), "fast_lora"),
    ):
        name = presets.MODELS[mid].file
        assert name is not None
        (root / folder).mkdir(parents=True, exist_ok=True)
        save_file(state, str(root / folder / name), metadata={"format": "pt"})
        out |= {field: str(root / folder), f"{field}_file": name}
    return out


def hub_replicas(models: DiffusionModels) -> dict[str, Path]:
    """The tiny folders under the real repo ids (for a fake hub)."""
    return {
        presets.MODELS["sd15"].repo: Path(models.sd15),
        presets.MODELS["controlnet_tile"].repo: Path(models.controlnet),
        presets.MODELS["detail_lora"].repo: Path(models.lora),
        presets.MODELS["fast_lora"].repo: Path(models.fast_lora),
    }


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
