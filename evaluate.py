"""Measure the strength dial over a dataset of high-resolution images.

    python evaluate.py ../shared/eval/Set5 --levels 7,8,9 -o eval_runs/set5
    python evaluate.py photos/ --jpeg 30 --noise 3 -o eval_runs/photos_q30
    python evaluate.py photos/ --levels 5,8 --sweep creativity=0.2,0.35,0.5 --sweep resemblance=0.4,0.8 -o eval_runs/sweep
    torchrun --nproc_per_node 2 evaluate.py photos/ -o eval_runs/photos   # sharded

Each image: crop to a multiple of the scale, antialiased bicubic downscale (the SR-paper way),
optional degradations (blur → noise → JPEG, seeded per image), run the chosen levels, score
each output against the ground truth (PSNR/SSIM on Y with the border shaved, and on RGB),
LR-consistency, distance from the bicubic baseline and time. Per-image results are saved as
they finish, so an interrupted run resumes where it stopped. Outputs: per-image CSV/JSON,
a per-level summary (CSV, JSON, Markdown), plots, a self-contained HTML report and a
monotonicity check of the dial.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from dataclasses import asdict
from pathlib import Path
from typing import Any

import presets
from evaluation.dataset import Degradation, key_of, list_images
from evaluation.outputs import check_config, write_outputs
from evaluation.paper import paper_check
from evaluation.per_image import evaluate_image
from evaluation.scores import jsonable
from evaluation.sweep import add_sweep_args, check_sweep_args, sweep_config, sweep_image, write_sweep
from evaluation.votes import votes_report
from pipelines.engine_args import add_engine_args, add_niqe_channel_arg, engine_config
from pipelines.processes import distributed, my_share
from pipelines.report import atomic_write

# The parts live in evaluation/ (and the figures in figures.py); this file parses the flags,
# shares the images between processes and composes the parts.


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("folders", nargs="+", help="folders (or files) of high-resolution ground-truth images")
    p.add_argument("-o", "--output", required=True, help="output folder (per-image results make re-runs resume)")
    p.add_argument("--scale", type=int, default=4, help="downscale factor for the LR input (default %(default)s)")
    p.add_argument("--levels", default="all", help="comma-separated levels, or 'all' (default)")
    p.add_argument("--jpeg", type=int, help="JPEG-compress the LR input at this quality")
    p.add_argument("--noise", type=float, help="add Gaussian noise of this sigma (8-bit levels) to the LR input")
    p.add_argument("--blur", type=float, help="Gaussian-blur the LR input with this sigma (px)")
    p.add_argument("--seed", type=int, default=0, help="seed for degradations and diffusion (default %(default)s)")
    p.add_argument("--fresh", action="store_true", help="ignore per-image results already in the output folder")
    p.add_argument(
        "--fidelity-floor",
        type=float,
        default=presets.DEFAULT_FIDELITY_FLOOR_DB,
        metavar="DB",
        help="the recommendation's LR-consistency floor (default %(default)s dB; see docs/metrics.md)",
    )
    add_niqe_channel_arg(p, "--niqe-channel", "--channel", dest="niqe_channel", note="; PSNR-Y and SSIM-Y stay on Y")
    p.add_argument(
        "--no-progress", action="store_true", help="no progress (a bar on a terminal, else one line per image)"
    )
    p.add_argument("--votes", metavar="VOTES", help="arena votes (CSV/Parquet): how well each score predicts them")
    add_sweep_args(p)  # evaluation/sweep.py: --sweep NAME=v1,v2,... (up to two), --sweep-from
    add_engine_args(p)
    args = p.parse_args(argv)
    check_sweep_args(p, args)
    if args.levels != "all":  # checked against the engine's level table by chosen_levels
        try:
            args.levels = sorted({int(x) for x in args.levels.split(",")})
        except ValueError:
            p.error(f"--levels must be comma-separated levels like 7,8,9 or 'all', got {args.levels!r}")
    if args.scale < 2:
        p.error("--scale must be >= 2")
    if args.votes and not Path(args.votes).is_file():
        p.error(f"--votes: no file {args.votes}")
    return args


def chosen_levels(levels: list[int] | str, table: presets.LevelTable) -> list[int]:
    """``--levels`` on the engine's ``table``: ``"all"`` → every level; a level the table lacks
    exits with the allowed range."""
    if levels == "all":
        return list(table.numbers)
    for n in levels:
        try:
            table.get(int(n))
        except ValueError as exc:
            raise SystemExit(f"error: --levels: {exc}") from None
    return [int(n) for n in levels]


def build_engine(args: argparse.Namespace) -> Any:  # pipelines.engine.Engine
    """The engine the flags ask for (models, device, dtype, batch)."""
    from pipelines.engine import Engine

    return Engine(engine_config(args))


def run_config(args: argparse.Namespace, deg: Degradation) -> dict[str, Any]:
    """What makes per-image results comparable: resuming needs the same values."""
    return {
        "scale": args.scale,
        "levels": args.levels,
        "seed": args.seed,
        "degradation": asdict(deg),
        "upscaler": args.upscaler,
        "models": [args.sd15, args.controlnet, args.lora, args.lora_file],
        "niqe_channel": args.niqe_channel,
        **sweep_config(args),
    }


def my_images(images: list[Path], state: Any) -> list[Path]:
    """The images this process scores: all of them, or its part under ``distributed()``."""
    if state is None:
        return images
    mine = my_share(images, state)
    print(f"rank {state.process_index}/{state.num_processes}: {len(mine)} images", file=sys.stderr)
    return mine


def score_images(engine: Any, todo: list[Path], args: argparse.Namespace, deg: Degradation, desc: str) -> None:
    """Evaluate each image of ``todo``, saving its record as soon as it is done (runs resume).
    Progress: a tqdm bar on a terminal; where stderr is a file or a pipe, one line per image."""
    from tqdm import tqdm

    per_image = Path(args.output) / "per_image"
    bars = sys.stderr.isatty()
    for i, path in enumerate(
        tqdm(todo, desc=desc, unit="image", disable=args.no_progress or not bars, file=sys.stderr)
    ):
        if not bars and not args.no_progress:
            print(f"{desc}: image {i + 1}/{len(todo)} {path.name}", file=sys.stderr, flush=True)
        record = evaluate_image(engine, path, args, deg, niqe_channel=args.niqe_channel)
        if getattr(args, "sweep", None):  # each point one run of the custom level, on the same input
            record["sweep"] = sweep_image(engine, path, args, deg, niqe_channel=args.niqe_channel)
        atomic_write(per_image / f"{key_of(path)}.json", json.dumps(jsonable(record)).encode())


def main(argv: list[str] | None = None) -> int:
    """Score every image not scored yet (this process's share), then, on the main process,
    merge the per-image results into the summary, plots and report."""
    args = parse_args(argv)
    deg = Degradation(blur=args.blur, noise=args.noise, jpeg=args.jpeg)
    out = Path(args.output)
    per_image = out / "per_image"
    images = list_images(args.folders)
    state = distributed()
    is_main = state is None or state.is_main_process
    engine = build_engine(args)
    table = engine.config.table
    args.levels = chosen_levels(args.levels, table)
    if is_main:
        check_config(out, run_config(args, deg), args.fresh)
    if state is not None:
        state.wait_for_everyone()
    mine = my_images(images, state)
    todo = [p for p in mine if args.fresh or not (per_image / f"{key_of(p)}.json").exists()]
    if len(mine) > len(todo):
        print(f"resuming: {len(mine) - len(todo)} of {len(mine)} images already scored", file=sys.stderr)
    t0 = time.perf_counter()
    score_images(engine, todo, args, deg, f"evaluating (rank {state.process_index})" if state else "evaluating")
    if state is not None:
        state.wait_for_everyone()
    if is_main:
        records = [json.loads((per_image / f"{key_of(p)}.json").read_text()) for p in images]
        print(write_outputs(out, records, args, deg, table=table, niqe_channel=args.niqe_channel))
        if args.sweep:  # sweep.csv/.md/.json and its plots
            print(write_sweep(out, records, args, table=table))
        check = paper_check(records, args, deg, table)
        if check:
            print(check)
        if args.votes:  # evaluation/votes.py: agreement and Kendall's τ against the votes
            print(votes_report(out, records, args, deg, table=table))
        print(f"wrote {out}/report.html, summary.md/.csv/.json, per_image.csv ({time.perf_counter() - t0:.1f} s)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
