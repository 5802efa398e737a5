"""The URL guard, against servers this test runs on loopback."""

from __future__ import annotations

import base64
import io
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
from PIL import Image

from pipelines.errors import URLFetchError
from pipelines.fetch import FetchPolicy, fetch_image_bytes


def _png() -> bytes:
    buf = io.BytesIO()
    Image.new("RGB", (8, 8), (200, 10, 10)).save(buf, "PNG")
    return buf.getvalue()


PNG = _png()


class Handler(BaseHTTPRequestHandler):
    other_port = 0

    def log_message(self, *args):  # keep test output clean
        pass

    def _send(self, code, body=b"", ctype="image/png", headers=()):
        self.send_response(code)
        self.send_header("Content-Type", ctype)
        for k, v in headers:
            self.send_header(k, v)
        if body is not None:
            self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        if body:
            self.wfile.write(body)

    def do_GET(self):
        port = self.server.server_address[1]
        route = self.path
        if route == "/ok.png":
            self._send(200, PNG)
        elif route == "/html":
            self._send(200, b"<html></html>", ctype="text/html")
        elif route == "/big":
            self._send(200, b"\0" * 5000)
        elif route == "/big-chunked":
            self.send_response(200)
            self.send_header("Content-Type", "image/png")
            self.end_headers()
            for _ in range(10):
                self.wfile.write(b"\0" * 1000)
        elif route == "/trickle":
            self.send_response(200)
            self.send_header("Content-Type", "image/png")
            self.end_headers()
            try:
                for _ in range(600):  # a byte every 0.1 s for a minute
                    self.wfile.write(b"\0")
                    self.wfile.flush()
                    time.sleep(0.1)
            except OSError:
                pass
        elif route == "/to-ok":
            self._send(302, b"", headers=[("Location", f"http://127.0.0.1:{port}/ok.png")])
        elif route == "/to-other-loopback":
            self._send(302, b"", headers=[("Location", f"http://127.0.0.1:{Handler.other_port}/ok.png")])
        elif route == "/to-metadata":
            self._send(302, b"", headers=[("Location", "http://169.254.169.254/latest/meta-data")])
        elif route == "/to-private":
            self._send(307, b"", headers=[("Location", "http://10.1.2.3/x.png")])
        elif route == "/loop":
            self._send(302, b"", headers=[("Location", "/loop")])
        else:
            self._send(404, b"", ctype="text/plain")


class QuietServer(ThreadingHTTPServer):
    daemon_threads = True

    def handle_error(self, request, client_address):  # clients hang up on purpose here
        pass


@pytest.fixture(scope="module")
def server():
    srv = QuietServer(("127.0.0.1", 0), Handler)
    other = QuietServer(("127.0.0.1", 0), Handler)
    Handler.other_port = other.server_address[1]
    for s in (srv, other):
        threading.Thread(target=s.serve_forever, daemon=True).start()
    yield srv.server_address[1]
    for s in (srv, other):
        s.shutdown()


def relaxed(port, **kw):
    """The guard relaxed for this test's own server port only (loopback allowed there)."""
    return FetchPolicy(allowed_ports=(80, 443, port), loopback_ports=(port,), **kw)


def refused(url, match, policy=None, resolver=None):
    kw = {"policy": policy}
    if resolver:
        kw["resolver"] = resolver
    t = time.monotonic()
    with pytest.raises(URLFetchError, match=match):
        fetch_image_bytes(url, **kw)
    return time.monotonic() - t


@pytest.mark.parametrize(
    "url",
    [
        "file:///etc/passwd",
        "ftp://example.com/a.png",
        "gopher://example.com/",
        "data:image/png;base64," + base64.b64encode(PNG).decode(),
    ],
)
def test_other_schemes_refused(url):
    refused(url, "scheme")


def test_odd_port_refused():
    refused("http://example.com:8080/a.png", "port 8080")
    refused("http://example.com:22/a.png", "port 22")


@pytest.mark.parametrize(
    "url, kind",
    [
        ("http://127.0.0.1/a.png", "loopback"),
        ("http://[::1]/a.png", "loopback"),
        ("http://localhost/a.png", "loopback"),
        ("http://10.0.0.7/a.png", "private"),
        ("http://192.168.1.1/a.png", "private"),
        ("http://169.254.169.254/latest/meta-data", "link-local"),
        ("http://0.0.0.0/a.png", "unspecified|private"),
        ("http://[::ffff:127.0.0.1]/a.png", "loopback"),
    ],
)
def test_non_public_targets_refused(url, kind):
    refused(url, kind)


def test_public_looking_name_resolving_to_loopback_refused():
    refused("https://images.example-cdn.com/cat.png", "loopback", resolver=lambda host, port: ["127.0.0.1"])


def test_any_private_address_among_several_is_refused():
    refused("http://mixed.example/a.png", "private", resolver=lambda h, p: ["93.184.216.34", "10.0.0.1"])


def test_guard_default_refuses_the_test_server_itself(server):
    refused(f"http://127.0.0.1:{server}/ok.png", "port")


def test_relaxed_guard_fetches_an_image(server):
    body, ctype = fetch_image_bytes(f"http://127.0.0.1:{server}/ok.png", policy=relaxed(server))
    assert body == PNG and ctype == "image/png"
    body, _ = fetch_image_bytes(f"http://127.0.0.1:{server}/to-ok", policy=relaxed(server))
    assert body == PNG


def test_redirects_rechecked(server):
    refused(f"http://127.0.0.1:{server}/to-other-loopback", "port|loopback", relaxed(server))
    refused(f"http://127.0.0.1:{server}/to-metadata", "link-local", relaxed(server))
    refused(f"http://127.0.0.1:{server}/to-private", "private", relaxed(server))
    refused(f"http://127.0.0.1:{server}/loop", "redirects", relaxed(server))


def test_wrong_content_type(server):
    refused(f"http://127.0.0.1:{server}/html", "content type", relaxed(server))


def test_byte_cap(server):
    refused(f"http://127.0.0.1:{server}/big", "limit", relaxed(server, max_bytes=1000))
    refused(f"http://127.0.0.1:{server}/big-chunked", "limit", relaxed(server, max_bytes=1000))


def test_trickling_server_times_out(server):
    took = refused(
        f"http://127.0.0.1:{server}/trickle",
        "longer than|timed out",
        relaxed(server, total_timeout=1.0, read_timeout=0.5),
    )
    assert took < 30  # stopped by the total timeout, long before the trickle ends (room for a busy machine)


def test_http_error_status(server):
    refused(f"http://127.0.0.1:{server}/missing", "HTTP 404", relaxed(server))
