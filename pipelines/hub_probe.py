"""Can this machine reach the Hugging Face Hub? One brief probe per endpoint, remembered for a
while, so the lab and the CLI can say so instead of advising a download that cannot work."""

from __future__ import annotations

import os
import threading
import time
import urllib.error
import urllib.request

PROBE_TIMEOUT_S = 3.0
REMEMBER_S = 300.0  # a probe's answer is reused this long
DEFAULT_ENDPOINT = "https://huggingface.co"

_lock = threading.Lock()
_answers: dict[str, tuple[float, str | None]] = {}


def hub_endpoint() -> str:
    """The hub ``huggingface_hub`` talks to (``HF_ENDPOINT``, else the public hub)."""
    return os.environ.get("HF_ENDPOINT", DEFAULT_ENDPOINT).rstrip("/")


def unreachable_reason(*, timeout: float = PROBE_TIMEOUT_S) -> str | None:
    """None when the hub answers (any HTTP status counts: it is there), else why not, e.g.
    ``"https://huggingface.co is not reachable from this machine (timed out)"``."""
    endpoint = hub_endpoint()
    now = time.monotonic()
    with _lock:
        cached = _answers.get(endpoint)
        if cached is not None and now - cached[0] < REMEMBER_S:
            return cached[1]
    reason: str | None = None
    try:
        with urllib.request.urlopen(
            urllib.request.Request(endpoint + "/api/models?limit=1", method="HEAD"), timeout=timeout
        ):
            pass
    except urllib.error.HTTPError:
        pass  # it answered: reachable
    except (OSError, ValueError) as exc:  # URLError, timeouts, refused connections, a malformed endpoint
        cause = getattr(exc, "reason", exc)
        reason = f"{endpoint} is not reachable from this machine ({cause})"
    with _lock:
        _answers[endpoint] = (now, reason)
    return reason


def forget() -> None:
    """Drop remembered answers (the next call probes again)."""
    with _lock:
        _answers.clear()


UNREACHABLE_ADVICE = (
    "download the weights on a machine that reaches the hub (`cli.py download` there) and copy its "
    "Hugging Face cache folder (HF_HOME) here, or point --sd15 / --controlnet / --lora at local folders"
)
