"""Sweeps over one or two settings of the custom level (issue 20, point 3).

    python evaluate.py DATA --sweep creativity=0.2,0.35,0.5 --sweep resemblance=0.4,0.8 -o runs/sweep

A sweep is one or two *axes* (a setting of :data:`presets.CUSTOM_FIELDS` and up to
:data:`MAX_VALUES` values, each checked as the custom level checks it) and their points (the
cartesian product, the first axis varying fastest). On each image every point is one engine run
of the custom level alone, starting from level ``--sweep-from`` (the table's default strength
when not given), on the same degraded input as the levels: the engine's base cache hands every
point after the first its base image; the prompt is encoded again for each point (each point is
a run of its own). A point is scored like a level (against the ground truth and with the
engine's scores) and stored in the image's record, so an interrupted sweep resumes.

The lab's Sweep tab (``lab/sweep_tab.py``) reads the axes, the points and the monotonicity
check from here; the evaluation writes ``sweep.csv`` (image × point), ``sweep.md`` and
``sweep.json`` (per point: mean ± std over the images; the monotonicity check along each axis)
and the plots (per axis: scores against its values; the perception–distortion plot with the
sweep's points beside the levels).
"""

from __future__ import annotations

import argparse
import csv
import dataclasses
import io
import itertools
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import presets
from evaluation.aggregate import _column_stats, aggregate, recommendation_check
from evaluation.dataset import Degradation, image_seed, key_of, make_pair
from evaluation.per_image import thumbnail
from evaluation.scores import SCORE_KEYS, SUMMARY_COLUMNS, jsonable, number
from evaluation.text import shown
from pipelines.errors import RequestError
from pipelines.metrics import get_metric
from pipelines.quality import NiqeChannel
from pipelines.report import atomic_write
from pipelines.request import CustomRecipe, UpscaleRequest, parse_custom_text

MAX_AXES = 2
MAX_VALUES = 5
# How far a point moved from its input: the monotonicity check follows these scores.
CHANGE_KEYS = ("lr_consistency", "psnr_vs_bicubic")
# Which way a setting is expected to move the output as it grows: True = further from the input
# (more diffusion: the change scores fall), False = closer (more ControlNet: they rise). The
# others (steps, tiles) have no expected direction: their lines are reported, not judged.
FURTHER_AS_IT_GROWS = {"lora_scale": True, "creativity": True, "guidance": True, "resemblance": False}
PLOT_KEYS = ("psnr_y", "lr_consistency", "psnr_vs_bicubic", "niqe")  # the panels of a per-axis plot


def setting_label(name: str) -> str:
    """A swept setting as people call it: ``creativity = denoise strength``, ``steps``, or
    ``guidance (Clarity's HDR)`` (the name first, then what it is where the label differs)."""
    label = presets.custom_field(name).label
    return label if label.startswith(name) else f"{name} ({label})"


@dataclass(frozen=True)
class Axis:
    """One swept setting: its ``name`` (a :data:`presets.CUSTOM_FIELDS` name) and its values,
    ascending, each already checked by :class:`CustomRecipe`."""

    name: str
    values: tuple[int | float, ...]

    @property
    def label(self) -> str:
        return setting_label(self.name)

    def to_json(self) -> dict[str, Any]:
        return {"name": self.name, "values": list(self.values)}


@dataclass(frozen=True)
class SweepPoint:
    """One point of a sweep: a value per axis, in the axes' order."""

    values: tuple[tuple[str, int | float], ...]

    @property
    def key(self) -> str:
        """``creativity=0.2,resemblance=0.4``: the point in records and CSV files."""
        return ",".join(f"{name}={value:g}" for name, value in self.values)

    @property
    def label(self) -> str:
        """``creativity 0.2 · resemblance 0.4``: the point in captions and tables."""
        return " · ".join(f"{name} {value:g}" for name, value in self.values)

    @property
    def short(self) -> str:
        """``0.2/0.4``: the point's label on a plot (the axes' names go in its legend)."""
        return "/".join(f"{value:g}" for _, value in self.values)

    def value(self, name: str) -> int | float:
        return dict(self.values)[name]

    def recipe(self, base: CustomRecipe | None = None) -> CustomRecipe:
        """The custom level of this point: ``base`` (None: the request's strength's recipe)
        with the point's values (checked again: a tile overlap must stay below the tile size)."""
        return dataclasses.replace(base or CustomRecipe(), **dict(self.values))  # type: ignore[arg-type]


def parse_axis(text: str) -> Axis:
    """``NAME=v1,v2,...`` as an :class:`Axis`. Raises ValueError naming what is wrong: an
    unknown setting (with the list), a value out of range (``custom.creativity: must be a
    number in 0.05..1, got 7 (creativity = denoise strength)``), too many or repeated values."""
    names = [f.name for f in presets.CUSTOM_FIELDS]
    name, sep, rest = text.partition("=")
    name = name.strip()
    if not sep or not name:
        raise ValueError(f"expected NAME=v1,v2,... with NAME one of {names}, got {text!r}")
    presets.custom_field(name)  # ValueError listing the settings
    items = [v.strip() for v in rest.split(",") if v.strip()]
    if not items:
        raise ValueError(f"{name}: give one to {MAX_VALUES} values, e.g. {name}=a,b,c")
    if len(items) > MAX_VALUES:
        raise ValueError(f"{name}: at most {MAX_VALUES} values, got {len(items)}")
    values: list[int | float] = []
    for item in items:
        raw: object = item  # not a number: the recipe's check says what is allowed
        for kind in (int, float):
            try:
                raw = kind(item)
                break
            except ValueError:
                continue
        try:
            values.append(getattr(CustomRecipe(**{name: raw}), name))  # type: ignore[arg-type]
        except RequestError as exc:
            raise ValueError(str(exc)) from None
    if len(set(values)) != len(values):
        raise ValueError(f"{name}: a value is given twice in {rest.strip()!r}")
    return Axis(name, tuple(sorted(values)))


def parse_axes(texts: list[str] | tuple[str, ...]) -> tuple[Axis, ...]:
    """Every ``--sweep`` text as an axis: one or two, of different settings (ValueError otherwise)."""
    if not texts:
        raise ValueError("give one or two settings to sweep, e.g. creativity=0.2,0.35,0.5")
    if len(texts) > MAX_AXES:
        raise ValueError(f"at most {MAX_AXES} settings, got {len(texts)}")
    axes = tuple(parse_axis(t) for t in texts)
    if len({a.name for a in axes}) != len(axes):
        raise ValueError(f"{axes[0].name} is swept twice: give each setting once")
    return axes


def sweep_points(axes: tuple[Axis, ...]) -> list[SweepPoint]:
    """The cartesian product of the axes' values, the first axis varying fastest (a grid
    of rows = the second axis's values, columns = the first's)."""
    combos = itertools.product(*[a.values for a in reversed(axes)])
    return [SweepPoint(tuple(zip([a.name for a in axes], reversed(c), strict=True))) for c in combos]


# --------------------------------------------------------------------------- the evaluation's flags


def add_sweep_args(p: argparse.ArgumentParser) -> None:
    """``--sweep`` (repeatable) and ``--sweep-from``."""
    p.add_argument(
        "--sweep",
        action="append",
        default=[],
        metavar="NAME=V1,V2,...",
        help=f"sweep a custom-level setting ({', '.join(f.name for f in presets.CUSTOM_FIELDS)}) over up to "
        f"{MAX_VALUES} values; twice for a 2-D sweep (writes sweep.csv/.md/.json and plots)",
    )
    p.add_argument(
        "--sweep-from",
        metavar="LEVEL|RECIPE",
        help="the level a sweep's points start from (default: the default strength, 5), or a custom recipe "
        "as --custom takes it, e.g. start_from=4,steps=30",
    )


def sweep_base(text: str | None) -> CustomRecipe:
    """``--sweep-from``: a level (``"4"``), a recipe (``"start_from=4,steps=30"``) or None (the
    default strength) as the recipe the points start from. RequestError naming the field."""
    if text is None or not text.strip():
        return CustomRecipe()
    recipe = CustomRecipe(start_from=int(text)) if text.strip().isdigit() else parse_custom_text(text)
    UpscaleRequest(custom=recipe)  # its level checked against the table
    return recipe


def check_sweep_args(p: argparse.ArgumentParser, args: argparse.Namespace) -> None:
    """Parse ``args.sweep`` into axes (an empty tuple when not sweeping) and ``args.sweep_from``
    into the points' base recipe; a bad one exits 2 (``p.error``) with the field's name and range."""
    if not args.sweep:
        if args.sweep_from is not None:
            p.error("--sweep-from needs --sweep")
        args.sweep = ()
        return
    try:
        args.sweep = parse_axes(args.sweep)
    except ValueError as exc:
        p.error(f"--sweep: {exc}")
    try:
        args.sweep_from = sweep_base(args.sweep_from)
        for point in sweep_points(args.sweep):  # each point against the base (a tile overlap below the tile size)
            point.recipe(args.sweep_from)
    except RequestError as exc:
        p.error(f"--sweep-from: {exc}")


def sweep_config(args: argparse.Namespace) -> dict[str, Any]:
    """What makes sweep results comparable (for ``config.json``); nothing without a sweep."""
    if not args.sweep:
        return {}
    return {"sweep": {"from": args.sweep_from.to_json(), "axes": [a.to_json() for a in args.sweep]}}


# --------------------------------------------------------------------------- one image


def point_scores(level: Any, hr: Any, scale: int, niqe_channel: NiqeChannel = "y") -> dict[str, Any]:
    """A point's scores as the evaluation scores a level (``level``: a LevelResult with an
    image): the SR scores against ``hr``, the engine's scores, the time."""
    from pipelines.metrics import ScoreInput, score, sr_scores

    scores = sr_scores(level.image, hr, scale=scale)
    scores.update({m.key: level.metrics[m.key] for m in SUMMARY_COLUMNS if m.key in level.metrics})
    if niqe_channel != "y" and "niqe" in scores:
        scores.update(score(ScoreInput(output=level.image, niqe_channel=niqe_channel), [get_metric("niqe")]))
    scores["seconds"] = level.seconds
    return scores


def sweep_image(
    engine: Any, path: Path, args: argparse.Namespace, deg: Degradation, *, niqe_channel: NiqeChannel = "y"
) -> dict[str, Any]:
    """The sweep of one image (``args``: ``scale``, ``seed``, ``sweep`` axes, ``sweep_from``):
    the same ground truth and degraded input as :func:`evaluation.per_image.evaluate_image`,
    each point one run of the custom level alone, scored; its thumbnails."""
    from pipelines.imaging import load_image

    hr, lr = make_pair(path, args.scale)
    image = load_image(deg.encode(lr, image_seed(args.seed, key_of(path))))  # the same bytes: the same cache key
    table = engine.config.table
    base = UpscaleRequest(width=hr.width, height=hr.height, fit="crop", seed=args.seed, table=table)
    points: dict[str, Any] = {}
    thumbs: dict[str, str] = {}
    for point in sweep_points(args.sweep):
        result = engine.run(image, dataclasses.replace(base, custom=point.recipe(args.sweep_from)))
        lv = result.level(presets.custom_number(table))
        if lv.image is None:
            points[point.key] = {"status": "not run", "reason": lv.reason or lv.message}
            continue
        points[point.key] = {"status": "ok", **point_scores(lv, hr, args.scale, niqe_channel)}
        thumbs[point.key] = thumbnail(lv.image)
    base_recipe = args.sweep_from.to_json()
    return {"from": base_recipe, "axes": [a.to_json() for a in args.sweep], "points": points, "thumbs": thumbs}


# --------------------------------------------------------------------------- over the images


def _rows(records: list[dict[str, Any]], point: SweepPoint) -> list[dict[str, Any]]:
    """The point's scores on each image it ran on."""
    entries = [r.get("sweep", {}).get("points", {}).get(point.key, {}) for r in records]
    return [e for e in entries if e.get("status") == "ok"]


def sweep_stats(records: list[dict[str, Any]], points: list[SweepPoint]) -> list[dict[str, Any]]:
    """Per point: its values, on how many images it ran, and the mean and std of every score."""
    out = []
    for point in points:
        rows = _rows(records, point)
        not_run = sum(
            1 for r in records if r.get("sweep", {}).get("points", {}).get(point.key, {}).get("status") == "not run"
        )
        entry: dict[str, Any] = {
            "point": point.key,
            "values": dict(point.values),
            "images": len(rows),
            "not_run": not_run,
        }
        entry.update({k: _column_stats(rows, k) for k in SCORE_KEYS})
        out.append(entry)
    return out


def _moves(seq: list[float]) -> str:
    """``falls``, ``rises`` (strictly, step by step) or ``mixed``."""
    steps = list(itertools.pairwise(seq))
    if steps and all(b < a for a, b in steps):
        return "falls"
    if steps and all(b > a for a, b in steps):
        return "rises"
    return "mixed"


def _lines(axis: Axis, axes: tuple[Axis, ...]) -> list[tuple[dict[str, Any], list[SweepPoint]]]:
    """The points along ``axis``, one line per value of the other axis (one line for a 1-D sweep)."""
    others = [a for a in axes if a.name != axis.name]
    lines = []
    for fixed in itertools.product(*[a.values for a in others]):
        at = dict(zip([a.name for a in others], fixed, strict=True))
        lines.append((at, [SweepPoint(tuple((a.name, at.get(a.name, v)) for a in axes)) for v in axis.values]))
    return lines


def monotonicity(records: list[dict[str, Any]], axes: tuple[Axis, ...]) -> list[dict[str, Any]]:
    """Along each axis (for each value of the other): do the change scores (``CHANGE_KEYS``:
    LR-consistency, PSNR vs the baseline) move as :data:`FURTHER_AS_IT_GROWS` expects, on the
    means over the images and on how many images? Per axis: ``verdict`` "holds", "fails", "no
    expected direction" or "not checked" (fewer than two values), with the numbers."""
    out = []
    for axis in axes:
        further = FURTHER_AS_IT_GROWS.get(axis.name)
        expected = None if further is None else ("falls" if further else "rises")
        lines: list[dict[str, Any]] = []
        for at, line in _lines(axis, axes):
            stats = sweep_stats(records, line)
            means = {k: [s[k]["mean"] for s in stats] for k in CHANGE_KEYS}
            moves = {k: _moves(v) if None not in v else "mixed" for k, v in means.items()}
            per_image = [[r["sweep"]["points"].get(p.key, {}) for p in line] for r in records if "sweep" in r]
            ran = [
                e for e in per_image if all(x.get("status") == "ok" and None not in map(x.get, CHANGE_KEYS) for x in e)
            ]
            holding = [e for e in ran if all(_moves([number(x[k]) for x in e]) == expected for k in CHANGE_KEYS)]
            lines.append(
                {
                    "at": at,
                    "values": list(axis.values),
                    "means": means,
                    "moves": moves,
                    "images": len(ran),
                    "images_holding": len(holding),
                }
            )
        if len(axis.values) < 2:
            verdict = "not checked"
        elif expected is None:
            verdict = "no expected direction"
        else:
            verdict = "holds" if all(m == expected for ln in lines for m in ln["moves"].values()) else "fails"
        out.append({"axis": axis.name, "expected": expected, "verdict": verdict, "lines": lines})
    return out


def monotonicity_lines(mono: list[dict[str, Any]]) -> list[str]:
    """The check in words, one line per axis and one per line of it."""
    out = []
    for m in mono:
        want = {"falls": "further from the input: the scores fall", "rises": "closer to the input: the scores rise"}
        expected = f" (expected as it grows: {want[m['expected']]})" if m["expected"] else ""
        out.append(f"- **{m['axis']}: {m['verdict']}**{expected}")
        for ln in m["lines"]:
            where = ", ".join(f"{k} {v:g}" for k, v in ln["at"].items())
            parts = []
            for k, seq in ln["means"].items():
                spec = get_metric(k)
                vals = " → ".join(
                    "—" if v is None else shown({"mean": v, "std": 0, "inf": 0}, spec.decimals)[0] for v in seq
                )
                parts.append(f"{spec.name} {vals} {spec.unit} ({ln['moves'][k]})")
            tail = f"; as expected on {ln['images_holding']} of {ln['images']} images" if m["expected"] else ""
            out.append(f"  - {where + ': ' if where else ''}{', '.join(parts)}{tail}")
    return out


# --------------------------------------------------------------------------- the files


def sweep_csv(records: list[dict[str, Any]], axes: tuple[Axis, ...]) -> str:
    """One row per image and point: the point's values, status and every score."""
    buf = io.StringIO()
    w = csv.writer(buf)
    w.writerow(["image", "point", *[a.name for a in axes], "status", *SCORE_KEYS])
    for r in records:
        for p in sweep_points(axes):
            e = r.get("sweep", {}).get("points", {}).get(p.key, {"status": "not run"})
            w.writerow(
                [r["image"], p.key, *[p.value(a.name) for a in axes], e["status"], *[e.get(k, "") for k in SCORE_KEYS]]
            )
    return buf.getvalue()


def sweep_markdown(stats: list[dict[str, Any]], mono: list[dict[str, Any]], axes: tuple[Axis, ...], title: str) -> str:
    """Per point, mean ± std of each score over the images; then the monotonicity check."""
    names = [a.name for a in axes]
    lines = [
        f"### {title}",
        "",
        "| " + " | ".join(names) + " | images | " + " | ".join(c.label for c in SUMMARY_COLUMNS) + " |",
        "|" + "---:|" * len(names) + "---:|" + "---:|" * len(SUMMARY_COLUMNS),
    ]
    for e in stats:
        cells = [" ".join(x for x in shown(e[c.key], c.decimals) if x) for c in SUMMARY_COLUMNS]
        values = [f"{e['values'][n]:g}" for n in names]
        lines.append("| " + " | ".join(values) + f" | {e['images']} | " + " | ".join(cells) + " |")
    lines += ["", "Mean ± standard deviation over the images, per point of the sweep.", ""]
    lines += [
        "Monotonicity: does moving along each axis move the output further from its input "
        "(LR-consistency and PSNR vs the baseline falling)?",
        "",
    ]
    return "\n".join(lines + monotonicity_lines(mono)) + "\n"


def write_sweep(
    out: Path,
    records: list[dict[str, Any]],
    args: argparse.Namespace,
    *,
    table: presets.LevelTable = presets.TABLE,
) -> str:
    """``sweep.csv``, ``sweep.md``, ``sweep.json`` and the plots (``sweep_<setting>.png`` per
    axis, ``sweep_perception_distortion.png``) from ``records``; returns the Markdown.
    ``args``: ``sweep`` (axes), ``sweep_from``, ``levels``, ``fidelity_floor``, ``folders``, ``scale``."""
    import figures

    records = sorted(records, key=lambda r: r["image"])
    axes: tuple[Axis, ...] = args.sweep
    stats = sweep_stats(records, sweep_points(axes))
    mono = monotonicity(records, axes)
    base: CustomRecipe = args.sweep_from
    start = base.start_from if base.start_from is not None else table.default_strength
    fixed = "".join(f", {k} {v}" for k, v in base.to_json().items() if k != "start_from")
    title = (
        f"Sweep of {' × '.join(f'{a.name} ({len(a.values)})' for a in axes)} from level {start}{fixed}: "
        f"{', '.join(Path(f).name for f in args.folders)} ×{args.scale}"
    )
    md = sweep_markdown(stats, mono, axes, title)
    atomic_write(out / "sweep.md", md.encode())
    doc = {
        "title": title,
        "from": {"start_from": start, **base.to_json()},
        "axes": [a.to_json() for a in axes],
        "points": stats,
        "monotonicity": mono,
    }
    atomic_write(out / "sweep.json", json.dumps(jsonable(doc), indent=2).encode())
    atomic_write(out / "sweep.csv", sweep_csv(records, axes).encode())
    plots = {f"sweep_{a.name}": figures.sweep_axis_figure(*axis_series(stats, a, axes)) for a in axes}
    summary = aggregate(records, args.levels, table=table)
    check = recommendation_check(records, args.fidelity_floor, table=table)
    points = [
        figures.PDPoint(
            label=_short(e, axes),
            fidelity=_mean(e, "psnr_y"),
            naturalness=_mean(e, "niqe"),
            fidelity_spread=e["psnr_y"]["std"],
            naturalness_spread=e["niqe"]["std"],
        )
        for e in stats
    ]
    legend = f"sweep ({'/'.join(a.name for a in axes)})"
    plots["sweep_perception_distortion"] = figures.sweep_perception_distortion_figure(
        summary, check, points, legend, table=table
    )
    for name, fig in plots.items():
        buf = io.BytesIO()
        fig.savefig(buf, format="png")
        atomic_write(out / f"{name}.png", buf.getvalue())
    return md


def _short(entry: dict[str, Any], axes: tuple[Axis, ...]) -> str:
    return "/".join(f"{entry['values'][a.name]:g}" for a in axes)


def _mean(entry: dict[str, Any], key: str) -> float:
    mean = entry[key]["mean"]
    return float("nan") if mean is None else float(mean)


def axis_series(
    stats: list[dict[str, Any]], axis: Axis, axes: tuple[Axis, ...]
) -> tuple[str, dict[str, dict[str, list[tuple[float, float | None, float | None]]]]]:
    """What :func:`figures.sweep_axis_figure` draws for ``axis``: its label and, per score
    (``PLOT_KEYS``, labelled by the registry), one series per value of the other axis of
    (value, mean, std) points."""
    by_key = {e["point"]: e for e in stats}
    panels: dict[str, dict[str, list[tuple[float, float | None, float | None]]]] = {}
    for key in PLOT_KEYS:
        spec = get_metric(key)
        ylabel = f"{spec.name}" + (f" ({spec.unit})" if spec.unit else "")
        series = {}
        for at, line in _lines(axis, axes):
            name = ", ".join(f"{k} {v:g}" for k, v in at.items()) or "mean"
            series[name] = [
                (float(p.value(axis.name)), by_key[p.key][key]["mean"], by_key[p.key][key]["std"]) for p in line
            ]
        if any(m is not None for s in series.values() for _, m, _ in s):
            panels[ylabel] = series
    return axis.label, panels
