"""The level table's contract, with tiny random diffusion parts loaded through the real code.

Level numbers come from the lab's table (``presets.TABLE``): a level is named by its base path
and LoRA scale, so the tests keep their meaning when the table grows."""

import json
import math
from dataclasses import replace

import numpy as np
import pytest
from PIL import Image

import presets
from pipelines import base as base_paths
from pipelines.engine import Engine, EngineConfig, replay_request
from pipelines.imaging import load_image
from pipelines.refiner import unet_call_counter
from pipelines.request import UpscaleRequest
from pipelines.tiling import blend_tiles
from testing.tiny import tiny_settings

TABLE = presets.TABLE  # the tiny engine's table
ALL = TABLE.numbers
STRONG, GENTLE = TABLE.generative_scales[0], TABLE.generative_scales[-1]
GENERATIVE = tuple(lv.level for lv in TABLE.levels if lv.generative)
PLAIN = tuple(lv.level for lv in TABLE.levels if not lv.generative)  # the levels without diffusion


def at(base_path, lora_scale=0.0):
    """The number of the level with ``base_path`` and ``lora_scale`` (no diffusion by default)."""
    return TABLE.level_for(base_path, lora_scale).level


BASELINE = TABLE.baseline_level  # plain bicubic
X4, CLEAN = at("upscale_4"), at("bicubic_clean")  # the ×4 network's and the cleanup's, no diffusion
FAST_PAIR = (at("upscale_4", STRONG), at("bicubic", GENTLE))  # two diffusion levels, two scales


def arr(img):
    return np.asarray(img)


@pytest.fixture(scope="module")
def nine(tiny_engine, photo):
    counter = unet_call_counter(tiny_engine.refiner())
    before = counter()
    result = tiny_engine.run(photo, UpscaleRequest(width=128, levels=ALL, seed=3))
    return result, counter() - before


def test_all_levels_at_the_requested_size(nine):
    result, _ = nine
    assert [lv.level for lv in result.levels] == list(ALL)
    for lv in result.levels:
        assert lv.status == "ok", lv.message
        assert lv.image.size == (128, 128)
        always = {
            "psnr_vs_bicubic",
            "ssim_vs_bicubic",
            "lr_consistency",
            "niqe",
            "colour_drift_mean",
            "colour_drift_p95",
        }
        assert always <= set(lv.metrics) <= always | {"seam_score"}
    assert result.level(BASELINE).metrics["psnr_vs_bicubic"] == float("inf")
    assert "seam_score" not in result.level(BASELINE).metrics  # plain bicubic: nothing tiled


def test_lora_zero_levels_are_their_bases_bit_for_bit(nine, tiny_engine, photo):
    result, _ = nine
    size = (128, 128)
    assert np.array_equal(arr(result.level(BASELINE).image), arr(base_paths.bicubic(photo.rgb, size)))
    assert np.array_equal(arr(result.level(CLEAN).image), arr(base_paths.bicubic(photo.rgb, size)))  # no JPEG grid
    settings = base_paths.NeuralSettings(
        device=tiny_engine.device, dtype=tiny_engine.dtype, tile=presets.ESRGAN_TILE, pad=presets.ESRGAN_TILE_PAD
    )
    direct = base_paths.neural_upscale(tiny_engine.upscaler(), photo.rgb, size, settings)
    assert np.array_equal(arr(result.level(X4).image), arr(direct))


def test_unet_calls_only_for_generative_levels(nine, tiny_engine, photo):
    _, calls = nine
    # one UNet call per denoising step per batch of (distinct bases × latent windows); this PNG
    # has no JPEG grid, so bicubic_clean is bicubic and one base fewer than the table's is refined
    assert calls == expected_unet_calls(tiny_engine, (128, 128), distinct_bases=len(TABLE.base_paths) - 1)
    counter = unet_call_counter(tiny_engine.refiner())
    before = counter()
    tiny_engine.run(photo, UpscaleRequest(width=128, levels=PLAIN, seed=3))
    assert counter() == before


def expected_unet_calls(engine, size, *, distinct_bases):
    f = engine.refiner().vae_scale
    (w, h) = size
    expected = 0
    for s in engine.config.settings.values():
        windows = len(blend_tiles(-(-h // f), -(-w // f), s.tile_size // f, s.tile_overlap // f))
        steps = max(1, int(s.steps * s.denoise_strength))
        expected += steps * math.ceil(distinct_bases * windows / engine.batch_size)
    assert expected > 2
    return expected


def test_identical_bases_are_refined_once(nine, tiny_engine):
    """Without a JPEG grid the cleanup changes nothing, so the bicubic_clean levels with diffusion
    equal the bicubic ones (and are computed once); a blocky JPEG gets its own passes and its
    own results."""
    import io

    result, _ = nine
    for a, b in ((at("bicubic", s), at("bicubic_clean", s)) for s in TABLE.generative_scales):
        assert arr(result.level(a).image).tobytes() == arr(result.level(b).image).tobytes()
        assert f"same result as level {a}" in (result.level(b).message or "")
    from skimage import data

    buf = io.BytesIO()
    Image.fromarray(data.chelsea()).resize((96, 72)).save(buf, "JPEG", quality=5)  # a clear 8×8 grid
    blocky = load_image(buf.getvalue())
    counter = unet_call_counter(tiny_engine.refiner())
    before = counter()
    jpeg = tiny_engine.run(blocky, UpscaleRequest(width=128, levels=ALL, seed=3))
    assert counter() - before == expected_unet_calls(tiny_engine, (128, 96), distinct_bases=len(TABLE.base_paths))
    bicubic, clean = at("bicubic", STRONG), at("bicubic_clean", STRONG)
    assert arr(jpeg.level(bicubic).image).tobytes() != arr(jpeg.level(clean).image).tobytes()
    assert "same result" not in jpeg.level(clean).message and "waifu2x" in jpeg.level(clean).message


def test_scales_give_different_images(nine):
    result, _ = nine
    for base_path in TABLE.base_paths:  # each column, strongest effect first: each row differs from the next
        images = [arr(result.level(lv.level).image).astype(int) for lv in TABLE.column(base_path)]
        for stronger, weaker in zip(images, images[1:], strict=False):
            assert np.abs(stronger - weaker).mean() > 0.5, base_path


def test_same_seed_reproduces_other_seed_differs(tiny_engine, photo, nine):
    result, _ = nine
    again = tiny_engine.run(photo, UpscaleRequest(width=128, levels=ALL, seed=3))
    for n in ALL:
        assert np.array_equal(arr(again.level(n).image), arr(result.level(n).image))
    # A subset batches differently; float sums may then flip the last bit of a few pixels.
    subset = tiny_engine.run(photo, UpscaleRequest(width=128, levels=FAST_PAIR, seed=3))
    for n in FAST_PAIR:
        diff = np.abs(arr(subset.level(n).image).astype(int) - arr(result.level(n).image).astype(int))
        assert diff.max() <= 2 and diff.mean() < 0.01
    n = FAST_PAIR[0]
    other = tiny_engine.run(photo, UpscaleRequest(width=128, levels=(n,), seed=4))
    assert np.abs(arr(other.level(n).image).astype(int) - arr(result.level(n).image).astype(int)).mean() > 1


def test_tiled_equals_untiled_within_one_tile(tiny_engine, photo):
    """The tiled, batched loop against a plain untiled img2img loop written out here."""
    import torch
    from diffusers import DDIMScheduler

    from pipelines.convert import pil_to_tensor, tensor_to_pil
    from pipelines.refiner import RefineJob, noise_field, refine, wavelet_color_fix

    ref = tiny_engine.refiner()
    settings = tiny_settings(tile_size=256, tile_overlap=64)  # one tile covers 128 px
    base = pil_to_tensor(base_paths.bicubic(photo.rgb, (128, 128)))
    job = RefineJob(
        bases={"bicubic": base},
        scales={1.0: ["bicubic"]},
        prompt="a photo",
        negative_prompt="blurry",
        seed=11,
        settings=settings,
    )
    tiled = refine(ref, job).images[(1.0, "bicubic")]

    s = settings[1.0]
    ref.set_lora_scale(1.0)
    emb, _ = ref.encode_prompt("a photo", "blurry")
    sched = DDIMScheduler.from_config(ref.scheduler_config)
    sched.set_timesteps(s.steps)
    n = max(1, int(s.steps * s.denoise_strength))
    ts = sched.timesteps[s.steps - n :]
    x0 = ref.encode_images(base)
    x = sched.add_noise(x0, noise_field(11, tuple(x0.shape)), ts[:1])
    with torch.inference_mode():
        for t in ts:
            lat = torch.cat([x, x])
            down, mid = ref.controlnet(
                lat,
                t,
                encoder_hidden_states=emb,
                controlnet_cond=torch.cat([base, base]),
                conditioning_scale=s.controlnet_scale,
                return_dict=False,
            )
            e = ref.unet(
                lat,
                t,
                encoder_hidden_states=emb,
                down_block_additional_residuals=down,
                mid_block_additional_residual=mid,
                return_dict=False,
            )[0]
            e_neg, e_pos = e.chunk(2)
            x = sched.step(e_neg + s.guidance_scale * (e_pos - e_neg), t, x).prev_sample
    untiled = tensor_to_pil(wavelet_color_fix(ref.decode_latents(x), base))
    diff = np.abs(arr(tiled).astype(int) - arr(untiled).astype(int))
    assert diff.max() <= 1 and diff.mean() < 0.001  # equal up to a rounding flip of a few pixels


def test_flat_input_has_no_seams(tiny_models):
    """Many overlapping tiles over a flat image: the steps between pixel columns (rows) at
    tile borders are no larger than elsewhere. The tiny models' output is noise-like (pixel
    steps of about 20), so borders are compared with the median step, not with zero."""
    settings = tiny_settings(tile_size=64, tile_overlap=16)
    engine = Engine(EngineConfig(models=tiny_models, settings=settings, device="cpu"))
    flat = load_image(Image.new("RGB", (96, 96), (120, 160, 90)))
    level = at("bicubic", STRONG)
    out = arr(engine.run(flat, UpscaleRequest(width=192, levels=(level,), seed=1)).level(level).image).astype(float)
    colour = out.reshape(-1, 3).mean(0)
    assert np.abs(colour - [120, 160, 90]).max() < 4  # colour fix holds the tone
    f = engine.refiner().vae_scale
    s = settings[STRONG]
    windows = blend_tiles(192 // f, 192 // f, s.tile_size // f, s.tile_overlap // f)
    borders = sorted({e * f for w in windows for e in (w[1], w[3])} - {0, 192})
    assert borders, "the test needs several tiles"
    col_steps = np.abs(np.diff(out, axis=1)).mean(axis=(0, 2))  # step between column x and x+1
    row_steps = np.abs(np.diff(out, axis=0)).mean(axis=(1, 2))
    for steps in (col_steps, row_steps):
        at_borders = np.array([steps[b - 1] for b in borders])  # between pixel b-1 and b
        assert at_borders.max() < 1.5 * np.median(steps), (borders, np.round(at_borders), np.median(steps))


def test_missing_weights_is_a_state(missing_engine, photo):
    result = missing_engine.run(photo, UpscaleRequest(width=128, levels=ALL, seed=1))
    for lv in result.levels:
        if lv.preset.generative:
            assert lv.status == "missing" and lv.image is None
            assert "sd15" in lv.message and "controlnet_tile" in lv.message and "detail_lora" in lv.message
            assert "python cli.py download" in lv.message
        else:
            assert lv.status == "ok" and lv.image.size == (128, 128)
    manifest = json.loads(result.manifest_json())
    assert [x["status"] for x in manifest["levels"]] == ["missing" if lv.generative else "ok" for lv in TABLE.levels]


def test_a_request_without_strength_runs_the_engines_default(photo):
    """An engine whose table's default strength is another level runs that level for a request
    that names no strength (built on the lab's own table, as the REST door and the CLI build them)."""
    n = next(n for n in GENERATIVE if n != TABLE.default_strength)
    other = replace(TABLE, default_strength=n)
    engine = Engine(EngineConfig(table=other, device="cpu"))  # no diffusion weights: level n is "missing", fast
    result = engine.run(photo, UpscaleRequest(width=96, seed=1))
    assert [lv.level for lv in result.levels] == [n] and result.manifest["request"]["levels"] == [n]
    assert result.manifest["request"]["upscale_strength"] == n


def test_manifest_replays(nine, tiny_engine, photo):
    result, _ = nine
    m = json.loads(result.manifest_json())
    assert m["input"]["sha256"] == photo.sha256
    assert m["seed"] == 3 and m["request"]["seed"] == 3
    assert "sd15" in m["models"] and m["models"]["detail_lora"]["file"]
    assert m["timings"]["total"] > 0
    again = tiny_engine.run(photo, replay_request(m))
    assert [x["sha256"] for x in json.loads(again.manifest_json())["levels"]] == [x["sha256"] for x in m["levels"]]


def test_base_paths_cached_across_runs(tiny_engine, photo):
    x4 = tiny_engine.upscaler()
    engine = Engine(tiny_engine.config, upscaler=x4)  # the same ×4 network, an empty base cache
    passes = []
    hook = x4.register_forward_hook(lambda *_: passes.append(1))
    try:
        first = engine.run(photo, UpscaleRequest(width=96, levels=(X4,), seed=1))
        computed = len(passes)
        second = engine.run(photo, UpscaleRequest(width=96, levels=(X4,), seed=1))
    finally:
        hook.remove()
    assert computed > 0  # the first run ran the ×4 network
    assert len(passes) == computed  # the second was served from the cache, no ×4 pass
    assert second.level(X4).image.tobytes() == first.level(X4).image.tobytes()


def test_alpha_grayscale_and_canvas(tiny_engine):
    rgba = Image.new("RGBA", (40, 20), (255, 0, 0, 255))
    rgba.paste((0, 0, 255, 0), (20, 0, 40, 20))
    r = tiny_engine.run(load_image(rgba), UpscaleRequest(width=100, height=100, levels=(BASELINE,)))
    img = r.level(BASELINE).image
    assert img.mode == "RGBA" and img.size == (100, 100)
    a = np.asarray(img.getchannel("A"))
    assert a[50, 10] == 255 and a[50, 90] == 0 and a[5, 50] == 0  # content alpha kept, canvas transparent
    gray = Image.fromarray(np.tile(np.linspace(0, 255, 32, dtype=np.uint8), (32, 1)), "L")
    g = tiny_engine.run(load_image(gray), UpscaleRequest(width=64, levels=(X4, BASELINE)))
    assert g.level(X4).image.mode == "L" and g.level(BASELINE).image.mode == "L"


def test_progress_reports_stages(tiny_engine, photo):
    stages = []
    request = UpscaleRequest(width=128, levels=(FAST_PAIR[0], BASELINE), seed=1)
    tiny_engine.run(photo, request, progress=lambda s, d, t: stages.append(s))
    assert any(s.startswith("base") for s in stages) and any(s.startswith("diffusion") for s in stages)


def test_sizes_not_multiple_of_the_vae_factor(tiny_models, photo):
    engine = Engine(EngineConfig(models=tiny_models, settings=tiny_settings(), device="cpu"))
    r = engine.run(photo, UpscaleRequest(width=131, height=97, fit="crop", levels=FAST_PAIR, seed=2))
    assert all(lv.status == "ok" and lv.image.size == (131, 97) for lv in r.levels)


def test_wavelet_fix_in_strips_equals_the_whole_image():
    """The colour fix runs in row strips (flat memory) and gives the whole-image result."""
    import torch

    from pipelines import refiner as r

    g = torch.Generator().manual_seed(0)
    image = torch.rand((1, 3, 3 * r.WAVELET_STRIP + 41, 70), generator=g)
    ref = torch.rand(image.shape, generator=g)
    levels = r.wavelet_levels(*image.shape[-2:])
    whole = (image - r.wavelet_lowpass(image, levels) + r.wavelet_lowpass(ref, levels)).clamp(0, 1)
    strips = r.wavelet_color_fix(image, ref)
    assert torch.allclose(strips, whole, atol=1e-6, rtol=0)


def test_controlnet_conditioning_embedded_once_per_tile(tiny_engine, photo):
    """Each (base, tile) control image is embedded once per run, not once per step, scale and
    guidance half; the result equals embedding it on every call."""
    from pipelines import refiner as r
    from pipelines.convert import pil_to_tensor

    ref = tiny_engine.refiner()
    calls = [0]
    embedding = r.conditioning_embedding(ref.controlnet)  # the ControlNet's own, behind the seam
    hook = embedding.register_forward_hook(lambda *_: calls.__setitem__(0, calls[0] + 1))
    bases = {n: pil_to_tensor(base_paths.bicubic(photo.rgb.rotate(90 * i), (128, 128))) for i, n in enumerate("ab")}
    job = r.RefineJob(
        bases=bases,
        scales={1.0: ["a", "b"], 0.5: ["a", "b"]},
        prompt="a photo",
        negative_prompt="",
        seed=5,
        settings=tiny_engine.config.settings,
    )
    f = ref.vae_scale
    s = job.settings[1.0]
    tiles = 2 * len(blend_tiles(128 // f, 128 // f, s.tile_size // f, s.tile_overlap // f))
    try:
        cached = r.refine(ref, job).images
        assert calls[0] == tiles
        calls[0] = 0
        fresh = r.refine(ref, replace(job, cond_cache_bytes=0)).images  # nothing kept: embedded on every call
        steps = sum(max(1, int(job.settings[s].steps * job.settings[s].denoise_strength)) for s in job.scales)
        assert calls[0] == tiles * steps
    finally:
        hook.remove()
    for key in cached:
        diff = np.abs(arr(cached[key]).astype(int) - arr(fresh[key]).astype(int))
        assert diff.max() <= 1, key
    assert type(embedding).__name__ == "ControlNetConditioningEmbedding"
    assert r.conditioning_embedding(ref.controlnet) is embedding  # the seam is installed once


def test_a_smaller_output_skips_the_x4_network(tiny_engine, photo):
    """Width 40 on a 64 px photo: upscaling ×4 to shrink back would cost the input ×16 for
    nothing; the ×4 level is the bicubic resize and says so, and its scores are not recomputed."""
    calls = [0]
    hook = tiny_engine.upscaler().register_forward_hook(lambda *_: calls.__setitem__(0, calls[0] + 1))
    try:
        x4_strong = at("upscale_4", STRONG)
        r = tiny_engine.run(photo, UpscaleRequest(width=40, levels=(x4_strong, X4, BASELINE), seed=4))
    finally:
        hook.remove()
    assert calls[0] == 0
    assert r.level(X4).image.size == (40, 40) and r.level(X4).image.tobytes() == r.level(BASELINE).image.tobytes()
    assert "no ×4 network ran" in r.level(X4).message and "no ×4 network ran" in r.level(x4_strong).message
    assert r.level(X4).metrics == r.level(BASELINE).metrics
    bigger = tiny_engine.run(photo, UpscaleRequest(width=80, levels=(X4,), seed=4))
    assert bigger.level(X4).message is None  # a larger output still gets the network


def test_levels_arrive_as_they_finish(tiny_models, photo):
    """on_level gets the levels without diffusion first (right after the base paths), then each
    diffusion level when its pass is decoded; the result holds them all in order."""
    engine = Engine(EngineConfig(models=tiny_models, settings=tiny_settings(), device="cpu", dtype="fp32"))
    seen: list[tuple[int, bool]] = []
    unet_calls = unet_call_counter(engine.refiner())
    result = engine.run(
        photo,
        UpscaleRequest(width=96, levels=tuple(presets.LEVEL_NUMBERS), seed=3),
        on_level=lambda lv: seen.append((lv.level, unet_calls() > 0)),
    )
    assert sorted(n for n, _ in seen) == list(presets.LEVEL_NUMBERS)
    first = [n for n, after_diffusion in seen if not after_diffusion]
    assert sorted(first) == [lv.level for lv in presets.LEVELS if not lv.generative]  # before any UNet call
    assert [lv.level for lv in result.levels] == list(presets.LEVEL_NUMBERS)


def test_time_estimate_from_earlier_runs(tiny_models, photo, tmp_path, monkeypatch):
    monkeypatch.setenv("UPSCALE_LAB_CACHE", str(tmp_path))  # no costs measured yet
    engine = Engine(EngineConfig(models=tiny_models, settings=tiny_settings(), device="cpu", dtype="fp32"))
    small, large = (UpscaleRequest(width=w, levels=tuple(presets.LEVEL_NUMBERS), seed=1) for w in (96, 192))
    assert engine.estimate_seconds(photo.size, small) is None  # nothing measured on this device yet
    engine.run(photo, small)
    est_small, est_large = engine.estimate_seconds(photo.size, small), engine.estimate_seconds(photo.size, large)
    assert est_small is not None and est_large is not None and 0 < est_small < est_large
    fresh = Engine(EngineConfig(models=tiny_models, settings=tiny_settings(), device="cpu", dtype="fp32"))
    assert fresh.estimate_seconds(photo.size, small) == est_small  # kept across restarts


def test_bases_are_held_as_8_bit_and_padded_like_torch():
    """The engine hands the refiner 8-bit bases (a quarter of float32's memory); their edge
    padding equals torch's replicate padding, and the conversion is exact."""
    import torch
    import torch.nn.functional as F

    from pipelines.refiner import as_unit_float, pad_replicate

    g = torch.Generator().manual_seed(0)
    u8 = torch.randint(0, 256, (1, 3, 13, 10), generator=g, dtype=torch.uint8)
    want = F.pad(u8.float(), (0, 6, 0, 3), mode="replicate")
    got = pad_replicate(u8, 6, 3)
    assert got.dtype == torch.uint8 and torch.equal(got.float(), want)
    assert torch.equal(as_unit_float(u8), u8.float() / 255)


def test_the_vae_keeps_fp32_weights_under_bf16(tiny_models):
    """Under bf16 the UNet runs in bf16 but the VAE's weights are the file's fp32 values (a bf16
    load would round them, and casting back cannot undo that)."""
    import torch

    from pipelines.models import load_refiner

    cpu = torch.device("cpu")
    fp32, bf16 = (load_refiner(tiny_models, cpu, dt) for dt in (torch.float32, torch.bfloat16))
    assert next(bf16.unet.parameters()).dtype == torch.bfloat16
    for (name, a), (_, b) in zip(fp32.vae.state_dict().items(), bf16.vae.state_dict().items(), strict=True):
        assert b.dtype == torch.float32 and torch.equal(a, b), name


def test_run_recommends_by_the_rule_and_records_it(tiny_engine, photo):
    from pipelines.recommend import recommend

    request = UpscaleRequest(width=256, levels=PLAIN, seed=1)
    result = tiny_engine.run(photo, request)
    advice = result.recommendation
    assert advice is not None and advice.level in PLAIN, advice
    expected = recommend([(lv.preset, lv.metrics) for lv in result.levels], floor=presets.DEFAULT_FIDELITY_FLOOR_DB)
    assert advice == expected
    assert result.manifest["recommendation"] == advice.to_json()
    assert all(math.isfinite(lv.metrics["niqe"]) for lv in result.levels)  # 256 px: NIQE has its blocks
    # the request's floor is the one applied; nobody reaches 99 dB
    strict = tiny_engine.run(photo, UpscaleRequest(width=256, levels=PLAIN, seed=1, fidelity_floor=99))
    assert strict.recommendation.level is None and "99 dB" in strict.recommendation.reason
    assert strict.manifest["request"]["fidelity_floor"] == 99.0
    single = tiny_engine.run(photo, UpscaleRequest(width=256, levels=(BASELINE,)))
    assert single.recommendation.level is None and "one level ran" in single.recommendation.reason


def test_time_estimate_follows_what_each_stage_sees(tiny_models, monkeypatch):
    """The ×4 network and the cleanup cost per *input* megapixel, the rest per output megapixel;
    costs are kept per settings (a benchmark with other settings does not overwrite them)."""
    engine = Engine(EngineConfig(models=tiny_models, settings=tiny_settings(), device="cpu", dtype="fp32"))
    costs = {"x4_per_input_mp": 10.0, "base_bicubic_clean_per_input_mp": 3.0, "finish_per_mp_level": 1.0}
    monkeypatch.setattr(engine, "costs", lambda: costs)
    x4 = UpscaleRequest(width=256, levels=(X4,))
    finish = 1.0 * 256 * 256 / 1e6
    assert engine.estimate_seconds((64, 64), x4) == pytest.approx(10.0 * 64 * 64 / 1e6 + finish)
    assert engine.estimate_seconds((128, 128), x4) == pytest.approx(10.0 * 128 * 128 / 1e6 + finish)
    clean = UpscaleRequest(width=256, levels=(CLEAN,))
    assert engine.estimate_seconds((64, 64), clean) == pytest.approx(finish)  # a PNG: no cleanup expected
    assert engine.estimate_seconds((64, 64), clean, jpeg=True) == pytest.approx(3.0 * 64 * 64 / 1e6 + finish)
    other = Engine(EngineConfig(models=tiny_models, settings={**tiny_settings()}, device="cpu", dtype="fp32"))
    assert other.cost_key() == engine.cost_key()
    changed = {s: replace(v, steps=v.steps + 1) for s, v in tiny_settings().items()}
    assert Engine(EngineConfig(models=tiny_models, settings=changed, device="cpu", dtype="fp32")).cost_key() != (
        engine.cost_key()
    )


def test_levels_without_the_network_are_handed_on_before_it_starts(tiny_engine, photo):
    """The cheap bases (no ×4 network) and their levels come first: every non-generative level
    of those bases reaches ``on_level`` before the progress reports the network's base path."""
    from pipelines.base import BASE_SPECS
    from pipelines.request import UpscaleRequest

    table = tiny_engine.config.table
    neural = {name for name, spec in BASE_SPECS.items() if spec.tiled_by_x4}
    quick = [lv.level for lv in table.levels if not lv.generative and lv.base_path not in neural]
    events: list[str] = []
    tiny_engine.run(
        photo,
        UpscaleRequest(width=256, levels=table.numbers, seed=1),
        progress=lambda stage, done, total: events.append(stage),
        on_level=lambda lv: events.append(f"level {lv.level}"),
    )
    network = next(i for i, e in enumerate(events) if any(e == f"base: {name}" for name in neural))
    for n in quick:
        assert events.index(f"level {n}") < network, events[: network + 1]
