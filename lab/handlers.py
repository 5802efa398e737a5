"""The lab's events. Each handler freezes the form into a ``UIInput`` on its first line, calls
the engine through run supervision, and answers a dict keyed by the components it updates
(a partial update names only what changed)."""

from __future__ import annotations

import asyncio
import queue
import threading
from dataclasses import replace
from typing import Any

import gradio as gr

import presets
from figures import run_quality_figure
from lab import supervision, views, weights
from lab.form import FORM_FIELDS, CustomInput, UIInput, out_dir, user_error
from lab.layout import SINGLE_TAB, Layout
from lab.region_panel import region_text, run_whole_fields, wire_region_panel
from lab.save_as import wire_save_as
from pipelines.engine import LevelResult, RunResult, recommend_level, with_custom
from pipelines.errors import LabError, RequestError
from pipelines.report import png_bytes, zip_run
from pipelines.request import CustomRecipe, RequestFields, UpscaleRequest

STREAM_POLL_S = 0.25


class Events:
    """The handlers of one page (``ui``: its components by name)."""

    def __init__(self, ui: Layout) -> None:
        self.ui = ui

    async def run_grid(self, request: gr.Request, progress: Any = gr.Progress(), *values: Any):
        """Every level of the table (and the custom level when the Advanced panel adds it;
        values: the form, then the panel): grid, scores, plot, compare, heatmaps, downloads.
        The grid fills in as levels finish; the last update carries everything."""
        form = UIInput.of(*values[: len(FORM_FIELDS)])
        custom = added_custom(values[len(FORM_FIELDS) :])
        fast = CustomInput.of(*values[len(FORM_FIELDS) :]).fast
        async for update in self.stream_grid(form, custom, None, request, progress, fast=fast):
            yield update

    async def run_preview(self, request: gr.Request, progress: Any = gr.Progress(), *values: Any):
        """Preview all levels on the region (values: the form, the Advanced panel, the box's
        x, y, width, height): the grid's outputs, for the box at the whole image's scale."""
        n, box = len(FORM_FIELDS), values[-4:]
        form = UIInput.of(*values[:n])
        custom = added_custom(values[n:-4])
        fast = CustomInput.of(*values[n:-4]).fast
        try:
            region = region_text(box)
        except LabError as exc:
            raise user_error(exc) from exc
        async for update in self.stream_grid(form, custom, region, request, progress, fast=fast):
            yield update

    async def run_whole(self, request: gr.Request, progress: Any = gr.Progress(), *values: Any):
        """Run the whole image at the panel's level (values: the form, the Advanced panel, the
        level): the Single level tab's outputs, and that tab shown."""
        form, fields = run_whole_fields(values)
        cancel = threading.Event()
        shown = await supervision.run_cancellable(cancel, self.single_outputs, form, fields, request, progress, cancel)
        return {**shown, self.ui.tabs: gr.Tabs(selected=SINGLE_TAB)}

    async def stream_grid(
        self,
        form: UIInput,
        custom: CustomRecipe | None,
        region: str | None,
        request: gr.Request,
        progress: Any,
        *,
        fast: bool = False,
    ):
        """The grid run's updates: the levels as they finish, then everything (``region``:
        ``x,y,width,height`` of a preview, or None for the whole image; ``fast``: the fast mode)."""
        cancel = threading.Event()
        arrived: queue.SimpleQueue[tuple[str, Any]] = queue.SimpleQueue()
        work = asyncio.ensure_future(
            asyncio.to_thread(self.grid_outputs, form, request, progress, cancel, arrived, custom, region, fast)
        )
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
                    yield self.partial_outputs(ready, estimate, custom=custom is not None)
            final = work.result()
            state = final.get(self.ui.state)
            if isinstance(state, RunResult):  # how the estimate did: this run and the last few
                final[self.ui.message] += views.estimate_note(estimate, state.timings.get("total"))
        finally:
            # cancelled while waiting (CancelledError) or closed while paused at a yield
            # (gradio's /cancel acloses the generator: GeneratorExit): stop the engine either way
            if not work.done():
                await supervision.stop_worker(cancel, work)
        yield final

    def partial_outputs(
        self, ready: dict[int, LevelResult], estimate: float | None, *, custom: bool = False
    ) -> dict[Any, Any]:
        """A grid update while the run goes on: the grid and the status line, nothing else."""
        engine = supervision.get_engine()
        table = engine.config.table
        note = f"{len(ready)} of {len(table.levels) + int(custom)} levels ready"
        if estimate:
            note += f" · estimated ~{estimate:.0f} s in all on {engine.device_label()}"
        else:
            note += f" · no estimate yet: this first run measures the stages on {engine.device_label()}"
        return {self.ui.gallery: views.partial_grid(ready, table), self.ui.message: note}

    def grid_outputs(
        self,
        form: UIInput,
        request: gr.Request | None,
        progress: Any,
        cancel: threading.Event,
        arrived: queue.SimpleQueue[tuple[str, Any]],
        custom: CustomRecipe | None = None,
        region: str | None = None,
        fast: bool = False,
    ) -> dict[Any, Any]:
        """The run of every level (and ``custom``) and everything the grid view shows (in a
        worker thread); ``arrived`` receives ("estimate", seconds) and then ("level",
        LevelResult) as each finishes."""
        levels = supervision.get_engine().config.table.numbers
        fields = form.fields(levels=levels, custom=custom, fast=fast)
        result = form.run(
            replace(fields, region=region) if region else fields,
            request,
            progress,
            cancel,
            on_level=lambda level: arrived.put(("level", level)),
            on_estimate=lambda seconds: arrived.put(("estimate", seconds)),
        )
        return self.grid_view(result)

    def grid_view(self, result: RunResult) -> dict[Any, Any]:
        """Everything the grid view shows of ``result``, its downloads written."""
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
            ui.plot: views.scores_plot(result),
            ui.seed: result.seed,
            ui.files: [str(archive), str(manifest)],
            ui.slider: views.compare_pair(result, first, baseline),
            ui.level_a: gr.update(value=first),
            ui.level_b: gr.update(value=baseline),
            ui.heat: views.heatmaps(result),
            ui.message: views.region_note(result) + views.run_notes(result),
            ui.state: result,
        }

    async def run_custom(self, request: gr.Request, progress: Any = gr.Progress(), *values: Any):
        """The Run custom level button (values: the form, the Advanced panel, the last run):
        the custom level alone, its bases from the engine's cache of the last run, added to
        that run's grid, scores and manifest (shown alone when the image or size changed)."""
        *inputs, last = values
        form = UIInput.of(*inputs[: len(FORM_FIELDS)])
        panel = CustomInput.of(*inputs[len(FORM_FIELDS) :])
        recipe = panel.recipe()
        cancel = threading.Event()
        return await supervision.run_cancellable(
            cancel, self.custom_outputs, form, recipe, last, request, progress, cancel, panel.fast
        )

    def custom_outputs(
        self,
        form: UIInput,
        recipe: CustomRecipe,
        last: RunResult | None,
        request: gr.Request | None,
        progress: Any,
        cancel: threading.Event,
        fast: bool = False,
    ) -> dict[Any, Any]:
        """The custom level's run and the grid view of the last run with it (a worker thread);
        ``fast`` is refused with the request's message (the custom level has its own steps)."""
        result = form.run(form.fields(custom=recipe, fast=fast), request, progress, cancel)
        note = ""
        if isinstance(last, RunResult):
            try:
                result = with_custom(last, result)
            except ValueError as exc:
                note = f"\n\nShowing the custom level alone: {exc}."
        view = self.grid_view(result)
        view[self.ui.message] += note
        return view

    def fill_custom(self, start_from: Any) -> dict[Any, Any]:
        """The Advanced panel's settings as level ``start_from`` has them on the served engine."""
        engine = supervision.get_engine()
        try:
            base, settings = presets.custom_defaults(engine.config.table, engine.config.settings, int(start_from))
        except (TypeError, ValueError) as exc:
            raise user_error(f"custom.start_from: {exc}") from None
        ui = self.ui
        filled: dict[Any, Any] = {ui.base_path: base}
        for spec, slider in zip(presets.CUSTOM_FIELDS, ui.custom_settings, strict=True):
            filled[slider] = getattr(settings, spec.attribute)
        return filled

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
            self.ui.recommendation: views.recommendation_markdown(advice, result.table),
            self.ui.quality_plot: run_quality_figure(result, advice),
        }

    async def run_single(self, request: gr.Request, progress: Any = gr.Progress(), *values: Any):
        """One strength, one image: the commercial API's semantics (values: the form, then the
        strength and the generative switch)."""
        n = len(FORM_FIELDS)
        form, (strength, generative) = UIInput.of(*values[:n]), values[n : n + 2]
        custom = added_custom(values[n + 2 :])  # with the panel's box ticked: the custom level alone
        fast = CustomInput.of(*values[n + 2 :]).fast
        fields = form.fields(
            upscale_strength=int(strength), generative_upscale=bool(generative), custom=custom, fast=fast
        )
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
            self.ui.save_as.last: (result, fields, form),  # what Save as encodes
        }

    def clear_single(self) -> dict[Any, Any]:
        """After a failed single run: no result from an earlier run stays under the error."""
        return {
            self.ui.single_out: None,
            self.ui.single_file: None,
            self.ui.single_info: "",
            self.ui.save_as.last: None,
        }

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


def added_custom(values: tuple[Any, ...] | list[Any]) -> CustomRecipe | None:
    """The Advanced panel's recipe when its box adds it to the run buttons, else None."""
    panel = CustomInput.of(*values)
    return panel.recipe() if panel.enabled else None


def cancel_session(request: gr.Request | None) -> int:
    """Stop every run of the request's session (the Cancel button; a closed page through the
    unload event); returns how many runs were told to stop."""
    return supervision.CANCELS.cancel(getattr(request, "session_hash", "") or "")


def cancel_on_leave(request: gr.Request) -> None:
    """The page was closed or reloaded (gradio's unload event): stop that session's run."""
    cancel_session(request)


def wire(ui: Layout, demo: gr.Blocks) -> None:
    """Connect the components to the handlers: ``/grid``, ``/upscale`` and ``/custom_level``
    are the public API (the Advanced panel's fields follow the form's in each)."""
    events = Events(ui)
    everything = [ui.gallery, ui.table, ui.plot, ui.seed, ui.files, ui.slider, ui.level_a, ui.level_b, ui.heat]
    run_event = ui.run_btn.click(
        events.run_grid,
        inputs=[*ui.form, *ui.custom],
        outputs=[*everything, ui.message, ui.state],
        api_name="grid",
        show_progress_on=[ui.message],  # the grid stays visible while it fills in
        concurrency_limit=1,
        concurrency_id="gpu",
    )
    custom_event = ui.custom_btn.click(
        events.run_custom,
        inputs=[*ui.form, *ui.custom, ui.state],
        outputs=[*everything, ui.message, ui.state],
        api_name="custom_level",  # the session's last run is its state: a client's /grid, then this
        show_progress_on=[ui.message],
        concurrency_limit=1,
        concurrency_id="gpu",
    )
    panel = [ui.base_path, *ui.custom_settings]
    ui.start_from.change(events.fill_custom, inputs=[ui.start_from], outputs=panel, api_visibility="private")
    demo.load(events.fill_custom, inputs=[ui.start_from], outputs=panel, api_visibility="private", queue=False)
    recommended = [ui.gallery, ui.recommendation, ui.quality_plot]
    for trigger in (run_event.then, custom_event.then, ui.floor.change):
        trigger(events.recommendation_view, inputs=[ui.state, ui.floor], outputs=recommended, api_visibility="private")
    single_event = ui.single_btn.click(
        events.run_single,
        inputs=[*ui.form, ui.strength, ui.generative, *ui.custom],
        outputs=[ui.single_out, ui.single_file, ui.single_info, ui.seed, ui.save_as.last],
        api_name="upscale",
        concurrency_limit=1,
        concurrency_id="gpu",
    )
    single_event.failure(
        events.clear_single,
        outputs=[ui.single_out, ui.single_file, ui.single_info, ui.save_as.last],
        api_visibility="private",
    )
    single = [ui.single_out, ui.single_file, ui.single_info, ui.seed, ui.save_as.last, ui.tabs]
    wire_save_as(ui.save_as, ui.single_file)
    grid = {"grid": [*everything, ui.message, ui.state], "message": ui.message, "single": single}
    preview_event, whole_event = wire_region_panel(ui.region_panel, events, ui.form, ui.custom, grid)
    preview_event.then(
        events.recommendation_view, inputs=[ui.state, ui.floor], outputs=recommended, api_visibility="private"
    )
    ui.cancel_btn.click(
        events.cancel,
        outputs=[ui.message],
        cancels=[run_event, single_event, custom_event, preview_event, whole_event],
        api_visibility="private",
        queue=False,
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
