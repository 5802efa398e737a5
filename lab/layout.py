"""The page: every component, created once and returned by name (``Layout``). No events here."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import gradio as gr

import presets
from lab.form import CUSTOM_INPUTS, FORM_FIELDS, user_error
from lab.region_panel import RegionPanel, build_region_panel
from lab.save_as import SaveAs, build_save_as
from lab.views import SCORE_HEADERS, level_choices, scores_legend, scores_note
from pipelines.base import BASE_SPECS
from pipelines.request import FITS

ROOT = Path(__file__).resolve().parents[1]
EXAMPLES = [
    [str(ROOT / "examples" / "astronaut_portrait.png")],
    [str(ROOT / "examples" / "rocket_640x427.png")],
    [str(ROOT / "examples" / "chelsea_q25.jpg")],
]
SINGLE_TAB = "single"  # the Single level tab's id (Run the whole image shows it)

CSS = """
/* gradio groups toasts by type and lists every earlier message under "Error (2)"; show only
   the newest message of a group, without the count */
.toast-body .toast-message-item:has(~ .toast-message-item),
.toast-body .toast-separator, .toast-body .toast-count { display: none !important; }
#grid .caption-label {
  font-size: 0.8em; line-height: 1.3; white-space: pre-line !important;
  overflow: visible !important; text-overflow: clip !important; max-width: none !important;
}
.lab-note { font-size: 0.9em; opacity: 0.85; }
#run-note { flex-grow: 4; }
#scores th, #scores th *, #scores td, #scores td *, #scores .body-cell, #scores .body-cell * {
  word-break: keep-all !important; overflow-wrap: normal !important; hyphens: none !important;
  font-family: var(--font) !important; font-size: 12px !important;
}
#scores td, #scores td *, #scores .body-cell, #scores .body-cell * { white-space: nowrap !important; }
#scores td:nth-child(2), #scores td:nth-child(2) *, #scores .body-cell:nth-child(2), #scores .body-cell:nth-child(2) * {
  white-space: normal !important;
}
#scores th, #scores td, #scores .body-cell { padding: 4px !important; line-height: 1.3 !important; }
"""


def as_sent(image: gr.Image) -> gr.Image:
    """``image`` with its upload handed to the handler as the file sent: the lab's own reader
    decodes it (format and pixel limits, EXIF, alpha) and names what is wrong with a file that
    is not an image, instead of gradio's internal error with server paths. (An instance
    override, not a subclass: gradio writes a ``.pyi`` stub beside any module defining one.)"""
    decode = image.preprocess

    def preprocess(payload: Any) -> Any:
        path = getattr(payload, "path", None)
        url = getattr(payload, "url", None) or ""
        if path and not url.startswith("data:"):
            return str(path)
        return decode(payload)

    image.preprocess = preprocess  # type: ignore[method-assign]
    return image


def checked_as(spec: presets.CustomField, slider: gr.Slider) -> gr.Slider:
    """``slider`` refusing a value out of its range (sent through the API) with the request's
    message, which names the field (``custom.creativity: must be a number in 0.05..1, got
    1.5``), instead of gradio's unnamed "Value 1.5 is greater than maximum value 1.0". (An
    instance override, as in :func:`as_sent`.)"""
    bounded = slider.preprocess

    def preprocess(payload: Any) -> Any:
        try:
            spec.check(payload)
        except ValueError as exc:
            raise user_error(f"custom.{spec.name}: {exc} ({spec.label})") from None
        return bounded(payload)

    slider.preprocess = preprocess  # type: ignore[method-assign]
    return slider


@dataclass(frozen=True)
class Layout:
    """The lab's components by name; handlers key their return values by these."""

    status: Any
    fetch_btn: Any
    image: Any
    url: Any
    width: Any
    height: Any
    fit: Any
    padding: Any
    prompt: Any
    negative_prompt: Any
    seed: Any
    random_seed: Any
    tabs: Any  # the results' tabs (Grid … Downloads): other tabs are added inside it
    region_panel: RegionPanel  # Preview a region (lab/region_panel.py)
    run_btn: Any
    cancel_btn: Any
    message: Any
    gallery: Any
    recommendation: Any
    floor: Any
    table: Any
    plot: Any
    quality_plot: Any
    level_a: Any
    level_b: Any
    slider: Any
    heat: Any
    strength: Any
    generative: Any
    single_btn: Any
    single_out: Any
    single_file: Any
    single_info: Any
    save_as: SaveAs  # the Single level tab's Save as row (lab/save_as.py)
    files: Any
    state: Any
    custom_on: Any
    start_from: Any
    base_path: Any
    custom_settings: tuple[Any, ...]  # one slider per ``presets.CUSTOM_FIELDS``, in its order
    custom_btn: Any
    fast: Any  # the fast-mode box (the request's ``fast``), last of the Advanced panel's inputs

    @property
    def form(self) -> list[Any]:
        """The form's components in ``UIInput``'s field order (the run events' inputs)."""
        return [getattr(self, name) for name in FORM_FIELDS]

    @property
    def custom(self) -> list[Any]:
        """The Advanced panel's components in ``CustomInput``'s field order (after the form in
        the run events' inputs)."""
        panel = [self.custom_on, self.start_from, self.base_path, *self.custom_settings, self.fast]
        assert len(panel) == len(CUSTOM_INPUTS)  # a panel out of step with CustomInput is a bug
        return panel


def build_layout(table: presets.LevelTable, *, single_start: tuple[int, str] | None = None) -> Layout:
    """Create every component inside the current ``gr.Blocks`` for the levels of ``table``;
    ``single_start``: the Single level tab's strength and why (default: the table's default)."""
    off = presets.number_ranges(lv.level for lv in table.levels if not lv.generative)
    gr.Markdown(
        f"# Generative Upscale Lab\n{table.count_text.capitalize()} strengths of diffusion upscaling side by side, "
        f"each scored against a plain bicubic upscale. Lower levels are more generative; {off} use no diffusion."
    )
    with gr.Row(equal_height=True, elem_id="run-row"):  # first on any screen: the action and its status
        run_btn = gr.Button(f"Run all {table.count_text} levels", variant="primary", scale=1, min_width=160)
        cancel_btn = gr.Button("Cancel", variant="stop", scale=0, min_width=100)
        # the run's status (progress, estimate, seed, messages), next to the button and above the grid
        message = gr.Markdown(elem_classes=["lab-note"], elem_id="run-note", min_height=40)
    with gr.Accordion("Device and models", open=False):
        status = gr.Markdown("Checking…", elem_id="model-status")
        fetch_btn = gr.Button("Fetch weights", size="sm", interactive=False, elem_id="fetch-weights")
    with gr.Row():
        with gr.Column(scale=1, min_width=320):
            form = _form(table)
            advanced = _advanced(table)
            region_panel = build_region_panel(table, (single_start or (table.default_strength, ""))[0])
        with gr.Column(scale=2), gr.Tabs() as tabs:  # more tabs join later: ``with layout.tabs:``
            results = {
                **_grid_tab(table),
                **_scores_tab(table),
                **_compare_tab(table),
                **_single_tab(table, single_start or (table.default_strength, "")),
            }
            with gr.Tab("Downloads"):
                files = gr.File(
                    label=f"All {table.count_text} (zip with PNGs, grid, scores, manifest) and the manifest",
                    file_count="multiple",
                )
    return Layout(
        region_panel=region_panel,
        tabs=tabs,
        run_btn=run_btn,
        cancel_btn=cancel_btn,
        message=message,
        status=status,
        fetch_btn=fetch_btn,
        files=files,
        state=gr.State(None),
        **form,
        **advanced,
        **results,
    )


def _form(table: presets.LevelTable) -> dict[str, Any]:
    with gr.Tab("Upload"):
        image = as_sent(
            gr.Image(
                type="filepath",
                image_mode=None,  # the file as sent: alpha, grayscale and a JPEG's quality survive
                label="Photo",
                sources=["upload", "clipboard"],
                height=280,
            )
        )
    with gr.Tab("URL"):
        url = gr.Textbox(label="Image URL (http/https, public hosts only)", placeholder="https://…")
    gr.Examples(EXAMPLES, inputs=[image], label="Examples (portrait, landscape, JPEG q=25)", cache_examples=False)
    with gr.Row():
        width = gr.Textbox(label="Width", placeholder="px or %, e.g. 1024 or 200%", max_lines=1, elem_id="width-in")
        height = gr.Textbox(label="Height", placeholder="px or %", max_lines=1, elem_id="height-in")
    with gr.Row():
        fit = gr.Dropdown(list(FITS), value="canvas", label="Fit (width and height both set)")
        padding = gr.Textbox(label="Padding", placeholder="px or %", max_lines=1)
    prompt = gr.Textbox(
        label="Prompt (guides the diffusion)",
        placeholder=presets.DEFAULT_PROMPT,
        max_length=presets.MAX_PROMPT_CHARS,
        lines=2,
    )
    negative_prompt = gr.Textbox(
        label="Negative prompt", placeholder=presets.DEFAULT_NEGATIVE_PROMPT, max_length=presets.MAX_PROMPT_CHARS
    )
    with gr.Row():
        seed = gr.Number(label="Seed", value=1, precision=0, minimum=0, maximum=2**32 - 1)
        random_seed = gr.Checkbox(label="Random seed", value=False)
    return dict(
        image=image,
        url=url,
        width=width,
        height=height,
        fit=fit,
        padding=padding,
        prompt=prompt,
        negative_prompt=negative_prompt,
        seed=seed,
        random_seed=random_seed,
    )


def _advanced(table: presets.LevelTable) -> dict[str, Any]:
    """The custom level's panel: its recipe (filled from "start from level N" when the page
    loads and whenever that changes), whether the run buttons add it, and its own button."""
    custom = presets.custom_number(table)
    base, settings = presets.custom_defaults(table, presets.DIFFUSION_SETTINGS, table.default_strength)
    paths = [*table.base_paths, *sorted(set(BASE_SPECS) - set(table.base_paths))]
    with gr.Accordion("Advanced: a custom level", open=False, elem_id="advanced"):
        gr.Markdown(
            f"Your own recipe beside the {table.count_text} levels: level **{custom}** (*custom*) in the grid, "
            "scored like the others. *Creativity* is the denoise strength, *resemblance* the ControlNet scale "
            "(Clarity's names); LoRA 0 means no diffusion. The prompt, negative prompt and seed are the form's.",
            elem_classes=["lab-note"],
        )
        start_from = gr.Dropdown(
            level_choices(table),
            value=table.default_strength,
            label="Start from level N (fills the settings below)",
            elem_id="start-from",
        )
        base_path = gr.Dropdown(
            [(table.column_label(p), p) for p in paths], value=base, label="Base path", elem_id="custom-base"
        )
        sliders = tuple(
            checked_as(
                f,
                gr.Slider(
                    f.low,
                    f.high,
                    value=getattr(settings, f.attribute),
                    step=f.multiple_of if f.integer else f.step,
                    label=f"{f.label} ({f.range_text})",
                    elem_id=f"custom-{f.name.replace('_', '-')}",
                ),
            )
            for f in presets.CUSTOM_FIELDS
        )
        custom_on = gr.Checkbox(value=False, label="Add it to Run all and Upscale", elem_id="custom-on")
        custom_btn = gr.Button("Run custom level", variant="secondary", elem_id="run-custom")
        adapter = presets.MODELS[presets.FAST_MODE.adapter]
        fast = gr.Checkbox(
            value=False,
            label=f"Fast mode for Run all, Upscale and the preview: {adapter.repo} with {presets.FAST_MODE.scheduler}, "
            f"{presets.FAST_MODE.steps} steps of which strength×steps run, no guidance (not with the custom level; "
            "its image quality has not been measured here)",
            elem_id="fast-mode",
        )
    return dict(
        custom_on=custom_on,
        start_from=start_from,
        base_path=base_path,
        custom_settings=sliders,
        custom_btn=custom_btn,
        fast=fast,
    )


def _grid_tab(table: presets.LevelTable) -> dict[str, Any]:
    with gr.Tab("Grid"):
        gallery = gr.Gallery(
            label=f"Rows: {' / '.join(table.row_labels)} · columns: {' / '.join(table.column_labels)}",
            columns=table.shape[1],
            format="png",
            object_fit="contain",
            height=900,
            elem_id="grid",
        )
        recommendation = gr.Markdown(elem_id="recommendation")
        floor = gr.Slider(
            0,
            60,
            value=presets.DEFAULT_FIDELITY_FLOOR_DB,
            step=0.5,
            label="Fidelity floor: recommend only levels with LR-consistency at least (dB)",
            info="the most natural level (lowest NIQE) above it is recommended; ties go to the less generative",
            elem_id="floor",
        )
    return dict(gallery=gallery, recommendation=recommendation, floor=floor)


def _scores_tab(table: presets.LevelTable) -> dict[str, Any]:
    with gr.Tab("Scores"):
        gr.Markdown(scores_note(table))
        scores = gr.Dataframe(
            headers=SCORE_HEADERS,
            label="Scores per level",
            interactive=False,
            wrap=True,  # between words only (the CSS): numbers and names never break inside
            max_height=900,  # the ten levels (nine and the custom one) without scrolling the table
            elem_id="scores",
        )
        gr.Markdown(scores_legend(), elem_classes=["lab-note"], elem_id="scores-legend")
        plot = gr.Plot(label="Scores against level")
        quality_plot = gr.Plot(label="Fidelity against naturalness", elem_id="pd-plot")
    return dict(table=scores, plot=plot, quality_plot=quality_plot)


def _compare_tab(table: presets.LevelTable) -> dict[str, Any]:
    choices = [
        *level_choices(table),
        (f"{presets.custom_number(table)}: the custom level", presets.custom_number(table)),
    ]
    with gr.Tab("Compare"):
        with gr.Row():
            level_a = gr.Dropdown(choices, value=table.default_strength, label="Left")
            level_b = gr.Dropdown(choices, value=table.baseline_level, label="Right (default: bicubic baseline)")
        slider = gr.ImageSlider(label="Drag to compare", type="pil", format="png", max_height=640, elem_id="slider")
        heat = gr.Gallery(
            label="Change heatmaps: where each level departs from the bicubic baseline",
            columns=4,
            format="png",
            height="auto",
        )
    return dict(level_a=level_a, level_b=level_b, slider=slider, heat=heat)


def _single_tab(table: presets.LevelTable, start: tuple[int, str]) -> dict[str, Any]:
    with gr.Tab("Single level", id=SINGLE_TAB):
        gr.Markdown(
            "The commercial API's semantics: one `upscale_strength`, one image (size, prompt and seed from the left)."
            + (f"\n\n{start[1]}" if start[1] else ""),
            elem_id="single-note",
        )
        with gr.Row():
            strength = gr.Slider(
                table.min_level,
                table.max_level,
                value=start[0],
                step=1,
                label="upscale_strength (1 = most generative)",
            )
            generative = gr.Checkbox(value=True, label="generative_upscale")
        single_btn = gr.Button("Upscale", variant="primary")
        single_out = gr.Image(label="Result", type="pil", format="png")
        single_file = gr.File(label="Download")
        single_info = gr.Markdown()
        save_as = build_save_as()
    return dict(
        save_as=save_as,
        strength=strength,
        generative=generative,
        single_btn=single_btn,
        single_out=single_out,
        single_file=single_file,
        single_info=single_info,
    )
