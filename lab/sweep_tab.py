"""The Sweep tab (issue 20, point 3): one or two settings of the custom level and up to five
values each, every point one run of the custom level alone, on the preview region (the most
detailed window of the input, ``pipelines.region.default_region``) or the whole image; a grid of
the points with their scores, a score table (a row per point), the perception–distortion view
of the points and the monotonicity check along each axis (``evaluation.sweep``, the same code
as ``evaluate.py --sweep``). The points share the engine's cached base; the form's size, prompt
and seed hold for all of them (a random seed is drawn once). Cancel stops the sweep through the
session's cancel registry (the tab's button or the main one); the points done so far stay shown."""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass, replace
from typing import Any

import gradio as gr

import presets
from evaluation.sweep import (
    MAX_VALUES,
    Axis,
    SweepPoint,
    monotonicity,
    monotonicity_lines,
    parse_axes,
    setting_label,
    sweep_points,
)
from figures import PDPoint, sweep_quality_figure
from lab import supervision
from lab.form import FORM_FIELDS, UIInput, user_error
from lab.views import level_choices
from pipelines.engine import LevelResult
from pipelines.errors import Cancelled, LabError
from pipelines.metrics import LEVEL_METRICS, caption_scores
from pipelines.region import default_region, describe, region_run
from pipelines.report import placeholder
from pipelines.request import CustomRecipe

NO_SECOND = "none"  # the second setting's choice for a sweep over one setting
FIRST_DEFAULT = ("creativity", "0.2, 0.35, 0.5")  # Clarity's default creativity, and either side of it
# the grid's two-line captions whole, as the lab's grid shows its own (lab/layout.py's CSS)
CAPTION_CSS = """<style>#sweep-grid .caption-label { font-size: 0.8em; line-height: 1.3; white-space: pre-line !important;
  overflow: visible !important; text-overflow: clip !important; max-width: none !important; }
#sweep-scores th *, #sweep-scores td *, #sweep-scores .body-cell * { word-break: keep-all !important;
  overflow-wrap: normal !important; hyphens: none !important; }</style>"""


@dataclass(frozen=True)
class SweepTab:
    """The tab's components."""

    first: Any
    first_values: Any
    second: Any
    second_values: Any
    start_from: Any
    whole: Any
    run_btn: Any
    cancel_btn: Any
    note: Any
    gallery: Any
    table: Any
    plot: Any

    @property
    def inputs(self) -> list[Any]:
        """The tab's values in :func:`run_sweep`'s order (the form's follow them)."""
        return [self.first, self.first_values, self.second, self.second_values, self.start_from, self.whole]


@dataclass(frozen=True)
class SweepOutcome:
    """A sweep's results: each point with its level (``LevelResult`` of the custom level), and
    what the tab shows (gallery items, the score table, the figure, the note)."""

    axes: tuple[Axis, ...]
    points: list[tuple[SweepPoint, LevelResult]]
    items: list[tuple[Any, str]]
    table: dict[str, list[Any]]
    figure: Any
    note: str


def setting_choices() -> list[tuple[str, str]]:
    """The settings a sweep can turn (``presets.CUSTOM_FIELDS``), labelled with their ranges."""
    return [(f"{setting_label(f.name)} ({f.range_text})", f.name) for f in presets.CUSTOM_FIELDS]


def build_sweep_tab(table: presets.LevelTable) -> SweepTab:
    """The tab's layout, created in the current context (inside the results' Tabs)."""
    with gr.Tab("Sweep"):
        gr.Markdown(
            f"Try one or two settings of the custom level at up to {MAX_VALUES} values each: every point is "
            "one run of the custom level, on the preview region (the most detailed part of the input) unless "
            "*whole image* is checked. Size, prompt and seed come from the form. The same sweep over a dataset: "
            "`evaluate.py DATA --sweep creativity=0.2,0.35,0.5 --sweep resemblance=0.4,0.8`.",
            elem_classes="lab-note",
        )
        settings = setting_choices()
        with gr.Row():
            first = gr.Dropdown(settings, value=FIRST_DEFAULT[0], label="Setting 1 (the grid's columns)")
            first_values = gr.Textbox(
                value=FIRST_DEFAULT[1], label=f"Values (up to {MAX_VALUES})", max_lines=1, elem_id="sweep-values-1"
            )
        with gr.Row():
            second = gr.Dropdown(
                [("none: sweep one setting", NO_SECOND), *settings], value=NO_SECOND, label="Setting 2 (the rows)"
            )
            second_values = gr.Textbox(
                label=f"Values (up to {MAX_VALUES})", placeholder="e.g. 0.4, 0.8", max_lines=1, elem_id="sweep-values-2"
            )
        with gr.Row():
            start_from = gr.Dropdown(
                level_choices(table), value=table.default_strength, label="Start from level N (the other settings)"
            )
            whole = gr.Checkbox(value=False, label="Whole image (slower; default: the preview region)")
        with gr.Row():
            run_btn = gr.Button("Run sweep", variant="primary", elem_id="run-sweep")
            cancel_btn = gr.Button("Cancel sweep", variant="stop", scale=0, min_width=120, elem_id="cancel-sweep")
        note = gr.Markdown(elem_classes="lab-note", elem_id="sweep-note")
        gr.HTML(CAPTION_CSS, padding=False)
        gallery = gr.Gallery(
            label="The points: columns = setting 1, rows = setting 2",
            columns=len(FIRST_DEFAULT[1].split(",")),
            format="png",
            object_fit="contain",
            height="auto",
            elem_id="sweep-grid",
        )
        scores = gr.Dataframe(label="Scores per point", interactive=False, wrap=True, elem_id="sweep-scores")
        plot = gr.Plot(label="Fidelity against naturalness, per point", show_label=False, elem_id="sweep-pd")
    return SweepTab(
        first, first_values, second, second_values, start_from, whole, run_btn, cancel_btn, note, gallery, scores, plot
    )


def sweep_axes(first: str, first_values: str, second: str | None, second_values: str) -> tuple[Axis, ...]:
    """The tab's settings and values as axes; LabError naming what is wrong (``sweep: ...``)."""
    texts = [f"{first}={first_values or ''}"]
    if second and second != NO_SECOND:
        texts.append(f"{second}={second_values or ''}")
    try:
        return parse_axes(texts)
    except ValueError as exc:
        raise LabError(f"sweep: {exc}") from None


def run_sweep(
    tab_values: tuple[Any, ...], form: UIInput, session: str | None, progress: Any, cancel: threading.Event
) -> SweepOutcome:
    """Every point of the sweep (a worker thread), in grid order; a cancel keeps the points done."""
    first, first_values, second, second_values, start_from, whole = tab_values
    axes = sweep_axes(first, first_values, second, second_values)
    points = sweep_points(axes)
    engine = supervision.get_engine()
    base = CustomRecipe(start_from=int(start_from))
    request = form.fields(custom=base).build(table=engine.config.table)  # a random seed: drawn once, here
    recipes = [p.recipe(base) for p in points]  # every point checked before anything runs
    image = form.load()
    region = None if whole else default_region(image, request)
    run_image, run_request = (image, request) if region is None else region_run(image, request, region)
    done: list[tuple[SweepPoint, LevelResult]] = []
    t0 = time.perf_counter()
    if session:  # the whole sweep, also between points: Cancel reaches it by session
        supervision.CANCELS.add(session, cancel)
    try:
        for i, (point, recipe) in enumerate(zip(points, recipes, strict=True)):
            if cancel.is_set():
                break
            report = _point_progress(progress, i, len(points), point)
            report("starting", 0, 1)
            result = supervision.engine_run(run_image, replace(run_request, custom=recipe), None, report, cancel)
            done.append((point, result.level(presets.custom_number(engine.config.table))))
            report("scored", 1, 1)
    except Cancelled:
        pass  # the points done so far are the answer
    finally:
        if session:
            supervision.CANCELS.discard(session, cancel)
    where = describe(region, request, image.size) if region is not None else "the whole image"
    stopped = f"Cancelled after {len(done)} of {len(points)} points. " if len(done) < len(points) else ""
    head = f"{stopped}{len(done)} points from level {base.start_from}, seed {request.seed} · {where}"
    return outcome(axes, done, f"{head} · {time.perf_counter() - t0:.1f} s")


def _point_progress(progress: Any, i: int, total: int, point: SweepPoint) -> Any:
    """The engine's progress within point ``i`` as the sweep's bar."""

    def report(stage: str, done: int, steps: int) -> None:
        if progress is not None:
            progress((i + done / max(steps, 1)) / total, desc=f"point {i + 1}/{total}: {point.label} · {stage}")

    return report


def outcome(axes: tuple[Axis, ...], done: list[tuple[SweepPoint, LevelResult]], head: str) -> SweepOutcome:
    """What the tab shows for the points ``done``."""
    items = []
    for point, lv in done:
        if lv.image is not None:
            items.append((lv.image, f"{point.label}\n{caption_scores(lv.metrics)}"))
        else:
            items.append(
                (placeholder((256, 256), f"{point.label}: not run. {lv.message}"), f"{point.label}\n{lv.status}")
            )
    ok = [(p, lv) for p, lv in done if lv.image is not None]
    figure = sweep_quality_figure(
        [
            PDPoint(p.short, lv.metrics.get("lr_consistency", float("nan")), lv.metrics.get("niqe", float("nan")))
            for p, lv in ok
        ],
        f"sweep ({'/'.join(a.name for a in axes)})",
    )
    record = {"image": "input", "sweep": {"points": {p.key: {"status": "ok", **lv.metrics} for p, lv in ok}}}
    check = monotonicity([record], axes) if len(ok) == len(sweep_points(axes)) else []
    note = "\n".join([head, "", *monotonicity_lines(check)]) if check else head
    return SweepOutcome(axes, done, items, score_rows(axes, done), figure, note)


def score_rows(axes: tuple[Axis, ...], done: list[tuple[SweepPoint, LevelResult]]) -> dict[str, list[Any]]:
    """The score table: a row per point (its values, status, the engine's scores, seconds);
    a score no point has is left out."""
    metrics = [m for m in LEVEL_METRICS if any(m.key in lv.metrics for _, lv in done)]
    headers = [a.name for a in axes] + ["status"] + [m.short or m.name for m in metrics] + ["time (s)"]
    data = [
        [
            *(f"{p.value(a.name):g}" for a in axes),
            lv.status,
            *(m.format(lv.metrics.get(m.key)) for m in metrics),
            f"{lv.seconds:.1f}",
        ]
        for p, lv in done
    ]
    return {"headers": headers, "data": data}


def wire_sweep_tab(tab: SweepTab, form: list[Any]) -> None:
    """The Run sweep button (the form's fields after the tab's; one run at a time with the rest)
    and its Cancel button (the session's runs, through the cancel registry)."""
    assert len(form) == len(FORM_FIELDS)

    async def run_sweep_event(request: gr.Request, progress: Any = gr.Progress(), *values: Any) -> dict[Any, Any]:  # noqa: B008
        tab_values, form_input = tuple(values[: len(tab.inputs)]), UIInput.of(*values[len(tab.inputs) :])
        cancel = threading.Event()
        session = getattr(request, "session_hash", None)
        try:
            out = await supervision.run_cancellable(
                cancel, run_sweep, tab_values, form_input, session, progress, cancel
            )
        except LabError as exc:
            raise user_error(exc) from exc
        return {
            tab.gallery: gr.Gallery(value=out.items, columns=len(out.axes[0].values)),
            tab.table: out.table,
            tab.plot: out.figure,
            tab.note: out.note,
        }

    def cancel_sweep(request: gr.Request) -> dict[Any, Any]:
        stopped = supervision.CANCELS.cancel(getattr(request, "session_hash", "") or "")
        return {tab.note: "Cancelling…" if stopped else "Nothing to cancel."}

    tab.run_btn.click(
        run_sweep_event,
        inputs=[*tab.inputs, *form],
        outputs=[tab.gallery, tab.table, tab.plot, tab.note],
        api_visibility="private",
        concurrency_limit=1,
        concurrency_id="gpu",
    )
    tab.cancel_btn.click(cancel_sweep, outputs=[tab.note], api_visibility="private", queue=False)
