"""The *Preview a region* panel (issue 20, point 2): a box of the input, shown on the picture
(click to move it; by default the most detailed window), the two estimates (the box, the whole
image) before anything runs, a button that runs every level on the box only (at the scale the
whole image gets: ``pipelines.region``), and one that then runs the whole image at a chosen
level (the Single level tab shows it)."""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Any

import gradio as gr
from PIL import Image, ImageDraw

import presets
from lab import supervision
from lab.form import FORM_FIELDS, UIInput, user_error
from pipelines.errors import LabError
from pipelines.imaging import LoadedImage
from pipelines.region import Region, check_region, default_region, estimates, parse_region_text
from pipelines.request import UpscaleRequest

VIEW_SIDE = 480  # px: the longer side of the picture the box is drawn on
CUSTOM_CHOICE = "custom"


@dataclass(frozen=True)
class RegionPanel:
    """The panel's components."""

    x: Any
    y: Any
    width: Any
    height: Any
    view: Any
    auto_btn: Any
    note: Any
    preview_btn: Any
    whole_level: Any
    whole_btn: Any

    @property
    def box(self) -> list[Any]:
        return [self.x, self.y, self.width, self.height]


def build_region_panel(table: presets.LevelTable, start: int) -> RegionPanel:
    """The panel (an accordion in the form's column); ``start``: the level offered for the whole
    image at first (one that can run here)."""
    with gr.Accordion("Preview a region", open=False, elem_id="region-panel"):
        gr.Markdown(
            "Every level on a box of the input, at the scale the whole image gets, in a fraction of "
            "the time; then the whole image at the level you like. Click the picture to move the box.",
            elem_classes=["lab-note"],
        )
        view = gr.Image(label="The box on the input", type="pil", interactive=False, height=240, elem_id="region-view")
        with gr.Row():
            boxes = [
                gr.Number(label=name, precision=0, minimum=0, min_width=60, elem_id=f"region-{name}")
                for name in ("x", "y", "width", "height")
            ]
        auto_btn = gr.Button("Most detailed window", size="sm")
        note = gr.Markdown(elem_classes=["lab-note"], elem_id="region-note")
        preview_btn = gr.Button("Preview all levels on the region", variant="secondary", elem_id="preview-btn")
        with gr.Row():
            whole_level = gr.Dropdown(
                choices=[*table.numbers, CUSTOM_CHOICE], value=start, label="Then the whole image at level", scale=1
            )
            whole_btn = gr.Button("Run the whole image", scale=1)
    x, y, width, height = boxes
    return RegionPanel(x, y, width, height, view, auto_btn, note, preview_btn, whole_level, whole_btn)


def region_text(box: list[Any] | tuple[Any, ...]) -> str:
    """The panel's four numbers as ``x,y,width,height`` (RequestError names a missing one)."""
    if any(v is None for v in box):
        raise LabError("region: set x, y, width and height (or press Most detailed window)")
    return ",".join(str(int(v)) for v in box)


def _whole_request(form: UIInput) -> UpscaleRequest:
    return form.fields().build(table=supervision.get_engine().config.table)


def overlay(image: LoadedImage, region: Region) -> Image.Image:
    """The input scaled to :data:`VIEW_SIDE` with the box drawn on it."""
    scale = min(1.0, VIEW_SIDE / max(image.size))
    view = image.rgb.resize((max(1, round(image.size[0] * scale)), max(1, round(image.size[1] * scale))))
    draw = ImageDraw.Draw(view)
    left, top, right, bottom = (round(v * scale) for v in region.box)
    right, bottom = max(right, left + 1), max(bottom, top + 1)  # a box of under a view pixel: still drawn
    for inset, colour in ((0, (255, 255, 255)), (2, (230, 80, 0))):
        if right - left > 2 * inset and bottom - top > 2 * inset:
            draw.rectangle((left + inset, top + inset, right - inset, bottom - inset), outline=colour, width=2)
    return view


def cost_note(image: LoadedImage, request: UpscaleRequest, region: Region) -> str:
    """What the box is and both costs, before anything runs."""
    engine = supervision.get_engine()
    box_s, whole_s = estimates(engine, image, replace(request, levels=engine.config.table.numbers), region)
    out = _box_output(image, request, region)
    line = f"Box {region} of {image.size[0]}×{image.size[1]} → {out[0]}×{out[1]} px of output."
    if box_s is None or whole_s is None:
        return line + " No estimate yet: the first run on this device measures the costs."
    return (
        line
        + f" Every level: ~{box_s:.0f} s on the box, ~{whole_s:.0f} s on the whole image ({engine.device_label()})."
    )


def _box_output(image: LoadedImage, request: UpscaleRequest, region: Region) -> tuple[int, int]:
    from pipelines.region import region_request

    asked = region_request(request, image.size, region)
    return int(asked.width or 0), int(asked.height or 0)  # type: ignore[arg-type]


def panel_view(image: LoadedImage, request: UpscaleRequest, region: Region) -> tuple[Any, ...]:
    return (region.x, region.y, region.width, region.height, overlay(image, region), cost_note(image, request, region))


def auto_box(*values: Any) -> tuple[Any, ...]:
    """Most detailed window: the box whose output is about 512 px, where the input has the most
    detail (values: the form)."""
    form = UIInput.of(*values)
    try:
        image, request = form.load(), _whole_request(form)
        return panel_view(image, request, default_region(image, request))
    except LabError as exc:
        raise user_error(exc) from exc


def moved_box(*values: Any) -> tuple[Any, ...]:
    """The box typed in (values: x, y, width, height, then the form)."""
    form = UIInput.of(*values[4:])
    try:
        image, request = form.load(), _whole_request(form)
        region = parse_region_text(region_text(values[:4]))
        check_region(region, image.size)
        return panel_view(image, request, region)
    except LabError as exc:
        raise user_error(exc) from exc


def clicked_box(evt: gr.SelectData, *values: Any) -> tuple[Any, ...]:
    """A click on the picture: the box (of its size, or the default one's) centred there."""
    form = UIInput.of(*values[2:])
    try:
        image, request = form.load(), _whole_request(form)
        scale = min(1.0, VIEW_SIDE / max(image.size))
        if values[0] and values[1]:  # the box's own size; the default window only when it has none
            w, h = int(values[0]), int(values[1])
        else:
            size = default_region(image, request)
            w, h = size.width, size.height
        w, h = min(w, image.size[0]), min(h, image.size[1])
        cx, cy = (round(v / scale) for v in evt.index[:2])
        x = min(max(0, cx - w // 2), image.size[0] - w)
        y = min(max(0, cy - h // 2), image.size[1] - h)
        return panel_view(image, request, Region(x, y, w, h))
    except LabError as exc:
        raise user_error(exc) from exc


def wire_region_panel(
    panel: RegionPanel, events: Any, form: list[Any], custom: list[Any], outputs: dict[str, Any]
) -> tuple[Any, Any]:
    """Connect the panel: the box's events, the preview (the grid's outputs) and the whole
    image at a level (the Single level tab's outputs); ``events``: the page's ``Events``.
    Returns the two run events (for Cancel and what follows a grid run)."""
    assert len(form) == len(FORM_FIELDS)
    shown = [*panel.box, panel.view, panel.note]
    private: dict[str, Any] = dict(api_visibility="private")
    panel.auto_btn.click(auto_box, inputs=form, outputs=shown, **private)
    gr.on([b.submit for b in panel.box], moved_box, inputs=[*panel.box, *form], outputs=shown, **private)
    panel.view.select(clicked_box, inputs=[panel.width, panel.height, *form], outputs=shown, **private)
    grid = outputs["grid"]
    preview = panel.preview_btn.click(
        events.run_preview,
        inputs=[*form, *custom, *panel.box],
        outputs=grid,
        show_progress_on=[outputs["message"]],
        concurrency_limit=1,
        concurrency_id="gpu",
        **private,
    )
    whole = panel.whole_btn.click(
        events.run_whole,
        inputs=[*form, *custom, panel.whole_level],
        outputs=outputs["single"],
        concurrency_limit=1,
        concurrency_id="gpu",
        **private,
    )
    whole.failure(events.clear_single, outputs=outputs["single"][:3] + [outputs["single"][4]], **private)
    return preview, whole


def run_whole_fields(values: tuple[Any, ...]) -> tuple[UIInput, Any]:
    """The form and the request fields of Run the whole image (values: the form, the Advanced
    panel, the level): the level, or the panel's recipe (ticked or not; a setting out of
    range is a gr.Error naming it)."""
    from lab.form import CustomInput

    n = len(FORM_FIELDS)
    form, level = UIInput.of(*values[:n]), values[-1]
    panel = CustomInput.of(*values[n:-1])
    if level == CUSTOM_CHOICE:
        return form, form.fields(custom=panel.recipe(), fast=panel.fast)
    return form, form.fields(upscale_strength=int(level), generative_upscale=True, fast=panel.fast)


__all__ = ["RegionPanel", "build_region_panel", "region_text", "run_whole_fields", "wire_region_panel"]
