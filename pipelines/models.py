"""The diffusion parts: where they come from, whether they are here, fetching and loading.

One parts table (:data:`PARTS`) lists each part once — its id, the source field of
:class:`DiffusionModels` that names it, and the exact files it needs (``presets.MODELS``:
named as the hub repo holds them). Resolution, availability (``status``), ``download`` and
loading all read it; the Space's ``preload_from_hub`` is rendered from the same file lists
(``spaces_config``).

A source is a hub repo id (looked up in the local hub cache; fetched only by
:func:`download_models` or when the engine is told it may download) or a local folder/file.
"""

from __future__ import annotations

import logging
import os
import sys
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from types import MappingProxyType
from typing import Any

import torch

import presets
from pipelines.errors import ModelMissingError, WeightsError
from pipelines.refiner import LORA_ADAPTER, Refiner, refiner_from_parts

log = logging.getLogger(__name__)


def fetch_command() -> str:
    """The command that fetches the weights, as this checkout runs it from the current folder:
    ``.venv/bin/python cli.py download`` in the repo after ``scripts/setup.sh``."""
    cli = Path(__file__).resolve().parents[1] / "cli.py"

    def shown(path: Path) -> str:
        rel = os.path.relpath(path)
        return str(path) if rel.startswith("..") else rel

    return f"{shown(Path(sys.executable))} {shown(cli)} download"


FETCH_COMMAND = fetch_command()


@dataclass(frozen=True)
class DiffusionModels:
    """Where the diffusion parts come from: a hub repo id or a local folder/file (the fast
    mode's LCM-LoRA too, needed only by a fast request)."""

    sd15: str = presets.MODELS["sd15"].repo
    controlnet: str = presets.MODELS["controlnet_tile"].repo
    lora: str = presets.MODELS["detail_lora"].repo
    lora_file: str | None = presets.MODELS["detail_lora"].file
    fast_lora: str = presets.MODELS["fast_lora"].repo
    fast_lora_file: str | None = presets.MODELS["fast_lora"].file

    def source(self, model_id: str) -> str:
        return str(getattr(self, PARTS[model_id].field))

    def file(self, model_id: str) -> str | None:
        """The single file to load inside the source (a LoRA), None for a folder model."""
        part = PARTS[model_id]
        return getattr(self, part.file_field) if part.single_file and part.file_field else None

    def describe(self) -> dict[str, dict[str, str | None]]:
        """Per part: source, pinned revision, the commit found in the hub cache, and the file."""
        out: dict[str, dict[str, str | None]] = {}
        for mid in PARTS:
            src = self.source(mid)
            local = Path(src).exists()
            out[mid] = {
                "source": src,
                "revision": None if local else presets.MODELS[mid].revision,
                "commit": None if local else cached_commit(mid, self),
                "file": self.file(mid),
            }
        return out


@dataclass(frozen=True)
class Part:
    """One diffusion part: its id in ``presets.MODELS``, the DiffusionModels field naming its
    source, whether it is a single file (resolved to the file; ``file_field`` names the file)
    or a folder, and whether it is ``optional`` (``presets.OPTIONAL_MODEL_IDS``: loaded only
    when a request needs it, never required for the normal levels)."""

    id: str
    field: str
    single_file: bool = False
    file_field: str | None = None
    optional: bool = False

    @property
    def spec(self) -> presets.ModelSpec:
        return presets.MODELS[self.id]


PARTS: Mapping[str, Part] = MappingProxyType(
    {
        p.id: p
        for p in (
            Part("sd15", "sd15"),
            Part("controlnet_tile", "controlnet"),
            Part("detail_lora", "lora", single_file=True, file_field="lora_file"),
            Part("fast_lora", "fast_lora", single_file=True, file_field="fast_lora_file", optional=True),
        )
    }
)
if tuple(PARTS) != presets.DIFFUSION_MODEL_IDS:
    raise ValueError(f"PARTS {tuple(PARTS)} must list presets.DIFFUSION_MODEL_IDS {presets.DIFFUSION_MODEL_IDS}")
if tuple(p.id for p in PARTS.values() if p.optional) != presets.OPTIONAL_MODEL_IDS:
    raise ValueError(f"PARTS' optional parts must be presets.OPTIONAL_MODEL_IDS {presets.OPTIONAL_MODEL_IDS}")


def hub_offline() -> bool:
    return os.environ.get("HF_HUB_OFFLINE", "0").lower() in ("1", "true", "yes", "on")


def is_hub_id(source: str) -> bool:
    return not Path(source).exists() and not source.startswith((".", "/")) and source.count("/") == 1


def hub_files(model_id: str, models: DiffusionModels) -> tuple[str, ...]:
    """The files to fetch from the hub for this part (the LoRA: the one file asked for)."""
    part = PARTS[model_id]
    file = models.file(model_id)
    return (file,) if part.single_file and file else part.spec.files


def resolve(model_id: str, models: DiffusionModels, *, download: bool = False) -> Path:
    """Local path of a part: a local folder/file as given; a hub repo's snapshot folder (the
    file itself for a single-file part) from the hub cache, every needed file present.
    Downloads only when ``download`` is true and the hub is not offline.

    Raises ModelMissingError naming the part, the first missing file and the fetch command.
    """
    source, file = models.source(model_id), models.file(model_id)
    local = Path(source)
    if local.exists():
        return local / file if (file and local.is_dir()) else local
    if not is_hub_id(source):
        raise ModelMissingError(model_id, f"no such local path {source!r}", "give an existing folder")
    from huggingface_hub import hf_hub_download

    revision = PARTS[model_id].spec.revision
    only_local = not download or hub_offline()
    root: Path | None = None
    for name in hub_files(model_id, models):
        try:
            path = Path(hf_hub_download(source, name, revision=revision, local_files_only=only_local))
        except Exception as exc:  # the hub raises many types (offline, not cached, network, auth)
            why = f"{name} not in the local hub cache" + (" and HF_HUB_OFFLINE=1" if hub_offline() else "")
            if not only_local:
                why = f"download of {name} failed ({type(exc).__name__}: {str(exc).splitlines()[0][:160]})"
            if source != PARTS[model_id].spec.repo:  # "models/sd15": a hub repo, or a mistyped folder?
                why += f" (nor is there a local folder {str(local.resolve())!r})"
            raise ModelMissingError(model_id, f"{source}@{revision}: {why}", FETCH_COMMAND) from exc
        root = path.parents[len(Path(name).parts) - 1]
    assert root is not None  # every part lists at least one file (presets validates)
    return root / file if file else root


def cached_commit(model_id: str, models: DiffusionModels) -> str | None:
    """The commit hash of the hub-cache snapshot the part resolves to, None if not cached."""
    try:
        path = resolve(model_id, models)
    except ModelMissingError:
        return None
    snapshot = path.parent if PARTS[model_id].single_file else path
    return snapshot.name if snapshot.parent.name == "snapshots" else None


def check_available(models: DiffusionModels) -> dict[str, str | None]:
    """For each part: None if available locally, else the reason it is missing."""
    out: dict[str, str | None] = {}
    for mid in PARTS:
        try:
            resolve(mid, models)
            out[mid] = None
        except ModelMissingError as exc:
            out[mid] = str(exc)
    return out


# --------------------------------------------------------------------------- download


@dataclass(frozen=True)
class Fetched:
    """What :func:`download_models` got for one hub part."""

    model_id: str
    repo: str
    revision: str
    commit: str
    files: tuple[str, ...]
    bytes: int


DownloadReport = Callable[[str, int, int], None]  # (message, files done, files in all)


def _human(n: float) -> str:
    for unit in ("B", "KB", "MB", "GB"):
        if n < 1000 or unit == "GB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1000
    return f"{n:.1f} GB"


def download_models(models: DiffusionModels, *, report: DownloadReport | None = None) -> list[Fetched]:
    """Fetch exactly the files each hub part needs (``presets.MODELS[...].files``) at the
    pinned revision into the hub cache, reporting the total size first and then each file.
    Local sources are skipped. Returns what was fetched, with the commit hash the hub gave.

    Raises ModelMissingError when the hub is offline or unreachable, or a file is not in the
    repo (naming the files the repo does hold).
    """
    from huggingface_hub import HfApi, hf_hub_download

    def say(message: str, done: int = 0, count: int = 0) -> None:
        (report or (lambda m, _d, _c: log.info(m)))(message, done, count)

    if hub_offline():
        raise ModelMissingError(
            ", ".join(PARTS), "HF_HUB_OFFLINE=1 is set", f"unset HF_HUB_OFFLINE and run {FETCH_COMMAND}"
        )
    api = HfApi()
    plans: list[tuple[str, str, str, str, tuple[str, ...], dict[str, int]]] = []
    for mid in PARTS:
        source = models.source(mid)
        if not is_hub_id(source):
            say(f"{mid}: local {source}, nothing to fetch")
            continue
        revision = PARTS[mid].spec.revision
        files = hub_files(mid, models)
        try:
            info = api.model_info(source, revision=revision, files_metadata=True)
        except Exception as exc:
            raise ModelMissingError(
                mid,
                f"{source}@{revision}: cannot reach the hub ({type(exc).__name__}: {str(exc)[:160]})",
                FETCH_COMMAND,
            ) from exc
        sizes = {s.rfilename: int(s.size or 0) for s in info.siblings or []}
        absent = [f for f in files if f not in sizes]
        if absent:
            held = ", ".join(sorted(f for f in sizes if f.endswith((".safetensors", ".bin", ".json"))))
            raise ModelMissingError(
                mid, f"{source}@{revision} has no {', '.join(absent)} (it holds: {held})", "check presets.MODELS"
            )
        plans.append((mid, source, revision, str(info.sha), files, sizes))
    total = sum(sizes[f] for *_, files, sizes in plans for f in files)
    count = sum(len(files) for *_, files, _ in plans)
    say(f"{count} files, {_human(total)} in all", 0, count)
    fetched: list[Fetched] = []
    done = 0
    for mid, source, revision, commit, files, sizes in plans:
        got: set[str] = set()  # the commits the files came from (the snapshot folder's name)
        for name in files:
            done += 1
            say(f"[{done}/{count}] {source}/{name} ({_human(sizes[name])})", done - 1, count)
            try:
                path = Path(hf_hub_download(source, name, revision=revision))
            except Exception as exc:
                raise ModelMissingError(
                    mid, f"download of {source}/{name} failed ({type(exc).__name__}: {str(exc)[:160]})", FETCH_COMMAND
                ) from exc
            got.add(path.parents[len(Path(name).parts) - 1].name)
        if len(got) > 1:  # the branch moved while we fetched: the files are from different commits
            raise ModelMissingError(
                mid, f"{source}@{revision} changed during the download (commits {sorted(got)})", FETCH_COMMAND
            )
        commit = got.pop() if got else commit  # what was fetched, not what the listing said
        fetched.append(Fetched(mid, source, revision, commit, files, sum(sizes[f] for f in files)))
        say(f"{mid}: {source}@{commit}", done, count)
    return fetched


# --------------------------------------------------------------------------- loading


def _load(model_id: str, path: Path, fn: Callable[[], Any]) -> Any:
    """Run a loader; a corrupt or incomplete file becomes a WeightsError naming it and the fix."""
    try:
        return fn()
    except (OSError, ValueError, RuntimeError, KeyError) as exc:
        first = str(exc).splitlines()[0][:300] if str(exc) else type(exc).__name__
        raise WeightsError(
            f"{model_id}: cannot load {path} ({type(exc).__name__}: {first}). The file is corrupt, "
            f"incomplete, or not a {model_id} file: check the path given for it, or delete it (or its hub "
            f"cache folder) and run: {FETCH_COMMAND}"
        ) from exc
    except Exception as exc:  # safetensors' own error type (HeaderTooLarge, ...) is not an OSError
        if type(exc).__module__.startswith("safetensors"):
            raise WeightsError(
                f"{model_id}: {path} is not a valid safetensors file ({exc}); delete it and run: {FETCH_COMMAND}"
            ) from exc
        raise


def load_refiner(
    models: DiffusionModels, device: torch.device, dtype: torch.dtype, *, download: bool = False
) -> Refiner:
    """Load SD 1.5's parts, the tile ControlNet (``.safetensors`` or ``.bin``, whichever the
    folder holds) and the detail LoRA (adapter :data:`~pipelines.refiner.LORA_ADAPTER`, any
    format diffusers' ``load_lora_weights`` converts: diffusers/PEFT or Kohya/A1111) into a
    :class:`~pipelines.refiner.Refiner`.

    Raises ModelMissingError listing every part that is not available, WeightsError for a
    part that is there but does not load.
    """
    from diffusers import ControlNetModel, StableDiffusionPipeline
    from diffusers.utils import logging as diffusers_logging
    from transformers.utils import logging as transformers_logging

    diffusers_logging.set_verbosity_error()  # their load-time chatter is not our user's business
    diffusers_logging.disable_progress_bar()
    transformers_logging.disable_progress_bar()

    found: dict[str, Path] = {}
    missing: list[ModelMissingError] = []
    for mid in (m for m, part in PARTS.items() if not part.optional):  # the fast LoRA: load_fast_adapter
        try:
            found[mid] = resolve(mid, models, download=download)
        except ModelMissingError as exc:
            missing.append(exc)
    if missing:
        detail = "; ".join(e.detail for e in missing)
        raise ModelMissingError(", ".join(e.model_id for e in missing), detail, FETCH_COMMAND)
    sd_path, cn_path, lora_path = found["sd15"], found["controlnet_tile"], found["detail_lora"]
    # the hub repo holds a .bin only; a local folder may hold either (safetensors preferred)
    cn_safetensors = not cn_path.is_dir() or (cn_path / "diffusion_pytorch_model.safetensors").exists()
    controlnet = _load(
        "controlnet_tile",
        cn_path,
        lambda: ControlNetModel.from_pretrained(str(cn_path), dtype=dtype, use_safetensors=cn_safetensors),
    )
    pipe = _load(
        "sd15",
        sd_path,
        # loaded in fp32, cast afterwards by refiner_from_parts: the VAE must keep its fp32
        # weights (a bf16/fp16 load would round them, and casting back cannot undo that)
        lambda: StableDiffusionPipeline.from_pretrained(
            str(sd_path),
            dtype=torch.float32,
            safety_checker=None,
            feature_extractor=None,
            requires_safety_checker=False,
        ),
    )
    if lora_path.is_file():
        _load(
            "detail_lora",
            lora_path,
            lambda: pipe.load_lora_weights(
                str(lora_path.parent), weight_name=lora_path.name, adapter_name=LORA_ADAPTER
            ),
        )
    else:
        _load("detail_lora", lora_path, lambda: pipe.load_lora_weights(str(lora_path), adapter_name=LORA_ADAPTER))
    return refiner_from_parts(pipe, controlnet, device, dtype)


def load_fast_adapter(models: DiffusionModels, refiner: Refiner, *, download: bool = False) -> None:
    """Load the fast mode's LCM-LoRA (``presets.FAST_MODE.adapter``, any format diffusers'
    ``load_lora_weights`` converts) into ``refiner`` as its second adapter, once; until a fast
    pass asks for it, it stays inactive and the normal passes are untouched.

    Raises ModelMissingError naming the part and the fetch command when it is not here (the
    message says that only the fast mode needs it), WeightsError when it does not load.
    """
    mid = presets.FAST_MODE.adapter
    if refiner.fast_loaded:
        return
    try:
        path = resolve(mid, models, download=download)
    except ModelMissingError as exc:
        raise ModelMissingError(mid, f"{exc.detail} (only the fast mode needs it)", exc.fetch_command) from exc
    if path.is_dir():
        raise WeightsError(f"{mid}: {path} is a folder; give the LoRA file (or the folder with --fast-lora-file)")
    _load(mid, path, lambda: refiner.load_fast(path))
