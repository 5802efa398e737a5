"""Generative Upscale Lab — the Space entry: the FastAPI app with the REST routes and the
Gradio UI mounted at ``/``.

Everything else lives in ``lab/`` (run supervision, layout, events, views, REST). Nothing
loads at import: the models load in the background once the app is created (or on the first
run with ``UPSCALE_LAB_WARM_UP=0``), and ``launch`` sits under ``__main__``.

    python app.py                       # http://127.0.0.1:7860 (PORT / HOST to change)
    UPSCALE_LAB_API_KEY=secret python app.py   # REST requests then need the key
"""

from __future__ import annotations

import logging
import os
import threading

import gradio as gr
from fastapi import FastAPI

import lab.zerogpu  # noqa: F401  (first: ZeroGPU's `spaces` must be imported before torch)
from lab import supervision
from lab.form import MAX_UPLOAD
from lab.jobs import add_jobs
from lab.layout import CSS
from lab.rest import ROUTE, add_rest
from lab.ui import QUEUE_MAX_DEFAULT, build_ui
from pipelines.engine import Engine

QUEUE_MAX = int(os.environ.get("UPSCALE_LAB_QUEUE_MAX", str(QUEUE_MAX_DEFAULT)))
WARM_UP_ENV = "UPSCALE_LAB_WARM_UP"  # "0": load the models on the first run instead of at start-up
# gradio notices a client that vanished (a killed process, a closed tab) when its heartbeat
# stream fails, and only then cancels the session's run: 5 s instead of gradio's 15 s bounds
# the work done for nobody (GRADIO_HEARTBEAT_INTERVAL overrides it)
HEARTBEAT_S = 5


def create_app(engine: Engine | None = None, *, queue_max: int | None = None) -> FastAPI:
    """The REST routes plus the Gradio UI mounted at /; ``engine`` injects a ready engine
    (tests), ``queue_max`` bounds both the UI's queue and the REST door."""
    bound = queue_max or QUEUE_MAX
    os.environ.setdefault("GRADIO_HEARTBEAT_INTERVAL", str(HEARTBEAT_S))
    api = FastAPI(title="Generative Upscale Lab")
    add_rest(api, queue_max=bound)
    add_jobs(api, queue_max=bound)  # POST /api/v1/jobs, its worker, and the upscale door's ?wait=
    demo = build_ui(engine, queue_max=bound)
    if os.environ.get(WARM_UP_ENV, "1") != "0":  # load the models now, not in the first run
        threading.Thread(target=supervision.get_engine().warm_up, name="warm-up", daemon=True).start()
    return gr.mount_gradio_app(api, demo, path="/", max_file_size=MAX_UPLOAD, css=CSS, footer_links=["api", "gradio"])


if __name__ == "__main__":
    import uvicorn

    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    host = os.environ.get("HOST", "0.0.0.0" if os.environ.get("SPACE_ID") else "127.0.0.1")
    port = int(os.environ.get("PORT", "7860"))
    print(f"Generative Upscale Lab on http://{host}:{port}  (REST: POST {ROUTE})", flush=True)  # noqa: T201
    uvicorn.run(create_app(), host=host, port=port, timeout_keep_alive=30)
