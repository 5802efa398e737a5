"""Every module of the project imports on its own, first, in a fresh interpreter.

An import cycle can hide when the modules of a cycle happen to be imported in a working order
(a test or the app imports one side first) or behind a lazy import; imported first and alone,
the other side fails. One subprocess per module (``python -c "import X"``, the repository as
the working folder, ``HF_HUB_OFFLINE=1``), so no earlier import can mask it.

The modules are found, not listed: every ``.py`` under the project's packages (those present:
some are being split into packages) and the top-level entry points.
"""

from __future__ import annotations

import os
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = ("pipelines", "presets", "spaces_config", "testing", "lab", "evaluation", "arena")
ENTRY_POINTS = ("app.py", "cli.py", "evaluate.py", "figures.py")
WORKERS = 2  # a subprocess each, two at a time: the machine is shared
TIMEOUT_S = 300


def project_modules(root: Path = ROOT) -> list[str]:
    """Dotted names of every module of the project under ``root``."""
    names: list[str] = []
    for package in PACKAGES:
        for path in sorted((root / package).rglob("*.py")):
            if "__pycache__" in path.parts:
                continue
            parts = path.relative_to(root).with_suffix("").parts
            names.append(".".join(parts[:-1] if parts[-1] == "__init__" else parts))
    names += [Path(entry).stem for entry in ENTRY_POINTS if (root / entry).is_file()]
    return names


def import_alone(module: str, root: Path = ROOT) -> tuple[str, int, str]:
    """``(module, exit status, the end of its error output)`` of ``python -c "import module"``
    run in ``root`` in a fresh interpreter."""
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "GRADIO_ANALYTICS_ENABLED": "False", "PYTHONDONTWRITEBYTECODE": "1"}
    env.pop("PYTHONPATH", None)  # the working folder alone decides what is found
    done = subprocess.run(
        [sys.executable, "-c", f"import {module}"],
        cwd=root,
        env=env,
        capture_output=True,
        text=True,
        timeout=TIMEOUT_S,
    )
    return module, done.returncode, done.stderr[-2000:]


def test_the_discovery_finds_the_project():
    modules = project_modules()
    for expected in ("pipelines.engine", "pipelines.models", "pipelines.refiner", "presets", "app", "cli"):
        assert expected in modules
    assert len(modules) == len(set(modules))


@pytest.mark.timeout(1800)
def test_every_module_imports_first_and_alone():
    with ThreadPoolExecutor(max_workers=WORKERS) as pool:
        outcomes = list(pool.map(import_alone, project_modules()))
    failed = {module: err for module, status, err in outcomes if status != 0}
    assert not failed, "\n\n".join(f"import {module} failed:\n{err}" for module, err in failed.items())
