"""The Batch tab: several images at once, each run at the chosen levels with the form's size,
prompt and seed, encoded in the chosen format, and handed back as one zip with the summary
CSV (``pipelines.batch``, the same code as ``cli.py batch``; the engine the lab serves, with
its Cancel and time limit). A file that is not an image is a row of the summary, not the end
of the batch."""

from __future__ import annotations

import dataclasses
import shutil
import threading
import zipfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import gradio as gr

import presets
from lab import supervision
from lab.form import FORM_FIELDS, UIInput, out_dir, user_error
from pipelines.batch import STATE_DIR, SUMMARY_CSV, BatchJob, BatchSummary, run_batch
from pipelines.errors import LabError
from pipelines.imaging import LoadedImage
from pipelines.output import OUTPUT_FORMATS
from pipelines.request import UpscaleRequest

MAX_FILES = 50  # a Space is shared: bigger folders go through cli.py batch
SHOWN_COLUMNS = ("input", "level", "status", "output", "seconds", "error")


@dataclass(frozen=True)
class BatchTab:
    """The tab's components."""

    files: Any
    levels: Any
    fmt: Any
    quality: Any
    max_size: Any
    strip: Any
    run_btn: Any
    archive: Any
    summary: Any
    note: Any

    @property
    def inputs(self) -> list[Any]:
        return [self.files, self.levels, self.fmt, self.quality, self.max_size, self.strip]


def build_batch_tab(table: presets.LevelTable, start: int) -> BatchTab:
    """The tab's layout (inside the results' Tabs); ``start``: the level checked at first
    (one that can run here)."""
    with gr.Tab("Batch"):
        gr.Markdown(
            f"Several images at once (up to {MAX_FILES}): each runs at the levels checked here with the "
            "form's size, prompt and seed; the zip holds every result and `batch.csv` (status, "
            "seconds and scores of each image × level). A bad file is reported in the summary; "
            "the others go on. For whole folders: `cli.py batch IN -o OUT`.",
            elem_classes="lab-note",
        )
        files = gr.File(label="Images", file_count="multiple", file_types=["image"])
        levels = gr.CheckboxGroup(choices=list(table.numbers), value=[start], label="Levels")
        with gr.Row():
            fmt = gr.Dropdown(choices=list(OUTPUT_FORMATS), value="png", label="Format")
            quality = gr.Slider(1, 100, value=90, step=1, label="Quality (jpeg/webp; webp 100 = lossless)")
            max_size = gr.Textbox(label="Max file size (jpeg/webp)", placeholder="e.g. 1MB, 500kb")
        strip = gr.Checkbox(label="Strip metadata (EXIF with GPS, colour profile, manifest) for sharing")
        run_btn = gr.Button("Run batch", variant="primary")
        note = gr.Markdown(elem_classes="lab-note")
        archive = gr.File(label="Results (zip with batch.csv)")
        summary = gr.Dataframe(headers=list(SHOWN_COLUMNS), label="Summary", interactive=False, wrap=True)
    return BatchTab(files, levels, fmt, quality, max_size, strip, run_btn, archive, summary, note)


def batch_request(form: UIInput, levels: list[int], fmt: str, quality: float, max_size: str, strip: bool) -> Any:
    """The request every image of the batch runs (RequestError names a field)."""
    if not levels:
        raise LabError("levels: check at least one level")
    lossy = fmt != "png"
    fields = dataclasses.replace(
        form.fields(levels=tuple(sorted(int(n) for n in levels))),
        output_format=fmt,
        quality=int(quality) if lossy else None,
        max_file_size=max_size.strip() or None if lossy else None,
        strip_metadata=bool(strip),
    )
    return fields.build(table=supervision.get_engine().config.table)


def gather(files: list[str], folder: Path) -> Path:
    """The uploads in one folder under their own names (a repeated name gets a number)."""
    if not files:
        raise LabError("images: add one or more image files")
    if len(files) > MAX_FILES:
        raise LabError(f"images: {len(files)} files; the lab takes up to {MAX_FILES} (use cli.py batch)")
    folder.mkdir(parents=True)
    for i, path in enumerate(files):
        name = Path(path).name
        if (folder / name).exists():
            name = f"{Path(name).stem}-{i + 1}{Path(name).suffix}"
        shutil.copyfile(path, folder / name)
    return folder


def zip_folder(folder: Path, path: Path) -> Path:
    """Every result and the summary CSV (not the batch's resume state) in one zip."""
    with zipfile.ZipFile(path, "w", compression=zipfile.ZIP_DEFLATED) as zf:
        for file in sorted(folder.rglob("*")):
            relative = file.relative_to(folder)
            if file.is_file() and relative.parts[0] != STATE_DIR:
                zf.write(file, relative.as_posix())
    return path


def summary_rows(summary: BatchSummary) -> list[list[str]]:
    return [[row.to_csv()[c] for c in SHOWN_COLUMNS] for row in summary.rows]


def run_files(
    tab_values: tuple[Any, ...], form: UIInput, session: str | None, progress: Any, cancel: threading.Event
) -> tuple[Path, BatchSummary]:
    """The batch of the uploads (a worker thread): their zip and the summary."""
    files, levels, fmt, quality, max_size, strip = tab_values
    request = batch_request(form, levels or [], fmt, quality, max_size or "", strip)
    folder = out_dir()
    source = gather(list(files or []), folder / "in")
    total = len(list(source.iterdir()))
    done = [0]

    def run(image: LoadedImage, req: UpscaleRequest) -> Any:
        return supervision.engine_run(image, req, session, None, cancel)

    def on_item(item: Any, rows: Any) -> None:
        done[0] += 1
        progress((done[0], total), desc=f"{item.name}: {rows[0].status}", unit="images")

    progress((0, total), desc="batch", unit="images")
    job = BatchJob(source=source, output=folder / "out", request=request)
    if session:  # the whole batch, also between images: Cancel (or closing the page) reaches it
        supervision.CANCELS.add(session, cancel)
    try:
        summary = run_batch(job, supervision.get_engine().config, run=run, on_item=on_item, bars=False)
    finally:
        if session:
            supervision.CANCELS.discard(session, cancel)
    return zip_folder(job.output, folder / "upscale-lab-batch.zip"), summary


async def run_batch_event(request: gr.Request, progress: Any = gr.Progress(), *values: Any) -> tuple[Any, ...]:
    """The Run batch button: the tab's fields, then the form's."""
    tab_values, form = tuple(values[:6]), UIInput.of(*values[6:])
    cancel = threading.Event()
    session = getattr(request, "session_hash", None)
    try:
        archive, summary = await supervision.run_cancellable(
            cancel, run_files, tab_values, form, session, progress, cancel
        )
    except LabError as exc:
        raise user_error(exc) from exc
    failed = summary.inputs_with("failed")
    note = f"{len(summary.statuses())} images: {len(summary.inputs_with('ok'))} ok, {len(failed)} failed"
    note += f" ({', '.join(failed)}: see the summary)" if failed else ""
    note += f". The zip holds the results and `{SUMMARY_CSV}`."
    return archive, summary_rows(summary), note


def wire_batch_tab(tab: BatchTab, form: list[Any]) -> None:
    """The Run batch button (the form's fields after the tab's; one run at a time with the rest)."""
    assert len(form) == len(FORM_FIELDS)
    tab.run_btn.click(
        run_batch_event,
        inputs=[*tab.inputs, *form],
        outputs=[tab.archive, tab.summary, tab.note],
        api_visibility="private",
        concurrency_limit=1,
        concurrency_id="gpu",
    )
