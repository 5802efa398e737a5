"""The REST door under a 300 MB body: the lab app is started as its own process and sent a
300 MB request twice — once declared in Content-Length (refused before reading), once chunked
(read only up to the limit) — and its resident memory is measured before and after.

    .venv/bin/python bench/rest_door.py
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
import urllib.request

import psutil
from common import ROOT, machine, table

BODY = 300 * 1000 * 1000
CHUNK = b"x" * (1 << 20)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def send(port: int, chunked: bool) -> tuple[int, int, float]:
    """(status, body bytes sent before the answer, seconds)."""
    head = b"POST /api/v1/upscale HTTP/1.1\r\nHost: lab\r\nContent-Type: application/json\r\nConnection: close\r\n"
    head += b"Transfer-Encoding: chunked\r\n\r\n" if chunked else f"Content-Length: {BODY}\r\n\r\n".encode()
    sent, t = 0, time.perf_counter()
    with socket.create_connection(("127.0.0.1", port), timeout=120) as sock:
        sock.sendall(head)
        try:
            while sent < BODY:
                piece = f"{len(CHUNK):x}\r\n".encode() + CHUNK + b"\r\n" if chunked else CHUNK
                sock.sendall(piece)
                sent += len(CHUNK)
        except OSError:
            pass  # the server answered and closed
        reply = sock.recv(4096)
    return int(reply.split(b" ", 2)[1]), sent, time.perf_counter() - t


def main() -> None:
    port = free_port()
    env = {**os.environ, "PORT": str(port), "HF_HUB_OFFLINE": "1", "GRADIO_ANALYTICS_ENABLED": "False"}
    app = subprocess.Popen([sys.executable, str(ROOT / "app.py")], cwd=ROOT, env=env, stdout=subprocess.DEVNULL)
    try:
        for _ in range(600):
            try:
                urllib.request.urlopen(f"http://127.0.0.1:{port}/", timeout=5)
                break
            except OSError:
                time.sleep(0.5)
        proc = psutil.Process(app.pid)
        rows = []
        for chunked in (False, True):
            before = proc.memory_info().rss
            status, sent, seconds = send(port, chunked)
            time.sleep(1)
            after = proc.memory_info().rss
            rows.append(
                [
                    "chunked" if chunked else "Content-Length: 300 MB",
                    status,
                    f"{sent / 1e6:.0f}",
                    f"{seconds:.1f}",
                    f"{(after - before) / 1e6:+.0f}",
                ]
            )
    finally:
        app.terminate()
        app.wait(30)
    print(f"machine: {machine()}; a 300 MB body to POST /api/v1/upscale\n")
    print(table(["body", "status", "MB sent before the answer", "s", "server RSS change (MB)"], rows))


if __name__ == "__main__":
    main()
