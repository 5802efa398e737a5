"""The form on the left: its fields in one order (the layout's inputs and the handlers'
values follow it), frozen into a request and an image on the first line of each handler."""

from __future__ import annotations

import dataclasses
import logging
import os
import shutil
import tempfile
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import gradio as gr

import presets
from lab import supervision
from pipelines.engine import LevelResult, RunResult
from pipelines.errors import LabError, RequestError
from pipelines.fetch import FetchPolicy
from pipelines.imaging import LoadedImage, load_image
from pipelines.request import CustomRecipe, RequestFields, draw_seed

MAX_UPLOAD = f"{presets.MAX_UPLOAD_BYTES // (1024 * 1024)}mb"
log = logging.getLogger("upscale-lab.app")


def user_error(message: object) -> gr.Error:
    """Our error as the message a person sees (gradio's toast), logged as one line instead of
    a traceback: a user's mistake is not a server fault."""
    log.info("refused: %s", message)
    return gr.Error(str(message), print_exception=False)


@dataclass(frozen=True)
class UIInput:
    """Everything the run buttons read; the field order is the order of the form's components
    (``Layout.form``) and of the ``/grid`` API's parameters."""

    image: Any
    url: str
    width: str
    height: str
    fit: str
    padding: str
    prompt: str
    negative_prompt: str
    seed: float | None
    random_seed: bool

    @classmethod
    def of(cls, *values: Any) -> UIInput:
        """From the raw component values in form order (None for empty text boxes)."""
        names = [f.name for f in dataclasses.fields(cls)]
        if len(values) != len(names):
            raise TypeError(f"the form has {len(names)} fields ({', '.join(names)}), got {len(values)} values")
        raw = dict(zip(names, values, strict=True))
        text = {k: raw[k] or "" for k in ("url", "width", "height", "padding", "prompt", "negative_prompt")}
        return cls(
            image=raw["image"],
            fit=raw["fit"] or "canvas",
            seed=raw["seed"],
            random_seed=bool(raw["random_seed"]),
            **text,
        )

    def run(
        self,
        fields: RequestFields,
        request: gr.Request | None,
        progress: Any,
        cancel: threading.Event | None = None,
        on_level: Callable[[LevelResult], None] | None = None,
        on_estimate: Callable[[float | None], None] | None = None,
    ) -> RunResult:
        """Build the request from ``fields`` (see :meth:`fields`), load the image, estimate
        its time on this device, run the engine (the progress bar follows the estimate when
        there is one); our errors become gr.Error."""
        engine = supervision.get_engine()
        try:
            req = fields.build(table=engine.config.table)  # its levels: before the image loads
            loaded = self.load()
            estimate = request_estimate(engine, loaded, req)
            if on_estimate is not None:
                on_estimate(estimate)
            session = getattr(request, "session_hash", None)
            report = gradio_progress(progress, estimate)
            return supervision.engine_run(loaded, req, session, report, cancel, on_level)
        except LabError as exc:
            raise user_error(exc) from exc

    def fields(
        self,
        *,
        upscale_strength: int | None = None,
        generative_upscale: bool | None = None,
        levels: tuple[int, ...] | None = None,
        custom: CustomRecipe | None = None,
        fast: bool = False,
    ) -> RequestFields:
        """The form as request fields, plus what the button adds (``custom``: the Advanced
        panel's recipe; ``fast``: its fast-mode box). A blank negative prompt box means the preset list (its placeholder);
        the random-seed box draws the seed here."""
        return RequestFields(
            width=self.width,
            height=self.height,
            padding=self.padding,
            fit=self.fit,
            prompt=self.prompt,
            negative_prompt=self.negative_prompt if self.negative_prompt.strip() else None,
            seed=draw_seed() if self.random_seed or self.seed is None else self.seed,
            upscale_strength=upscale_strength,
            generative_upscale=generative_upscale,
            levels=levels,
            custom=custom,
            fast=fast or None,
        )

    def load(self) -> LoadedImage:
        """The image from the upload (size-checked) or the URL (through the guarded fetcher)."""
        if self.image is not None:
            path = Path(self.image)
            if path.stat().st_size > presets.MAX_UPLOAD_BYTES:
                raise LabError(f"upload is {path.stat().st_size / 1e6:.1f} MB; the limit is {MAX_UPLOAD}")
            return load_image(path)
        if self.url.strip():
            return supervision.get_engine().load(self.url.strip(), policy=fetch_policy())
        raise LabError("upload an image, paste an image URL, or pick an example")


FORM_FIELDS = tuple(f.name for f in dataclasses.fields(UIInput))


def request_estimate(engine: Any, image: LoadedImage, request: Any) -> float | None:
    """The engine's estimate for ``request`` on ``image``: a preview's is its box's."""
    jpeg = image.jpeg_quality is not None
    if request.region is None:
        return engine.estimate_seconds(image.size, request, jpeg=jpeg)  # type: ignore[no-any-return]
    from pipelines.region import region_request

    box = request.region
    return engine.estimate_seconds((box.width, box.height), region_request(request, image.size, box), jpeg=jpeg)  # type: ignore[no-any-return]


@dataclass(frozen=True)
class CustomInput:
    """The Advanced panel: whether the run buttons add the custom level (``enabled``), the
    level its settings start from, its base path and its settings (``presets.CUSTOM_FIELDS``,
    by name), and ``fast``: the diffusion levels in the fast mode (the request's ``fast``). The
    field order is the panel's components' (``Layout.custom``) and that of the parameters that
    follow the form's in the ``/grid`` and ``/upscale`` API (``fast`` last: a caller that
    leaves it out runs the normal mode)."""

    enabled: bool
    start_from: int | None
    base_path: str | None
    lora_scale: float | None
    creativity: float | None
    resemblance: float | None
    guidance: float | None
    steps: float | None
    tile_size: float | None
    tile_overlap: float | None
    fast: bool = False

    @classmethod
    def of(cls, *values: Any) -> CustomInput:
        """From the raw component values in panel order; none at all (an API caller that left
        them out): the panel off; all but ``fast``: the normal mode."""
        names = [f.name for f in dataclasses.fields(cls)]
        if not values:
            blank: dict[str, Any] = dict.fromkeys(names[1:-1])
            return cls(enabled=False, fast=False, **blank)
        if len(values) not in (len(names), len(names) - 1):
            raise TypeError(f"the Advanced panel has {len(names)} fields ({', '.join(names)}), got {len(values)}")
        raw = dict(zip(names, values, strict=False))
        raw["enabled"] = bool(raw["enabled"])
        raw["fast"] = bool(raw.get("fast", False))
        return cls(**raw)

    def recipe(self) -> CustomRecipe:
        """The panel's recipe (every setting as set; a blank one: ``start_from``'s). Raises
        gr.Error with the request's message (``custom.creativity: must be ... in 0.05..1``)."""
        given: dict[str, Any] = {"start_from": _whole(self.start_from), "base_path": self.base_path or None}
        for spec in presets.CUSTOM_FIELDS:
            value = getattr(self, spec.name)
            given[spec.name] = _whole(value) if spec.integer else value
        try:
            return CustomRecipe(**{k: v for k, v in given.items() if v is not None})
        except RequestError as exc:
            raise user_error(exc) from None


def _whole(value: Any) -> Any:
    """A slider's or a dropdown's whole float as an int (the recipe checks the rest)."""
    return int(value) if isinstance(value, float) and value.is_integer() else value


CUSTOM_INPUTS = tuple(f.name for f in dataclasses.fields(CustomInput))


def fetch_policy() -> FetchPolicy:
    """The URL guard; tests may widen it to their own loopback port via the environment."""
    port = os.environ.get("UPSCALE_LAB_TEST_LOOPBACK_PORT")
    if port:
        return FetchPolicy(allowed_ports=(80, 443, int(port)), loopback_ports=(int(port),))
    return FetchPolicy()


def gradio_progress(progress: gr.Progress | None, estimate: float | None = None) -> Callable[[str, int, int], None]:
    """The engine's progress as a gradio bar: with a time estimate the bar follows the clock
    against it (and says the time left), else each stage fills it."""
    start = time.monotonic()

    def report(stage: str, done: int, total: int) -> None:
        if progress is None:
            return
        if estimate:
            elapsed = time.monotonic() - start
            left = max(0.0, estimate - elapsed)
            progress(min(0.99, elapsed / estimate), desc=f"{stage} · about {left:.0f} s left of ~{estimate:.0f} s")
        else:
            progress((done, max(total, 1)), desc=stage, unit="steps")

    return report


def out_dir() -> Path:
    """A fresh folder for one run's downloads (the last 20 runs' folders are kept)."""
    base = Path(tempfile.gettempdir()) / "upscale-lab-runs"
    base.mkdir(exist_ok=True)
    runs = sorted(base.iterdir(), key=lambda p: p.stat().st_mtime)
    for old in runs[:-20]:
        shutil.rmtree(old, ignore_errors=True)
    return Path(tempfile.mkdtemp(dir=base))
