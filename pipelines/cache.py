"""The lab's cache folder: converted weights (Real-ESRGAN x4plus, waifu2x) and the stage costs
the engine measures (``costs.json``) live there."""

from __future__ import annotations

import os
from pathlib import Path


def cache_dir() -> Path:
    """The user cache folder (``$UPSCALE_LAB_CACHE`` or ``~/.cache/upscale-lab``)."""
    root = os.environ.get("UPSCALE_LAB_CACHE") or os.path.join(
        os.environ.get("XDG_CACHE_HOME") or os.path.expanduser("~/.cache"), "upscale-lab"
    )
    return Path(root)
