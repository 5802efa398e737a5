"""The custom level (issue 20, point 1): a recipe of one's own beside the table's levels, run by
the same engine code with the tiny random models, scored, recorded and replayed; its settings
checked with messages that name the field and its range at every door (request, REST, CLI)."""

import json
import math
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

import presets
from pipelines.engine import replay_request
from pipelines.errors import RequestError
from pipelines.refiner import unet_call_counter
from pipelines.request import CustomRecipe, RequestFields, UpscaleRequest, parse_custom_text, parse_request
from pipelines.tiling import blend_tiles

ROOT = Path(__file__).resolve().parents[1]
TABLE = presets.TABLE  # the tiny engine's table
ALL = TABLE.numbers
CUSTOM = presets.custom_number(TABLE)
MEDIUM = TABLE.level_for("bicubic", TABLE.generative_scales[-1]).level  # level 5: bicubic, the gentle scale
OWN = {"start_from": MEDIUM, "creativity": 0.6, "resemblance": 0.5, "guidance": 7.5}  # a recipe of its own


def pixels(image):
    return np.asarray(image).astype(int)


def unet_calls(engine, size, settings, bases=1):
    """UNet forward calls of one pass with ``settings`` over ``bases`` bases at output ``size``."""
    f = engine.refiner().vae_scale
    windows = len(blend_tiles(-(-size[1] // f), -(-size[0] // f), settings.tile_size // f, settings.tile_overlap // f))
    return settings.run_steps * math.ceil(bases * windows / engine.batch_size)


@pytest.fixture(scope="module")
def beside_the_nine(tiny_engine, photo):
    """Every level of the table and a custom level with settings of its own, one run."""
    return tiny_engine.run(photo, parse_request({"width": 96, "seed": 3, "levels": "all", "custom": OWN}))


@pytest.fixture(scope="module")
def alone(tiny_engine, photo):
    """The same custom level alone (no table level asked for), and the UNet calls it made."""
    counter = unet_call_counter(tiny_engine.refiner())
    before = counter()
    result = tiny_engine.run(photo, parse_request({"width": 96, "seed": 3, "custom": OWN}))
    return result, counter() - before


# --------------------------------------------------------------------------- the engine


def test_a_custom_level_beside_the_nine_is_scored_like_them(beside_the_nine):
    result = beside_the_nine
    assert [lv.level for lv in result.levels] == [*ALL, CUSTOM]
    custom, medium = result.level(CUSTOM), result.level(MEDIUM)
    assert custom.status == "ok", custom.message
    assert isinstance(custom.preset, presets.CustomLevel) and custom.preset.start_from == MEDIUM
    assert custom.preset.recipe.startswith("custom: bicubic · LoRA 0.5 · creativity 0.6 · resemblance 0.5")
    assert custom.image.size == medium.image.size == (96, 96)
    assert set(custom.metrics) == set(medium.metrics)  # the registry's scores, seams included
    assert custom.metrics["psnr_vs_bicubic"] != medium.metrics["psnr_vs_bicubic"]  # its own, not level 5's
    assert np.abs(pixels(custom.image) - pixels(medium.image)).mean() > 0.5  # more creativity: another image
    assert CUSTOM in result.recommendation.considered or result.recommendation.level is None
    # the manifest records the recipe with every setting spelled out, and the custom level's entry
    request = result.manifest["request"]
    assert request["levels"] == list(ALL)
    assert request["custom"] == {**custom.preset.to_json(), "creativity": 0.6, "resemblance": 0.5, "guidance": 7.5}
    tiny = result.manifest["settings"]["0.5"]
    assert request["custom"]["steps"] == tiny["steps"] and request["custom"]["tile_size"] == tiny["tile_size"]
    entry = result.manifest["levels"][-1]
    assert entry["level"] == CUSTOM and entry["effect"] == "custom" and entry["custom"] == request["custom"]
    assert any(k.startswith("custom_diffusion") for k in result.timings)  # its own pass, timed apart


def test_a_custom_level_alone_runs_one_pass(alone, beside_the_nine, tiny_engine):
    result, calls = alone
    assert [lv.level for lv in result.levels] == [CUSTOM]
    custom = result.level(CUSTOM)
    assert custom.status == "ok" and "levels" not in result.manifest["request"]
    assert calls == unet_calls(tiny_engine, (96, 96), custom.preset.settings)  # one pass, one base
    assert set(result.timings) >= {"base_bicubic", "custom_diffusion_0.5"}
    # alone or beside the nine: the same pixels and scores
    beside = beside_the_nine.level(CUSTOM)
    assert custom.image.tobytes() == beside.image.tobytes()
    assert custom.metrics == beside.metrics


def test_a_custom_level_with_level_5s_settings_gives_level_5s_image_bit_for_bit(tiny_engine, photo, beside_the_nine):
    """Its own pass (its own seed, so it cannot share level 5's) through the same code gives
    level 5's pixels; beside level 5 with the run's seed it shares level 5's pass."""
    medium = beside_the_nine.level(MEDIUM)
    own_seed = tiny_engine.run(
        photo, parse_request({"width": 96, "seed": 1, "levels": [TABLE.baseline_level], "custom": {"seed": 3}})
    )
    custom = own_seed.level(CUSTOM)
    assert custom.preset.settings == tiny_engine.config.settings[0.5] and custom.preset.start_from == MEDIUM
    assert "custom_diffusion_0.5" in own_seed.timings  # it ran a pass of its own
    assert custom.image.tobytes() == medium.image.tobytes()
    counter = unet_call_counter(tiny_engine.refiner())
    before = counter()
    shared = tiny_engine.run(photo, UpscaleRequest(width=96, seed=3, levels=(MEDIUM,), custom=CustomRecipe()))
    assert counter() - before == unet_calls(tiny_engine, (96, 96), tiny_engine.config.settings[0.5])  # one pass
    assert shared.level(CUSTOM).image.tobytes() == shared.level(MEDIUM).image.tobytes() == medium.image.tobytes()


def test_the_manifest_of_a_custom_run_replays_to_the_same_image(alone, tiny_engine, photo):
    result, _ = alone
    manifest = json.loads(result.manifest_json())
    again = tiny_engine.run(photo, replay_request(manifest))
    assert [x["sha256"] for x in again.manifest["levels"]] == [x["sha256"] for x in manifest["levels"]]
    assert again.level(CUSTOM).image.tobytes() == result.level(CUSTOM).image.tobytes()


def test_a_custom_level_without_diffusion_is_its_base(tiny_engine, photo):
    """LoRA 0 means no diffusion, as for the table's levels; any registered base path."""
    result = tiny_engine.run(
        photo, parse_request({"width": 96, "levels": [TABLE.baseline_level], "custom": {"lora_scale": 0}})
    )
    assert result.level(CUSTOM).image.tobytes() == result.level(TABLE.baseline_level).image.tobytes()
    assert result.level(CUSTOM).preset.recipe == "custom: bicubic · no diffusion (LoRA 0)"
    with pytest.raises(RequestError, match=r"custom.base_path: must be one of \['bicubic'"):
        tiny_engine.run(photo, parse_request({"width": 96, "custom": {"base_path": "nearest"}}))


# --------------------------------------------------------------------------- the request


@pytest.mark.parametrize(
    ("field", "value", "says"),
    [
        ("lora_scale", 1.6, "must be a number in 0..1.5, got 1.6 (LoRA scale"),
        ("creativity", 0.01, "must be a number in 0.05..1, got 0.01 (creativity = denoise strength)"),
        ("resemblance", 2.5, "must be a number in 0..2, got 2.5 (resemblance = ControlNet scale)"),
        ("guidance", 0.5, "must be a number in 1..15, got 0.5"),
        ("steps", 51, "must be an integer in 1..50, got 51"),
        ("steps", 2.5, "must be an integer in 1..50, got 2.5"),
        ("tile_size", 100, "must be an integer in 64..1024, a multiple of 64, got 100"),
        ("tile_overlap", 12, "must be an integer in 0..512, a multiple of 8, got 12"),
        ("creativity", "high", "must be a number in 0.05..1, got 'high'"),
        ("start_from", 0, "must be a level in 1..9, got 0"),
        ("seed", -1, "must be an integer in 0..4294967295, got -1"),
    ],
)
def test_a_recipe_out_of_range_names_the_field_and_its_range(field, value, says):
    with pytest.raises(RequestError) as caught:
        parse_request({"custom": {field: value}})
    assert caught.value.field == f"custom.{field}" and says in str(caught.value)
    assert str(caught.value).startswith(f"custom.{field}: ")


def test_the_custom_object_and_its_flag_are_checked_as_a_whole():
    with pytest.raises(RequestError, match=r"custom: unsupported field\(s\) \['fractality'\]"):
        parse_request({"custom": {"fractality": 3}})
    with pytest.raises(RequestError, match="custom: must be an object"):
        parse_request({"custom": [1]})
    with pytest.raises(RequestError, match="custom.tile_overlap: must be less than tile_size 64"):
        parse_request({"custom": {"tile_size": 64, "tile_overlap": 64}})
    with pytest.raises(RequestError, match="custom: cannot be combined with generative_upscale: false"):
        parse_request({"custom": {}, "generative_upscale": False})
    recipe = parse_custom_text("start_from=4, creativity=0.4,steps=30,base_path=bicubic_clean")
    assert recipe == CustomRecipe(start_from=4, creativity=0.4, steps=30, base_path="bicubic_clean")
    with pytest.raises(RequestError, match="custom: unknown setting 'hdr'"):
        parse_custom_text("hdr=6")
    with pytest.raises(RequestError, match="custom.creativity: must be a number in 0.05..1, got 7"):
        parse_custom_text("creativity=7")
    # flags over a request file: the flag's fields win, the file's others stay
    built = RequestFields(custom=CustomRecipe(steps=12)).build({"custom": {"steps": 30, "creativity": 0.4}})
    assert built.custom == CustomRecipe(steps=12, creativity=0.4)
    assert built.effective_levels == () and parse_request({"custom": {}, "levels": [8]}).effective_levels == (8,)
    assert parse_request(built.to_json()) == built  # the request's JSON carries it


def test_start_from_fills_every_setting_from_that_level(tiny_engine):
    settings = tiny_engine.config.settings
    strong = CustomRecipe(start_from=1).resolve(TABLE, settings, 5, ["upscale_4", "bicubic", "bicubic_clean"])
    assert strong.base_path == "upscale_4" and strong.settings == settings[1.0]
    by_strength = CustomRecipe(creativity=0.9).resolve(TABLE, settings, 3, ["bicubic_clean"])
    assert by_strength.base_path == "bicubic_clean" and by_strength.settings.denoise_strength == 0.9
    assert by_strength.settings.lora_scale == 1.0 and by_strength.settings.steps == settings[1.0].steps
    off = CustomRecipe(start_from=TABLE.baseline_level).resolve(TABLE, settings, 5, ["bicubic"])
    assert not off.generative and off.settings.denoise_strength == settings[min(settings)].denoise_strength


# --------------------------------------------------------------------------- the doors


def test_rest_refuses_a_recipe_out_of_range_with_422(lab_server):
    from test_app import b64_photo, post

    body = {"image_base64": b64_photo(), "width": 96, "custom": {"start_from": 5, "creativity": 1.5}}
    status, _, raw = post(lab_server + "/api/v1/upscale", body)
    doc = json.loads(raw)
    assert status == 422 and doc["field"] == "custom.creativity", doc
    assert "0.05..1" in doc["error"] and "creativity = denoise strength" in doc["error"]


def test_rest_answers_the_custom_level_alone(lab_server):
    from test_app import b64_photo, post

    body = {"image_base64": b64_photo(), "width": 96, "seed": 2, "custom": {"lora_scale": 0}}
    status, headers, raw = post(lab_server + "/api/v1/upscale?format=json", body)
    doc = json.loads(raw)
    assert status == 200 and doc["level"] == CUSTOM and headers["x-level"] == str(CUSTOM)
    assert doc["manifest"]["request"]["custom"]["lora_scale"] == 0


def cli(*args):
    return subprocess.run(
        [sys.executable, str(ROOT / "cli.py"), *args], capture_output=True, text=True, cwd=ROOT, timeout=600
    )


def test_cli_refuses_a_recipe_out_of_range_with_exit_2(tmp_path):
    photo = tmp_path / "in.png"
    Image.new("RGB", (16, 16), (90, 120, 30)).save(photo)
    proc = cli("upscale", str(photo), "-o", str(tmp_path / "o.png"), "--custom", "start_from=5,resemblance=3")
    assert proc.returncode == 2 and "Traceback" not in proc.stderr
    assert "error: custom.resemblance: must be a number in 0..2, got 3 (resemblance = ControlNet scale)" in proc.stderr


def test_cli_replays_a_custom_level_from_its_image(tmp_path, tiny_models, photo):
    """``upscale --custom`` writes the custom level's image with its manifest; ``--replay``
    on that image reruns the recipe to the same pixels (tiny models, through the flags)."""
    source = tmp_path / "in.png"
    photo.rgb.save(source)
    models = ["--sd15", tiny_models.sd15, "--controlnet", tiny_models.controlnet, "--lora", tiny_models.lora]
    engine = [*models, "--lora-file", tiny_models.lora_file, "--device", "cpu", "--dtype", "fp32"]
    first, second = tmp_path / "custom.png", tmp_path / "replayed.png"
    recipe = "start_from=5,creativity=0.5,steps=4,tile_size=64,tile_overlap=16"
    proc = cli("upscale", str(source), "-o", str(first), "--width", "96", "--seed", "4", "--custom", recipe, *engine)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert f"level {CUSTOM} (custom: bicubic · LoRA 0.5 · creativity 0.5" in proc.stdout
    proc = cli("upscale", str(source), "-o", str(second), "--replay", str(first), *engine)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert f"level {CUSTOM} (custom:" in proc.stdout
    assert Image.open(first).tobytes() == Image.open(second).tobytes()


# --------------------------------------------------------------------------- the lab


@pytest.fixture(scope="module")
def client(lab_server):
    from gradio_client import Client

    return Client(lab_server + "/", verbose=False)


def panel(**changes):
    """The Advanced panel's values as the /grid, /upscale and /custom_level API take them
    (after the form's): on, level 5's settings on the tiny engine, then ``changes``."""
    from lab.form import CUSTOM_INPUTS
    from testing.tiny import tiny_settings

    s = tiny_settings()[0.5]
    values = {
        "enabled": True,
        "start_from": MEDIUM,
        "base_path": "bicubic",
        **{f.name: getattr(s, f.attribute) for f in presets.CUSTOM_FIELDS},
        "fast": False,  # the panel's last box: the fast mode (tests/test_fast_mode.py)
    }
    values.update(changes)
    return [values[name] for name in CUSTOM_INPUTS]


def test_lab_grid_adds_the_custom_level_with_its_recipe(client):
    from test_app import grid_args

    out = client.predict(*grid_args(width="96", seed=3), *panel(creativity=0.6), api_name="/grid")
    gallery, table = out[0], out[1]
    assert len(gallery) == len(TABLE.levels) + 1
    assert gallery[-1]["caption"].startswith(f"{CUSTOM} · custom: bicubic · LoRA 0.5 · creativity 0.6")
    assert table["data"][-1][:2] == [str(CUSTOM), gallery[-1]["caption"].split(" · ", 1)[1].split("\n")[0]]
    assert len(client.predict(*grid_args(width="96", seed=3), api_name="/grid")[0]) == len(TABLE.levels)  # off


def test_lab_refuses_a_recipe_out_of_range_with_a_message(client):
    from gradio_client.exceptions import AppError
    from test_app import grid_args

    with pytest.raises(AppError, match=r"custom.creativity: must be a number in 0.05..1, got 1.5"):
        client.predict(*grid_args(width="96"), *panel(creativity=1.5), api_name="/grid")
    # within each slider's range, out of the recipe's: the overlap must stay below the tile size
    with pytest.raises(AppError, match=r"custom.tile_overlap: must be less than tile_size 64, got 64"):
        client.predict(*grid_args(width="96"), MEDIUM, True, *panel(tile_size=64, tile_overlap=64), api_name="/upscale")


def test_lab_runs_the_custom_level_on_the_last_runs_cached_bases(client, tiny_engine, tmp_path):
    """Run all, then Run custom level: no ×4 pass the second time (its base is the engine's
    cache of the run before), the custom level joins the grid and scores, and the manifest of
    the joined run replays to the same images."""
    from gradio_client import handle_file
    from test_app import PHOTO, grid_args

    small = tmp_path / "small.png"  # smaller than the output: the ×4 network runs for its base
    Image.open(PHOTO).convert("RGB").resize((40, 40)).save(small)
    form = [handle_file(str(small)), *grid_args(width="80")[1:]]
    calls = [0]
    hook = tiny_engine.upscaler().register_forward_hook(lambda *_: calls.__setitem__(0, calls[0] + 1))
    try:
        first = client.predict(*form[:-2], 3, False, *panel(enabled=False), api_name="/grid")
        assert len(first[0]) == len(TABLE.levels) and calls[0] > 0
        calls[0] = 0
        out = client.predict(*form[:-2], 5, False, *panel(base_path="upscale_4"), api_name="/custom_level")
    finally:
        hook.remove()
    assert calls[0] == 0  # the ×4 base came from the cache
    gallery, table, files = out[0], out[1], out[4]
    assert len(gallery) == len(TABLE.levels) + 1 and gallery[-1]["caption"].startswith(f"{CUSTOM} · custom: Real")
    assert [row[0] for row in table["data"]] == [*map(str, ALL), str(CUSTOM)]
    manifest = json.loads(Path(next(f for f in files if f.endswith("manifest.json"))).read_text())
    assert manifest["request"]["levels"] == list(ALL) and manifest["request"]["custom"]["seed"] == 5  # its own seed
    from pipelines.imaging import load_image

    again = tiny_engine.run(load_image(small), replay_request(manifest))
    assert [x["sha256"] for x in again.manifest["levels"]] == [x["sha256"] for x in manifest["levels"]]


def test_the_readme_documents_every_setting_with_its_range_and_the_anchors_names():
    text = (ROOT / "README.md").read_text()
    section = text.split("### The custom level", 1)[1].split("\n## ", 1)[0]
    for spec in presets.CUSTOM_FIELDS:
        assert f"| `{spec.name}` |" in section and f"| {spec.range_text} |" in section, spec.name
    assert "creativity = denoise strength" in section and "resemblance = ControlNet" in section
    assert '"custom": {"start_from": 5' in section and "--custom" in section
