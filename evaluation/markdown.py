"""The evaluation's summary as Markdown (``summary.md`` and the console)."""

from __future__ import annotations

from typing import Any

import presets
from evaluation.aggregate import best_levels
from evaluation.scores import RECOMMENDATION_KEYS, SUMMARY_COLUMNS
from evaluation.text import MONOTONICITY_QUESTION, legend, not_run_text, picks_text, shown
from pipelines.metrics import get_metric


def monotonicity_sentence(m: dict[str, Any], *, table: presets.LevelTable = presets.TABLE) -> str:
    """One pair of the monotonicity check in words."""
    return (
        f"{table.column_label(m['base_path'])}: level {m['more_generative']} closer than level "
        f"{m['less_generative']} on {m['more_generative_closer']} of {m['compared']} images"
    )


def summary_markdown(
    summary: dict[str, Any], mono: list[dict[str, Any]], title: str, *, table: presets.LevelTable = presets.TABLE
) -> str:
    """The summary as Markdown (``summary.md`` and the console): a table of mean ± standard
    deviation per level, the best of each column in bold, and the monotonicity check."""
    best = {c.key: best_levels(summary, c) for c in SUMMARY_COLUMNS}
    lines = [
        f"### {title}",
        "",
        "| level | recipe | images | " + " | ".join(c.label for c in SUMMARY_COLUMNS) + " |",
        "|---:|---|---:|" + "---:|" * len(SUMMARY_COLUMNS),
    ]
    for e in summary.values():
        if e["images"] == 0:
            rest = " |" * (len(SUMMARY_COLUMNS) - 1)
            lines.append(f"| {e['level']} | {e['recipe']} | 0 | {not_run_text(e)} |{rest}")
            continue
        cells = []
        for c in SUMMARY_COLUMNS:
            text = " ".join(x for x in shown(e[c.key], c.decimals) if x)
            cells.append(f"**{text}**" if e["level"] in best[c.key] else text)
        lines.append(f"| {e['level']} | {e['recipe']} | {e['images']} | " + " | ".join(cells) + " |")
    lines += ["", legend("in bold", table=table), ""]
    checked = [m for m in mono if m["compared"]]
    lines += [f"Monotonicity: {MONOTONICITY_QUESTION}", ""]
    if not checked:
        lines.append("- not checked: fewer than two levels of the same base path ran")
    lines += [f"- {monotonicity_sentence(m, table=table)}" for m in checked]
    return "\n".join(lines) + "\n"


def recommendation_markdown(check: dict[str, Any]) -> str:
    """The recommendation check (:func:`evaluation.aggregate.recommendation_check`): how often
    each level was picked, and a table of the recommended level against each fixed level."""
    lines = [
        f"Recommended level (fidelity floor {check['floor_db']:g} dB LR-consistency; most natural above it): "
        f"{picks_text(check) or 'no images'}.",
        "",
    ]
    if not check["images"]:
        return "\n".join(lines + ["- no image had a recommendation", ""])
    columns = [get_metric(k) for k in RECOMMENDATION_KEYS]
    lines += [
        "| level | " + " | ".join(c.label for c in columns) + " |",
        "|---|" + "---:|" * len(columns),
    ]
    rows = [("recommended", check["recommended"]), *((f"{n} (always)", st) for n, st in check["fixed"].items())]
    for name, st in rows:
        cells = [
            f"{st[c.key]['mean']:.{c.decimals}f} ± {st[c.key]['std']:.{c.decimals}f}"
            if st[c.key]["mean"] is not None
            else "—"
            for c in columns
        ]
        lines.append(f"| {name} | " + " | ".join(cells) + " |")
    return "\n".join(lines + ["", f"Over the {check['images']} images with a recommendation.", ""])
