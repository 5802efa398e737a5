"""The device and model status panel and the Fetch weights action."""

from __future__ import annotations

import os
from collections.abc import Callable

from lab import supervision
from pipelines.engine import Engine
from pipelines.errors import RequestError
from pipelines.hub_probe import UNREACHABLE_ADVICE, unreachable_reason
from pipelines.models import download_models, hub_offline


def status_markdown() -> str:
    """The Device and models panel: the device, each model's state, why fetching is off."""
    engine = supervision.get_engine()
    lines = [f"**Device:** {engine.device_detail()}"]
    for mid, state in engine.model_status().items():
        lines.append(f"- `{mid}`: {state}")
    reason = fetch_unavailable_reason(engine)
    if reason:
        lines.append(f"\n*Fetch weights:* {reason}")
    return "\n".join(lines)


def fetch_unavailable_reason(engine: Engine) -> str | None:
    """Why the Fetch weights action is off here, or None when it may fetch."""
    if os.environ.get("SPACE_ID"):
        return "on a Space the weights come with the build (README's preload_from_hub), not from here."
    if hub_offline():
        return "HF_HUB_OFFLINE=1 is set: this server does not reach the Hugging Face Hub."
    if not any(state.startswith("missing") for state in engine.model_status().values()):
        return "every model is here."
    unreachable = unreachable_reason()  # probed once, remembered a few minutes
    if unreachable:
        return f"{unreachable}: {UNREACHABLE_ADVICE}."
    return None


def fetch_weights(report: Callable[[str, int, int], None], *, engine: Engine | None = None) -> list[str]:
    """Fetch the missing diffusion weights for ``engine`` (None: the lab's; self-hosted use);
    the next run finds them. Raises LabError (offline, unreachable hub, a file the repo lacks)."""
    engine = engine or supervision.get_engine()
    reason = fetch_unavailable_reason(engine)
    if reason:
        raise RequestError("fetch", reason)
    lines: list[str] = []

    def on_step(message: str, done: int, total: int) -> None:
        lines.append(message)
        report(message, done, total)

    download_models(engine.config.models, report=on_step)
    engine.models_changed()
    return lines
