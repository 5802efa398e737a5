"""The lab's events. Each handler freezes the form into a ``UIInput`` on its first line, calls
the engine through run supervision, and answers a dict keyed by the components it updates
(a partial update names only what changed)."""

from __future__ import annotations

import asyncio
import queue
import threading
from typing import Any

import gradio as gr

from figures import run_quality_figure, scores_figure
from lab import supervision, views, weights
from lab.form import UIInput, out_dir, user_error
from lab.layout import Layout
from pipelines.engine import LevelResult, recommend_level
from pipelines.errors import LabError, RequestError
from pipelines.report import png_bytes, zip_run
from pipelines.request import RequestFields, UpscaleRequest

STREAM_POLL_S = 0.25


class Events:
    """The handlers of one page (``ui``: its components by name)."""

    def __init__(self, ui: Layout) -> None:
        self.ui = ui

    async def run_grid(self, request: gr.Request, progress: Any = gr.Progress(), *values: Any):
        """Every level of the table: grid, scores, plot, compare, heatmaps, downloads. The grid
        fills in as levels finish; the last update carries everything."""
        form = UIInput.of(*values)
        cancel = threading.Event()
        arrived: queue.SimpleQueue[tuple[str, Any]] = queue.SimpleQueue()
        work = asyncio.ensure_future(asyncio.to_thread(self.grid_outputs, form, request, progress, cancel, arrived))
        ready: dict[int, LevelResult] = {}
        estimate: float | None = None
        try:
            while not work.done():
                await asyncio.wait({work}, timeout=STREAM_POLL_S)
                fresh = False
                while not arrived.empty():
                    kind, item = arrived.get()
                    if kind == "level":
                        ready[item.level] = item
                        fresh = True
                    else:
                        estimate = item
                if fresh and not work.done():
                    yield self.partial_outputs(ready, estimate)
            final = work.result()
        finally:
            # cancelled while waiting (CancelledError) or closed while paused at a yield
            # (gradio's /cancel acloses the generator: GeneratorExit): stop the engine either way
            if not work.done():
                await supervision.stop_worker(cancel, work)
        yield final

    def partial_outputs(self, ready: dict[int, LevelResult], estimate: float | None) -> dict[Any, Any]:
        """A grid update while the run goes on: the grid and the status line, nothing else."""
        engine = supervision.get_engine()
        table = engine.config.table
        note = f"{len(ready)} of {len(table.levels)} levels ready"
        if estimate:
            note += f" · estimated ~{estimate:.0f} s in all on {engine.device_label()}"
        return {self.ui.gallery: views.partial_grid(ready, table), self.ui.message: note}

    def grid_outputs(
        self,
        form: UIInput,
        request: gr.Request | None,
        progress: Any,
        cancel: threading.Event,
        arrived: queue.SimpleQueue[tuple[str, Any]],
    ) -> dict[Any, Any]:
        """The run of every level and everything the grid view shows (in a worker thread);
        ``arrived`` receives ("estimate", seconds) and then ("level", LevelResult) as each finishes."""
        levels = supervision.get_engine().config.table.numbers
        result = form.run(
            form.fields(levels=levels),
            request,
            progress,
            cancel,
            on_level=lambda level: arrived.put(("level", level)),
            on_estimate=lambda seconds: arrived.put(("estimate", seconds)),
        )
        baseline = result.table.baseline_level
        folder = out_dir()
        archive = zip_run(result, folder / f"upscale-lab-seed{result.seed}.zip")
        manifest = folder / "manifest.json"
        manifest.write_text(result.manifest_json())
        first = next((lv.level for lv in result.levels if lv.image is not None and lv.level != baseline), baseline)
        ui = self.ui
        return {
            ui.gallery: views.level_images(result),
            ui.table: views.score_table(result),
            ui.plot: scores_figure(result),
            ui.seed: result.seed,
            ui.files: [str(archive), str(manifest)],
            ui.slider: views.compare_pair(result, first, baseline),
            ui.level_a: gr.update(value=first),
            ui.level_b: gr.update(value=baseline),
            ui.heat: views.heatmaps(result),
            ui.message: views.run_notes(result),
            ui.state: result,
        }

    def recommendation_view(self, result: Any, floor: float | None) -> dict[Any, Any]:
        """The recommendation at the floor now set (no re-run): the grid with the badge on the
        recommended cell, the line under the grid, and the fidelity–naturalness plot."""
        if result is None:
            return {}
        try:
            floor_db = UpscaleRequest(fidelity_floor=floor).floor  # the API's check and default
        except RequestError as exc:
            raise user_error(exc) from None
        advice = recommend_level(result.levels, floor_db)
        return {
            self.ui.gallery: views.level_images(result, advice.level),
            self.ui.recommendation: views.recommendation_markdown(advice),
            self.ui.quality_plot: run_quality_figure(result, advice),
        }

    async def run_single(self, request: gr.Request, progress: Any = gr.Progress(), *values: Any):
        """One strength, one image: the commercial API's semantics (values: the form, then the
        strength and the generative switch)."""
        *form_values, strength, generative = values
        form = UIInput.of(*form_values)
        fields = form.fields(upscale_strength=int(strength), generative_upscale=bool(generative))
        cancel = threading.Event()
        return await supervision.run_cancellable(cancel, self.single_outputs, form, fields, request, progress, cancel)

    def single_outputs(
        self, form: UIInput, fields: RequestFields, request: gr.Request | None, progress: Any, cancel: threading.Event
    ) -> dict[Any, Any]:
        """One level and its download (in a worker thread)."""
        result = form.run(fields, request, progress, cancel)
        lv = result.levels[0]
        if lv.image is None:
            raise user_error(f"level {lv.level} did not run: {lv.message}")
        target = out_dir() / f"upscaled_level{lv.level}_seed{result.seed}.png"
        target.write_bytes(png_bytes(lv.image))
        size = f"{lv.image.size[0]}×{lv.image.size[1]}"
        return {
            self.ui.single_out: lv.image,
            self.ui.single_file: str(target),
            self.ui.single_info: f"Level {lv.level} ({lv.preset.recipe}) · {size} · seed {result.seed} · {lv.seconds:.1f} s",
            self.ui.seed: result.seed,
        }

    def clear_single(self) -> dict[Any, Any]:
        """After a failed single run: no result from an earlier run stays under the error."""
        return {self.ui.single_out: None, self.ui.single_file: None, self.ui.single_info: ""}

    def compare(self, result: Any, a: int, b: int) -> dict[Any, Any]:
        """The slider after a dropdown change."""
        return {self.ui.slider: views.compare_pair(result, a, b)}

    def fetch_button_state(self) -> dict[Any, Any]:
        """The status panel and the Fetch weights button, enabled only where fetching can help."""
        reason = weights.fetch_unavailable_reason(supervision.get_engine())
        return {self.ui.status: weights.status_markdown(), self.ui.fetch_btn: gr.Button(interactive=reason is None)}

    def fetch_weights(self, progress: Any = gr.Progress()) -> dict[Any, Any]:
        """The Fetch weights button: per-file progress, then the refreshed status panel. A failure
        is a warning toast and a line in the panel, not an error badge laid over the panel."""
        try:
            weights.fetch_weights(lambda message, done, total: progress((done, max(total, 1)), desc=message))
        except LabError as exc:
            user_error(exc)  # the one log line
            gr.Warning(str(exc))
            state = self.fetch_button_state()
            if state[self.ui.fetch_btn].interactive:  # else the panel already says why it is off
                state[self.ui.status] += f"\n\n*Fetch weights failed:* {exc}"
            return state
        return self.fetch_button_state()

    def cancel(self, request: gr.Request) -> dict[Any, Any]:
        """The Cancel button: stop every run of this session."""
        return {self.ui.message: "Cancelling…" if cancel_session(request) else "Nothing to cancel."}


def cancel_session(request: gr.Request | None) -> int:
    """Stop every run of the request's session (the Cancel button; a closed page through the
    unload event); returns how many runs were told to stop."""
    return supervision.CANCELS.cancel(getattr(request, "session_hash", "") or "")


def cancel_on_leave(request: gr.Request) -> None:
    """The page was closed or reloaded (gradio's unload event): stop that session's run."""
    cancel_session(request)


def wire(ui: Layout, demo: gr.Blocks) -> None:
    """Connect the components to the handlers: ``/grid`` and ``/upscale`` are the public API."""
    events = Events(ui)
    everything = [ui.gallery, ui.table, ui.plot, ui.seed, ui.files, ui.slider, ui.level_a, ui.level_b, ui.heat]
    run_event = ui.run_btn.click(
        events.run_grid,
        inputs=ui.form,
        outputs=[*everything, ui.message, ui.state],
        api_name="grid",
        show_progress_on=[ui.message],  # the grid stays visible while it fills in
        concurrency_limit=1,
        concurrency_id="gpu",
    )
    recommended = [ui.gallery, ui.recommendation, ui.quality_plot]
    for trigger in (run_event.then, ui.floor.change):
        trigger(events.recommendation_view, inputs=[ui.state, ui.floor], outputs=recommended, api_visibility="private")
    single_event = ui.single_btn.click(
        events.run_single,
        inputs=[*ui.form, ui.strength, ui.generative],
        outputs=[ui.single_out, ui.single_file, ui.single_info, ui.seed],
        api_name="upscale",
        concurrency_limit=1,
        concurrency_id="gpu",
    )
    single_event.failure(
        events.clear_single, outputs=[ui.single_out, ui.single_file, ui.single_info], api_visibility="private"
    )
    ui.cancel_btn.click(
        events.cancel, outputs=[ui.message], cancels=[run_event, single_event], api_visibility="private", queue=False
    )
    for dd in (ui.level_a, ui.level_b):
        dd.change(
            events.compare,
            inputs=[ui.state, ui.level_a, ui.level_b],
            outputs=[ui.slider],
            api_visibility="private",
            queue=False,
        )
    status = [ui.status, ui.fetch_btn]
    demo.load(events.fetch_button_state, outputs=status, api_visibility="private", queue=False)
    ui.fetch_btn.click(events.fetch_weights, outputs=status, api_visibility="private", concurrency_id="gpu")
    demo.unload(cancel_on_leave)
