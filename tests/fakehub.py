"""A small local stand-in for the Hugging Face Hub's HTTP API, for offline tests.

``FakeHub`` serves, on 127.0.0.1 and a free port (stdlib ``ThreadingHTTPServer`` in a thread),
just enough of the hub's API for huggingface_hub 2.4 to download and upload:

* downloads: ``HEAD``/``GET /{repo}/resolve/{rev}/{path}`` with the headers
  ``file_download.get_hf_file_metadata`` reads (``X-Repo-Commit``, ``ETag``, ``X-Linked-Etag`` +
  ``X-Linked-Size`` for LFS-like files, ``Content-Length``; byte ranges), and no ``X-Xet-*``
  header, so the library never tries xet; repo info ``/api/{models,datasets,spaces}/{repo}``
  and ``.../revision/{rev}`` (``?blobs=true`` adds sizes, blob ids and LFS info to siblings);
  the tree listing ``/api/{type}s/{repo}/tree/{rev}[/{path}]`` that ``snapshot_download`` reads.
  Errors carry the hub's ``X-Error-Code`` (``RepoNotFound``, ``RevisionNotFound``,
  ``EntryNotFound``), which is what ``hf_raise_for_status`` maps to exceptions.
* uploads (what ``HfApi.create_repo`` / ``upload_folder`` / ``add_space_secret`` /
  ``add_space_variable`` / ``request_space_hardware`` / ``whoami`` send):
  ``POST /api/repos/create``, ``/api/validate-yaml``, ``/api/{type}s/{repo}/preupload/{rev}``
  (every file ``"regular"``: no LFS or xet upload ever), ``/api/{type}s/{repo}/commit/{rev}``
  (NDJSON), ``/api/spaces/{repo}/{secrets,variables,hardware}``, ``GET /api/whoami-v2``,
  ``GET /api/spaces/{repo}/runtime``; and ``GET /api/agent-harnesses`` (the registry
  huggingface_hub's user-agent code fetches once per process) with an empty registry.

Use::

    with FakeHub() as hub:                 # or fake_hub() to also activate it in-process
        sha = hub.add_repo("owner/model", folder)
        with hub.activate(hf_home=tmp):    # huggingface_hub in this process talks to the fake
            hf_hub_download("owner/model", "config.json")
        subprocess.run([...], env={**os.environ, **hub.env(hf_home=tmp)})   # and a child process

Pass ``hf_home`` to ``activate``/``env``: without it the cache is whatever huggingface_hub chose
at import (in a test session possibly the user's ``~/.cache/huggingface``). A pinned revision
(``presets``' LoRA commit, say) is served by ``add_repo(..., commit="<that sha>")``.

Every request is recorded in ``hub.requests`` (method, decoded path, query, status; a route the
fake does not know answers 501 and shows up in ``hub.unhandled``);
``hub.fetched(repo)`` lists the files whose bytes were downloaded (``GET`` on resolve). Created
repos' options are in ``hub.created``; Spaces in ``hub.spaces[repo_id]`` (``files``: path →
bytes at the head of ``main``, ``private``, ``sdk``, ``secrets``, ``variables``, ``hardware``,
``commits``). Write endpoints need an ``Authorization: Bearer`` token (any, or ``token=`` given
to ``FakeHub``). The server binds loopback only; ``close()`` stops it and drops its connections.
"""

from __future__ import annotations

import base64
import hashlib
import json
import os
import socket
import sys
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, unquote, urlsplit

REPO_TYPES = ("model", "dataset", "space")
_API_PREFIX = {"models": "model", "datasets": "dataset", "spaces": "space"}
_URL_PREFIX = {"model": "", "dataset": "datasets/", "space": "spaces/"}
LFS_SUFFIXES = (".safetensors", ".bin", ".ckpt", ".pt", ".pth", ".onnx", ".msgpack", ".h5", ".gguf")
LFS_MIN_SIZE = 10 * 1024 * 1024
FAKE_USER = "fakeuser"
TIMEOUT_S = 120  # huggingface_hub's 10 s metadata timeout is short for a busy 2-core machine
_DATE = "2026-01-01T00:00:00.000Z"


def git_blob_sha1(data: bytes) -> str:
    """The git object id of a blob (what the hub calls ``oid``/``blobId`` and uses as ETag)."""
    return hashlib.sha1(b"blob %d\0" % len(data) + data).hexdigest()


def _is_commit_sha(text: str) -> bool:
    return len(text) == 40 and all(c in "0123456789abcdef" for c in text)


@dataclass
class HubRequest:
    """One request the fake hub received: ``path`` is percent-decoded and without the query."""

    method: str
    path: str
    query: dict[str, list[str]]
    authorized: bool
    status: int = 0


@dataclass
class _Repo:
    repo_id: str
    repo_type: str
    private: bool = False
    sdk: str | None = None
    commits: dict[str, dict[str, bytes]] = field(default_factory=dict)  # sha -> files
    refs: dict[str, str] = field(default_factory=dict)  # branch -> sha
    lfs: set[str] = field(default_factory=set)  # paths served as LFS files

    def resolve(self, revision: str) -> str | None:
        if revision in self.refs:
            return self.refs[revision]
        return revision if revision in self.commits else None


class _HubError(Exception):
    def __init__(self, status: int, message: str, code: str | None = None, headers: dict[str, str] | None = None):
        super().__init__(message)
        self.status, self.message, self.code, self.headers = status, message, code, headers or {}


class FakeHub:
    """The fake hub server; see the module docstring. Thread-safe; a context manager."""

    def __init__(self, *, token: str | None = None, lfs_suffixes: tuple[str, ...] = LFS_SUFFIXES) -> None:
        self.token = token
        self.lfs_suffixes = lfs_suffixes
        self.requests: list[HubRequest] = []
        self.created: list[dict[str, Any]] = []
        self.spaces: dict[str, dict[str, Any]] = {}
        self._repos: dict[tuple[str, str], _Repo] = {}
        self._lock = threading.RLock()
        self._connections: set[socket.socket] = set()
        self._server = _Server(("127.0.0.1", 0), _make_handler(self))
        self.port = int(self._server.server_address[1])
        self.url = f"http://127.0.0.1:{self.port}"
        self._thread = threading.Thread(target=self._server.serve_forever, name="fakehub", daemon=True)
        self._thread.start()

    # ------------------------------------------------------------------ lifecycle

    def close(self) -> None:
        """Stop serving, close the listening socket and every open connection."""
        self._server.shutdown()
        self._server.server_close()
        with self._lock:
            conns = list(self._connections)
        for conn in conns:
            try:
                conn.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
        self._thread.join(timeout=10)

    def __enter__(self) -> FakeHub:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # ------------------------------------------------------------------ content

    def add_repo(
        self,
        repo_id: str,
        folder: Path,
        *,
        repo_type: str = "model",
        revision: str = "main",
        commit: str | None = None,
        private: bool = False,
    ) -> str:
        """Serve every file under ``folder`` as ``repo_id`` at branch ``revision``; return the
        commit sha (``commit``, or a deterministic 40-hex sha of the content). The repo then
        resolves by that branch and by the sha itself. Adding again makes a new commit."""
        if repo_type not in REPO_TYPES:
            raise ValueError(f"repo_type must be one of {REPO_TYPES}")
        files = {
            p.relative_to(folder).as_posix(): p.read_bytes() for p in sorted(Path(folder).rglob("*")) if p.is_file()
        }
        if commit is None:
            digest = hashlib.sha1(f"{repo_type}:{repo_id}@{revision}".encode())
            for path, data in files.items():
                digest.update(f"{path}\0{git_blob_sha1(data)}\0".encode())
            commit = digest.hexdigest()
        if not _is_commit_sha(commit):
            raise ValueError(f"commit must be 40 lowercase hex characters, got {commit!r}")
        with self._lock:
            repo = self._repos.setdefault((repo_type, repo_id), _Repo(repo_id, repo_type))
            repo.private = private
            repo.commits[commit] = files
            repo.refs[revision] = commit
            repo.lfs |= {p for p, d in files.items() if p.endswith(self.lfs_suffixes) or len(d) >= LFS_MIN_SIZE}
            if repo_type == "space":
                space = self.spaces.setdefault(repo_id, _new_space(private, None, None))
                space["files"] = files
        return commit

    def repo_files(self, repo_id: str, *, repo_type: str = "model", revision: str = "main") -> dict[str, bytes]:
        """The files (path → bytes) of ``repo_id`` at ``revision``."""
        with self._lock:
            repo = self._repos[(repo_type, repo_id)]
            sha = repo.resolve(revision)
            if sha is None:
                raise KeyError(revision)
            return dict(repo.commits[sha])

    def fetched(self, repo_id: str, *, repo_type: str = "model") -> list[str]:
        """Paths of ``repo_id`` whose bytes were downloaded (``GET`` on resolve), in order."""
        prefix = f"/{_URL_PREFIX[repo_type]}{repo_id}/resolve/"
        out = []
        for req in self.requests:
            if req.method == "GET" and req.path.startswith(prefix) and req.status in (200, 206):
                out.append(req.path[len(prefix) :].split("/", 1)[1])
        return out

    @property
    def unhandled(self) -> list[HubRequest]:
        """Requests no route of the fake hub answered (status 501): what a test must look at
        when huggingface_hub starts calling an endpoint this fake does not know."""
        return [r for r in self.requests if r.status == 501]

    # ------------------------------------------------------------------ pointing clients at it

    def env(self, hf_home: Path | None = None) -> dict[str, str]:
        """Environment variables that point a child process's huggingface_hub at this hub
        (``HF_ENDPOINT``, ``HF_HUB_OFFLINE=0``, generous timeouts, and ``HF_HOME`` when given)."""
        out = {"HF_ENDPOINT": self.url, "HF_HUB_OFFLINE": "0", "TRANSFORMERS_OFFLINE": "0"}
        out.update({"HF_HUB_ETAG_TIMEOUT": str(TIMEOUT_S), "HF_HUB_DOWNLOAD_TIMEOUT": str(TIMEOUT_S)})
        if hf_home is not None:
            out["HF_HOME"] = str(hf_home)
            out["HF_HUB_CACHE"] = str(Path(hf_home) / "hub")
        return out

    @contextmanager
    def activate(self, hf_home: Path | None = None) -> Iterator[FakeHub]:
        """Point the already-imported huggingface_hub of this process at this hub, and restore
        everything on exit.

        huggingface_hub reads ``HF_ENDPOINT``/``HF_HUB_OFFLINE``/``HF_HOME`` into
        ``huggingface_hub.constants`` at import time, and the module-level ``HfApi`` behind the
        function API (``huggingface_hub.model_info`` ...) keeps the endpoint it was built with.
        This patches those constants (``ENDPOINT``, ``HUGGINGFACE_CO_URL_TEMPLATE``,
        ``HF_HUB_OFFLINE``, the timeouts and, with ``hf_home``, the cache paths; without it
        downloads go to the cache huggingface_hub chose at import), that ``HfApi``'s endpoint,
        diffusers' import-time copies of ``HF_HUB_OFFLINE`` when diffusers is loaded, and the
        same variables in ``os.environ`` (read by code that checks the environment itself and
        inherited by child processes).
        """
        import huggingface_hub.constants as c
        from huggingface_hub import hf_api

        patches: list[tuple[Any, str, Any]] = [
            (c, "ENDPOINT", self.url),
            (c, "HUGGINGFACE_CO_URL_TEMPLATE", self.url + "/{repo_id}/resolve/{revision}/{filename}"),
            (c, "HF_HUB_OFFLINE", False),
            (c, "HF_HUB_ETAG_TIMEOUT", TIMEOUT_S),
            (c, "HF_HUB_DOWNLOAD_TIMEOUT", TIMEOUT_S),
            (c, "HF_URL_HOSTS", frozenset(c.HF_URL_HOSTS | {"127.0.0.1"})),
            (hf_api.api, "endpoint", self.url),
        ]
        for name in ("diffusers.loaders.lora_base", "diffusers.utils.hub_utils"):
            module = sys.modules.get(name)
            if module is not None and hasattr(module, "HF_HUB_OFFLINE"):
                patches.append((module, "HF_HUB_OFFLINE", False))
        if hf_home is not None:
            home = str(hf_home)
            patches += [
                (c, "HF_HOME", home),
                (c, "HF_HUB_CACHE", os.path.join(home, "hub")),
                (c, "HUGGINGFACE_HUB_CACHE", os.path.join(home, "hub")),
                (c, "HF_ASSETS_CACHE", os.path.join(home, "assets")),
                (c, "HF_XET_CACHE", os.path.join(home, "xet")),
                (c, "HF_TOKEN_PATH", os.path.join(home, "token")),
                (c, "HF_STORED_TOKENS_PATH", os.path.join(home, "stored_tokens")),
                (c, "AGENT_HARNESSES_PATH", os.path.join(home, ".agent_harnesses.json")),
            ]
        saved_attrs = [(obj, name, getattr(obj, name)) for obj, name, _ in patches]
        new_env = self.env(hf_home)
        saved_env = {key: os.environ.get(key) for key in new_env}
        try:
            for obj, name, value in patches:
                setattr(obj, name, value)
            os.environ.update(new_env)
            yield self
        finally:
            for obj, name, value in reversed(saved_attrs):
                setattr(obj, name, value)
            for key, old in saved_env.items():
                if old is None:
                    os.environ.pop(key, None)
                else:
                    os.environ[key] = old

    # ------------------------------------------------------------------ request handling

    def _authorized(self, headers: Any) -> bool:
        value = headers.get("authorization") or ""
        if not value.startswith("Bearer ") or not value[7:].strip():
            return False
        return self.token is None or value[7:].strip() == self.token

    def _repo(self, repo_type: str, repo_id: str, authorized: bool) -> _Repo:
        repo = self._repos.get((repo_type, repo_id))
        if repo is None or (repo.private and not authorized):
            raise _HubError(404, "Repository not found", "RepoNotFound")
        return repo

    def _commit_of(self, repo: _Repo, revision: str) -> str:
        sha = repo.resolve(revision)
        if sha is None:
            raise _HubError(404, f"Invalid rev id: {revision}", "RevisionNotFound")
        return sha

    def _split_repo(self, repo_type: str, segments: list[str]) -> tuple[str, list[str]]:
        """(repo id, remaining segments): ``owner/name`` when that repo exists or the path is
        long enough, else a single-segment legacy id such as ``gpt2``."""
        with self._lock:
            if len(segments) >= 2 and (repo_type, "/".join(segments[:2])) in self._repos:
                return "/".join(segments[:2]), segments[2:]
            if segments and (repo_type, segments[0]) in self._repos:
                return segments[0], segments[1:]
        if len(segments) >= 2:
            return "/".join(segments[:2]), segments[2:]
        raise _HubError(404, "Repository not found", "RepoNotFound")

    def handle(self, method: str, raw_path: str, headers: Any, body: bytes, req: HubRequest) -> tuple[int, dict, bytes]:
        """Route one request; return (status, headers, body)."""
        segments = [unquote(s) for s in urlsplit(raw_path).path.split("/")[1:]]
        query = req.query
        auth = req.authorized
        if segments[:1] == ["api"]:
            return self._api(method, segments[1:], query, headers, body, auth)
        # /{repo}/resolve/{rev}/{path}, /datasets/{repo}/resolve/..., /spaces/{repo}/resolve/...
        repo_type = _API_PREFIX.get(segments[0], "model") if segments else "model"
        rest = segments[1:] if segments and segments[0] in ("datasets", "spaces") else segments
        if method in ("GET", "HEAD") and "resolve" in rest[1:3]:
            i = rest.index("resolve", 1)
            repo_id, after = "/".join(rest[:i]), rest[i + 1 :]
            if len(after) >= 2:
                return self._resolve(repo_type, repo_id, after[0], "/".join(after[1:]), headers, auth)
        raise _HubError(501, f"FakeHub does not serve {method} {raw_path}")

    def _resolve(
        self, repo_type: str, repo_id: str, revision: str, path: str, headers: Any, auth: bool
    ) -> tuple[int, dict, bytes]:
        with self._lock:
            repo = self._repo(repo_type, repo_id, auth)
            sha = self._commit_of(repo, revision)
            files = repo.commits[sha]
            is_lfs = path in repo.lfs
        if path not in files:
            raise _HubError(404, "Entry not found", "EntryNotFound", {"X-Repo-Commit": sha})
        data = files[path]
        out = {
            "X-Repo-Commit": sha,
            "Content-Type": "application/octet-stream",
            "Accept-Ranges": "bytes",
            "Content-Disposition": f'inline; filename="{path.rsplit("/", 1)[-1]}"',
        }
        if is_lfs:
            digest = hashlib.sha256(data).hexdigest()
            out.update({"ETag": f'"{digest}"', "X-Linked-Etag": f'"{digest}"', "X-Linked-Size": str(len(data))})
        else:
            out["ETag"] = f'"{git_blob_sha1(data)}"'
        status = 200
        rng = headers.get("range")
        if rng and rng.startswith("bytes="):
            start_text, _, end_text = rng[6:].partition("-")
            start = int(start_text or 0)
            end = int(end_text) if end_text else len(data) - 1
            if start >= len(data):
                raise _HubError(
                    416, "Requested range not satisfiable", headers={"Content-Range": f"bytes */{len(data)}"}
                )
            out["Content-Range"] = f"bytes {start}-{min(end, len(data) - 1)}/{len(data)}"
            data, status = data[start : end + 1], 206
        return status, out, data

    # ------------------------------------------------------------------ /api

    def _api(
        self, method: str, seg: list[str], query: dict[str, list[str]], headers: Any, body: bytes, auth: bool
    ) -> tuple[int, dict, bytes]:
        if seg == ["agent-harnesses"] and method == "GET":
            return _json({"standardEnvVars": [], "harnesses": {}})
        if seg == ["whoami-v2"] and method == "GET":
            self._need_auth(auth)
            return _json(
                {
                    "type": "user",
                    "id": "0" * 24,
                    "name": FAKE_USER,
                    "fullname": "Fake User",
                    "orgs": [],
                    "auth": {"type": "access_token", "accessToken": {"displayName": "fake", "role": "write"}},
                }
            )
        if seg == ["validate-yaml"] and method == "POST":
            return self._validate_yaml(json.loads(body or b"{}"))
        if seg == ["repos", "create"] and method == "POST":
            self._need_auth(auth)
            return self._create(json.loads(body or b"{}"))
        if not seg or seg[0] not in _API_PREFIX:
            raise _HubError(501, f"FakeHub does not serve /api/{'/'.join(seg)}")
        repo_type = _API_PREFIX[seg[0]]
        repo_id, rest = self._split_repo(repo_type, seg[1:])
        action = rest[0] if rest else None
        if method == "GET" and action is None:
            return self._info(repo_type, repo_id, "main", query, auth)
        if method == "GET" and action == "revision" and len(rest) >= 2:
            return self._info(repo_type, repo_id, rest[1], query, auth)
        if method == "GET" and action == "tree" and len(rest) >= 2:
            return self._tree(repo_type, repo_id, rest[1], "/".join(rest[2:]), query, auth)
        if method == "POST" and action == "preupload" and len(rest) == 2:
            self._need_auth(auth)
            return self._preupload(repo_type, repo_id, rest[1], json.loads(body or b"{}"))
        if method == "POST" and action == "commit" and len(rest) == 2:
            self._need_auth(auth)
            return self._commit(repo_type, repo_id, rest[1], body, query)
        if repo_type == "space" and len(rest) == 1:
            if method == "POST" and action in ("secrets", "variables", "hardware"):
                self._need_auth(auth)
                return self._space_setting(repo_id, action, json.loads(body or b"{}"))
            if method == "GET" and action == "runtime":
                with self._lock:
                    self._repo("space", repo_id, auth)
                    return _json(self._runtime(repo_id))
        raise _HubError(501, f"FakeHub does not serve {method} /api/{'/'.join(seg)}")

    def _need_auth(self, auth: bool) -> None:
        if not auth:
            raise _HubError(401, "Invalid credentials in Authorization header")

    def _info(
        self, repo_type: str, repo_id: str, revision: str, query: dict[str, list[str]], auth: bool
    ) -> tuple[int, dict, bytes]:
        blobs = query.get("blobs", ["false"])[0].lower() in ("1", "true")
        with self._lock:
            repo = self._repo(repo_type, repo_id, auth)
            sha = self._commit_of(repo, revision)
            files = repo.commits[sha]
            siblings = []
            for path, data in sorted(files.items()):
                sibling: dict[str, Any] = {"rfilename": path}
                if blobs:
                    sibling.update(size=len(data), blobId=git_blob_sha1(data))
                    if path in repo.lfs:
                        sibling["lfs"] = {
                            "size": len(data),
                            "sha256": hashlib.sha256(data).hexdigest(),
                            "pointerSize": _pointer_size(data),
                        }
                siblings.append(sibling)
            info: dict[str, Any] = {
                "_id": hashlib.sha1(repo_id.encode()).hexdigest()[:24],
                "id": repo_id,
                "author": repo_id.split("/")[0] if "/" in repo_id else None,
                "sha": sha,
                "lastModified": _DATE,
                "createdAt": _DATE,
                "private": repo.private,
                "gated": False,
                "disabled": False,
                "likes": 0,
                "tags": [],
                "siblings": siblings,
                "usedStorage": sum(len(d) for d in files.values()),
            }
            if repo_type == "model":
                info.update(modelId=repo_id, downloads=0)
            if repo_type == "space":
                info.update(sdk=repo.sdk, runtime=self._runtime(repo_id), subdomain=repo_id.replace("/", "-"))
        return _json(info)

    def _tree(
        self, repo_type: str, repo_id: str, revision: str, path: str, query: dict[str, list[str]], auth: bool
    ) -> tuple[int, dict, bytes]:
        recursive = query.get("recursive", ["false"])[0].lower() in ("1", "true")
        with self._lock:
            repo = self._repo(repo_type, repo_id, auth)
            sha = self._commit_of(repo, revision)
            files = repo.commits[sha]
            lfs = set(repo.lfs)
        base = path.strip("/")
        prefix = f"{base}/" if base else ""
        under = {p: d for p, d in files.items() if p.startswith(prefix)}
        if base and not under:
            raise _HubError(404, f"{base} does not exist on {revision}", "EntryNotFound", {"X-Repo-Commit": sha})
        entries: dict[str, dict[str, Any]] = {}
        for p, data in sorted(under.items()):
            parts = p[len(prefix) :].split("/")
            for depth in range(1, len(parts)):  # the folders on the way
                if not recursive and depth > 1:
                    break
                folder = prefix + "/".join(parts[:depth])
                entries.setdefault(
                    folder,
                    {"type": "directory", "oid": hashlib.sha1(f"{sha}:{folder}".encode()).hexdigest(), "size": 0},
                )
            if recursive or len(parts) == 1:
                entry: dict[str, Any] = {"type": "file", "oid": git_blob_sha1(data), "size": len(data)}
                if p in lfs:
                    entry["lfs"] = {
                        "oid": hashlib.sha256(data).hexdigest(),
                        "size": len(data),
                        "pointerSize": _pointer_size(data),
                    }
                entries[p] = entry
        return _json([{**entry, "path": p} for p, entry in sorted(entries.items())])

    def _validate_yaml(self, payload: dict[str, Any]) -> tuple[int, dict, bytes]:
        content = str(payload.get("content", ""))
        if not content.startswith("---"):
            return _json({"errors": [], "warnings": [{"message": "empty or missing yaml metadata"}]})
        block = content.split("\n---", 1)[0].removeprefix("---")
        try:
            import yaml

            data = yaml.safe_load(block)
        except ImportError:  # nothing to check with
            data = {}
        except Exception as exc:  # yaml.YAMLError and friends
            return _json({"errors": [{"message": f"invalid YAML: {exc}"}], "warnings": []}, status=400)
        if not isinstance(data, dict):
            return _json({"errors": [{"message": "metadata must be a mapping"}], "warnings": []}, status=400)
        return _json({"errors": [], "warnings": []})

    def _create(self, payload: dict[str, Any]) -> tuple[int, dict, bytes]:
        repo_type = payload.get("type") or "model"
        if repo_type not in REPO_TYPES:
            raise _HubError(400, f"invalid repo type {repo_type!r}")
        repo_id = f"{payload.get('organization') or FAKE_USER}/{payload['name']}"
        url = f"{self.url}/{_URL_PREFIX[repo_type]}{repo_id}"
        with self._lock:
            self.created.append(dict(payload))
            if (repo_type, repo_id) in self._repos:
                return _json({"error": f"You already created this {repo_type} repo", "url": url}, status=409)
            if repo_type == "space" and payload.get("sdk") is None:
                raise _HubError(400, "a Space needs an sdk")
            repo = _Repo(repo_id, repo_type, private=payload.get("visibility") == "private", sdk=payload.get("sdk"))
            initial = hashlib.sha1(f"init:{repo_type}:{repo_id}".encode()).hexdigest()
            repo.commits[initial] = {}
            repo.refs["main"] = initial
            self._repos[(repo_type, repo_id)] = repo
            if repo_type == "space":
                self.spaces[repo_id] = _new_space(repo.private, repo.sdk, payload.get("hardware"))
        return _json({"url": url, "name": repo_id, "id": hashlib.sha1(url.encode()).hexdigest()[:24]})

    def _preupload(self, repo_type: str, repo_id: str, revision: str, payload: dict) -> tuple[int, dict, bytes]:
        with self._lock:
            repo = self._repo(repo_type, repo_id, True)
            sha = self._commit_of(repo, revision)
            files = repo.commits[sha]
            answer = [
                {
                    "path": f["path"],
                    "uploadMode": "regular",  # never "lfs": the fake stores no LFS/xet objects
                    "shouldIgnore": False,
                    "oid": git_blob_sha1(files[f["path"]]) if f["path"] in files else None,
                }
                for f in payload.get("files", [])
            ]
        return _json({"files": answer, "commitOid": sha})

    def _commit(
        self, repo_type: str, repo_id: str, revision: str, body: bytes, query: dict[str, list[str]]
    ) -> tuple[int, dict, bytes]:
        if query.get("create_pr"):
            raise _HubError(400, "FakeHub does not open pull requests")
        lines = [json.loads(line) for line in body.splitlines() if line.strip()]
        if not lines or lines[0].get("key") != "header":
            raise _HubError(400, "the commit payload must start with a header line")
        header = lines[0]["value"]
        with self._lock:
            repo = self._repo(repo_type, repo_id, True)
            if revision not in repo.refs:
                raise _HubError(404, f"Invalid rev id: {revision}", "RevisionNotFound")
            parent = repo.refs[revision]
            if header.get("parentCommit") not in (None, parent):
                raise _HubError(412, "A commit has happened since. Please refresh and try again.")
            files = dict(repo.commits[parent])
            for item in lines[1:]:
                key, value = item.get("key"), item.get("value", {})
                if key == "file":
                    files[value["path"]] = base64.b64decode(value["content"])
                elif key == "deletedFile":
                    files.pop(value["path"], None)
                elif key == "deletedFolder":
                    folder = value["path"].rstrip("/") + "/"
                    files = {p: d for p, d in files.items() if not p.startswith(folder)}
                elif key == "lfsFile":
                    raise _HubError(400, "FakeHub stores no LFS objects (preupload answers 'regular')")
                else:
                    raise _HubError(400, f"unknown commit line {key!r}")
            digest = hashlib.sha1(f"{parent}:{header.get('summary', '')}:{len(repo.commits)}".encode())
            for path, data in sorted(files.items()):
                digest.update(f"{path}\0{git_blob_sha1(data)}\0".encode())
            sha = digest.hexdigest()
            repo.commits[sha] = files
            repo.refs[revision] = sha
            if repo_type == "space" and revision == "main" and repo_id in self.spaces:
                self.spaces[repo_id]["files"] = files
                self.spaces[repo_id]["commits"].append(header.get("summary", ""))
        url = f"{self.url}/{_URL_PREFIX[repo_type]}{repo_id}/commit/{sha}"
        return _json({"success": True, "commitOid": sha, "commitUrl": url, "pullRequestUrl": None})

    def _space_setting(self, repo_id: str, action: str, payload: dict[str, Any]) -> tuple[int, dict, bytes]:
        with self._lock:
            self._repo("space", repo_id, True)
            space = self.spaces[repo_id]
            if action == "secrets":
                space["secrets"][payload["key"]] = payload["value"]
                return _json({})
            if action == "variables":
                space["variables"][payload["key"]] = payload["value"]
                return _json({k: {"value": v, "updatedAt": _DATE} for k, v in space["variables"].items()})
            space["hardware"] = payload["flavor"]
            return _json(self._runtime(repo_id))

    def _runtime(self, repo_id: str) -> dict[str, Any]:
        space = self.spaces.get(repo_id, {})
        return {
            "stage": "BUILDING",
            "hardware": {"current": None, "requested": space.get("hardware")},
            "gcTimeout": None,
            "storage": None,
        }


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    request_queue_size = 64  # snapshot_download opens several connections at once


def _new_space(private: bool, sdk: str | None, hardware: str | None) -> dict[str, Any]:
    return {
        "files": {},
        "private": private,
        "sdk": sdk,
        "secrets": {},
        "variables": {},
        "hardware": hardware,
        "commits": [],
    }


def _pointer_size(data: bytes) -> int:
    pointer = (
        f"version https://git-lfs.github.com/spec/v1\noid sha256:{hashlib.sha256(data).hexdigest()}\nsize {len(data)}\n"
    )
    return len(pointer.encode())


def _json(obj: Any, status: int = 200) -> tuple[int, dict, bytes]:
    return status, {"Content-Type": "application/json"}, json.dumps(obj).encode()


def _make_handler(hub: FakeHub) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"
        timeout = 60  # an idle keep-alive connection is dropped after this long

        def setup(self) -> None:
            super().setup()
            with hub._lock:
                hub._connections.add(self.connection)

        def finish(self) -> None:
            with hub._lock:
                hub._connections.discard(self.connection)
            super().finish()

        def log_message(self, format: str, *args: Any) -> None:
            pass  # quiet: hub.requests is the log

        def _body(self) -> bytes:
            if self.headers.get("transfer-encoding", "").lower() == "chunked":
                chunks = []
                while True:
                    size = int(self.rfile.readline().split(b";")[0].strip() or b"0", 16)
                    if size == 0:
                        self.rfile.readline()
                        break
                    chunks.append(self.rfile.read(size))
                    self.rfile.readline()
                return b"".join(chunks)
            return self.rfile.read(int(self.headers.get("content-length") or 0))

        def _serve(self, method: str) -> None:
            body = self._body() if method in ("POST", "PUT", "PATCH", "DELETE") else b""
            parts = urlsplit(self.path)
            req = HubRequest(
                method=method,
                path=unquote(parts.path),
                query=parse_qs(parts.query),
                authorized=hub._authorized(self.headers),
            )
            hub.requests.append(req)
            try:
                status, headers, payload = hub.handle(method, self.path, self.headers, body, req)
            except _HubError as err:
                status, payload = err.status, json.dumps({"error": err.message}).encode()
                headers = {"Content-Type": "application/json", "X-Error-Message": err.message, **err.headers}
                if err.code:
                    headers["X-Error-Code"] = err.code
            except Exception as exc:  # a bug in the fake: answer 500 and say what
                status, headers = 500, {"Content-Type": "application/json"}
                payload = json.dumps({"error": f"FakeHub: {type(exc).__name__}: {exc}"}).encode()
            req.status = status
            self.send_response(status)
            for key, value in headers.items():
                self.send_header(key, value)
            self.send_header("Content-Length", str(len(payload)))
            self.end_headers()
            if method != "HEAD":
                self.wfile.write(payload)

        def do_GET(self) -> None:
            self._serve("GET")

        def do_HEAD(self) -> None:
            self._serve("HEAD")

        def do_POST(self) -> None:
            self._serve("POST")

        def do_PUT(self) -> None:
            self._serve("PUT")

        def do_DELETE(self) -> None:
            self._serve("DELETE")

    return Handler


@contextmanager
def fake_hub(*, hf_home: Path | None = None, token: str | None = None) -> Iterator[FakeHub]:
    """A started :class:`FakeHub`, activated in this process (see :meth:`FakeHub.activate`);
    closed and deactivated on exit."""
    hub = FakeHub(token=token)
    try:
        with hub.activate(hf_home=hf_home):
            yield hub
    finally:
        hub.close()
