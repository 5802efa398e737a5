"""The bicubic baseline against the published ×4 figures (EDSR/RCAN tables) of Set5 and Set14."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

import presets
from evaluation.aggregate import aggregate
from evaluation.dataset import Degradation

PAPER = {"Set5": (28.42, 0.8104), "Set14": (26.00, 0.7027)}  # bicubic ×4, Y channel: PSNR (dB), SSIM


def paper_check(
    records: list[dict[str, Any]], args: argparse.Namespace, deg: Degradation, table: presets.LevelTable
) -> str | None:
    """The bicubic baseline against the published ×4 figures, when the run is that setting
    (one of ``PAPER``'s datasets, ×4, no degradation, the baseline level run); else None."""
    names = {Path(f).name for f in args.folders}
    name = next(iter(names)) if len(names) == 1 else None
    if table.baseline_level not in args.levels or name not in PAPER or deg.label() != "none" or args.scale != 4:
        return None
    s = aggregate(records, [table.baseline_level], table=table)[str(table.baseline_level)]
    ref = PAPER[name]
    return (
        f"paper check ({name} ×4 bicubic, Y): {s['psnr_y']['mean']:.2f} dB / {s['ssim_y']['mean']:.4f} "
        f"vs published {ref[0]:.2f} / {ref[1]:.4f} (Δ {s['psnr_y']['mean'] - ref[0]:+.2f} dB, "
        f"{s['ssim_y']['mean'] - ref[1]:+.4f})"
    )
