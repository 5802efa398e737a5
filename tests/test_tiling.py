import torch
import torch.nn.functional as F

from pipelines.tiling import blend_tiles, blend_weight, crop_tiles, run_crop_tiled, tile_starts


def test_tile_starts_cover_and_same_size():
    for length, tile, overlap in [(100, 32, 8), (64, 64, 0), (65, 64, 16), (10, 64, 8), (1000, 96, 24)]:
        starts = tile_starts(length, tile, overlap)
        size = min(tile, length)
        covered = torch.zeros(length, dtype=torch.bool)
        for s in starts:
            assert 0 <= s and s + size <= length
            covered[s : s + size] = True
        assert covered.all()
        for a, b in zip(starts, starts[1:], strict=False):
            assert a + size - b >= overlap  # neighbours share at least `overlap`


def test_crop_tiles_partition():
    tiles = crop_tiles(50, 70, 16, 4)
    seen = torch.zeros(50, 70, dtype=torch.int32)
    for t in tiles:
        top, left, bottom, right = t.core
        seen[top:bottom, left:right] += 1
        ct, cl, cb, cr = t.context
        assert ct <= top and cl <= left and cb >= bottom and cr >= right
    assert (seen == 1).all()


class Standin(torch.nn.Module):
    """×4 nearest upsample + 3×3 conv: receptive field of 1 input pixel, exact stand-in."""

    scale = 4

    def __init__(self):
        super().__init__()
        torch.manual_seed(0)
        self.conv = torch.nn.Conv2d(3, 3, 3, padding=1)

    def forward(self, x):
        return self.conv(F.interpolate(x, scale_factor=4, mode="nearest"))


def test_crop_tiled_equals_untiled():
    model = Standin().eval()
    x = torch.rand(1, 3, 37, 53)
    with torch.no_grad():
        full = model(x)
        tiled = run_crop_tiled(model, x, scale=4, tile=16, pad=2, batch_size=3)
    assert tiled.shape == full.shape
    torch.testing.assert_close(tiled, full, rtol=0, atol=1e-6)


def test_blended_tiling_of_a_pointwise_model_is_exact():
    """Overlapping windows averaged with the blend weight equal the untiled result."""
    x = torch.rand(1, 4, 40, 56)
    fn = lambda t: t * 2.0 + 1.0  # noqa: E731 - a per-pixel stand-in
    acc = torch.zeros_like(x)
    norm = torch.zeros(40, 56)
    wins = blend_tiles(40, 56, 16, 6)
    w = blend_weight(16, 16, 6)
    assert (w > 0).all()
    for top, left, bottom, right in wins:
        acc[..., top:bottom, left:right] += fn(x[..., top:bottom, left:right]) * w
        norm[top:bottom, left:right] += w
    torch.testing.assert_close(acc / norm, fn(x))


def test_blend_weight_is_smooth_and_symmetric():
    w = blend_weight(32, 32, 8)
    torch.testing.assert_close(w, w.flip(0))
    torch.testing.assert_close(w, w.flip(1))
    assert w[16, 16] == 1.0
    assert (w[0] < w[4]).all()
