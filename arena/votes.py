"""The vote store: one row per blind pairwise vote, in any SQLAlchemy database (SQLite under
the cache folder by default, ``UPSCALE_LAB_VOTES_DB`` for any URL, e.g. PostgreSQL).

A vote holds the image's hash and kind tag, the two recipes as shown (``left``, ``right``: a
level id such as ``"7"`` or ``"upload:<name>"`` for another upscaler's result), the outcome
(``left``, ``right``, ``tie``, ``both_bad``), the crop shown (``x0,y0,x1,y1`` in output pixels)
and the time (Unix seconds). No IP address or account is stored: the voter is a salted hash
of the UI session (HMAC-SHA256; the salt from ``UPSCALE_LAB_VOTES_SALT``, else generated once
and kept in ``votes_salt`` in the cache folder), which limits each session to one vote per
pair (the same image and the same two recipes, in either order) and to
``UPSCALE_LAB_VOTES_PER_MINUTE`` votes a minute (default 20). A new page load is a new session.
"""

from __future__ import annotations

import hashlib
import hmac
import logging
import os
import re
import secrets
import time
from collections.abc import Callable, Iterable
from dataclasses import asdict, dataclass, fields
from pathlib import Path

import pandas as pd
import sqlalchemy as sa

from pipelines.cache import cache_dir
from pipelines.database import open_database
from pipelines.errors import LabError

log = logging.getLogger("upscale-lab.arena")

VOTES_DB_ENV = "UPSCALE_LAB_VOTES_DB"
SALT_ENV = "UPSCALE_LAB_VOTES_SALT"
RATE_ENV = "UPSCALE_LAB_VOTES_PER_MINUTE"
DEFAULT_PER_MINUTE = 20
SALT_FILE = "votes_salt"
KINDS = ("photo", "portrait", "text/scan", "illustration")
OUTCOMES = ("left", "right", "tie", "both_bad")
UPLOAD_PREFIX = "upload:"
_UPLOAD_NAME = re.compile(r"[\w .,()+\-]{1,80}")
_CROP = re.compile(r"\d{1,6},\d{1,6},\d{1,6},\d{1,6}")
_HASH = re.compile(r"[0-9a-f]{8,64}")

_META = sa.MetaData()
_VOTES = sa.Table(
    "votes",
    _META,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("image_hash", sa.String(64), nullable=False),
    sa.Column("kind", sa.String(16), nullable=False),
    sa.Column("left", sa.String(100), nullable=False),
    sa.Column("right", sa.String(100), nullable=False),
    sa.Column("pair", sa.String(201), nullable=False),  # the two recipes sorted: the side-free pair
    sa.Column("outcome", sa.String(8), nullable=False),
    sa.Column("crop", sa.String(32), nullable=False),
    sa.Column("session", sa.String(64), nullable=False, index=True),  # salted hash, never the session id
    sa.Column("time", sa.Float, nullable=False, index=True),
    sa.UniqueConstraint("session", "image_hash", "pair", name="one_vote_per_pair"),
)


class VoteRefused(LabError):
    """A vote the store does not take; ``reason`` is ``"invalid"``, ``"duplicate"`` or ``"rate"``."""

    def __init__(self, reason: str, message: str) -> None:
        self.reason = reason
        super().__init__(message)


@dataclass(frozen=True)
class Vote:
    """One stored vote (see the module docstring); ``id`` is the store's row id."""

    image_hash: str
    kind: str
    left: str
    right: str
    outcome: str
    crop: str
    session: str
    time: float
    id: int | None = None

    @property
    def pair(self) -> str:
        return pair_key(self.left, self.right)

    @property
    def winner(self) -> str | None:
        """The preferred recipe, or None for a tie or both bad."""
        return {"left": self.left, "right": self.right}.get(self.outcome)

    @property
    def loser(self) -> str | None:
        return {"left": self.right, "right": self.left}.get(self.outcome)


VOTE_COLUMNS = tuple(f.name for f in fields(Vote))


def pair_key(a: str, b: str) -> str:
    """The unordered pair of two recipes: the same whichever side each was on."""
    return "|".join(sorted((a, b)))


def check_recipe(recipe: str) -> str:
    """``recipe`` if it is a level id (``"7"``) or ``"upload:<name>"`` (1–80 letters, digits,
    spaces and ``.,()+-_``); else VoteRefused naming it."""
    if recipe.isdigit() and 0 < len(recipe) <= 3:
        return recipe
    if recipe.startswith(UPLOAD_PREFIX) and _UPLOAD_NAME.fullmatch(recipe[len(UPLOAD_PREFIX) :]):
        return recipe
    raise VoteRefused("invalid", f"recipe must be a level id or 'upload:<name>', got {recipe!r}")


def _check(image_hash: str, kind: str, left: str, right: str, outcome: str, crop: str) -> None:
    if not _HASH.fullmatch(image_hash):
        raise VoteRefused("invalid", f"image_hash must be 8–64 lowercase hex digits, got {image_hash!r}")
    if kind not in KINDS:
        raise VoteRefused("invalid", f"kind must be one of {KINDS}, got {kind!r}")
    if outcome not in OUTCOMES:
        raise VoteRefused("invalid", f"outcome must be one of {OUTCOMES}, got {outcome!r}")
    if check_recipe(left) == check_recipe(right):
        raise VoteRefused("invalid", f"a pair needs two different recipes, got {left!r} twice")
    if not _CROP.fullmatch(crop):
        raise VoteRefused("invalid", f"crop must be 'x0,y0,x1,y1' in pixels, got {crop!r}")


def load_salt() -> bytes:
    """``UPSCALE_LAB_VOTES_SALT``, else the salt file in the cache folder, created once (a
    random 32 bytes, readable by its owner only) by whichever process comes first."""
    given = os.environ.get(SALT_ENV)
    if given:
        return given.encode()
    path = cache_dir() / SALT_FILE
    path.parent.mkdir(parents=True, exist_ok=True)
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        for _ in range(50):  # another process created it: wait until its bytes are in
            text = path.read_text().strip()
            if text:
                return text.encode()
            time.sleep(0.02)
        raise LabError(f"the vote salt file {path} is empty: remove it or set {SALT_ENV}") from None
    with os.fdopen(fd, "w") as f:
        f.write(secrets.token_hex(32))
    return path.read_text().strip().encode()


class VoteStore:
    """The votes table in the database at ``url``; ``per_minute``: the votes one session may
    cast in any 60 s; ``clock``: Unix time (tests pass their own)."""

    def __init__(
        self, url: str, *, salt: bytes, per_minute: int = DEFAULT_PER_MINUTE, clock: Callable[[], float] = time.time
    ) -> None:
        if per_minute < 1:
            raise ValueError(f"per_minute must be at least 1, got {per_minute}")
        if not salt:
            raise ValueError("salt must not be empty")
        self._db = open_database(url, _META)
        self._salt, self.per_minute, self._clock = salt, per_minute, clock
        self._listeners: list[Callable[[Vote], None]] = []

    @classmethod
    def from_env(cls) -> VoteStore:
        """``UPSCALE_LAB_VOTES_DB`` (default: ``votes.sqlite`` in the cache folder), the salt
        of :func:`load_salt`, ``UPSCALE_LAB_VOTES_PER_MINUTE`` (default 20)."""
        url = os.environ.get(VOTES_DB_ENV) or f"sqlite:///{cache_dir() / 'votes.sqlite'}"
        rate = os.environ.get(RATE_ENV, str(DEFAULT_PER_MINUTE))
        if not rate.isdigit() or int(rate) < 1:
            raise ValueError(f"{RATE_ENV} must be a whole number of votes of at least 1, got {rate!r}")
        return cls(url, salt=load_salt(), per_minute=int(rate))

    def session_hash(self, session_id: str) -> str:
        """The voter as stored: HMAC-SHA256 of the UI session id under the salt."""
        if not session_id:
            raise VoteRefused("invalid", "a vote needs a browser session")
        return hmac.new(self._salt, session_id.encode(), hashlib.sha256).hexdigest()

    def subscribe(self, listener: Callable[[Vote], None]) -> None:
        """Call ``listener`` with every vote stored from now on (the Hub copy, say)."""
        self._listeners.append(listener)

    def add(
        self, *, session_id: str, image_hash: str, kind: str, left: str, right: str, outcome: str, crop: str
    ) -> Vote:
        """Store one vote and return it. Raises VoteRefused: ``invalid`` (a field, named),
        ``duplicate`` (this session voted on this pair of this image already), ``rate`` (more
        than ``per_minute`` votes in the last minute)."""
        _check(image_hash, kind, left, right, outcome, crop)
        session, now = self.session_hash(session_id), self._clock()
        values = dict(image_hash=image_hash, kind=kind, left=left, right=right, outcome=outcome, crop=crop)
        with self._db.begin() as db:
            if self._voted(db, session, image_hash, pair_key(left, right)):
                raise VoteRefused("duplicate", f"you have voted on this pair already ({left} vs {right})")
            recent = db.execute(
                sa.select(sa.func.count()).where(_VOTES.c.session == session, _VOTES.c.time > now - 60.0)
            ).scalar_one()
            if recent >= self.per_minute:
                raise VoteRefused("rate", f"at most {self.per_minute} votes a minute: wait a moment and vote again")
            try:
                row = db.execute(
                    _VOTES.insert().values(**values, pair=pair_key(left, right), session=session, time=now)
                )
            except sa.exc.IntegrityError:  # the same session voted from another worker a moment ago
                raise VoteRefused("duplicate", f"you have voted on this pair already ({left} vs {right})") from None
        key = row.inserted_primary_key
        vote = Vote(**values, session=session, time=now, id=int(key[0]) if key else None)
        for listener in self._listeners:
            try:
                listener(vote)
            except Exception:  # a failing copy must not lose or refuse the stored vote
                log.exception("a vote listener failed")
        return vote

    @staticmethod
    def _voted(db: sa.Connection, session: str, image_hash: str, pair: str) -> bool:
        where = (_VOTES.c.session == session, _VOTES.c.image_hash == image_hash, _VOTES.c.pair == pair)
        return db.execute(sa.select(_VOTES.c.id).where(*where)).first() is not None

    def has_voted(self, session_id: str, image_hash: str, a: str, b: str) -> bool:
        """Whether this session voted on recipes ``a`` and ``b`` of this image (either side)."""
        with self._db.connect() as db:
            return self._voted(db, self.session_hash(session_id), image_hash, pair_key(a, b))

    def votes(self, *, session_id: str | None = None, kind: str | None = None) -> list[Vote]:
        """Every vote in the order cast; only one session's, or one image kind's, when given."""
        query = sa.select(_VOTES).order_by(_VOTES.c.id)
        if session_id is not None:
            query = query.where(_VOTES.c.session == self.session_hash(session_id))
        if kind is not None:
            query = query.where(_VOTES.c.kind == kind)
        with self._db.connect() as db:
            rows = db.execute(query).mappings().all()
        return [Vote(**{k: row[k] for k in VOTE_COLUMNS}) for row in rows]

    def export(self, folder: Path) -> dict[str, Path]:
        """Every vote as ``votes.csv`` and ``votes.parquet`` in ``folder``; their paths by format."""
        return write_votes(self.votes(), folder)


def votes_frame(votes: Iterable[Vote]) -> pd.DataFrame:
    """The votes as a table, one column per :class:`Vote` field (hashes as text)."""
    frame = pd.DataFrame([asdict(v) for v in votes], columns=list(VOTE_COLUMNS))
    return frame.astype({"id": "Int64", "time": "float64"})


def write_votes(votes: Iterable[Vote], folder: Path) -> dict[str, Path]:
    """``votes.csv`` and ``votes.parquet`` (pyarrow) in ``folder``; their paths by format."""
    folder.mkdir(parents=True, exist_ok=True)
    frame = votes_frame(votes)
    paths = {"csv": folder / "votes.csv", "parquet": folder / "votes.parquet"}
    frame.to_csv(paths["csv"], index=False)
    frame.to_parquet(paths["parquet"], index=False)
    return paths


def read_votes(path: Path) -> list[Vote]:
    """Votes from an export (``.csv`` or ``.parquet``), checked as the store checks them.
    Raises ValueError naming the file and what is wrong with it."""
    try:
        if path.suffix.lower() == ".parquet":
            frame = pd.read_parquet(path)
        else:
            frame = pd.read_csv(path, dtype={c: str for c in VOTE_COLUMNS if c not in ("time", "id")})
    except (OSError, ValueError) as exc:
        raise ValueError(f"cannot read votes from {path}: {exc}") from None
    missing = [c for c in VOTE_COLUMNS if c not in frame.columns and c != "id"]
    if missing:
        raise ValueError(f"{path} is not a votes export: it lacks the columns {missing}")
    out = []
    for i, row in enumerate(frame.to_dict("records")):
        vote = Vote(**{c: row[c] for c in VOTE_COLUMNS if c in row and c != "id"})
        try:
            _check(vote.image_hash, vote.kind, vote.left, vote.right, vote.outcome, vote.crop)
        except VoteRefused as exc:
            raise ValueError(f"{path}, vote {i + 1}: {exc}") from None
        out.append(vote)
    return out
