"""Tiling as pure functions: spelled-out coordinates and smooth blending weights.

Two schemes:
- *crop tiling* (the ×4 upscaler): non-overlapping core tiles, each run with ``pad`` pixels
  of context that are cropped away afterwards. Exact (tiled equals untiled) for any model
  whose receptive field is within ``pad``.
- *blended tiling* (diffusion latents): overlapping windows whose outputs are averaged with
  a raised-cosine weight, so neighbouring tiles fade into each other without seams.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

import torch


def tile_starts(length: int, tile: int, overlap: int = 0) -> list[int]:
    """Start offsets of windows of size ``min(tile, length)`` covering ``[0, length)``.

    Consecutive windows share at least ``overlap`` elements; the last window is moved back
    so it ends exactly at ``length`` (all windows have the same size).
    """
    if length < 1 or tile < 1:
        raise ValueError(f"length and tile must be >= 1, got {length}, {tile}")
    if not 0 <= overlap < tile:
        raise ValueError(f"overlap must be in [0, tile), got {overlap}")
    size = min(tile, length)
    if size == length:
        return [0]
    stride = tile - overlap
    n = math.ceil((length - size) / stride) + 1
    starts = [min(i * stride, length - size) for i in range(n)]
    return sorted(set(starts))


@dataclass(frozen=True)
class CropTile:
    """Core box (written to the output) and context box (fed to the model), input pixels,
    as (top, left, bottom, right)."""

    core: tuple[int, int, int, int]
    context: tuple[int, int, int, int]

    @property
    def context_shape(self) -> tuple[int, int]:
        return (self.context[2] - self.context[0], self.context[3] - self.context[1])


def crop_tiles(height: int, width: int, tile: int, pad: int) -> list[CropTile]:
    """Non-overlapping core tiles of at most ``tile`` px, each with ``pad`` px of context
    (clipped at the image border)."""
    out = []
    for top in range(0, height, tile):
        for left in range(0, width, tile):
            bottom, right = min(top + tile, height), min(left + tile, width)
            ctx = (max(0, top - pad), max(0, left - pad), min(height, bottom + pad), min(width, right + pad))
            out.append(CropTile(core=(top, left, bottom, right), context=ctx))
    return out


def run_crop_tiled(
    fn: Callable[[torch.Tensor], torch.Tensor],
    x: torch.Tensor,
    *,
    scale: int,
    tile: int,
    pad: int,
    batch_size: int = 4,
    on_batch: Callable[[int, int], None] | None = None,
) -> torch.Tensor:
    """Apply a ×``scale`` model ``fn`` to ``x`` ``(1, C, H, W)`` tile by tile.

    Tiles with the same context shape are batched (up to ``batch_size``). Returns
    ``(1, C', H·scale, W·scale)`` on ``x``'s device. ``on_batch(done, total)`` reports tiles.
    """
    _, _, h, w = x.shape
    tiles = crop_tiles(h, w, tile, pad)
    groups: dict[tuple[int, int], list[CropTile]] = {}
    for t in tiles:
        groups.setdefault(t.context_shape, []).append(t)
    out: torch.Tensor | None = None
    done = 0
    for group in groups.values():
        for i in range(0, len(group), batch_size):
            chunk = group[i : i + batch_size]
            batch = torch.cat([x[:, :, t.context[0] : t.context[2], t.context[1] : t.context[3]] for t in chunk])
            y = fn(batch)
            if out is None:
                out = torch.zeros((1, y.shape[1], h * scale, w * scale), dtype=y.dtype, device=y.device)
            for j, t in enumerate(chunk):
                ct, cl, cb, cr = t.core
                oy, ox = (ct - t.context[0]) * scale, (cl - t.context[1]) * scale
                out[0, :, ct * scale : cb * scale, cl * scale : cr * scale] = y[
                    j, :, oy : oy + (cb - ct) * scale, ox : ox + (cr - cl) * scale
                ]
            done += len(chunk)
            if on_batch is not None:
                on_batch(done, len(tiles))
    assert out is not None  # at least one tile always exists for h, w >= 1
    return out


def blend_tiles(height: int, width: int, tile: int, overlap: int) -> list[tuple[int, int, int, int]]:
    """Overlapping windows (top, left, bottom, right), all of the same size, covering the map."""
    return [
        (top, left, top + min(tile, height), left + min(tile, width))
        for top in tile_starts(height, tile, overlap)
        for left in tile_starts(width, tile, overlap)
    ]


def tile_boundaries(
    size: tuple[int, int], *, tile: int, overlap: int = 0, factor: float = 1.0
) -> tuple[tuple[int, ...], tuple[int, ...]]:
    """Where tiles start in an image of ``size`` (width, height) pixels, as the seam score takes
    them (columns, rows; the image edges excluded): tiles of ``tile`` with ``overlap`` laid out
    on a map ``factor`` times smaller than the image (a latent map: 8; the ×4 network's input:
    the output/input ratio, may be fractional). Empty when one tile covers a side."""

    def starts(length: int) -> tuple[int, ...]:
        on_map = tile_starts(max(1, math.ceil(length / factor)), tile, overlap)
        return tuple(sorted({b for b in (round(s * factor) for s in on_map) if 0 < b < length}))

    return starts(size[0]), starts(size[1])


def _ramp(n: int, overlap: int) -> torch.Tensor:
    """1 in the middle, a raised-cosine fade over ``overlap`` at both ends, never 0."""
    r = torch.ones(n, dtype=torch.float32)
    k = min(overlap, n // 2)
    if k > 0:
        i = torch.arange(k, dtype=torch.float32)
        fade = torch.sin(0.5 * math.pi * (i + 0.5) / k) ** 2
        r[:k] = fade
        r[n - k :] = fade.flip(0)
    return r


def blend_weight(tile_h: int, tile_w: int, overlap: int) -> torch.Tensor:
    """Separable raised-cosine weight ``(tile_h, tile_w)``, strictly positive."""
    return _ramp(tile_h, overlap)[:, None] * _ramp(tile_w, overlap)[None, :]
