"""Turning a run into files and tables: per-level PNGs, a labelled contact sheet laid out as
the run's level table (3×3 by default), the metrics table (CSV and Markdown) and the manifest.
A single file is written to a temporary name in its folder and renamed; a run's folder is
written as one set (:func:`save_run`: a fresh sibling folder renamed into place), so a failure
(disk full, permission) or a killed process never leaves a half-written file or a mixed set.
"""

from __future__ import annotations

import csv
import glob
import hashlib
import io
import json
import os
import re
import secrets
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path

from PIL import Image, ImageDraw, ImageFont

from pipelines.engine import LevelResult, RunResult
from pipelines.errors import LabError
from pipelines.files import locked, write_atomic
from pipelines.metrics import LEVEL_METRICS, caption_scores

TABLE_COLUMNS = ("level", "recipe", "status", *(m.key for m in LEVEL_METRICS), "seconds")


def atomic_write(path: Path, data: bytes) -> None:
    """Write ``data`` to ``path`` via a temporary file of a unique name in the same folder and
    a rename (:func:`pipelines.files.write_atomic`).

    Raises LabError naming the path when the folder is not writable or the disk is full.
    """
    path = Path(path)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise LabError(f"cannot write to {path.parent}: {exc.strerror}") from exc
    try:
        write_atomic(path, data)
    except OSError as exc:
        raise LabError(f"cannot write {path}: {exc.strerror}") from exc


def png_bytes(image: Image.Image) -> bytes:
    buf = io.BytesIO()
    image.save(buf, format="PNG")
    return buf.getvalue()


def metrics_rows(result: RunResult) -> list[dict[str, str]]:
    """One row per level, columns ``TABLE_COLUMNS``; missing metrics are empty strings."""
    rows = []
    for lv in result.levels:
        row = {"level": str(lv.level), "recipe": lv.preset.recipe, "status": lv.status}
        for m in LEVEL_METRICS:
            row[m.key] = m.format(lv.metrics.get(m.key))
        row["seconds"] = f"{lv.seconds:.3f}" if lv.status == "ok" else ""
        rows.append(row)
    return rows


def metrics_csv(result: RunResult) -> str:
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=list(TABLE_COLUMNS))
    writer.writeheader()
    writer.writerows(metrics_rows(result))
    return buf.getvalue()


CACHED_MARK = " (cached)"  # after a cached level's seconds in the Markdown (the CSV keeps the number)


def cached_levels(result: RunResult) -> list[int]:
    """The levels whose image came from the engine's cache of an earlier run: their
    ``seconds`` is the lookup's (about 0), not the work's. Read from ``LevelResult.cached``,
    which the engine sets; a result without that field has none."""
    return [lv.level for lv in result.levels if lv.status == "ok" and getattr(lv, "cached", False)]


def metrics_markdown(result: RunResult) -> str:
    """The metrics table as Markdown (what ``cli.py grid`` prints and ``metrics.md`` holds), a
    cached level's seconds marked ``(cached)``, then notes: the levels' messages, which levels
    reused cached images, and the recommendation."""
    rows = metrics_rows(result)
    cached = cached_levels(result)
    for row in rows:
        if int(row["level"]) in cached:
            row["seconds"] += CACHED_MARK
    keys = [k for k in TABLE_COLUMNS if any(r[k] for r in rows)]
    labels = {m.key: m.label for m in LEVEL_METRICS}
    head = "| " + " | ".join(labels.get(k, k) for k in keys) + " |"
    sep = "| " + " | ".join("---" for _ in keys) + " |"
    body = ["| " + " | ".join(r[k] for k in keys) + " |" for r in rows]
    by_message: dict[str, list[int]] = {}
    for lv in result.levels:
        if lv.message:
            by_message.setdefault(lv.message, []).append(lv.level)
    notes = [f"- level{'s' if len(n) > 1 else ''} {', '.join(map(str, n))}: {m}" for m, n in by_message.items()]
    if cached:
        notes.append(
            f"- level{'s' if len(cached) > 1 else ''} {', '.join(map(str, cached))} reused cached images "
            "of an earlier run: their seconds are the lookup's, not the work's"
        )
    advice = result.recommendation
    if advice is not None:
        notes.append(f"- recommended: {advice.reason}" if advice.level else f"- no recommendation: {advice.reason}")
    return "\n".join([head, sep, *body, *([""] + notes if notes else [])]) + "\n"


def _font(size: int) -> ImageFont.ImageFont | ImageFont.FreeTypeFont:
    """DejaVu Sans (matplotlib ships it: it has Δ and ★), else Pillow's default font."""
    try:
        import matplotlib

        return ImageFont.truetype(str(Path(matplotlib.get_data_path()) / "fonts/ttf/DejaVuSans.ttf"), size)
    except (ImportError, OSError):
        pass
    try:
        return ImageFont.load_default(size=size)
    except TypeError:  # Pillow < 10.1 has no sized default font
        return ImageFont.load_default()


def cell_caption(lv: LevelResult, *, recommended: bool = False) -> str:
    """Two lines: ``Level N: recipe`` (★ and "recommended" for the recommended level), then the
    short scores or the status."""
    head = (
        f"★ Level {lv.level} (recommended): {lv.preset.recipe}"
        if recommended
        else f"Level {lv.level}: {lv.preset.recipe}"
    )
    return f"{head}\n{caption_scores(lv.metrics) if lv.status == 'ok' else lv.status}"


def placeholder(size: tuple[int, int], text: str) -> Image.Image:
    """A grey cell that says why a level has no image (never a broken image)."""
    img = Image.new("RGB", size, (58, 58, 64))
    draw = ImageDraw.Draw(img)
    font_px = max(12, size[0] // 16)
    font = _font(font_px)
    words, lines, line = text.split(), [], ""
    max_chars = max(12, int((size[0] - 24) / (0.55 * font_px)))
    for word in words:
        if len(line) + len(word) + 1 > max_chars:
            lines.append(line)
            line = word
        else:
            line = f"{line} {word}".strip()
    lines.append(line)
    y = size[1] // 6
    for ln in lines[:14]:
        draw.text((12, y), ln, fill=(230, 230, 230), font=font)
        y += int(font_px * 1.3)
    return img


def grid_image(result: RunResult, *, cell_width: int = 512) -> Image.Image:
    """The contact sheet in the grid of ``result.table`` (rows: effects, e.g. strong/medium/off;
    columns: base paths), each cell captioned with level, recipe and scores. Levels not run
    are left blank."""
    by_level = {lv.level: lv for lv in result.levels}
    cw, ch = result.plan.canvas
    cell_h = max(1, round(cell_width * ch / cw))
    font_px = max(10, cell_width // 40)
    caption_h = round(font_px * 2.7) + 8  # two lines
    font = _font(font_px)
    rows, columns = result.table.shape
    sheet = Image.new("RGB", (columns * cell_width, rows * (cell_h + caption_h)), (24, 24, 28))
    draw = ImageDraw.Draw(sheet)
    for preset in result.table.levels:
        x, y = preset.column * cell_width, preset.row * (cell_h + caption_h)
        lv = by_level.get(preset.level)
        if lv is None:
            continue
        if lv.image is not None:
            tile = lv.image.convert("RGB").resize((cell_width, cell_h), Image.Resampling.LANCZOS)
        else:
            tile = placeholder(
                (cell_width, cell_h), f"Level {lv.level} not run. {lv.reason or lv.message or lv.status}"
            )
        sheet.paste(tile, (x, y + caption_h))
        picked = result.recommendation is not None and result.recommendation.level == lv.level
        if picked:  # the badge: a gold frame around the cell and its caption
            draw.rectangle((x, y, x + cell_width - 1, y + caption_h + cell_h - 1), outline=(240, 190, 40), width=4)
        draw.multiline_text(
            (x + 8, y + 4), cell_caption(lv, recommended=picked), fill=(240, 240, 240), font=font, spacing=3
        )
    return sheet


MANIFEST = "manifest.json"
# The names a run's folder may hold: its files (:func:`run_files`) and the temporaries of the
# per-file writes of earlier versions. A folder holding anything else is not replaced.
RUN_FILE = re.compile(r"level_\d+\.png|grid\.png|metrics\.csv|metrics\.md|manifest\.json|\..+\.tmp")


def run_files(result: RunResult, *, grid_cell_width: int) -> Iterator[tuple[str, bytes]]:
    """The files of a run, named and encoded one at a time (one PNG in memory at once):
    ``level_N.png`` for every level with an image, then ``grid.png`` (cells
    ``grid_cell_width`` wide), ``metrics.csv``, ``metrics.md`` and, last, ``manifest.json``:
    the run's manifest plus ``files``, name → ``bytes`` and ``sha256`` of every other file of
    the set. The one list :func:`save_run` and :func:`zip_run` write."""
    listed: dict[str, dict[str, int | str]] = {}

    def named(name: str, data: bytes) -> tuple[str, bytes]:
        listed[name] = {"bytes": len(data), "sha256": hashlib.sha256(data).hexdigest()}
        return name, data

    for lv in result.levels:
        if lv.image is not None:
            yield named(f"level_{lv.level}.png", png_bytes(lv.image))
    yield named("grid.png", png_bytes(grid_image(result, cell_width=grid_cell_width)))
    yield named("metrics.csv", metrics_csv(result).encode())
    yield named("metrics.md", metrics_markdown(result).encode())
    yield MANIFEST, json.dumps({**result.manifest, "files": listed}, indent=2).encode()


def save_run(result: RunResult, folder: str | Path, *, grid_cell_width: int = 512) -> list[Path]:
    """Write the run's files (:func:`run_files`) as one set: into a fresh hidden sibling
    ``.NAME.new-*``, renamed to ``folder`` once complete (an earlier run's folder is moved aside
    to ``.NAME.old-*`` just before and removed after). Whenever a process stops, ``folder`` holds
    one run's complete set (the old or the new) or, on a first run, nothing. Savers to the same
    parent folder take turns (its lock); each first removes what killed runs left beside it
    (and puts back a set moved aside by a run killed between its two renames). Returns the
    written paths.

    Raises LabError when the folder cannot be written (nothing half-written stays: the old set
    or nothing), or when ``folder`` holds files that are not a run's (it is never replaced).
    """
    target = Path(folder).resolve()  # a symlinked output folder: replace what it points to
    try:
        target.parent.mkdir(parents=True, exist_ok=True)
        with locked(target.parent):
            _tidy(target)
            _check_replaceable(target)
            names = _write_set(target, run_files(result, grid_cell_width=grid_cell_width))
    except OSError as exc:
        raise LabError(f"cannot write {target}: {exc.strerror or exc}") from exc
    return [Path(folder) / name for name in names]


def _leftovers(target: Path, kind: str) -> list[Path]:
    """The hidden siblings ``.NAME.<kind>-*`` of ``target`` (``new``: sets being written,
    ``old``: sets moved aside), oldest first."""
    found = glob.glob(os.path.join(glob.escape(str(target.parent)), f".{glob.escape(target.name)}.{kind}-*"))
    return sorted((Path(p) for p in found), key=lambda p: p.lstat().st_mtime)


def _tidy(target: Path) -> None:
    """With the parent's lock held, every ``.new-*`` sibling is a killed run's unfinished set:
    removed. An ``.old-*`` one is a complete set moved aside: put back when ``target`` is
    missing (the run was killed between its two renames), else removed."""
    for stale in _leftovers(target, "new"):
        shutil.rmtree(stale, ignore_errors=True)
    aside = _leftovers(target, "old")
    if aside and not os.path.lexists(target):
        os.replace(aside.pop(), target)
    for stale in aside:
        shutil.rmtree(stale, ignore_errors=True)


def _check_replaceable(target: Path) -> None:
    """Raises LabError unless ``target`` is absent or a folder holding only a run's files."""
    if not os.path.lexists(target):
        return
    if not target.is_dir():
        raise LabError(f"cannot write the run to {target}: it is a file, not a folder")
    foreign = sorted(p.name for p in target.iterdir() if not (RUN_FILE.fullmatch(p.name) and p.is_file()))
    if foreign:
        shown = ", ".join(foreign[:3]) + (f" and {len(foreign) - 3} more" if len(foreign) > 3 else "")
        raise LabError(
            f"{target} holds files that are not a run's ({shown}); a run's folder is replaced as a whole, "
            "so give a new or empty folder, or one an earlier grid run wrote"
        )


def _write_set(target: Path, files: Iterator[tuple[str, bytes]]) -> list[str]:
    """Write ``files`` into a fresh sibling folder and rename it to ``target`` (the folder there
    moved aside first, put back if the rename fails, removed after). Returns the names; on
    failure the new folder is removed and the old set stays. Raises OSError."""
    staging = Path(tempfile.mkdtemp(prefix=f".{target.name}.new-", dir=target.parent))
    try:
        names = []
        for name, data in files:
            with open(staging / name, "xb") as f:
                f.write(data)
            names.append(name)
        os.chmod(staging, 0o755)  # mkdtemp makes 0700; results are meant to be shared
        if not os.path.lexists(target):
            os.replace(staging, target)
            return names
        aside = target.parent / f".{target.name}.old-{secrets.token_hex(4)}"
        os.replace(target, aside)
        try:
            os.replace(staging, target)
        except OSError:
            os.replace(aside, target)
            raise
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    shutil.rmtree(aside, ignore_errors=True)  # what a failure here leaves, the next save removes
    return names


def zip_run(result: RunResult, path: str | Path, *, grid_cell_width: int = 384) -> Path:
    """A zip of the run's files (:func:`run_files`), written atomically."""
    import zipfile

    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", compression=zipfile.ZIP_STORED) as zf:  # PNGs are compressed already
        for name, data in run_files(result, grid_cell_width=grid_cell_width):
            zf.writestr(name, data)
    atomic_write(Path(path), buf.getvalue())
    return Path(path)
