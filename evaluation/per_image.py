"""One image of an evaluation: degrade, run the levels, score each output against the ground truth."""

from __future__ import annotations

import argparse
import base64
import io
from pathlib import Path
from typing import Any

from PIL import Image

from evaluation.dataset import Degradation, image_seed, key_of, make_pair
from evaluation.scores import SUMMARY_COLUMNS
from pipelines.quality import NiqeChannel
from pipelines.report import png_bytes

THUMB_WIDTH = 160  # px: the report's thumbnails (its style sheet sizes them the same)


def evaluate_image(
    engine: Any, path: Path, args: argparse.Namespace, deg: Degradation, *, niqe_channel: NiqeChannel = "y"
) -> dict[str, Any]:
    """The record of one image (``args``: ``scale``, ``seed``, ``levels``): its name, path,
    ground-truth size and seed, per level either its scores (``status`` "ok") or why it did
    not run (``status`` "not run", ``reason``), and base64 PNG thumbnails of every output,
    the ground truth and the input. NIQE scores the luma ``niqe_channel`` (the engine's own
    score is Y's; another channel is scored here again)."""
    from pipelines.imaging import load_image
    from pipelines.metrics import ScoreInput, get_metric, score, sr_scores
    from pipelines.request import UpscaleRequest

    hr, lr = make_pair(path, args.scale)
    seed = image_seed(args.seed, key_of(path))
    data = deg.encode(lr, seed)  # a JPEG stays a JPEG file: the cleanup reads its quality
    lr = Image.open(io.BytesIO(data)).convert("RGB")
    request = UpscaleRequest(
        width=hr.width,
        height=hr.height,
        fit="crop",
        levels=tuple(args.levels),
        seed=args.seed,
        table=engine.config.table,
    )
    result = engine.run(load_image(data), request)
    levels: dict[str, Any] = {}
    thumbs: dict[str, str] = {}
    for lv in result.levels:
        if lv.image is None:
            levels[str(lv.level)] = {"status": "not run", "reason": lv.reason or lv.message}
            continue
        scores = sr_scores(lv.image, hr, scale=args.scale)
        scores.update({m.key: lv.metrics[m.key] for m in SUMMARY_COLUMNS if m.key in lv.metrics})
        if niqe_channel != "y" and "niqe" in scores:
            scores.update(score(ScoreInput(output=lv.image, niqe_channel=niqe_channel), [get_metric("niqe")]))
        scores["seconds"] = lv.seconds
        levels[str(lv.level)] = {"status": "ok", **scores}
        thumbs[str(lv.level)] = thumbnail(lv.image)
    return {
        "image": key_of(path),
        "path": str(path),
        "size": list(hr.size),
        "seed": seed,
        "levels": levels,
        "thumbs": thumbs,
        "gt_thumb": thumbnail(hr),
        "lr_thumb": thumbnail(lr.resize(hr.size, Image.Resampling.NEAREST)),
    }


def thumbnail(image: Image.Image, width: int = THUMB_WIDTH) -> str:
    """``image`` as an RGB PNG ``width`` px wide (aspect kept), base64 text for a data URI."""
    t = image.convert("RGB")
    t = t.resize((width, max(1, round(width * t.height / t.width))), Image.Resampling.LANCZOS)
    return base64.b64encode(png_bytes(t)).decode()
