"""The opt-in fast mode (the request's ``fast``): the LCM-LoRA adapter beside the detail LoRA,
LCMScheduler, a few steps, no classifier-free guidance. Its file in the real repo's layout, the
request field at every door, the engine end to end with the tiny models (different from the
normal mode, reproducible, and the normal mode exactly as before after it), the manifest, a
missing adapter. The fake hub's end-to-end run is in ``tests/test_hub_e2e.py``."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
import torch
from safetensors.torch import load_file

import presets
from pipelines.engine import Engine, EngineConfig, replay_request
from pipelines.errors import RequestError
from pipelines.request import CustomRecipe, RequestFields, UpscaleRequest, parse_request
from testing.tiny import LCM_LORA_TARGETS, tiny_settings

GEN = tuple(lv.level for lv in presets.TABLE.levels if lv.generative)
LEVELS = tuple(sorted({GEN[0], GEN[1], presets.TABLE.baseline_level}))  # two bases share a scale


@pytest.fixture(scope="module")
def engine(tiny_models):
    """An engine of its own, so the fast adapter loads here first (the lab API test below loads
    it into the session's tiny engine too: inactive there, PEFT skips it)."""
    return Engine(EngineConfig(models=tiny_models, settings=tiny_settings(), device="cpu", dtype="fp32"))


def run(engine: Engine, photo, *, fast: bool, seed: int = 5):
    request = UpscaleRequest(width=96, levels=LEVELS, seed=seed, fast=fast)
    return engine.run(photo, request)


def pixels(result, level: int) -> np.ndarray:
    return np.asarray(result.level(level).image, dtype=np.int16)


# --------------------------------------------------------------------------- the adapter's file


def test_the_tiny_adapter_has_lcm_loras_layout(tiny_models):
    """Kohya keys (``lora_unet_`` + the module path, ``lora_down``/``lora_up``/``alpha``) over
    the distillation script's targets, conv LoRA on conv layers, UNet only, fp16."""
    state = load_file(str(Path(tiny_models.fast_lora) / str(tiny_models.fast_lora_file)))
    modules = {k.rsplit(".", 2)[0] if k.endswith(".weight") else k.rsplit(".", 1)[0] for k in state}
    assert all(m.startswith("lora_unet_") for m in modules), "LCM-LoRA adapts the UNet only"
    for m in modules:
        assert {f"{m}.lora_down.weight", f"{m}.lora_up.weight", f"{m}.alpha"} <= set(state), m
    for needle in ("resnets_0_conv1", "time_emb_proj", "downsamplers_0_conv", "proj_in", "ff_net_2", "attn1_to_q"):
        assert any(needle in m for m in modules), needle
    down = state["lora_unet_down_blocks_0_resnets_0_conv1.lora_down.weight"]
    up = state["lora_unet_down_blocks_0_resnets_0_conv1.lora_up.weight"]
    assert down.ndim == 4 and down.shape[-2:] == (3, 3) and up.shape[-2:] == (1, 1)  # a conv LoRA
    assert {v.dtype for v in state.values()} == {torch.float16}
    assert len(LCM_LORA_TARGETS) == 14


# --------------------------------------------------------------------------- the request


def test_fast_is_a_request_field_at_every_door():
    assert parse_request({"fast": True}).fast is True
    assert parse_request({}).fast is False
    assert parse_request({"fast": True}).to_json()["fast"] is True
    assert "fast" not in parse_request({}).to_json()  # a normal request reads as before
    assert parse_request(parse_request({"fast": True, "seed": 3}).to_json()).fast is True
    assert RequestFields(fast=True).build().fast is True
    assert RequestFields().build({"fast": True}).fast is True  # a request file's value stays
    for bad in ("yes", 1, None):
        with pytest.raises(RequestError) as err:
            parse_request({"fast": bad})
        assert err.value.field == "fast" and "true or false" in str(err.value)


def test_fast_with_a_custom_level_is_refused_naming_the_field():
    with pytest.raises(RequestError) as err:
        parse_request({"fast": True, "custom": {"creativity": 0.4}})
    assert err.value.field == "fast" and "custom" in str(err.value)
    with pytest.raises(RequestError):
        UpscaleRequest(fast=True, custom=CustomRecipe(steps=10))


def test_cli_flag_sets_the_field():
    import cli

    for command in (["upscale", "in.png", "-o", "out.png"], ["grid", "in.png", "-o", "out"]):
        args = cli.build_parser().parse_args([*command, "--fast"])
        assert cli.request_fields(args, grid=command[0] == "grid").build().fast is True
        plain = cli.build_parser().parse_args(command)
        assert cli.request_fields(plain, grid=command[0] == "grid").build().fast is False
    args = cli.build_parser().parse_args(["batch", "in", "-o", "out", "--fast"])
    assert args.fast is True


def test_lab_panel_reads_the_fast_box():
    from lab.form import CUSTOM_INPUTS, CustomInput

    assert CUSTOM_INPUTS[-1] == "fast"
    values = [False, 5, "bicubic", *[None] * len(presets.CUSTOM_FIELDS)]
    assert CustomInput.of(*values, True).fast is True
    assert CustomInput.of(*values).fast is False  # an API caller without the box: normal mode
    assert CustomInput.of().fast is False


# --------------------------------------------------------------------------- the engine


def test_fast_mode_end_to_end(engine, photo):
    """Normal, fast, fast again, normal again in one process: fast differs from normal on the
    diffusion levels (the adapter and the scheduler act), is reproducible for a seed, leaves the
    levels without diffusion alone, and the normal mode after it is bit for bit what it was."""
    normal = run(engine, photo, fast=False)
    fast = run(engine, photo, fast=True)
    again = run(engine, photo, fast=True)
    after = run(engine, photo, fast=False)
    for lv in LEVELS:
        assert fast.level(lv).status == "ok", fast.level(lv).message
        assert np.array_equal(pixels(fast, lv), pixels(again, lv)), f"level {lv}: fast is not reproducible"
        assert np.array_equal(pixels(normal, lv), pixels(after, lv)), f"level {lv}: normal changed after a fast run"
    for lv in GEN[:1]:
        assert np.abs(pixels(fast, lv) - pixels(normal, lv)).mean() > 0.5, f"level {lv}: fast equals normal"
    base = presets.TABLE.baseline_level
    assert np.array_equal(pixels(fast, base), pixels(normal, base))
    other = run(engine, photo, fast=True, seed=6)
    assert not np.array_equal(pixels(other, GEN[0]), pixels(fast, GEN[0]))


def test_fast_passes_run_the_fast_steps_without_guidance(engine, photo):
    """One UNet batch per tile and step (no CFG half), as many steps as the fast settings run."""
    refiner = engine.refiner()
    batches: list[int] = []
    hook = refiner.unet.register_forward_hook(lambda _m, args, _o: batches.append(int(args[0].shape[0])))
    try:
        run(engine, photo, fast=True)
        fast_batches, batches[:] = list(batches), []
        run(engine, photo, fast=False)
    finally:
        hook.remove()
    assert set(fast_batches) == {1} and set(batches) == {2}  # batch_size 1 on the CPU: CFG doubles it
    (scale,) = {presets.TABLE.get(n).lora_scale for n in LEVELS if presets.TABLE.get(n).generative}
    normal_steps = engine.config.settings[scale].run_steps
    fast_steps = presets.FAST_MODE.settings(engine.config.settings[scale]).run_steps
    assert len(fast_batches) * normal_steps == len(batches) * fast_steps  # same tiles, the fast steps


def test_manifest_records_fast_and_replays(engine, photo):
    result = run(engine, photo, fast=True)
    m = result.manifest
    assert m["request"]["fast"] is True
    assert m["fast"]["adapter"] == "fast_lora" and m["fast"]["scheduler"] == "LCMScheduler"
    assert m["fast"]["settings"]["1"]["steps"] == presets.FAST_MODE.steps
    assert m["fast"]["settings"]["1"]["guidance_scale"] == presets.FAST_MODE.guidance_scale
    assert m["models"]["fast_lora"]["source"] == engine.config.models.fast_lora
    again = engine.run(photo, replay_request(m))
    assert again.manifest["request"]["fast"] is True
    assert np.array_equal(pixels(again, GEN[0]), pixels(result, GEN[0]))
    assert "fast" not in run(engine, photo, fast=False).manifest


def test_a_missing_adapter_fails_only_fast_requests(tiny_models, photo, monkeypatch, tmp_path):
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "empty-cache"))  # the hub repo, not fetched
    models = replace(tiny_models, fast_lora=presets.MODELS["fast_lora"].repo)
    engine = Engine(EngineConfig(models=models, settings=tiny_settings(), device="cpu", dtype="fp32"))
    normal = run(engine, photo, fast=False)
    assert [normal.level(lv).status for lv in LEVELS] == ["ok"] * len(LEVELS)
    status = engine.model_status()["fast_lora"]
    assert status.startswith("missing") and "only by the fast mode" in status
    fast = run(engine, photo, fast=True)
    for lv in GEN[:1]:
        got = fast.level(lv)
        assert got.status == "missing" and "fast_lora" in got.message and "download" in got.message, got.message
        assert "only the fast mode needs it" in got.message
    assert fast.level(presets.TABLE.baseline_level).status == "ok"
    assert engine.estimate_seconds(photo.size, UpscaleRequest(width=96, levels=LEVELS, fast=True)) is not None


def test_the_estimate_counts_the_fast_steps(engine):
    costs = {"diffusion_1_per_mp": 9.0, "diffusion_0.5_per_mp": 6.0}
    for scale, s in engine.config.settings.items():
        fast = presets.FAST_MODE.settings(s)
        want = costs[f"diffusion_{scale:g}_per_mp"] / s.run_steps * fast.run_steps / 2  # no CFG: half a batch
        assert engine._pass_cost(costs, scale, fast=True) == pytest.approx(want)
        assert engine._pass_cost({**costs, f"fast_diffusion_{scale:g}_per_mp": 1.5}, scale, fast=True) == 1.5
        assert engine._pass_cost(costs, scale, fast=False) == costs[f"diffusion_{scale:g}_per_mp"]


def test_fast_settings_follow_the_model_card():
    mode = presets.FAST_MODE
    assert presets.MODELS[mode.adapter].repo == "latent-consistency/lcm-lora-sdv1-5"
    assert presets.MODELS[mode.adapter].pinned
    assert 2 <= min(mode.settings(s).run_steps for s in presets.DIFFUSION_SETTINGS.values())
    assert max(mode.settings(s).run_steps for s in presets.DIFFUSION_SETTINGS.values()) <= 8
    assert mode.guidance_scale == 1.0
    assert "fast_lora" in presets.OPTIONAL_MODEL_IDS and "fast_lora" in presets.DIFFUSION_MODEL_IDS


def test_fast_passes_step_with_lcm(engine, photo, monkeypatch):
    from diffusers import DDIMScheduler, LCMScheduler

    calls = {"lcm": 0, "ddim": 0}
    for name, cls in (("lcm", LCMScheduler), ("ddim", DDIMScheduler)):
        original = cls.step

        def counted(self, *a, _name=name, _original=original, **k):
            calls[_name] += 1
            return _original(self, *a, **k)

        monkeypatch.setattr(cls, "step", counted)
    run(engine, photo, fast=True)
    assert calls["lcm"] > 0 and calls["ddim"] == 0
    run(engine, photo, fast=False)
    assert calls["ddim"] > 0


def test_the_adapter_acts(engine, photo, monkeypatch):
    """The fast mode at adapter weight 0 (scheduler and steps alone) is not the fast mode."""
    fast = run(engine, photo, fast=True)
    run(engine, photo, fast=False)  # the adapters' state is set again on the next pass
    monkeypatch.setattr(presets, "FAST_MODE", replace(presets.FAST_MODE, adapter_weight=0.0))
    weightless = run(engine, photo, fast=True)
    assert np.abs(pixels(fast, GEN[0]) - pixels(weightless, GEN[0])).mean() > 0.5


def test_a_fast_level_does_not_depend_on_the_others_run_beside_it(engine, photo):
    """LCM adds fresh noise between steps: drawn per base from the seed, so a level alone is
    the same image as in a run of several (one noise field for all levels)."""
    together = run(engine, photo, fast=True)
    alone = engine.run(photo, UpscaleRequest(width=96, levels=(GEN[0],), seed=5, fast=True))
    assert np.array_equal(pixels(together, GEN[0]), pixels(alone, GEN[0]))


def test_a_missing_adapter_keeps_the_lab_at_the_default_level():
    from lab.views import runnable_default

    every = dict.fromkeys(presets.DIFFUSION_MODEL_IDS, "available")
    status = {**every, "fast_lora": "missing: not in the cache (needed only by the fast mode)"}
    assert runnable_default(presets.TABLE, status) == (presets.TABLE.default_strength, "")


def test_the_lab_api_runs_the_fast_mode(lab_server):
    """``/grid`` with the Advanced panel's last box ticked: every level runs, the manifest says fast."""
    import json

    from gradio_client import Client
    from test_app import grid_args
    from test_custom_level import panel

    client = Client(lab_server + "/", verbose=False)
    out = client.predict(*grid_args(width="96", seed=3), *panel(enabled=False, fast=True), api_name="/grid")
    manifest = json.loads(Path(out[4][-1]).read_text())
    assert manifest["request"]["fast"] is True and manifest["fast"]["scheduler"] == "LCMScheduler"
    assert [lv["status"] for lv in manifest["levels"]] == ["ok"] * len(presets.TABLE.levels)


def test_the_noise_lcm_adds_between_steps_is_fresh():
    """LCM's step noise comes from a seed derived from the run's, not the run's seed itself:
    that generator's first draw would be the noise field the latents were noised with."""
    from pipelines.refiner import lcm_noise_seed, noise_field

    shape = (1, 4, 12, 12)
    field = noise_field(7, shape)
    step = torch.randn(shape, generator=torch.Generator("cpu").manual_seed(lcm_noise_seed(7)), dtype=torch.float32)
    assert abs(float(torch.corrcoef(torch.stack([field.flatten(), step.flatten()]))[0, 1])) < 0.2
    assert lcm_noise_seed(7) == lcm_noise_seed(7) != lcm_noise_seed(8)  # reproducible, per seed


def test_the_normal_mode_guides_even_at_guidance_1(engine, photo):
    """A custom level at guidance 1 in the normal mode still runs the CFG batch of two (its
    pixels as before the fast mode); only the fast mode drops it."""
    refiner = engine.refiner()
    batches: list[int] = []
    hook = refiner.unet.register_forward_hook(lambda _m, args, _o: batches.append(int(args[0].shape[0])))
    try:
        engine.run(photo, UpscaleRequest(width=96, seed=5, custom=CustomRecipe(start_from=GEN[0], guidance=1.0)))
    finally:
        hook.remove()
    assert batches and set(batches) == {2}


def test_a_normal_custom_level_does_not_join_a_fast_run(engine, photo):
    """The lab's *Run custom level* after a fast grid: not joined (its manifest would not replay)."""
    from pipelines.engine import with_custom

    fast = run(engine, photo, fast=True)
    custom = engine.run(photo, UpscaleRequest(width=96, seed=5, custom=CustomRecipe(start_from=GEN[0])))
    with pytest.raises(ValueError, match="another mode"):
        with_custom(fast, custom)
