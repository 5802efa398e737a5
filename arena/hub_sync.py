"""The votes' copy in a Hub dataset repo, for a Space (whose disk is lost on restart).

Where a repo is named (``UPSCALE_LAB_VOTES_REPO``, or on a Space ``SPACE_ID`` +
``"-votes"``: the Space ``owner/lab`` keeps its votes in the dataset ``owner/lab-votes``), each
stored vote is appended as one JSON line to ``votes-<random>.jsonl`` (one file per process, so
replicas never write the same file) in a folder that huggingface_hub's ``CommitScheduler``
pushes to ``votes/`` in that repo every ``UPSCALE_LAB_VOTES_PUSH_MINUTES`` minutes (default 5)
and once more when the process exits. The token is huggingface_hub's (``HF_TOKEN``, a Space
secret). The local store stays the one the lab reads; the Hub copy is for keeping and
publishing the votes.
"""

from __future__ import annotations

import json
import logging
import os
import uuid
from dataclasses import asdict
from pathlib import Path

from arena.votes import Vote, VoteStore
from pipelines.cache import cache_dir

log = logging.getLogger("upscale-lab.arena")

VOTES_REPO_ENV = "UPSCALE_LAB_VOTES_REPO"
PUSH_MINUTES_ENV = "UPSCALE_LAB_VOTES_PUSH_MINUTES"
DEFAULT_PUSH_MINUTES = 5.0
PATH_IN_REPO = "votes"


def votes_repo() -> str | None:
    """The dataset repo the votes go to, or None (not a Space, no repo named)."""
    named = os.environ.get(VOTES_REPO_ENV)
    if named:
        return named
    space = os.environ.get("SPACE_ID")
    return f"{space}-votes" if space else None


class HubVotes:
    """A vote listener (``VoteStore.subscribe``) that appends each vote to a JSON-lines file
    pushed to the dataset ``repo_id`` by a ``CommitScheduler`` every ``every_minutes``."""

    def __init__(
        self, repo_id: str, folder: Path, *, every_minutes: float = DEFAULT_PUSH_MINUTES, token: str | None = None
    ) -> None:
        from huggingface_hub import CommitScheduler

        if every_minutes <= 0:
            raise ValueError(f"every_minutes must be positive, got {every_minutes}")
        folder.mkdir(parents=True, exist_ok=True)
        self.repo_id = repo_id
        self.path = folder / f"votes-{uuid.uuid4().hex}.jsonl"
        self.scheduler = CommitScheduler(
            repo_id=repo_id,
            repo_type="dataset",
            folder_path=folder,
            path_in_repo=PATH_IN_REPO,
            every=every_minutes,
            token=token,
            allow_patterns=["*.jsonl"],
        )

    def __call__(self, vote: Vote) -> None:
        line = json.dumps(asdict(vote), sort_keys=True) + "\n"
        with self.scheduler.lock:  # never while the scheduler reads the file for a commit
            with self.path.open("a", encoding="utf-8") as f:
                f.write(line)

    def push(self) -> None:
        """Commit what is new now (normally the scheduler does, every few minutes); waits."""
        self.scheduler.trigger().result()

    def stop(self) -> None:
        """Stop the schedule (what is not pushed yet stays in the folder)."""
        self.scheduler.stop()


def connect(store: VoteStore, *, folder: Path | None = None, token: str | None = None) -> HubVotes | None:
    """Copy ``store``'s votes to the Hub where :func:`votes_repo` names a repo; the listener,
    or None where none is named. ``folder``: where the pushed files live (default:
    ``votes_hub`` in the cache folder)."""
    repo = votes_repo()
    if repo is None:
        return None
    minutes = float(os.environ.get(PUSH_MINUTES_ENV, str(DEFAULT_PUSH_MINUTES)))
    hub = HubVotes(repo, folder or cache_dir() / "votes_hub", every_minutes=minutes, token=token)
    store.subscribe(hub)
    log.info("votes are copied to the Hub dataset %s every %g min", repo, minutes)
    return hub
