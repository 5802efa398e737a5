"""The fake hub (tests/fakehub.py) against the real huggingface_hub client: downloads into a fresh
cache, repo info, the offline cache afterwards, errors, and a child process pointed at it by
HF_ENDPOINT. Offline: the hub is a loopback server in this process."""

from __future__ import annotations

import hashlib
import os
import subprocess
import sys
import urllib.error
import urllib.request
from pathlib import Path

import pytest

from tests.fakehub import FakeHub, fake_hub, git_blob_sha1

REPO = "tester/tiny-sd"
ALLOWED = ["model_index.json", "unet/*"]


@pytest.fixture
def tiny_repo(tmp_path: Path) -> Path:
    """Four files in the layout of a diffusers repo, one LFS-like weight among them."""
    root = tmp_path / "repo"
    files = {
        "model_index.json": b'{"_class_name": "StableDiffusionPipeline"}\n',
        "unet/config.json": b'{"sample_size": 8}\n',
        "unet/diffusion_pytorch_model.safetensors": hashlib.sha256(b"weights").digest() * 64,
        "feature_extractor/preprocessor_config.json": b'{"crop_size": 224}\n',
    }
    for name, data in files.items():
        (root / name).parent.mkdir(parents=True, exist_ok=True)
        (root / name).write_bytes(data)
    return root


@pytest.fixture
def hub(tmp_path: Path):
    """A fake hub, with this process's huggingface_hub pointed at it (HF_HUB_OFFLINE lifted)."""
    with fake_hub(hf_home=tmp_path / "hf_home") as running:
        yield running


def _bytes_of(folder: Path) -> dict[str, bytes]:
    return {p.relative_to(folder).as_posix(): p.read_bytes() for p in folder.rglob("*") if p.is_file()}


def test_download_and_snapshot_fetch_exactly_the_allowed_files(hub: FakeHub, tiny_repo: Path, tmp_path: Path):
    from huggingface_hub import hf_hub_download, snapshot_download

    sha = hub.add_repo(REPO, tiny_repo)
    cache = tmp_path / "cache"
    path = Path(hf_hub_download(REPO, "unet/config.json", cache_dir=cache))
    assert path.read_bytes() == (tiny_repo / "unet/config.json").read_bytes()
    assert path.parent.parent.name == sha

    folder = Path(snapshot_download(REPO, allow_patterns=ALLOWED, cache_dir=cache))
    assert folder.name == sha  # the snapshot folder is named by the commit the hub reported
    expected = {k: v for k, v in _bytes_of(tiny_repo).items() if not k.startswith("feature_extractor/")}
    assert _bytes_of(folder) == expected

    # bytes travelled once per file, and nothing of feature_extractor/ was even asked for
    assert sorted(hub.fetched(REPO)) == sorted(expected)
    assert not [r.path for r in hub.requests if "feature_extractor" in r.path]
    assert hub.unhandled == []
    # blobs are named by the hub's ETag: git blob sha1 for small files, sha256 for LFS files
    blobs = {p.name for p in (cache / "models--tester--tiny-sd" / "blobs").iterdir()}
    weight = (tiny_repo / "unet/diffusion_pytorch_model.safetensors").read_bytes()
    assert hashlib.sha256(weight).hexdigest() in blobs
    assert git_blob_sha1((tiny_repo / "model_index.json").read_bytes()) in blobs


def test_model_info_reports_the_commit_and_file_sizes(hub: FakeHub, tiny_repo: Path):
    from huggingface_hub import HfApi

    sha = hub.add_repo(REPO, tiny_repo)
    info = HfApi().model_info(REPO, revision="main", files_metadata=True)
    assert info.sha == sha
    siblings = {s.rfilename: s for s in info.siblings or []}
    assert set(siblings) == set(_bytes_of(tiny_repo))
    for name, data in _bytes_of(tiny_repo).items():
        assert siblings[name].size == len(data)
        assert siblings[name].blob_id == git_blob_sha1(data)
    lfs = siblings["unet/diffusion_pytorch_model.safetensors"].lfs
    assert (
        lfs is not None
        and lfs.sha256
        == hashlib.sha256((tiny_repo / "unet/diffusion_pytorch_model.safetensors").read_bytes()).hexdigest()
    )
    assert siblings["model_index.json"].lfs is None


def test_the_cache_answers_offline_afterwards(tiny_repo: Path, tmp_path: Path):
    from huggingface_hub import constants, hf_hub_download, snapshot_download, try_to_load_from_cache
    from huggingface_hub.errors import IncompleteSnapshotError

    cache = tmp_path / "cache"
    with fake_hub(hf_home=tmp_path / "hf_home") as hub:
        hub.add_repo(REPO, tiny_repo)
        online_file = hf_hub_download(REPO, "model_index.json", cache_dir=cache)
        online_folder = snapshot_download(REPO, allow_patterns=ALLOWED, cache_dir=cache)
    # the hub is gone and the suite's HF_HUB_OFFLINE=1 is back in force
    assert constants.HF_HUB_OFFLINE
    assert hf_hub_download(REPO, "model_index.json", cache_dir=cache, local_files_only=True) == online_file
    assert hf_hub_download(REPO, "model_index.json", cache_dir=cache) == online_file
    assert snapshot_download(REPO, allow_patterns=ALLOWED, cache_dir=cache, local_files_only=True) == online_folder
    cached = try_to_load_from_cache(REPO, "unet/diffusion_pytorch_model.safetensors", cache_dir=cache)
    assert (
        isinstance(cached, str)
        and Path(cached).read_bytes() == (tiny_repo / "unet/diffusion_pytorch_model.safetensors").read_bytes()
    )
    # huggingface_hub 2.4 remembers the tree listing: asking offline for files never fetched fails loudly
    with pytest.raises(IncompleteSnapshotError):
        snapshot_download(REPO, allow_patterns=["feature_extractor/*"], cache_dir=cache, local_files_only=True)


def test_missing_file_revision_and_repo_raise_the_hub_errors(hub: FakeHub, tiny_repo: Path, tmp_path: Path):
    from huggingface_hub import hf_hub_download
    from huggingface_hub.errors import EntryNotFoundError, RepositoryNotFoundError, RevisionNotFoundError

    sha = hub.add_repo(REPO, tiny_repo)
    cache = tmp_path / "cache"
    with pytest.raises(EntryNotFoundError):
        hf_hub_download(REPO, "unet/missing.json", cache_dir=cache)
    # the hub's X-Repo-Commit on the 404 lets the library cache the non-existence
    assert (cache / "models--tester--tiny-sd" / ".no_exist" / sha / "unet" / "missing.json").exists()
    with pytest.raises(RevisionNotFoundError):
        hf_hub_download(REPO, "model_index.json", revision="no-such-branch", cache_dir=cache)
    with pytest.raises(RepositoryNotFoundError):
        hf_hub_download("tester/absent", "model_index.json", cache_dir=cache)


def test_a_repo_resolves_by_branch_and_by_commit(hub: FakeHub, tiny_repo: Path, tmp_path: Path):
    from huggingface_hub import hf_hub_download

    first = hub.add_repo(REPO, tiny_repo)
    (tiny_repo / "model_index.json").write_bytes(b'{"_class_name": "changed"}\n')
    second = hub.add_repo(REPO, tiny_repo)
    assert first != second
    cache = tmp_path / "cache"
    old = Path(hf_hub_download(REPO, "model_index.json", revision=first, cache_dir=cache))
    new = Path(hf_hub_download(REPO, "model_index.json", cache_dir=cache))
    assert b"StableDiffusionPipeline" in old.read_bytes() and b"changed" in new.read_bytes()
    assert (old.parent.name, new.parent.name) == (first, second)
    assert hub.add_repo(REPO, tiny_repo, revision="v1", commit="a" * 40) == "a" * 40


def test_headers_say_commit_etag_and_size_and_never_xet(hub: FakeHub, tiny_repo: Path):
    sha = hub.add_repo(REPO, tiny_repo)
    url = f"{hub.url}/{REPO}/resolve/main/unet/diffusion_pytorch_model.safetensors"
    weight = (tiny_repo / "unet/diffusion_pytorch_model.safetensors").read_bytes()
    with urllib.request.urlopen(urllib.request.Request(url, method="HEAD"), timeout=30) as resp:
        headers = resp.headers
    assert headers["X-Repo-Commit"] == sha
    assert headers["X-Linked-Etag"] == f'"{hashlib.sha256(weight).hexdigest()}"'
    assert headers["X-Linked-Size"] == headers["Content-Length"] == str(len(weight))
    assert not [k for k in headers if k.lower().startswith("x-xet")]
    ranged = urllib.request.Request(url, headers={"Range": "bytes=10-"})
    with urllib.request.urlopen(ranged, timeout=30) as resp:
        assert resp.status == 206 and resp.read() == weight[10:]
    with pytest.raises(urllib.error.HTTPError) as err:
        urllib.request.urlopen(f"{hub.url}/{REPO}/resolve/main/nope.txt", timeout=30)
    assert err.value.code == 404 and err.value.headers["X-Error-Code"] == "EntryNotFound"


def test_a_child_process_downloads_through_hf_endpoint(tiny_repo: Path, tmp_path: Path):
    code = (
        "import sys; from huggingface_hub import hf_hub_download, snapshot_download; "
        "print(hf_hub_download(sys.argv[1], 'unet/config.json')); "
        "print(snapshot_download(sys.argv[1], allow_patterns=['model_index.json']))"
    )
    with FakeHub() as hub:
        sha = hub.add_repo(REPO, tiny_repo)
        env = {**os.environ, **hub.env(hf_home=tmp_path / "child_home")}
        done = subprocess.run([sys.executable, "-c", code, REPO], env=env, capture_output=True, text=True, timeout=300)
        assert done.returncode == 0, done.stderr
        file_path, folder = (Path(line) for line in done.stdout.split())
        assert file_path.read_bytes() == (tiny_repo / "unet/config.json").read_bytes()
        assert folder.name == sha and (folder / "model_index.json").exists()
        assert str(tmp_path / "child_home" / "hub") in str(folder)
        assert sorted(hub.fetched(REPO)) == ["model_index.json", "unet/config.json"]
