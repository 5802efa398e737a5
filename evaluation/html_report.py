"""The evaluation's self-contained HTML report (``report.html``); its style sheet is ``report.css``."""

from __future__ import annotations

import base64
import functools
import html
from importlib import resources
from pathlib import Path
from typing import Any

import presets
from evaluation.aggregate import best_levels
from evaluation.per_image import THUMB_WIDTH
from evaluation.scores import RECOMMENDATION_KEYS, SUMMARY_COLUMNS, number
from evaluation.text import MONOTONICITY_QUESTION, legend, niqe_channel_text, not_run_text, picks_text, shown
from figures import EVALUATION_CAPTIONS
from pipelines.metrics import Metric, get_metric
from pipelines.quality import NiqeChannel


@functools.cache
def report_css() -> str:
    """The report's style sheet: ``report.css``, the thumbnail width (``THUMB_WIDTH``) set first."""
    sheet = resources.files("evaluation").joinpath("report.css").read_text(encoding="utf-8")
    return f":root{{--thumb-width:{THUMB_WIDTH}px}}\n{sheet}"


def _header_cell(column: Metric) -> str:
    arrow, hint = {
        True: ("↑", "higher is better"),
        False: ("↓", "lower is better"),
        None: ("", "measures change from the bicubic baseline, not quality"),
    }[column.higher_is_better]
    direction = f'<span class="dir">{arrow}</span>' if arrow else ""
    unit = html.escape(column.unit) if column.unit else "&nbsp;"
    return (
        f'<th scope="col" class="num" title="{html.escape(f"{column.description}; {hint}")}">'
        f'{html.escape(column.name)}{direction}<span class="unit">{unit}</span></th>'
    )


def _score_cells(entry: dict[str, Any], best: dict[str, set[int]]) -> list[str]:
    """A level's score cells: mean and spread of each column, the best highlighted and in bold;
    one cell saying why when the level ran on no image."""
    if not entry["images"]:
        return [f'<td class="not-run" colspan="{len(SUMMARY_COLUMNS)}">{html.escape(not_run_text(entry))}</td>']
    cells = []
    for c in SUMMARY_COLUMNS:
        mean, spread = shown(entry[c.key], c.decimals)
        inner = f'<span class="mean">{mean}</span>' + (f'<span class="sd">{spread}</span>' if spread else "")
        if entry["level"] in best[c.key]:
            cells.append(f'<td class="num best" title="best {html.escape(c.name)}"><strong>{inner}</strong></td>')
        else:
            cells.append(f'<td class="num">{inner}</td>')
    return cells


def summary_table_html(summary: dict[str, Any], *, table: presets.LevelTable = presets.TABLE) -> str:
    """The per-level table: numbers right-aligned with each column's fixed decimals, units
    under the names, the best level of each column highlighted (class ``best``)."""
    best = {c.key: best_levels(summary, c) for c in SUMMARY_COLUMNS}
    head = (
        '<th scope="col" class="num">Level</th><th scope="col">Recipe</th><th scope="col" class="num">Images</th>'
        + "".join(_header_cell(c) for c in SUMMARY_COLUMNS)
    )
    rows, previous_row = [], None
    for e in summary.values():
        preset = table.get(e["level"])
        group = ' class="group-start"' if previous_row is not None and preset.row != previous_row else ""
        previous_row = preset.row
        cells = [
            f'<th scope="row" class="num">{e["level"]}</th>',
            f'<td class="recipe">{html.escape(table.column_label(preset.base_path))}'
            f'<span class="sub">{html.escape(preset.effect)} · LoRA {preset.lora_scale:g}</span></td>',
            f'<td class="num">{e["images"]}</td>',
            *_score_cells(e, best),
        ]
        rows.append(f"<tr{group}>{''.join(cells)}</tr>")
    return (
        f'<div class="table-wrap"><table class="scores"><thead><tr>{head}</tr></thead>'
        f"<tbody>{''.join(rows)}</tbody></table></div>"
        f'<p class="note">{html.escape(legend("highlighted", table=table))}</p>'
    )


def monotonicity_html(mono: list[dict[str, Any]], *, table: presets.LevelTable = presets.TABLE) -> str:
    """The monotonicity check as a table, one row per pair of levels that was compared."""
    checked = [m for m in mono if m["compared"]]
    if not checked:
        return f'<p class="note">{html.escape(MONOTONICITY_QUESTION)} Not checked: fewer than two levels of the same base path ran.</p>'
    rows = "".join(
        f"<tr><td>{html.escape(table.column_label(m['base_path']))}</td>"
        f'<td class="num">{m["more_generative"]}</td><td class="num">{m["less_generative"]}</td>'
        f'<td class="num">{m["more_generative_closer"]} of {m["compared"]}</td></tr>'
        for m in checked
    )
    return (
        f"<p>{html.escape(MONOTONICITY_QUESTION)}</p>"
        '<div class="table-wrap"><table class="monotonicity"><thead><tr><th scope="col">Base path</th>'
        '<th scope="col" class="num">More generative level</th><th scope="col" class="num">Less generative level</th>'
        '<th scope="col" class="num">Images where it is closer</th></tr></thead>'
        f"<tbody>{rows}</tbody></table></div>"
    )


def recommendation_html(check: dict[str, Any]) -> str:
    """The recommendation check as a table: the recommended level against each fixed level."""
    intro = (
        f'<p class="note">The lab\'s recommendation on each image (the most natural level, lowest NIQE, among '
        f"those with LR-consistency ≥ {check['floor_db']:g} dB; ties to the less generative): "
        f"{html.escape(picks_text(check) or 'no images')}.</p>"
    )
    if not check["images"]:
        return intro
    columns = [get_metric(k) for k in RECOMMENDATION_KEYS]
    head = "".join(f'<th scope="col" class="num">{html.escape(c.label)}</th>' for c in columns)
    rows = []
    for name, st in [("recommended", check["recommended"]), *((f"{n} (always)", v) for n, v in check["fixed"].items())]:
        cells = "".join(
            f'<td class="num">{st[c.key]["mean"]:.{c.decimals}f} <span class="dim">± {st[c.key]["std"]:.{c.decimals}f}</span></td>'
            if st[c.key]["mean"] is not None
            else '<td class="num">—</td>'
            for c in columns
        )
        rows.append(f'<tr><th scope="row">{html.escape(name)}</th>{cells}</tr>')
    return (
        intro + '<div class="table-wrap"><table class="recommendation"><thead><tr><th scope="col">Level</th>'
        f"{head}</tr></thead><tbody>{''.join(rows)}</tbody></table></div>"
    )


def _img(b64: str, alt: str) -> str:
    return f'<img src="data:image/png;base64,{b64}" alt="{html.escape(alt)}">'


def _level_cell(record: dict[str, Any], level: int, blank_height: int) -> str:
    """One level's thumbnail captioned with its PSNR-Y and SSIM-Y, or a blank saying why not."""
    entry = record["levels"].get(str(level))
    if entry is None or entry["status"] != "ok":
        why = "not requested" if entry is None else "not run"
        return (
            f'<figure class="thumb"><div class="blank" style="height:{blank_height}px">'
            f"level {level}: {why}</div></figure>"
        )
    scores = "<br>".join(
        html.escape(f"{m.name} {number(entry[m.key]):.{m.decimals}f} {m.unit}".strip())
        for m in (get_metric("psnr_y"), get_metric("ssim_y"))
    )
    return (
        f'<figure class="thumb">{_img(record["thumbs"][str(level)], f"level {level}")}'
        f"<figcaption><b>Level {level}</b><br>{scores}</figcaption></figure>"
    )


def image_card_html(record: dict[str, Any], *, table: presets.LevelTable = presets.TABLE) -> str:
    """One image: ground truth and input side by side with the grid of levels (rows: effect,
    columns: base path, both read from ``table``), each captioned with its scores."""
    w, h = record["size"]
    blank_height = max(1, round(THUMB_WIDTH * h / w))
    cells = ['<div class="colhead"></div>']
    cells += [f'<div class="colhead">{html.escape(label)}</div>' for label in table.column_labels]
    for row, effect in enumerate(table.row_labels):
        cells.append(f'<div class="rowhead">{html.escape(effect)}</div>')
        cells += [_level_cell(record, lv.level, blank_height) for lv in table.in_grid_order if lv.row == row]
    return (
        f'<section class="card"><h3>{html.escape(record["image"])} <span class="dim">{w}×{h}</span></h3>'
        '<div class="card-body"><div class="pair">'
        f'<figure class="thumb">{_img(record["gt_thumb"], "ground truth")}<figcaption>ground truth</figcaption></figure>'
        f'<figure class="thumb">{_img(record["lr_thumb"], "input")}<figcaption>input (nearest-neighbour)</figcaption></figure>'
        f'</div><div class="levels" style="grid-template-columns:max-content repeat({table.shape[1]},'
        f'max-content)">{"".join(cells)}</div></div></section>'
    )


def _plots_html(plot_paths: dict[str, Path]) -> str:
    """The plots section: each PNG inlined, captioned from ``figures.EVALUATION_CAPTIONS``."""
    parts = ['<section><h2>Plots</h2><div class="plots">']
    for name, path in plot_paths.items():
        caption = EVALUATION_CAPTIONS.get(name, name)
        parts.append(
            f"<figure>{_img(base64.b64encode(path.read_bytes()).decode(), caption)}"
            f"<figcaption>{html.escape(caption)}</figcaption></figure>"
        )
    parts.append("</div></section>")
    return "".join(parts)


def html_report(
    records: list[dict[str, Any]],
    summary: dict[str, Any],
    mono: list[dict[str, Any]],
    plot_paths: dict[str, Path],
    title: str,
    check: dict[str, Any] | None = None,
    *,
    table: presets.LevelTable = presets.TABLE,
    niqe_channel: NiqeChannel = "y",
) -> str:
    """The self-contained report (images inlined as data URIs, no external resources): title,
    the per-level table (with the luma its NIQE scored, ``niqe_channel``), the monotonicity
    check, the plots and every image's grid. All text from file names and results is escaped."""
    ran = [e["level"] for e in summary.values() if e["images"]]
    meta = f"{len(records)} image{'s' if len(records) != 1 else ''} · levels {', '.join(map(str, ran)) or 'none'} ran"
    parts = [
        '<!doctype html><html lang="en"><head><meta charset="utf-8">'
        '<meta name="viewport" content="width=device-width, initial-scale=1">'
        f"<title>{html.escape(title)}</title><style>{report_css()}</style></head><body>",
        f'<header><h1>{html.escape(title)}</h1><p class="meta">{html.escape(meta)}</p></header>',
        "<section><h2>Scores per level</h2>",
        summary_table_html(summary, table=table),
        f'<p class="note">{html.escape(niqe_channel_text(niqe_channel))}</p>',
        "</section><section><h2>Monotonicity</h2>",
        monotonicity_html(mono, table=table),
        "</section>",
    ]
    if check is not None:
        parts += ["<section><h2>Recommended level</h2>", recommendation_html(check), "</section>"]
    if plot_paths:
        parts.append(_plots_html(plot_paths))
    parts.append("<section><h2>Images</h2>")
    parts += [image_card_html(r, table=table) for r in records]
    parts.append("</section></body></html>")
    return "".join(parts)
