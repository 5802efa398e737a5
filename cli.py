"""Command line for the Generative Upscale Lab.

    python cli.py grid examples/astronaut_portrait.png -o out/astronaut --width 1024
    python cli.py upscale photo.jpg -o big.png --strength 5 --width 2000
    python cli.py upscale --request request.json -o big.png
    python cli.py iqa photo.png other_upscaler.png --json
    python cli.py batch photos/ -o out/photos --strength 8 --format jpeg
    python cli.py download
    python cli.py status

Run ``python cli.py COMMAND --help`` for every option.
"""

from __future__ import annotations

import argparse
import json
import logging
import math
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import presets
from pipelines.engine_args import add_engine_args, add_niqe_channel_arg, engine_config
from pipelines.errors import RequestError
from pipelines.output import EXTENSIONS, OUTPUT_FORMATS
from pipelines.quality import NIQE_CHANNELS, NiqeChannel
from pipelines.request import FITS, INLINE_IMAGE_FIELD, RequestFields, parse_custom_text, take_inline_image

if TYPE_CHECKING:
    from pipelines.engine import LevelResult, RunResult
    from pipelines.imaging import LoadedImage
    from pipelines.metrics import Metric
    from pipelines.request import UpscaleRequest

log = logging.getLogger("upscale-lab")

TABLE = presets.TABLE  # the levels of the engine the flags build (engine_config: the default table)
GENERATIVE = presets.number_ranges((lv.level for lv in TABLE.levels if lv.generative), dash="-")
NON_GENERATIVE = [lv.level for lv in TABLE.levels if not lv.generative]
EPILOG = (
    f"Levels (rows {'/'.join(TABLE.effects)} × columns {'/'.join(TABLE.base_paths)}):\n"
    + "\n".join(f"  {lv.level}: {lv.recipe}" for lv in TABLE.levels)
    + f"\nMissing diffusion weights make levels {GENERATIVE} 'missing' (with the fetch command); "
    f"{presets.number_ranges(NON_GENERATIVE, dash='-')} always run."
)


FORMAT_OF_SUFFIX = {**{ext: fmt for fmt, ext in EXTENSIONS.items()}, ".jpeg": "jpeg"}


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
        choices=list(FITS),
        help="with both width and height: canvas (default) pads, crop fills and crops, bounds fits inside, cover covers the box",
    )
    g.add_argument("--padding", help="margin in pixels or percent")
    g.add_argument("--background", metavar="#RRGGBB", help="canvas colour (default #ffffff)")
    g.add_argument("--prompt", help="describes the image; guides the diffusion (default: a neutral quality prompt)")
    g.add_argument("--negative-prompt", help="what to avoid (default: a preset list of artefacts)")
    g.add_argument("--seed", type=int, help="random seed (default: random, reported in the manifest)")
    g.add_argument(
        "--fidelity-floor",
        type=float,
        metavar="DB",
        help=f"the recommendation's LR-consistency floor in dB (default {presets.DEFAULT_FIDELITY_FLOOR_DB:g}; "
        "see docs/metrics.md)",
    )
    g.add_argument(
        "--custom",
        metavar="KEY=VALUE,...",
        help="the custom level (the request's 'custom'; upscale: it alone, grid: beside the levels), e.g. "
        "start_from=5,creativity=0.4,resemblance=0.8; keys: "
        + ", ".join(f"{f.name} {f.range_text}" for f in presets.CUSTOM_FIELDS)
        + ", start_from, base_path, seed",
    )
    g.add_argument(
        "--fast",
        action="store_true",
        default=None,
        help=f"the diffusion levels in the few-step fast mode ({presets.MODELS[presets.FAST_MODE.adapter].repo}, "
        f"{presets.FAST_MODE.scheduler}, no guidance; its image quality has not been measured here)",
    )
    g.add_argument(
        "--region",
        metavar="X,Y,W,H",
        help="a preview of this box of the input (input pixels) at the scale the whole image would get",
    )


def add_output_args(p: argparse.ArgumentParser, *, one_file: bool) -> None:
    """The output fields (``pipelines.output.OutputSpec``) as flags."""
    g = p.add_argument_group("output (the request's output_format, quality, max_file_size, strip_metadata)")
    g.add_argument(
        "--format",
        choices=list(OUTPUT_FORMATS),
        help="output_format (default: png"
        + (", or what -o's extension .jpg/.jpeg/.webp/.png says)" if one_file else ")"),
    )
    g.add_argument("--quality", type=int, metavar="1-100", help="jpeg/webp quality (default 90; webp 100 = lossless)")
    g.add_argument(
        "--max-file-size",
        metavar="SIZE",
        help="jpeg/webp: the highest quality whose file fits, e.g. 1MB, 500kb or bytes (error if even quality 1 does not)",
    )
    g.add_argument(
        "--strip-metadata",
        action="store_true",
        default=None,
        help="no EXIF (GPS included), no embedded manifest, no source colour profile in the output",
    )


def replay_file(path: str) -> dict[str, Any]:
    """The request of the run that made the output image at ``path`` (its embedded manifest),
    its levels set to the level that image is. Raises SystemExit when it carries none."""
    from PIL import Image, UnidentifiedImageError

    from pipelines.output import OUTPUT_LEVEL_KEY, read_manifest

    try:
        with Image.open(path) as img:
            manifest = read_manifest(img)
    except (OSError, UnidentifiedImageError) as exc:
        raise SystemExit(f"error: --replay {path}: {exc}") from exc
    if manifest is None or not isinstance(manifest.get("request"), dict):
        raise SystemExit(f"error: --replay {path}: the image carries no upscale-lab manifest (stripped or not ours)")
    request = dict(manifest["request"])
    level = manifest.get(OUTPUT_LEVEL_KEY)
    if isinstance(level, int) and level == presets.custom_number(TABLE) and "custom" in request:
        request.pop("levels", None)  # the image is the custom level's: it alone
    elif isinstance(level, int):
        request["levels"] = [level]
        request.pop("custom", None)
    return request


def request_file(args: argparse.Namespace) -> Any:
    """The --request file's JSON (None without one), or the request embedded in the --replay
    image: the REST API's request, ``url`` or the lab extra ``image_base64`` included; both are
    dropped when an INPUT is given (the INPUT wins)."""
    if getattr(args, "replay", None):
        if args.request:
            raise SystemExit("error: give --replay or --request, not both")
        data = replay_file(args.replay)
        if args.input:
            data.pop("url", None)
        return data
    if not args.request:
        return None
    try:
        data = json.loads(Path(args.request).read_text())
    except (OSError, json.JSONDecodeError) as exc:
        raise SystemExit(f"error: --request {args.request}: {exc}") from exc
    if args.input and isinstance(data, dict):
        data.pop("url", None)
        data.pop(INLINE_IMAGE_FIELD, None)
    return data


def request_fields(args: argparse.Namespace, *, grid: bool) -> RequestFields:
    """The flags as request fields (the app's form builds the same). Raises RequestError."""
    levels = strength = generative = None
    if grid:
        try:
            levels = tuple(int(x) for x in args.levels.split(",")) if args.levels else TABLE.numbers
        except ValueError as exc:
            raise RequestError("levels", f"must be comma-separated levels like 7,8,9, got {args.levels!r}") from exc
    else:
        strength = args.strength
        generative = False if args.no_generative else None
    return RequestFields(
        width=args.width,
        height=args.height,
        padding=args.padding,
        min_length=args.min_length,
        fit=args.fit,
        background=args.background,
        prompt=args.prompt,
        negative_prompt=args.negative_prompt,
        seed=args.seed,
        upscale_strength=strength,
        generative_upscale=generative,
        levels=levels,
        fidelity_floor=args.fidelity_floor,
        custom=parse_custom_text(args.custom) if args.custom else None,
        region=getattr(args, "region", None),
        fast=getattr(args, "fast", None),
        # grid has no output flags yet (it writes PNGs): these are upscale's
        output_format=None if grid else args.format or FORMAT_OF_SUFFIX.get(Path(args.output).suffix.lower()),
        quality=None if grid else args.quality,
        max_file_size=None if grid else args.max_file_size,
        strip_metadata=None if grid else args.strip_metadata,
    )


class TqdmProgress:
    """One tqdm bar per stage on a terminal; where stderr is a file or a pipe (a log, CI), one
    plain line per stage instead: a bar redrawn there piles up, and its rate (steps jump
    straight to the total) reads as nonsense like "233016.89step/s"."""

    def __init__(self, *, bars: bool | None = None) -> None:
        """``bars``: draw tqdm bars (default: when stderr is a terminal)."""
        self.bar: Any = None
        self.stage = ""
        self.bars = sys.stderr.isatty() if bars is None else bars

    def __call__(self, stage: str, done: int, total: int) -> None:
        from tqdm import tqdm

        if stage != self.stage:
            self.close()
            self.stage = stage
            if not self.bars:
                print(stage, file=sys.stderr, flush=True)
                return
            self.bar = tqdm(total=total, desc=stage, unit="step", leave=False, file=sys.stderr)
        if self.bar is None:
            return
        self.bar.total = total
        self.bar.n = done
        self.bar.refresh()

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()
            self.bar = None


def _source(args: argparse.Namespace, url: str | None, inline: bytes | None = None) -> str | bytes:
    """The image to load: INPUT, else the request's ``image_base64`` bytes or its ``url``."""
    src = args.input or (inline if inline is not None else url)  # empty bytes: load_image says "empty"
    if src is None:
        raise SystemExit(f"error: give an INPUT image (path or URL) or a request with 'url' or '{INLINE_IMAGE_FIELD}'")
    return src if isinstance(src, bytes) else str(src)


EXIT_ERROR = 2  # nothing ran: a bad request or input, the baseline failed, the output not writable
EXIT_LEVELS_FAILED = 3  # some levels failed (the others ran and, for grid, were written)


def failed_levels(result: RunResult) -> list[LevelResult]:
    """The levels of ``result`` that failed: status ``error``, or ``missing`` for want of a part
    other than the diffusion weights (a cleanup or ×4 wheel). Generative levels ``missing``
    only because the diffusion weights are absent are a lab's documented state before
    ``cli.py download``, not a failure."""
    from pipelines.engine import DIFFUSION

    return [
        lv for lv in result.levels if lv.status == "error" or (lv.status == "missing" and lv.failed_part != DIFFUSION)
    ]


def write_answer(
    args: argparse.Namespace, result: RunResult, request: UpscaleRequest, image: LoadedImage, lv: LevelResult
) -> None:
    """``upscale``'s file: ``lv``'s image encoded as the request says, carrying ``image``'s
    metadata and the run's manifest (``pipelines.output.encode_level``), and with --manifest
    the manifest with ``output``: what was encoded. Raises LabError (a size no quality meets,
    an unwritable path)."""
    from pipelines.errors import LabError
    from pipelines.output import encode_level
    from pipelines.report import atomic_write

    if lv.image is None:
        raise LabError(f"level {lv.level} did not run: {lv.message}")
    encoded = encode_level(result, lv, request, source=image)
    atomic_write(Path(args.output), encoded.data)
    if args.manifest:
        manifest = {**result.manifest, "output": {"level": lv.level, **encoded.to_json()}}
        atomic_write(Path(args.manifest), json.dumps(manifest, indent=2).encode())
    quality = f" quality {encoded.quality}" if encoded.quality is not None else ""
    print(
        f"level {lv.level} ({lv.preset.recipe}) {lv.image.size[0]}×{lv.image.size[1]} → {args.output} "
        f"({encoded.format}{quality}, {encoded.size} bytes; seed {result.seed})"
    )


def cmd_run(args: argparse.Namespace, *, grid: bool) -> int:
    """``grid`` / ``upscale``. Exit 0; :data:`EXIT_LEVELS_FAILED` when levels failed
    (:func:`failed_levels`; for ``upscale``, its one level did not run); :data:`EXIT_ERROR`
    when the run or its output failed as a whole."""
    from pipelines.engine import Engine
    from pipelines.errors import LabError, RequestError
    from pipelines.output import OutputSpec
    from pipelines.report import metrics_markdown, save_run

    base = request_file(args)
    progress = TqdmProgress()
    try:
        inline = take_inline_image(base) if isinstance(base, dict) else None  # the REST API's rule
        request = request_fields(args, grid=grid).build(base)
        if grid and request.output != OutputSpec():  # never a silent ignore
            raise RequestError(
                "output_format", "cli.py grid writes lossless PNG sets; use cli.py upscale for other formats"
            )
        engine = Engine(engine_config(args))
        image = engine.load(_source(args, request.url, inline))
        result = engine.run(image, request, progress=progress)
        progress.close()
        for w in result.warnings:
            log.warning(w)
        if grid:
            written = save_run(result, args.output)
            print(metrics_markdown(result))  # the scores, then notes ending with the recommendation
            print(f"seed {result.seed}; wrote {len(written)} files to {args.output}")
            failed = failed_levels(result)
            for lv in failed:
                print(f"error: level {lv.level} did not run: {lv.message}", file=sys.stderr)
            if failed:
                return EXIT_LEVELS_FAILED
        else:
            lv = result.levels[0]
            if lv.image is None:
                print(f"error: level {lv.level} did not run: {lv.message}", file=sys.stderr)
                return EXIT_LEVELS_FAILED
            write_answer(args, result, request, image, lv)
    except LabError as exc:
        progress.close()
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_ERROR
    return 0


def cmd_download(args: argparse.Namespace) -> int:
    """Fetch exactly the files each default model needs (total size first, then per file),
    record the commit hash the hub gave for each repo, and check that the parts load."""
    from pipelines.device import pick_device
    from pipelines.errors import LabError
    from pipelines.hub_probe import UNREACHABLE_ADVICE, unreachable_reason
    from pipelines.models import download_models, hub_offline, load_fast_adapter, load_refiner
    from pipelines.realesrgan import converted_x4plus

    try:
        path = converted_x4plus()
        print(f"realesrgan_x4plus: ok ({path})")
        cfg = engine_config(args)
        unreachable = None if hub_offline() else unreachable_reason()
        if unreachable:
            print(f"error: {unreachable}: {UNREACHABLE_ADVICE}", file=sys.stderr)
            return 2
        fetched = download_models(cfg.models, report=lambda line, _done, _total: print(line, flush=True))
        device, dtype = pick_device("cpu", "fp32")
        refiner = load_refiner(cfg.models, device, dtype)
        if any(f.model_id == presets.FAST_MODE.adapter for f in fetched):
            load_fast_adapter(cfg.models, refiner)  # optional, but fetched: it must load too
        for f in fetched:
            print(f"{f.model_id}: {f.repo} commit {f.commit} ({len(f.files)} files) loads")
        print(f"all diffusion parts are available: levels {GENERATIVE} can run")
    except LabError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    return 0


IQA_DECIMALS = 4  # iqa's scores, in JSON and the table


def iqa_row(path: str, *, metrics: Sequence[Metric], channel: NiqeChannel = "y") -> dict[str, Any]:
    """The no-reference scores of one image file: ``path``, one key per metric of ``metrics``
    (rounded; None where the metric gives no score, e.g. NIQE of a flat image or of one under
    192 px a side), ``width``, ``height``, and ``error`` when the file cannot be read or a
    metric refuses it. NIQE scores the luma ``channel`` (``pipelines.quality.NIQE_CHANNELS``).
    Raises LabError when a metric's model itself is missing (NIQE's pristine model)."""
    from pipelines.imaging import load_image
    from pipelines.metrics import ScoreInput, score

    row: dict[str, Any] = {"path": path, **dict.fromkeys(m.key for m in metrics), "width": None, "height": None}
    try:
        loaded = load_image(path)
        row["width"], row["height"] = loaded.size
        scores = score(ScoreInput(output=loaded.rgb, niqe_channel=channel), metrics)
    except (ValueError, OSError) as exc:  # InputError is a ValueError
        row["error"] = str(exc)
        return row
    for key, value in scores.items():
        row[key] = round(value, IQA_DECIMALS) if math.isfinite(value) else None
    return row


def iqa_table(rows: list[dict[str, Any]], *, metrics: Sequence[Metric], channel: NiqeChannel = "y") -> str:
    """Path, size and one column per metric of ``metrics``, aligned; an error takes the score
    columns; then which luma NIQE scored (``channel``, when NIQE is a column) and a note per
    metric (its description, from the registry)."""

    def cells(row: dict[str, Any]) -> tuple[str, ...]:
        size = f"{row['width']}×{row['height']}" if row["width"] is not None else "-"
        if "error" in row:
            return row["path"], size, f"error: {row['error']}"
        scores = ("n/a" if row[m.key] is None else f"{row[m.key]:.{IQA_DECIMALS}f}" for m in metrics)
        return row["path"], size, *scores

    table = [("path", "size", *(m.label for m in metrics)), *(cells(row) for row in rows)]
    # every cell but a line's last is padded to its column's width (an error is an error line's last)
    widths = [max(len(line[i]) for line in table if i < len(line) - 1) for i in range(len(table[0]) - 1)]
    lines = ["  ".join([*(c.ljust(w) for c, w in zip(line[:-1], widths, strict=False)), line[-1]]) for line in table]
    return "\n".join(lines + niqe_channel_note(metrics, channel) + [f"{m.name}: {m.description}" for m in metrics])


def niqe_channel_note(metrics: Sequence[Metric], channel: NiqeChannel) -> list[str]:
    """The line saying which luma NIQE scored (none when NIQE is not among ``metrics``)."""
    if not any(m.key == "niqe" for m in metrics):
        return []
    others = "; ".join(f"--channel {c} for {text}" for c, text in NIQE_CHANNELS.items() if c != channel)
    return [f"NIQE channel: {channel}, {NIQE_CHANNELS[channel]}; {others}"]


def cmd_iqa(args: argparse.Namespace, *, metrics: Sequence[Metric] | None = None) -> int:
    """Score each image with ``metrics`` (default: the registry's no-reference metrics) — one
    JSON line each with --json, else a table; 1 if any failed."""
    from pipelines.errors import LabError
    from pipelines.metrics import NO_REFERENCE_METRICS  # imports torch: not for every command

    metrics = NO_REFERENCE_METRICS if metrics is None else metrics
    rows: list[dict[str, Any]] = []
    try:
        for path in args.images:
            rows.append(iqa_row(path, metrics=metrics, channel=args.channel))
            if args.json:
                print(json.dumps(rows[-1]), flush=True)
    except LabError as exc:  # a metric's model is missing or corrupt: no image can be scored
        print(f"error: {exc}", file=sys.stderr)
        return 2
    if not args.json:
        print(iqa_table(rows, metrics=metrics, channel=args.channel))
    return 1 if any("error" in row for row in rows) else 0


def cmd_batch(args: argparse.Namespace) -> int:
    """``batch``: every image under INPUT (``pipelines.batch``). Exit 0 when every image is done
    (ok or skipped), 1 when some failed (rows in OUT/batch.csv, lines on stderr), 2 when
    nothing ran (a bad request, no images, an unwritable OUT, OUT begun with another request)."""
    from dataclasses import replace

    from pipelines.batch import BatchJob, run_batch
    from pipelines.errors import LabError

    base = request_file(args)
    try:
        if args.levels and args.no_generative:
            raise RequestError("generative_upscale", "--no-generative goes with --strength, not --levels")
        output = {k: getattr(args, k) for k in ("quality", "max_file_size", "strip_metadata")}
        fields = replace(request_fields(args, grid=bool(args.levels)), output_format=args.format, **output)
        summary = run_batch(BatchJob(Path(args.input), Path(args.output), fields.build(base)), engine_config(args))
    except LabError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_ERROR
    print(summary.text())
    return summary.exit_code


def add_batch_command(command: Any) -> None:
    """``batch``'s flags: ``command(name, help)`` makes its subparser."""
    ba = command("batch", "every image of a folder and its subfolders (resumes; a CSV summary; torchrun shards it)")
    ba.add_argument("input", help="input folder (walked with its subfolders; images only)")
    ba.add_argument("-o", "--output", required=True, help="output folder: the same relative paths, and batch.csv")
    one = ba.add_mutually_exclusive_group()
    one.add_argument(
        "--strength",
        type=int,
        choices=TABLE.numbers,
        help=f"upscale_strength {TABLE.min_level}-{TABLE.max_level} (default {TABLE.default_strength}): one file per image",
    )
    one.add_argument("--levels", help="comma-separated levels, e.g. 7,8: one file per image and level (NAME_L7.png)")
    ba.add_argument("--no-generative", action="store_true", help="generative_upscale=false (with --strength)")
    add_request_args(ba)
    add_output_args(ba, one_file=False)
    add_engine_args(ba)


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
        description=f"Generative Upscale Lab: {TABLE.count_text} strength levels of diffusion upscaling, measured.",
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("-v", "--verbose", action="store_true", help="log more")
    sub = parser.add_subparsers(dest="command", required=True)

    def command(name: str, help: str) -> argparse.ArgumentParser:  # `help`: argparse's own name
        return sub.add_parser(name, help=help, epilog=EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter)

    up = command("upscale", "one image at one strength (the commercial API's semantics)")
    up.add_argument("input", nargs="?", help="image path or http(s) URL (or 'url' in --request)")
    up.add_argument("-o", "--output", required=True, help="output image path (.png, .jpg or .webp: see --format)")
    up.add_argument(
        "--strength",
        type=int,
        choices=TABLE.numbers,
        help=f"upscale_strength {TABLE.min_level}-{TABLE.max_level} (default {TABLE.default_strength}; "
        "lower = more generative)",
    )
    up.add_argument(
        "--no-generative", action="store_true", help="generative_upscale=false: the same base path with the effect off"
    )
    up.add_argument("--manifest", help="also write the run's JSON manifest here")
    up.add_argument(
        "--replay",
        metavar="OUTPUT_IMAGE",
        help="rerun the run that made OUTPUT_IMAGE (its embedded manifest: request, seed, level) on INPUT "
        "or the manifest's url; flags given as well override its fields",
    )
    add_request_args(up)
    add_output_args(up, one_file=True)
    add_engine_args(up)

    gr = command("grid", f"run all {TABLE.count_text} levels into a folder (PNGs, grid.png, metrics, manifest)")
    gr.add_argument("input", nargs="?", help="image path or http(s) URL")
    gr.add_argument("-o", "--output", required=True, help="output folder")
    gr.add_argument(
        "--levels",
        help=f"comma-separated subset, e.g. {','.join(map(str, NON_GENERATIVE))} (default: all {TABLE.count_text})",
    )
    add_request_args(gr)
    add_engine_args(gr)

    iqa = sub.add_parser(
        "iqa",
        help="no-reference quality (NIQE, every no-reference metric) of any images, e.g. other upscalers' outputs",
    )
    iqa.add_argument("images", nargs="+", metavar="IMAGE", help="image files (every format the lab reads)")
    iqa.add_argument("--json", action="store_true", help="one JSON object per image and line")
    add_niqe_channel_arg(iqa, "--channel", "--niqe-channel", dest="channel")

    add_batch_command(command)
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
    if args.command == "iqa":
        return cmd_iqa(args)
    if args.command == "batch":
        return cmd_batch(args)
    return cmd_run(args, grid=args.command == "grid")


if __name__ == "__main__":
    sys.exit(main())
