"""Upscaling whole folders (``cli.py batch IN -o OUT``): every image under ``IN`` (subfolders
included), each level's file under ``OUT`` at the same relative path, a summary CSV.

- **Inputs**: files whose suffix is one the lab reads (:func:`image_suffixes`), found by
  walking ``IN`` in sorted order; hidden files and folders (``.name``) and ``OUT`` itself
  (when it lies inside ``IN``) are left out. A file that does not decode is a failed row, not
  the end of the batch.
- **Outputs** (:func:`output_name`): ``sub/name.png`` for one level; ``sub/name_L5.png``
  (one file per level) for several. Two inputs of one folder sharing a stem (``a.jpg``,
  ``a.png``) keep their suffix in the name (``a.jpg.png``, ``a.png.png``).
- **Resume**: every file is written atomically (a temporary name, then a rename), so an output
  that exists is complete; an input whose outputs all exist is ``skipped``, one with some
  levels written runs only the others. A request differing from the one ``OUT`` was begun
  with is refused (:func:`check_request`), so a resumed folder never mixes two requests.
- **Summary** ``OUT/batch.csv`` (:data:`CSV_COLUMNS`): one row per input × level, status
  ``ok`` / ``skipped`` / ``failed``, the error, the output path, the input's seconds, the seed
  and the engine's scores of the level (``LEVEL_METRICS``). Skipped rows carry the scores of
  the run that made them (``OUT/.batch/records/``, one JSON per input, written as it is done).
- **Sharding**: under ``torchrun`` / ``accelerate launch`` (``WORLD_SIZE`` > 1) accelerate's
  ``PartialState`` splits the sorted input list; each process writes its rows to
  ``OUT/.batch/part-RANK.json`` and, after ``wait_for_everyone``, the main process merges them.
"""

from __future__ import annotations

import csv
import io
import json
import logging
import os
import sys
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

from PIL import Image

import presets
from pipelines.engine import Engine, EngineConfig, LevelResult, RunResult
from pipelines.errors import Cancelled, LabError
from pipelines.imaging import ACCEPTED_FORMATS, LoadedImage, load_image
from pipelines.metrics import LEVEL_METRICS
from pipelines.output import EXTENSIONS, encode_level
from pipelines.processes import distributed, my_share
from pipelines.report import atomic_write
from pipelines.request import UpscaleRequest

log = logging.getLogger(__name__)

SUMMARY_CSV = "batch.csv"
STATE_DIR = ".batch"  # under OUT: the request, per-input records, per-process parts
HEIF_SUFFIXES = frozenset({".heic", ".heif"})  # read by pillow-heif, registered on first use
STATUSES = ("ok", "skipped", "failed")
Runner = Callable[[LoadedImage, UpscaleRequest], RunResult]
CSV_COLUMNS = ("input", "level", "status", "output", "seconds", "seed", "error", *(m.key for m in LEVEL_METRICS))
EXIT_OK, EXIT_SOME_FAILED = 0, 1  # nothing ran at all (bad request, no images): LabError, the CLI's 2


def image_suffixes() -> frozenset[str]:
    """The file suffixes (lower case, with the dot) of the formats the lab reads
    (``pipelines.imaging.ACCEPTED_FORMATS``), as Pillow registers them, and HEIC/HEIF."""
    Image.init()
    known = Image.registered_extensions()
    return frozenset(ext for ext, fmt in known.items() if fmt in ACCEPTED_FORMATS) | HEIF_SUFFIXES


@dataclass(frozen=True)
class BatchJob:
    """A folder to upscale: the images under ``source``, their files under ``output``, each run
    as ``request`` says (its levels and output format)."""

    source: Path
    output: Path
    request: UpscaleRequest

    @property
    def levels(self) -> tuple[int, ...]:
        """The levels each image gets a file of: the request's, and its custom level (the
        engine adds it beside them, numbered one past the table's)."""
        custom = () if self.request.custom is None else (presets.custom_number(self.request.table),)
        return (*self.request.effective_levels, *custom)

    @property
    def state_dir(self) -> Path:
        return self.output / STATE_DIR


@dataclass(frozen=True)
class Item:
    """One input: its path ``relative`` to the job's source folder, and the file each level
    goes to, relative to the job's output folder."""

    relative: Path
    outputs: Mapping[int, Path]

    @property
    def name(self) -> str:
        return self.relative.as_posix()


@dataclass(frozen=True)
class Row:
    """One CSV row: an input × level. ``metrics`` holds the scores as the lab formats them
    (``Metric.format``); ``seconds`` is the whole input's (load, run, encode, write)."""

    input: str
    level: int
    status: str
    output: str = ""
    seconds: float | None = None
    seed: int | None = None
    error: str = ""
    metrics: Mapping[str, str] = field(default_factory=dict)

    def to_csv(self) -> dict[str, str]:
        cells = {"input": self.input, "level": str(self.level), "status": self.status, "output": self.output}
        cells["seconds"] = "" if self.seconds is None else f"{self.seconds:.3f}"
        cells["seed"] = "" if self.seed is None else str(self.seed)
        cells["error"] = self.error
        return {**cells, **{m.key: self.metrics.get(m.key, "") for m in LEVEL_METRICS}}

    def to_json(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> Row:
        return cls(**{**data, "metrics": dict(data.get("metrics") or {})})


@dataclass(frozen=True)
class BatchSummary:
    """What a batch did: ``rows`` (every input × level, sorted), the CSV written (None on a
    process other than the main one), and the counts of inputs per status."""

    rows: list[Row]
    csv_path: Path | None
    main: bool = True  # False: a process under torchrun other than the main one (its share only)

    def statuses(self) -> dict[str, str]:
        """Each input's status: ``failed`` when a level failed, else ``ok`` when a level ran,
        else ``skipped``."""
        rank = {"skipped": 0, "ok": 1, "failed": 2}
        out: dict[str, str] = {}
        for r in self.rows:
            out[r.input] = max(out.get(r.input, r.status), r.status, key=rank.__getitem__)
        return out

    def inputs_with(self, status: str) -> list[str]:
        return sorted(name for name, s in self.statuses().items() if s == status)

    @property
    def exit_code(self) -> int:
        """:data:`EXIT_SOME_FAILED` when a row failed, else :data:`EXIT_OK`; always EXIT_OK on a
        process other than the main one, which reports for all (torchrun stops every process
        as soon as one exits non-zero)."""
        return EXIT_SOME_FAILED if self.main and self.inputs_with("failed") else EXIT_OK

    def text(self) -> str:
        counts = ", ".join(f"{len(self.inputs_with(s))} {s}" for s in STATUSES)
        where = f"; summary {self.csv_path}" if self.csv_path else "" if self.main else " (this process's share)"
        return f"{len(self.statuses())} images: {counts}{where}"


# --------------------------------------------------------------------------- the inputs


def list_inputs(source: Path, output: Path) -> list[Path]:
    """The image files under ``source`` (relative paths, sorted), subfolders included; hidden
    files and folders and ``output`` (when inside ``source``) left out. Raises LabError when
    ``source`` is not a folder or holds no image."""
    if not source.is_dir():
        raise LabError(f"{source} is not a folder")
    suffixes, skip = image_suffixes(), output.resolve()
    found: list[Path] = []
    for folder, dirs, files in os.walk(source):
        here = Path(folder)
        dirs[:] = sorted(d for d in dirs if not d.startswith(".") and (here / d).resolve() != skip)
        found += [(here / f).relative_to(source) for f in files if not f.startswith(".") and _suffix(f) in suffixes]
    if not found:
        raise LabError(f"no images under {source} (suffixes {', '.join(sorted(suffixes))})")
    return sorted(found, key=lambda p: p.as_posix())


def _suffix(name: str) -> str:
    return Path(name).suffix.lower()


def output_name(relative: Path, level: int, *, levels: Sequence[int], fmt: str, keep_suffix: bool = False) -> Path:
    """Where ``level`` of the input ``relative`` goes: its folder and stem (its full name
    with ``keep_suffix``), ``_L{level}`` when ``levels`` holds several, the format's extension."""
    stem = relative.name if keep_suffix else relative.stem
    tag = f"_L{level}" if len(levels) > 1 else ""
    return relative.parent / f"{stem}{tag}{EXTENSIONS[fmt]}"


def plan_items(inputs: Sequence[Path], job: BatchJob) -> list[Item]:
    """Each input with its output files (:func:`output_name`); inputs of one folder sharing a
    stem keep their suffix in the name, so no two inputs write the same file."""
    stems: dict[Path, int] = {}
    for p in inputs:
        stems[p.with_suffix("")] = stems.get(p.with_suffix(""), 0) + 1
    fmt = job.request.output.format
    return [
        Item(
            relative=p,
            outputs={
                n: output_name(p, n, levels=job.levels, fmt=fmt, keep_suffix=stems[p.with_suffix("")] > 1)
                for n in job.levels
            },
        )
        for p in inputs
    ]


def check_request(job: BatchJob) -> None:
    """Record ``job``'s request in ``OUT/.batch/request.json``, or check that a folder being
    resumed was begun with the same one. Raises LabError naming the fields that differ."""
    path = job.state_dir / "request.json"
    current: dict[str, Any] = {"levels": list(job.levels), **job.request.to_json()}
    if path.exists():
        try:
            earlier = json.loads(path.read_text())
        except (OSError, ValueError) as exc:
            raise LabError(f"cannot read {path}: {exc}") from exc
        differ = sorted(k for k in {*current, *earlier} if current.get(k) != earlier.get(k))
        if differ:
            raise LabError(
                f"{job.output} holds a batch begun with another request (differs in: {', '.join(differ)}); "
                "resume it with the same flags, or write to another folder"
            )
        return
    atomic_write(path, json.dumps(current, indent=2).encode())


# --------------------------------------------------------------------------- one input


def record_path(job: BatchJob, item: Item) -> Path:
    return job.state_dir / "records" / f"{item.name}.json"


def earlier_rows(job: BatchJob, item: Item) -> dict[int, Row]:
    """The rows the run that made ``item``'s files recorded, by level (none when the record
    is absent or unreadable: a run killed between the file and its record)."""
    try:
        data = json.loads(record_path(job, item).read_text())
        return {int(r["level"]): Row.from_json(r) for r in data["rows"]}
    except (OSError, ValueError, KeyError, TypeError):
        return {}


def describe(exc: Exception) -> str:
    """An error as a CSV cell: our errors' messages as they are, others with their type."""
    text = " ".join(str(exc).split())
    return text if isinstance(exc, LabError) else f"{type(exc).__name__}: {text}"


def write_level(
    job: BatchJob, item: Item, result: RunResult, request: UpscaleRequest, image: LoadedImage, lv: LevelResult
) -> Row:
    """Encode ``lv`` as ``request`` says and write it atomically to its file: an ``ok`` row
    with its scores, or a ``failed`` row saying why (the level did not run, no quality meets
    ``max_file_size``, the file cannot be written)."""
    base = Row(input=item.name, level=lv.level, status="failed", seed=result.seed)
    if lv.image is None:
        return replace(base, error=f"level {lv.level} {lv.status}: {' '.join((lv.message or '').split())}")
    try:
        encoded = encode_level(result, lv, request, source=image)
        atomic_write(job.output / item.outputs[lv.level], encoded.data)
    except LabError as exc:
        return replace(base, error=describe(exc))
    metrics = {m.key: m.format(lv.metrics.get(m.key)) for m in LEVEL_METRICS}
    return replace(base, status="ok", output=item.outputs[lv.level].as_posix(), metrics=metrics)


def request_for(job: BatchJob, todo: Sequence[int]) -> UpscaleRequest:
    """``job``'s request narrowed to the levels ``todo`` (the others' files were written
    before): its table's levels as ``levels``, the custom level kept only when in ``todo``."""
    if tuple(todo) == job.levels:
        return job.request
    custom = presets.custom_number(job.request.table)
    levels = tuple(n for n in todo if n != custom) or None
    return replace(job.request, levels=levels, custom=job.request.custom if custom in todo else None)


def process_item(run: Runner, job: BatchJob, item: Item, todo: Sequence[int]) -> dict[int, Row]:
    """Run the levels ``todo`` of ``item`` and write their files: a row per level. Whatever
    goes wrong with this input (it does not decode, a size the engine refuses, an unexpected
    error) becomes its rows' error; the batch goes on."""
    t0 = time.perf_counter()
    request = request_for(job, todo)
    try:
        image = load_image(job.source / item.relative)  # a path, never a URL
        result = run(image, request)
        rows = {lv.level: write_level(job, item, result, request, image, lv) for lv in result.levels}
    except Cancelled:  # the batch was stopped (the lab's Cancel): not this input's fault
        raise
    except Exception as exc:  # one bad input must not end a batch: reported in its rows and on stderr
        if not isinstance(exc, LabError):
            log.warning("%s: unexpected error", item.name, exc_info=True)
        rows = {n: Row(input=item.name, level=n, status="failed", error=describe(exc)) for n in todo}
    seconds = time.perf_counter() - t0
    absent = Row(input=item.name, level=0, status="failed", error="the engine gave no result for this level")
    return {n: replace(rows.get(n, absent), level=n, seconds=seconds) for n in todo}


def run_item(run: Runner, job: BatchJob, item: Item) -> tuple[list[Row], bool]:
    """``item``'s rows in level order, and whether anything ran: levels whose file exists are
    ``skipped`` (with the scores recorded when they were made), the others run and are
    recorded (``OUT/.batch/records/``) once their files are written."""
    done = [n for n in job.levels if (job.output / item.outputs[n]).exists()]
    earlier = earlier_rows(job, item)
    made = {
        n: earlier.get(n, Row(input=item.name, level=n, status="ok", output=item.outputs[n].as_posix())) for n in done
    }
    todo = [n for n in job.levels if n not in done]
    if not todo:
        return [replace(made[n], status="skipped") for n in job.levels], False
    fresh = process_item(run, job, item, todo)
    record = {**made, **fresh}
    rows = [record[n] for n in job.levels]
    atomic_write(record_path(job, item), json.dumps({"rows": [r.to_json() for r in rows]}).encode())
    return [replace(r, status="skipped") if r.level in done else r for r in rows], True


# --------------------------------------------------------------------------- progress


class Progress:
    """Images done, on stderr: a tqdm bar with an ETA on a terminal; where stderr is a file or a
    pipe, one plain line per image (with its own ETA). Errors are printed beside either."""

    def __init__(self, total: int, desc: str, *, bars: bool | None = None) -> None:
        from tqdm import tqdm

        self.total, self.desc, self.count, self.started = total, desc, 0, time.perf_counter()
        self.bars = sys.stderr.isatty() if bars is None else bars
        self.bar = tqdm(total=total, desc=desc, unit="image", disable=not self.bars, file=sys.stderr)

    def write(self, line: str) -> None:
        self.bar.write(line, file=sys.stderr)

    def done(self, item: Item, rows: Sequence[Row]) -> None:
        self.count += 1
        self.bar.update(1)
        failed = [r for r in rows if r.status == "failed"]
        if failed and len({r.error for r in failed}) == 1 and len(failed) == len(rows):
            self.write(f"error: {item.name}: {failed[0].error}")  # the input as a whole
        else:
            for r in failed:
                self.write(f"error: {item.name} level {r.level}: {r.error}")
        if not self.bars:
            elapsed = time.perf_counter() - self.started
            eta = elapsed / self.count * (self.total - self.count)
            status = "failed" if failed else "ok"
            self.write(
                f"{self.desc}: {self.count}/{self.total} {item.name} {status} ({rows[0].seconds or 0:.1f} s, eta {eta:.0f} s)"
            )

    def close(self) -> None:
        self.bar.close()


# --------------------------------------------------------------------------- processes


def rank_config(config: EngineConfig, state: Any) -> EngineConfig:
    """``config`` for this process: with no device chosen and several CUDA devices, the
    process's own one (``cuda:LOCAL_RANK``), so processes do not share a GPU."""
    import torch

    if state is None or config.device is not None or torch.cuda.device_count() < 2:
        return config
    return replace(config, device=f"cuda:{state.local_process_index % torch.cuda.device_count()}")


def merged_rows(job: BatchJob, rows: list[Row], state: Any) -> list[Row] | None:
    """Every process's rows on the main process (None on the others): each writes its part,
    all wait, the main one reads the parts and removes them."""
    if state is None:
        return rows
    part = job.state_dir / f"part-{state.process_index}.json"
    atomic_write(part, json.dumps([r.to_json() for r in rows]).encode())
    state.wait_for_everyone()
    if not state.is_main_process:
        return None
    parts = [job.state_dir / f"part-{rank}.json" for rank in range(state.num_processes)]
    everyone = [Row.from_json(r) for p in parts for r in json.loads(p.read_text())]
    for p in parts:
        p.unlink()
    return everyone


def summary_csv(rows: Iterable[Row]) -> str:
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=list(CSV_COLUMNS), lineterminator="\n")
    writer.writeheader()
    writer.writerows(r.to_csv() for r in rows)
    return buf.getvalue()


# --------------------------------------------------------------------------- the batch


def run_batch(
    job: BatchJob,
    config: EngineConfig,
    *,
    on_item: Callable[[Item, list[Row]], None] | None = None,
    bars: bool | None = None,
    run: Runner | None = None,
) -> BatchSummary:
    """Upscale every image under ``job.source`` not done yet (this process's share under
    torchrun), then write ``OUT/batch.csv`` listing every input (on the main process).
    ``on_item`` is called after each input that ran. Raises LabError when nothing can run:
    no images, an unwritable ``OUT``, a folder begun with another request. ``run``: how an
    image is run (the lab's engine with its cancel and time limit); by default an engine of
    ``config`` (on this process's device under torchrun). Cancelled ends the batch."""
    state = distributed()
    items = plan_items(list_inputs(job.source, job.output), job)
    check_request(job)
    mine = my_share(items, state)
    rank = f" (rank {state.process_index}/{state.num_processes})" if state is not None else ""
    pending = [it for it in mine if not all((job.output / p).exists() for p in it.outputs.values())]
    run = run or Engine(rank_config(config, state)).run
    progress = Progress(len(pending), f"batch{rank}", bars=bars)
    if len(pending) < len(mine):
        progress.write(f"resuming{rank}: {len(mine) - len(pending)} of {len(mine)} images already done")
    rows: list[Row] = []
    try:
        for item in mine:
            item_rows, ran = run_item(run, job, item)
            rows += item_rows
            if ran:
                progress.done(item, item_rows)
                if on_item is not None:
                    on_item(item, item_rows)
    finally:
        progress.close()
    everyone = merged_rows(job, rows, state)
    if everyone is None:
        summary = BatchSummary(rows=rows, csv_path=None, main=False)
    else:
        everyone.sort(key=lambda r: (r.input, r.level))
        summary = BatchSummary(rows=everyone, csv_path=job.output / SUMMARY_CSV)
        atomic_write(job.output / SUMMARY_CSV, summary_csv(everyone).encode())
    if state is not None:  # the others wait for the summary: torchrun stops all when one exits non-zero
        state.wait_for_everyone()
    return summary
