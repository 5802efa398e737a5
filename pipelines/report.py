"""Turning a run into files and tables: per-level PNGs, a labelled contact sheet laid out as
the run's level table (3×3 by default), the metrics table (CSV and Markdown) and the manifest.
Every file is written to a temporary name in the target folder and renamed, so a failure
(disk full, permission) never leaves a half-written file behind.
"""

from __future__ import annotations

import csv
import io
import os
import tempfile
from collections.abc import Iterator
from pathlib import Path

from PIL import Image, ImageDraw, ImageFont

from pipelines.engine import LevelResult, RunResult
from pipelines.errors import LabError
from pipelines.metrics import LEVEL_METRICS, caption_scores

TABLE_COLUMNS = ("level", "recipe", "status", *(m.key for m in LEVEL_METRICS), "seconds")


def atomic_write(path: Path, data: bytes) -> None:
    """Write ``data`` to ``path`` via a temporary file in the same folder and a rename.

    Raises LabError naming the path when the folder is not writable or the disk is full.
    """
    path = Path(path)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    except OSError as exc:
        raise LabError(f"cannot write to {path.parent}: {exc.strerror}") from exc
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
        os.chmod(tmp, 0o644)  # mkstemp makes 0600; results are meant to be shared
        os.replace(tmp, path)
    except OSError as exc:
        try:
            os.unlink(tmp)
        except OSError:
            pass
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


def metrics_markdown(result: RunResult) -> str:
    rows = metrics_rows(result)
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


def run_files(result: RunResult, *, grid_cell_width: int) -> Iterator[tuple[str, bytes]]:
    """The files of a run, named and encoded one at a time (one PNG in memory at once):
    ``level_N.png`` for every level with an image, then ``grid.png`` (cells
    ``grid_cell_width`` wide), ``metrics.csv``, ``metrics.md`` and ``manifest.json``. The one
    list :func:`save_run` and :func:`zip_run` write."""
    for lv in result.levels:
        if lv.image is not None:
            yield f"level_{lv.level}.png", png_bytes(lv.image)
    yield "grid.png", png_bytes(grid_image(result, cell_width=grid_cell_width))
    yield "metrics.csv", metrics_csv(result).encode()
    yield "metrics.md", metrics_markdown(result).encode()
    yield "manifest.json", result.manifest_json().encode()


def save_run(result: RunResult, folder: str | Path, *, grid_cell_width: int = 512) -> list[Path]:
    """Write the run's files (:func:`run_files`) into ``folder``; returns the written paths."""
    folder = Path(folder)
    written: list[Path] = []
    for name, data in run_files(result, grid_cell_width=grid_cell_width):
        atomic_write(folder / name, data)
        written.append(folder / name)
    return written


def zip_run(result: RunResult, path: str | Path, *, grid_cell_width: int = 384) -> Path:
    """A zip of the run's files (:func:`run_files`), written atomically."""
    import zipfile

    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", compression=zipfile.ZIP_STORED) as zf:  # PNGs are compressed already
        for name, data in run_files(result, grid_cell_width=grid_cell_width):
            zf.writestr(name, data)
    atomic_write(Path(path), buf.getvalue())
    return Path(path)
