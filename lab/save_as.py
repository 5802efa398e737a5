"""*Save as* in the Single level tab: the last result encoded as PNG, JPEG or WebP with the
request's output fields (quality, a max file size, stripped metadata for sharing), carrying the
source's EXIF, colour profile and DPI and the run's manifest as the REST answer does
(``pipelines.output.encode_level``). Scores are never computed on the encoded file."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any

import gradio as gr

from lab import supervision
from lab.form import UIInput, out_dir, user_error
from pipelines.errors import LabError
from pipelines.output import EXTENSIONS, OUTPUT_FORMATS, encode_level
from pipelines.request import RequestFields


@dataclass(frozen=True)
class SaveAs:
    """The row's components and the last single result it encodes (a State)."""

    fmt: Any
    quality: Any
    max_size: Any
    strip: Any
    button: Any
    last: Any

    @property
    def inputs(self) -> list[Any]:
        return [self.last, self.fmt, self.quality, self.max_size, self.strip]


def build_save_as() -> SaveAs:
    """The row, under the Single level tab's result."""
    with gr.Row(equal_height=True):
        fmt = gr.Dropdown(choices=list(OUTPUT_FORMATS), value="jpeg", label="Save as", min_width=90)
        quality = gr.Slider(1, 100, value=90, step=1, label="Quality (webp 100 = lossless)", min_width=160)
        max_size = gr.Textbox(label="Max file size", placeholder="e.g. 1MB", max_lines=1, min_width=100)
        strip = gr.Checkbox(label="Strip metadata (EXIF, GPS, profile) for sharing", min_width=120)
    button = gr.Button("Save as", size="sm")
    return SaveAs(fmt, quality, max_size, strip, button, gr.State(None))


def save_last(last: Any, fmt: str, quality: float, max_size: str, strip: bool) -> str:
    """The last single result (``(RunResult, RequestFields, UIInput)``) encoded as asked: the
    file's path. Errors name the field (``max_file_size: ... cannot be reached``)."""
    if last is None:
        raise user_error("run a level first (Upscale, or Run the whole image)")
    result, fields, form = last
    assert isinstance(fields, RequestFields) and isinstance(form, UIInput)
    lossy = fmt != "png"
    asked = dataclasses.replace(
        fields,
        output_format=fmt,
        quality=int(quality) if lossy else None,
        max_file_size=(max_size or "").strip() or None if lossy else None,
        strip_metadata=bool(strip),
    )
    try:
        request = asked.build(table=supervision.get_engine().config.table)
        lv = result.levels[0]
        encoded = encode_level(result, lv, request, source=form.load())
    except LabError as exc:
        raise user_error(exc) from exc
    target = out_dir() / f"upscaled_level{lv.level}_seed{result.seed}{EXTENSIONS[encoded.format]}"
    target.write_bytes(encoded.data)
    return str(target)


def wire_save_as(row: SaveAs, file: Any) -> None:
    row.button.click(save_last, inputs=row.inputs, outputs=[file], api_visibility="private")
