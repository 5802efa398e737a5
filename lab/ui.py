"""The Blocks UI: the layout for the served engine's level table, wired to its handlers."""

from __future__ import annotations

import gradio as gr

from lab import supervision
from lab.arena_tab import build_arena_tab
from lab.batch_tab import build_batch_tab, wire_batch_tab
from lab.handlers import wire
from lab.layout import build_layout
from lab.sweep_tab import build_sweep_tab, wire_sweep_tab
from lab.views import runnable_default
from pipelines.engine import Engine
from pipelines.imaging import enable_heif

QUEUE_MAX_DEFAULT = 16


def build_ui(engine: Engine | None = None, *, queue_max: int = QUEUE_MAX_DEFAULT) -> gr.Blocks:
    """The Blocks UI. ``engine`` injects a ready engine (tests: tiny models); None = the
    default engine, created lazily on the first event. Level choices, the grid's columns and
    labels, the compare defaults and the strength slider come from the engine's level table."""
    if engine is not None:
        supervision.set_engine(engine)
    enable_heif()  # gradio opens uploads with Pillow before our handler sees them: phone photos too
    with gr.Blocks(title="Generative Upscale Lab", delete_cache=(3600, 3600)) as demo:
        table = supervision.served_table(engine)
        start = runnable_default(table, supervision.get_engine().model_status())
        layout = build_layout(table, single_start=start)
        wire(layout, demo)
        with layout.tabs:  # tabs of their own modules, after the results' tabs
            batch = build_batch_tab(table, start[0])
            sweep = build_sweep_tab(table)  # one or two custom-level settings (lab/sweep_tab.py)
        wire_batch_tab(batch, layout.form)
        wire_sweep_tab(sweep, layout.form)
        build_arena_tab(layout.state, demo)  # blind votes between levels (lab/arena_tab.py)
    demo.queue(max_size=queue_max, default_concurrency_limit=1)
    return demo
