from fractions import Fraction

import pytest

import presets
from pipelines.errors import RequestError
from pipelines.request import (
    MAX_SEED,
    Percent,
    RequestFields,
    UpscaleRequest,
    draw_seed,
    parse_length_text,
    parse_request,
    plan_size,
    simplest_ratio,
)

TABLE = presets.TABLE  # the API's default table
BEYOND = TABLE.max_level + 1  # a level it lacks


def plan(req, size=(640, 427)):
    return plan_size(size, parse_request(req))


def test_documented_examples():
    assert plan({"width": 1000}).canvas == (1000, 667)
    assert plan({"height": 1000}).canvas == (1500, 1000)
    both = plan({"width": 1000, "height": 1000})
    assert both.canvas == (1000, 1000)
    assert both.content == (1000, 667)
    assert both.offset == (0, 166)


def test_fit_modes():
    assert plan({"width": 1000, "height": 1000, "fit": "bounds"}).canvas == (1000, 667)
    cover = plan({"width": 1000, "height": 1000, "fit": "cover"})
    assert cover.canvas == (1500, 1000)
    crop = plan({"width": 1000, "height": 1000, "fit": "crop"})
    assert crop.canvas == crop.content == (1000, 1000)
    x0, y0, x1, y1 = crop.crop
    assert (y0, y1) == (0, 427) and abs((x1 - x0) - 427) <= 1 and abs(x0 - (640 - x1)) <= 1


def test_percent_padding_and_min_length():
    assert plan({"width": "200%"}).canvas == (1280, 853)
    assert plan({}).canvas == (1280, 854)  # default ×2
    p = plan({"width": 1000, "height": 1000, "padding": 50})
    assert p.canvas == (1000, 1000) and p.content == (900, 600)
    p2 = plan({"width": 1000, "padding": "10%"})
    assert p2.content[0] == 800 and p2.canvas == (1000, p2.content[1] + 200)
    assert plan({"min_length": 100}).content == (640, 427)  # already long enough: no shrink


def test_min_length_follows_the_same_rule_as_width_and_height():
    """Issue 15: on the bundled 640×427 photo ``height: 1000`` gave 1500×1000 but
    ``min_length: 1000`` gave 1499×1000. Setting the shorter side is a height (landscape) or a
    width (portrait) request, for every size."""
    assert plan({"min_length": 1000}).canvas == plan({"height": 1000}).canvas == (1500, 1000)
    portrait = (427, 640)
    assert plan({"min_length": 1000}, portrait).canvas == plan({"width": 1000}, portrait).canvas == (1000, 1500)
    assert plan({"min_length": 1000}, (500, 500)).canvas == (1000, 1000)
    for iw, ih in [(640, 427), (427, 640), (1023, 767), (333, 1000), (1920, 1080), (641, 641)]:
        for ml in (min(iw, ih) + 1, min(iw, ih) * 2 + 1, 2047):
            side = "height" if iw >= ih else "width"
            assert plan({"min_length": ml}, (iw, ih)) == plan({side: ml}, (iw, ih)), (iw, ih, ml)


def test_simplest_ratio():
    assert simplest_ratio(640, 427) == 1.5
    assert simplest_ratio(1920, 1080) == Fraction(16, 9)
    assert simplest_ratio(100, 100) == 1


def test_prompt_and_background_parse():
    r = parse_request(
        {"background": {"color": "#102030", "generate": {"adapter_type": "upscale", "description": " cows "}}}
    )
    assert r.prompt == "cows" and r.background_color == (16, 32, 48)
    assert parse_request(r.to_json()) == r


@pytest.mark.parametrize(
    "req, field",
    [
        ({"upscale_strength": 0}, "upscale_strength"),
        ({"upscale_strength": BEYOND}, "upscale_strength"),
        ({"upscale_strength": "5"}, "upscale_strength"),
        ({"upscale_strength": 5.5}, "upscale_strength"),
        ({"upscale_strength": None}, "upscale_strength"),
        ({"width": 0}, "width"),
        ({"width": -5}, "width"),
        ({"height": "abc%"}, "height"),
        ({"width": "0%"}, "width"),
        ({"width": 100, "min_length": 50}, "min_length"),
        ({"fit": "stretch"}, "fit"),
        ({"sharpen": True}, "sharpen"),
        ({"background": {"generate": {"adapter_type": "inpaint"}}}, "background.generate.adapter_type"),
        ({"generative_upscale": "yes"}, "generative_upscale"),
        ({"seed": -1}, "seed"),
        ({"levels": [0, 3]}, "levels"),
        ({"negative_prompt": "x" * 5000}, "negative_prompt"),
    ],
)
def test_bad_requests_name_the_field(req, field):
    with pytest.raises(RequestError) as err:
        parse_request(req)
    assert err.value.field == field
    assert str(err.value).startswith(field + ":")


def test_output_limit():
    with pytest.raises(RequestError, match="limit is"):
        plan_size((640, 427), parse_request({"width": 100000}))


def test_effective_levels():
    assert UpscaleRequest(upscale_strength=4).effective_levels == (4,)
    twin = TABLE.non_generative_twin(4).level  # the same base path without diffusion
    assert UpscaleRequest(upscale_strength=4, generative_upscale=False).effective_levels == (twin,)
    assert parse_request({"levels": "all"}).effective_levels == TABLE.numbers


def test_percent_of():
    assert Percent(150).of(200) == 300


@pytest.mark.parametrize(
    "text, length",
    [
        (None, None),
        ("", None),
        ("  ", None),
        ("1280", 1280),
        (" 1280\t", 1280),
        ("200%", Percent(200)),
        (" 12.5 % ", Percent(12.5)),
    ],
)
def test_length_text(text, length):
    assert parse_length_text("width", text) == length


@pytest.mark.parametrize("text", ["-5", "0", "abc", "12px", "0%", "1e3", "9" * 30])
def test_bad_length_text_names_the_field_like_the_json(text):
    with pytest.raises(RequestError) as err:
        parse_length_text("height", text)
    assert err.value.field == "height" and str(err.value).startswith("height: ")
    if text in ("-5", "0", "abc", "0%"):  # the JSON's value gets the very same message
        with pytest.raises(RequestError) as from_json:
            parse_request({"height": int(text) if text.lstrip("-").isdigit() else text})
        assert str(from_json.value) == str(err.value)
    assert parse_length_text("padding", "0", allow_zero=True) == 0


@pytest.mark.parametrize(
    "kw, field",
    [
        ({"seed": -1}, "seed"),
        ({"seed": 1.5}, "seed"),
        ({"fit": "stretch"}, "fit"),
        ({"min_length": 0}, "min_length"),
        ({"levels": (0, 3)}, "levels"),
        ({"levels": ()}, "levels"),
        ({"generative_upscale": "yes"}, "generative_upscale"),
        ({"upscale_strength": BEYOND}, "upscale_strength"),
    ],
)
def test_direct_construction_gets_the_same_checks(kw, field):
    with pytest.raises(RequestError) as err:
        UpscaleRequest(**kw)
    assert err.value.field == field


def test_levels_are_sorted_once_however_the_request_is_built():
    last = TABLE.max_level
    assert UpscaleRequest(levels=(last, 1, last)).levels == (1, last)
    assert parse_request({"levels": [last, 1, last]}).levels == (1, last)
    assert RequestFields(levels=[last, 1, last]).build().levels == (1, last)


def test_fields_lay_over_a_request_file():
    base = {"width": 100, "seed": 1, "background": {"color": "#102030", "generate": {"description": "a"}}}
    r = RequestFields(height="50", prompt=" b ", seed=2.0, fit="crop").build(base)
    assert (r.width, r.height, r.fit, r.seed) == (100, 50, "crop", 2)
    assert (r.background_color, r.prompt) == ((16, 32, 48), "b")
    assert RequestFields().build(base) == parse_request(base)
    assert RequestFields(prompt="  ").build().prompt is None  # blank: the preset prompt
    assert RequestFields(negative_prompt="").build().negative_prompt == ""  # explicitly none
    with pytest.raises(RequestError, match="^min_length: cannot be combined"):
        RequestFields(min_length=10).build({"width": 100})
    with pytest.raises(RequestError, match="^seed: must be a whole number"):
        RequestFields(seed=1.5).build()
    with pytest.raises(RequestError, match="^background.color:"):
        RequestFields(background="red").build()


def test_draw_seed_is_a_valid_seed():
    seeds = {draw_seed() for _ in range(50)}
    assert len(seeds) > 1 and all(0 <= s <= MAX_SEED for s in seeds)
    assert UpscaleRequest(seed=draw_seed()).seed in range(MAX_SEED + 1)


def test_fidelity_floor_is_checked_and_defaults():
    assert parse_request({}).floor == presets.DEFAULT_FIDELITY_FLOOR_DB
    assert parse_request({"fidelity_floor": 25}).floor == 25.0
    assert parse_request({"fidelity_floor": None}).fidelity_floor is None
    assert parse_request(parse_request({"fidelity_floor": 25}).to_json()).fidelity_floor == 25.0
    for bad in ("30", -1, 101, True, float("nan")):
        with pytest.raises(RequestError) as err:
            parse_request({"fidelity_floor": bad})
        assert err.value.field == "fidelity_floor" and "dB" in str(err.value)


def test_a_strength_not_given_is_the_tables_default():
    """A request without ``upscale_strength`` runs the default strength of the table it is
    checked against (the one the UI slider and the CLI help show), not the lab's default."""
    from dataclasses import replace

    two = replace(presets.TABLE, default_strength=2)
    for request in (
        UpscaleRequest(table=two),
        parse_request({}, table=two),
        RequestFields(width="128").build(table=two),
        UpscaleRequest().with_table(two),  # built on the lab's table, run on an engine's
        parse_request({"width": 96}).with_table(two),
    ):
        assert request.effective_levels == (2,) and request.strength == 2, request
    three = replace(presets.TABLE, default_strength=3)
    twin = (three.non_generative_twin(3).level,)  # level 3's base path without diffusion
    assert UpscaleRequest(generative_upscale=False).with_table(three).effective_levels == twin
    assert UpscaleRequest().effective_levels == (presets.TABLE.default_strength,)
    assert UpscaleRequest(upscale_strength=4).with_table(two).effective_levels == (4,)  # a given strength stays
    assert "upscale_strength" not in UpscaleRequest(table=two).to_json()  # not given: the reader's table decides
    assert parse_request({"upscale_strength": 3}).to_json()["upscale_strength"] == 3
