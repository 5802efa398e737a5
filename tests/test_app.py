"""The lab app: built without weights, end to end through gradio_client, and the REST endpoint."""

import base64
import io
import json
import urllib.error
import urllib.request
from pathlib import Path

import pytest
from conftest import serving
from PIL import Image

import presets
from pipelines.base import BASE_SPECS

ROOT = Path(__file__).resolve().parents[1]
PHOTO = str(ROOT / "examples" / "astronaut_portrait.png")
TABLE = presets.TABLE  # the served tiny engine's levels
PLAIN = tuple(lv.level for lv in TABLE.levels if not lv.generative)  # the levels without diffusion
GENERATIVE = tuple(lv.level for lv in TABLE.levels if lv.generative)


def test_app_builds_without_weights_and_loads_nothing(missing_engine):

    from lab.form import CUSTOM_INPUTS, FORM_FIELDS
    from lab.ui import build_ui
    from lab.weights import status_markdown

    with serving(None):  # the engine served before comes back afterwards
        demo = build_ui(missing_engine)
        api = demo.get_api_info()["named_endpoints"]
        assert not any(s.startswith("loaded") for s in missing_engine.model_status().values())  # nothing loaded
        assert "missing" in status_markdown()
    # the public API keeps its shape: the form's fields, then the single level's strength and
    # switch, then the Advanced panel's (the custom level; defaults: off, so callers may leave them out)
    assert len(FORM_FIELDS) == 10
    assert len(api["/grid"]["parameters"]) == len(FORM_FIELDS) + len(CUSTOM_INPUTS)
    assert len(api["/upscale"]["parameters"]) == len(FORM_FIELDS) + 2 + len(CUSTOM_INPUTS)


@pytest.fixture(scope="module")
def client(lab_server):
    from gradio_client import Client

    return Client(lab_server + "/", verbose=False)


def grid_args(width="96", height="", seed=3):
    from gradio_client import handle_file

    return [handle_file(PHOTO), "", width, height, "canvas", "", "", "", seed, False]


def test_grid_returns_every_level_with_scores(client):
    out = client.predict(*grid_args(), api_name="/grid")
    gallery, table, _plot, seed, files = out[0], out[1], out[2], out[3], out[4]
    assert len(gallery) == len(TABLE.levels)
    for item in gallery:
        assert Image.open(item["image"]["path"] if isinstance(item["image"], dict) else item["image"]).format == "PNG"
    rows = table["data"]
    assert [r[0] for r in rows] == [str(n) for n in TABLE.numbers]
    assert not any(r[1].startswith("not run") for r in rows), rows  # every level ran: no folded row
    psnr = table["headers"].index("PSNR")
    assert rows[TABLE.numbers.index(TABLE.baseline_level)][psnr] == "inf"  # the baseline against itself
    assert seed == 3
    names = sorted(Path(f).name for f in files)
    assert names[0] == "manifest.json" and names[1].endswith(".zip")


def test_single_upscale_honours_size(client):
    from gradio_client import handle_file

    strength = GENERATIVE[-1]
    img, file, info, seed = client.predict(
        handle_file(PHOTO), "", "120", "80", "canvas", "", "", "", 5, False, strength, True, api_name="/upscale"
    )
    assert Image.open(img).size == (120, 80)
    assert f"Level {strength}" in info and seed == 5


def test_the_form_and_the_flags_build_the_same_request():
    """The app's form and the CLI's flags go through one builder: the same fields give the same
    request, and the same message for a bad width."""
    import cli
    from lab.form import UIInput
    from pipelines.errors import RequestError
    from pipelines.request import Percent

    def form(width="200%"):
        return UIInput.of(None, "", width, "", "crop", "8", "cows", "", 7, False)

    def flags(command, *extra, width="200%"):
        args = [command, "x.png", "-o", "out", "--width", width, "--fit", "crop", "--padding", "8", "--prompt", "cows"]
        return cli.request_fields(cli.build_parser().parse_args([*args, "--seed", "7", *extra]), grid=command == "grid")

    grid = form().fields(levels=TABLE.numbers).build()
    assert grid == flags("grid").build(None)
    assert (grid.width, grid.padding, grid.prompt, grid.seed) == (Percent(200), 8, "cows", 7)
    strength = GENERATIVE[0]
    single = form().fields(upscale_strength=strength, generative_upscale=False).build()
    assert single == flags("upscale", "--strength", str(strength), "--no-generative").build(None)
    assert single.effective_levels == (TABLE.non_generative_twin(strength).level,)

    messages = []
    for fields in (form(width="-5").fields(), flags("grid", width="-5")):
        with pytest.raises(RequestError) as err:
            fields.build()
        messages.append(str(err.value))
    assert messages == ["width: must be >= 1 pixels, got -5"] * 2


def test_bad_input_gives_the_engine_message(client):
    from gradio_client.exceptions import AppError

    with pytest.raises(AppError, match="width: must be >= 1"):
        client.predict(*grid_args(width="0"), api_name="/grid")
    with pytest.raises(AppError, match="upload an image"):
        client.predict(None, "", "96", "", "canvas", "", "", "", 1, False, api_name="/grid")
    # and the server still serves
    assert len(client.predict(*grid_args(), api_name="/grid")[0]) == len(TABLE.levels)


def post(url, body, headers=None):
    data = body if isinstance(body, bytes) else json.dumps(body).encode()
    req = urllib.request.Request(
        url, data=data, headers={"Content-Type": "application/json", **(headers or {})}, method="POST"
    )
    try:
        with urllib.request.urlopen(req, timeout=120) as resp:
            return resp.status, dict(resp.headers), resp.read()
    except urllib.error.HTTPError as err:
        return err.code, dict(err.headers), err.read()


def b64_photo(size=(48, 48)):
    buf = io.BytesIO()
    Image.open(PHOTO).resize(size).save(buf, "PNG")
    return base64.b64encode(buf.getvalue()).decode()


SEED_REQUEST = {
    "width": 144,
    "generative_upscale": True,
    "upscale_strength": 5,
    "background": {
        "generate": {"adapter_type": "upscale", "description": "small cottage and cows on green fields, sunset"}
    },
}


def test_rest_with_the_design_request(lab_server):
    status, headers, body = post(
        lab_server + "/api/v1/upscale", {**SEED_REQUEST, "image_base64": b64_photo(), "seed": 9}
    )
    assert status == 200, body[:300]
    img = Image.open(io.BytesIO(body))
    assert img.format == "PNG" and img.size == (144, 144)
    assert headers["x-seed"] == "9" and headers["x-level"] == str(SEED_REQUEST["upscale_strength"])
    status, _, body = post(
        lab_server + "/api/v1/upscale?format=json", {**SEED_REQUEST, "image_base64": b64_photo(), "seed": 9}
    )
    doc = json.loads(body)
    assert status == 200 and doc["level"] == SEED_REQUEST["upscale_strength"] and doc["manifest"]["seed"] == 9
    assert doc["image_base64"]


def test_rest_errors(lab_server):
    status, _, body = post(lab_server + "/api/v1/upscale", b"{not json")
    assert status == 400 and b"malformed JSON" in body
    beyond = TABLE.max_level + 1
    status, _, body = post(lab_server + "/api/v1/upscale", {"upscale_strength": beyond, "image_base64": b64_photo()})
    assert status == 422 and json.loads(body)["field"] == "upscale_strength"
    status, _, body = post(lab_server + "/api/v1/upscale", {"width": 100})
    assert status == 422 and json.loads(body)["field"] == "url"
    status, _, body = post(lab_server + "/api/v1/upscale", {"url": "http://169.254.169.254/latest/meta-data"})
    assert status == 422 and b"link-local" in body


def test_rest_api_key(lab_server, monkeypatch):
    monkeypatch.setenv("UPSCALE_LAB_API_KEY", "s3cret")
    body = {**SEED_REQUEST, "image_base64": b64_photo(), "upscale_strength": TABLE.baseline_level}
    assert post(lab_server + "/api/v1/upscale", body)[0] == 401
    assert post(lab_server + "/api/v1/upscale", body, {"X-API-Key": "wrong"})[0] == 401
    assert post(lab_server + "/api/v1/upscale", body, {"Authorization": "Bearer s3cret"})[0] == 200


def test_rest_door_refuses_what_it_should_not_read(lab_server):
    """Pathological bodies: nested JSON is a 400 (not a 500), url with image_base64 a 422
    naming both, and the server keeps serving."""
    deep = b"[" * 5000 + b"]" * 5000
    status, _, body = post(lab_server + "/api/v1/upscale", deep)
    assert status == 400 and b"nested too deeply" in body
    both = {"url": "https://example.com/a.png", "image_base64": b64_photo(), "upscale_strength": TABLE.baseline_level}
    status, _, body = post(lab_server + "/api/v1/upscale", both)
    doc = json.loads(body)
    assert status == 422 and doc["field"] == "url" and "image_base64" in doc["error"]
    ok = {"image_base64": b64_photo(), "upscale_strength": TABLE.baseline_level, "width": 96}
    assert post(lab_server + "/api/v1/upscale", ok)[0] == 200


def _raw_post(lab_server: str, head: bytes, chunks) -> tuple[int, int]:
    """Send a request by hand; returns (status, bytes of body sent before the answer)."""
    import socket
    from urllib.parse import urlparse

    url = urlparse(lab_server)
    sent = 0
    with socket.create_connection((url.hostname, url.port), timeout=120) as sock:
        sock.sendall(head)
        try:
            for chunk in chunks:
                sock.sendall(chunk)
                sent += len(chunk)
        except OSError:  # the server answered and closed while we were still sending
            pass
        return read_status(sock), sent


def read_status(sock) -> int:
    """The HTTP status code of the answer arriving on ``sock``."""
    reply = b""
    while b"\r\n" not in reply:
        part = sock.recv(4096)
        if not part:
            break
        reply += part
    return int(reply.split(b" ", 2)[1])


def test_rest_body_over_the_limit_is_refused_before_it_is_read(lab_server):
    import presets

    limit = presets.MAX_REQUEST_BODY_BYTES
    head = (
        b"POST /api/v1/upscale HTTP/1.1\r\nHost: lab\r\nContent-Type: application/json\r\n"
        + f"Content-Length: {300 * 1000 * 1000}\r\nConnection: close\r\n\r\n".encode()
    )
    status, _ = _raw_post(lab_server, head, [])  # nothing of the 300 MB sent: refused from the header
    assert status == 413

    chunk = b"x" * (1024 * 1024)
    n_chunks = 3 * limit // len(chunk)

    def chunked():
        for _ in range(n_chunks):
            yield f"{len(chunk):x}\r\n".encode() + chunk + b"\r\n"
        yield b"0\r\n\r\n"

    head = b"POST /api/v1/upscale HTTP/1.1\r\nHost: lab\r\nContent-Type: application/json\r\nTransfer-Encoding: chunked\r\nConnection: close\r\n\r\n"
    status, _ = _raw_post(lab_server, head, chunked())
    assert status == 413


def test_grid_fills_in_as_levels_finish_with_an_estimate(client):
    """The grid streams: an early update already shows the levels without diffusion
    while the diffusion levels read 'running'; the last update is the whole result. After a
    run on this device, the next run states its estimated time."""
    client.predict(*grid_args(width="256", seed=5), api_name="/grid")  # measures the stage costs
    job = client.submit(*grid_args(width="256", seed=6), api_name="/grid")
    final = job.result(timeout=600)
    updates = job.outputs()
    assert len(updates) >= 2, "no update before the end of the run"
    first_gallery, first_note = updates[0][0], updates[0][9]
    captions = [item["caption"] for item in first_gallery]  # in grid order
    assert len(captions) == len(TABLE.levels) and any("running" in c for c in captions)
    in_grid = [lv.level for lv in TABLE.in_grid_order]
    # first: the levels with neither diffusion nor the ×4 network (milliseconds of work)
    quick = [n for n in PLAIN if not BASE_SPECS[TABLE.get(n).base_path].tiled_by_x4]
    assert quick, "the table has a level without diffusion and without the network"
    for n in quick:
        assert "running" not in captions[in_grid.index(n)] and "PSNR" in captions[in_grid.index(n)]
    assert "levels ready" in first_note and "estimated ~" in first_note
    assert len(final[0]) == len(TABLE.levels) and all("running" not in item["caption"] for item in final[0])


def test_rest_huge_numbers_are_clear_errors(lab_server):
    """A 5000-digit integer and a percentage beyond any size are answered 400/422, not 500."""
    status, _, body = post(lab_server + "/api/v1/upscale", b'{"width": ' + b"9" * 5000 + b"}")
    assert status == 400 and b"malformed JSON" in body
    status, _, body = post(
        lab_server + "/api/v1/upscale", {"image_base64": b64_photo(), "width": "1" + "0" * 400 + "%"}
    )
    assert status == 422 and json.loads(body)["field"] == "width"


def test_rest_returns_the_recommended_level_of_several(lab_server):
    from pipelines.recommend import NIQE_TIE

    body = {"image_base64": b64_photo((96, 96)), "width": 288, "levels": list(PLAIN), "seed": 1}
    status, headers, raw = post(lab_server + "/api/v1/upscale?format=json", body)
    assert status == 200, raw[:300]
    doc = json.loads(raw)
    pick = doc["recommended_level"]
    assert pick in PLAIN and doc["level"] == pick and headers["x-recommended-level"] == str(pick)
    assert doc["recommendation"]["reason"].startswith(f"level {pick}")
    # the pick follows the rule over the scores the response carries
    floor = doc["recommendation"]["floor_db"]
    scores = {int(n): v["metrics"] for n, v in doc["levels"].items()}
    eligible = [m["niqe"] for m in scores.values() if m["lr_consistency"] == "inf" or m["lr_consistency"] >= floor]
    assert scores[pick]["niqe"] <= min(eligible) + NIQE_TIE
    # a floor no level reaches: the reason, naming the field to change; a bad floor: the range
    status, _, raw = post(lab_server + "/api/v1/upscale", {**body, "fidelity_floor": 99})
    assert status == 422 and json.loads(raw)["field"] == "fidelity_floor" and "99 dB" in json.loads(raw)["error"]
    status, _, raw = post(lab_server + "/api/v1/upscale", {**body, "fidelity_floor": -3})
    assert status == 422 and json.loads(raw)["field"] == "fidelity_floor"
