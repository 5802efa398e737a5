"""The Space's settings (spaces_config): README.md's front matter is the render of the config,
the config is derived from presets and requirements.txt, `check` catches drift, and `deploy`
uploads what a Space needs, and only that, to a (fake) hub."""

from __future__ import annotations

import ast
import os
import re
import shutil
import subprocess
import sys
from importlib.metadata import version
from pathlib import Path

import pytest
import yaml

import presets
import spaces_config
from spaces_config import (
    API_KEY_SECRET,
    FrontMatterError,
    default_config,
    readme_front_matter,
    render_front_matter,
    space_files,
    yaml_scalar,
)
from spaces_config.__main__ import main as cli_main
from tests.fakehub import FakeHub, fake_hub

ROOT = Path(__file__).resolve().parents[1]
README = ROOT / "README.md"
CONTROLNET_LINE = "  - lllyasviel/control_v11f1e_sd15_tile config.json,diffusion_pytorch_model.bin\n"


def _front_matter_data(block: str) -> dict:
    assert block.startswith("---\n") and block.endswith("\n---\n")
    data = yaml.safe_load(block[4:-4])
    assert isinstance(data, dict)
    return data


def _gradio_pin() -> str:
    pins = re.findall(r"(?m)^gradio==(\S+)\s*$", (ROOT / "requirements.txt").read_text())
    assert len(pins) == 1, pins
    return pins[0]


def _copy_checkout(dst: Path) -> Path:
    """The files of this checkout (tracked and untracked-but-not-ignored, as in the working
    tree) copied to ``dst``."""
    listed = subprocess.run(
        ["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"],
        cwd=ROOT,
        capture_output=True,
        check=True,
        timeout=120,
    ).stdout.decode()
    for rel in filter(None, listed.split("\0")):
        src = ROOT / rel
        if src.is_file():
            (dst / rel).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(src, dst / rel)
    return dst


def _add_junk(root: Path) -> list[str]:
    """Files a Space must never get: environments, outputs, caches, byte code, git metadata."""
    junk = [".venv/x", "out/y.png", "__pycache__/z.pyc", ".cache/w", "pipelines/__pycache__/q.pyc", ".git/HEAD"]
    for rel in junk:
        (root / rel).parent.mkdir(parents=True, exist_ok=True)
        (root / rel).write_bytes(b"junk")
    return junk


def _forbidden(path: str) -> bool:
    parts = path.split("/")
    return (
        parts[0] in {".venv", "out", ".cache", ".git", "tests", "runs", "eval_runs"}
        or "__pycache__" in parts
        or path.endswith(".pyc")
    )


# --------------------------------------------------------------------------- the front matter


def test_readme_front_matter_is_the_render():
    assert readme_front_matter(README) == render_front_matter(default_config())


def test_check_command_passes_on_this_checkout():
    done = subprocess.run(
        [sys.executable, "-m", "spaces_config", "check"], cwd=ROOT, capture_output=True, text=True, timeout=300
    )
    assert done.returncode == 0, done.stdout + done.stderr


def test_render_reads_back_as_the_config_with_its_types():
    config = default_config()
    data = _front_matter_data(render_front_matter(config))
    assert data == config.front_matter()
    assert list(data) == list(config.front_matter_keys)  # stable key order
    assert data["pinned"] is False and data["python_version"] == "3.11" and data["sdk"] == "gradio"


@pytest.mark.parametrize("source", ["render", "README.md"])
def test_preload_lines_list_exactly_the_files_presets_names(source: str):
    block = render_front_matter(default_config()) if source == "render" else readme_front_matter(README)
    data = _front_matter_data(block)
    lines = data["preload_from_hub"]
    specs = [presets.MODELS[mid] for mid in presets.DIFFUSION_MODEL_IDS]
    assert data["models"] == [spec.repo for spec in specs]
    assert len(lines) == len(specs)
    for spec, line in zip(specs, lines, strict=True):
        fields = line.split(" ")
        assert fields[0] == spec.repo
        assert fields[1].split(",") == list(spec.files)
        assert fields[2:] == ([spec.revision] if spec.pinned else [])
    controlnet = next(line for line in lines if line.startswith(presets.MODELS["controlnet_tile"].repo + " "))
    assert controlnet.split(" ")[1].split(",") == ["config.json", "diffusion_pytorch_model.bin"]
    assert "safetensors" not in controlnet


def test_sdk_version_is_the_gradio_pin():
    pin = _gradio_pin()
    assert default_config().sdk_version == pin
    assert _front_matter_data(readme_front_matter(README))["sdk_version"] == pin
    assert version("gradio") == pin  # and the environment runs what the Space will run


def test_variables_and_secret_are_the_ones_app_reads():
    app_source = "\n".join(p.read_text() for p in [ROOT / "app.py", *sorted((ROOT / "lab").glob("*.py"))])
    config = default_config()
    assert re.search(rf'API_KEY_ENV = "{API_KEY_SECRET}"', app_source)
    assert config.secrets == (API_KEY_SECRET,)
    for name, value in config.variables:
        assert name == "GRADIO_ANALYTICS_ENABLED" or f'"{name}"' in app_source, name
        assert value and name not in config.secrets
    assert {"UPSCALE_LAB_QUEUE_MAX", "UPSCALE_LAB_TIME_LIMIT"} <= set(config.env)


@pytest.mark.parametrize(
    "text",
    [
        "3.11",
        "6.31.0",
        "1e3",
        "0x1F",
        "true",
        "No",
        "null",
        "~",
        "",
        "a: b",
        "a #b",
        "#c",
        "-x",
        "x:",
        "1:20",
        "2026-01-01",
        "🔬",
    ],
)
def test_yaml_scalars_read_back_as_the_same_string(text: str):
    assert yaml.safe_load(f"key: {yaml_scalar(text)}\n") == {"key": text}


def test_plain_values_stay_plain():
    assert yaml_scalar("6.31.0") == "6.31.0"
    assert yaml_scalar("repo a.json,b/c.json") == "repo a.json,b/c.json"
    assert yaml_scalar("3.11") == '"3.11"'
    assert yaml_scalar(False) == "false"


def test_check_fails_on_a_modified_copy_and_write_repairs_it(tmp_path: Path, capsys: pytest.CaptureFixture[str]):
    shutil.copy2(ROOT / "requirements.txt", tmp_path / "requirements.txt")
    original = README.read_text(encoding="utf-8")
    assert CONTROLNET_LINE in original
    (tmp_path / "README.md").write_text(
        original.replace(CONTROLNET_LINE, CONTROLNET_LINE.replace(".bin", ".safetensors")), encoding="utf-8"
    )
    assert cli_main(["--root", str(tmp_path), "check"]) == 1
    diff = capsys.readouterr().out
    assert "-  - lllyasviel/control_v11f1e_sd15_tile config.json,diffusion_pytorch_model.safetensors" in diff
    assert "+  - lllyasviel/control_v11f1e_sd15_tile config.json,diffusion_pytorch_model.bin" in diff

    assert cli_main(["--root", str(tmp_path), "write"]) == 0
    assert (tmp_path / "README.md").read_text(encoding="utf-8") == original  # the rest is kept byte for byte
    assert cli_main(["--root", str(tmp_path), "check"]) == 0

    # a new gradio pin without a rewritten README is drift too (as a child process: exit code 1)
    pins = (tmp_path / "requirements.txt").read_text().replace(f"gradio=={_gradio_pin()}", "gradio==99.0.0")
    (tmp_path / "requirements.txt").write_text(pins)
    done = subprocess.run(
        [sys.executable, "-m", "spaces_config", "--root", str(tmp_path), "check"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 1 and "+sdk_version: 99.0.0" in done.stdout


def test_a_readme_without_front_matter_is_reported_and_repaired(tmp_path: Path):
    readme = tmp_path / "README.md"
    readme.write_text("# Title\n")
    with pytest.raises(FrontMatterError):
        readme_front_matter(readme)
    spaces_config.write_readme(readme, default_config())
    assert readme.read_text().startswith(render_front_matter(default_config()) + "\n# Title\n")


# --------------------------------------------------------------------------- deploy


def test_deploy_command_uploads_the_app_and_nothing_else(tmp_path: Path):
    copy = _copy_checkout(tmp_path / "checkout")
    junk = _add_junk(copy)
    with FakeHub(token="hf_test_token") as hub:
        env = {**os.environ, **hub.env(hf_home=tmp_path / "hf_home"), "LAB_KEY_FOR_TEST": "s3cret"}
        done = subprocess.run(
            [sys.executable, "-m", "spaces_config", "deploy", "--space", "tester/upscale-lab", "--private"]
            + ["--token", "hf_test_token", "--api-key-from-env", "LAB_KEY_FOR_TEST", "--hardware", "t4-small"],
            cwd=copy,
            env=env,
            capture_output=True,
            text=True,
            timeout=300,
        )
        assert done.returncode == 0, done.stdout + done.stderr
        assert done.stdout.strip().splitlines()[-1] == f"{hub.url}/spaces/tester/upscale-lab"
        assert hub.unhandled == []

        space = hub.spaces["tester/upscale-lab"]
        assert space["sdk"] == "gradio" and space["private"] is True
        assert [c for c in hub.created if c["name"] == "upscale-lab"] == [
            {"name": "upscale-lab", "organization": "tester", "visibility": "private", "type": "space", "sdk": "gradio"}
        ]
        uploaded = space["files"]
        for needed in (
            "app.py",
            "lab/rest.py",
            "requirements.txt",
            "README.md",
            "pipelines/engine.py",
            "presets/__init__.py",
        ):
            assert uploaded.get(needed) == (copy / needed).read_bytes(), needed
        assert "spaces_config/__init__.py" in uploaded and "examples/astronaut_portrait.png" in uploaded
        assert [p for p in uploaded if _forbidden(p)] == []
        assert not set(junk) & set(uploaded)
        assert sorted(uploaded) == space_files(copy)  # `files` lists exactly what deploy uploads
        assert space["secrets"] == {API_KEY_SECRET: "s3cret"}
        assert space["variables"] == default_config().env
        assert space["hardware"] == "t4-small"


def test_uploaded_code_imports_only_uploaded_code():
    """The Space gets no tests/, testing/, bench/ or scripts/: nothing it runs may import them."""
    uploaded = space_files(ROOT)
    local = {p.name.removesuffix(".py") for p in ROOT.iterdir() if p.suffix == ".py" or (p / "__init__.py").exists()}
    shipped = {p.split("/")[0].removesuffix(".py") for p in uploaded}
    for rel in (p for p in uploaded if p.endswith(".py")):
        for node in ast.walk(ast.parse((ROOT / rel).read_text(encoding="utf-8"))):
            names = [a.name for a in node.names] if isinstance(node, ast.Import) else []
            if isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                names = [node.module]
            for top in {name.split(".")[0] for name in names} & local:
                assert top in shipped, f"{rel} imports {top}, which deploy does not upload"


def test_deploy_in_process_public_without_secret_and_again_unchanged(tmp_path: Path):
    copy = _copy_checkout(tmp_path / "checkout")
    with fake_hub(hf_home=tmp_path / "hf_home") as hub:
        first = spaces_config.deploy("tester/lab", root=copy, token="hf_x")
        space = hub.spaces["tester/lab"]
        assert first.url == f"{hub.url}/spaces/tester/lab"
        assert (space["private"], space["secrets"], space["hardware"]) == (False, {}, None)
        assert len(space["commits"]) == 1
        again = spaces_config.deploy("tester/lab", root=copy, token="hf_x")
        assert again.commit == first.commit and len(space["commits"]) == 1  # nothing changed, no commit
        assert hub.unhandled == []


def test_deploy_refuses_a_stale_front_matter_before_sending_anything(tmp_path: Path):
    copy = _copy_checkout(tmp_path / "checkout")
    readme = copy / "README.md"
    readme.write_text(readme.read_text(encoding="utf-8").replace("pinned: false", "pinned: true"), encoding="utf-8")
    with fake_hub(hf_home=tmp_path / "hf_home") as hub:
        with pytest.raises(FrontMatterError, match="python -m spaces_config write"):
            spaces_config.deploy("tester/lab", root=copy, token="hf_x")
        with pytest.raises(ValueError, match="unknown hardware"):
            spaces_config.deploy("tester/lab", root=_copy_checkout(tmp_path / "clean"), token="hf_x", hardware="h9")
        assert hub.requests == []


def test_deploy_command_reports_a_rejected_token(tmp_path: Path, capsys: pytest.CaptureFixture[str]):
    copy = _copy_checkout(tmp_path / "checkout")
    with fake_hub(hf_home=tmp_path / "hf_home", token="the-right-one") as hub:
        assert cli_main(["--root", str(copy), "deploy", "--space", "tester/lab", "--token", "a-wrong-one"]) == 2
        assert "401" in capsys.readouterr().err
        assert hub.spaces == {} and hub.created == []
