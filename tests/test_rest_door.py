"""The REST door refuses early and plainly: the queue bound before the body is read, the media
type (no cross-site simple requests), text the encoder cannot take, the wrong method; several
levels with no recommendation are still an answer."""

from __future__ import annotations

import json
import select
import socket
from urllib.parse import urlparse

from test_app import b64_photo, post, read_status

ROUTE = "/api/v1/upscale"


def test_small_output_of_several_levels_answers_without_a_recommendation(lab_server):
    """Outputs under NIQE's 192 px have no NIQE: no recommendation, and that is not an error."""
    body = {"image_base64": b64_photo((64, 64)), "width": 128, "levels": [7, 8, 9], "seed": 1}
    status, headers, raw = post(lab_server + ROUTE + "?format=json", body)
    assert status == 200, raw[:300]
    doc = json.loads(raw)
    assert doc["recommended_level"] is None and "x-recommended-level" not in headers
    assert "NIQE" in doc["recommendation"]["reason"]
    assert doc["level"] in (7, 8, 9) and doc["width"] == 128
    status, headers, raw = post(lab_server + ROUTE, {**body, "levels": "all"})
    assert status == 200 and raw.startswith(b"\x89PNG")


def test_lone_surrogates_are_a_422_naming_the_field(lab_server):
    photo = b64_photo()
    cases = {
        "negative_prompt": {"negative_prompt": "\ud800"},
        "background.generate.description": {
            "background": {"generate": {"adapter_type": "upscale", "description": "cows \udfff"}}
        },
    }
    for field, extra in cases.items():
        raw_body = json.dumps({"image_base64": photo, "upscale_strength": 8, **extra}).encode()  # \ud800 escaped
        status, _, raw = post(lab_server + ROUTE + "?format=json", raw_body)
        doc = json.loads(raw)
        assert status == 422 and doc["field"] == field, (field, raw[:300])
        assert "cannot be encoded" in doc["error"]


def test_text_plain_is_refused_with_415(lab_server):
    body = json.dumps({"image_base64": b64_photo(), "upscale_strength": 8}).encode()
    for media in ("text/plain", "application/x-www-form-urlencoded", "multipart/form-data; boundary=x"):
        status, _, raw = post(lab_server + ROUTE, body, {"Content-Type": media})
        assert status == 415 and b"application/json" in raw, media
    status, _, _ = post(lab_server + ROUTE, body, {"Content-Type": "application/json; charset=utf-8"})
    assert status == 200


def test_get_on_the_post_route_is_405_with_allow(lab_server):
    import urllib.error
    import urllib.request

    try:
        urllib.request.urlopen(lab_server + ROUTE, timeout=60)
        raise AssertionError("GET was answered 200")
    except urllib.error.HTTPError as err:
        assert err.code == 405 and err.headers["Allow"] == "POST"


def test_the_queue_bound_is_kept_at_the_door(lab_server):
    """30 requests at once against the bound of 16: each sends its headers and only part of
    its body, so every admitted one holds its slot. Exactly 14 are refused (503) before
    their bodies arrive; the 16 admitted then finish their bodies and are all served."""
    url = urlparse(lab_server)
    body = json.dumps({"image_base64": b64_photo(), "upscale_strength": 8, "width": 64}).encode()
    head = (
        f"POST {ROUTE} HTTP/1.1\r\nHost: lab\r\nContent-Type: application/json\r\n"
        f"Content-Length: {len(body)}\r\nConnection: close\r\n\r\n"
    ).encode()
    socks = [socket.create_connection((url.hostname, url.port), timeout=120) for _ in range(30)]
    try:
        for s in socks:
            s.sendall(head + body[:10])
        refused: list[socket.socket] = []
        while len(refused) < 14:  # the refusals come without the rest of the body
            readable, _, _ = select.select([s for s in socks if s not in refused], [], [], 120)
            assert readable, f"only {len(refused)} requests were refused at the door"
            refused += readable
        assert len(refused) == 14
        assert [read_status(s) for s in refused] == [503] * 14
        admitted = [s for s in socks if s not in refused]
        for s in admitted:
            s.sendall(body[10:])
        assert [read_status(s) for s in admitted] == [200] * 16
    finally:
        for s in socks:
            s.close()


def test_a_padding_that_leaves_no_room_names_the_field(lab_server):
    body = {"image_base64": b64_photo(), "width": 256, "height": 256, "padding": "50%", "upscale_strength": 8}
    status, _, raw = post(lab_server + ROUTE, body)
    doc = json.loads(raw)
    assert status == 422 and doc["field"] == "padding" and "no room" in doc["error"]
