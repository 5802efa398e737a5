"""One way to open the lab's tables (the REST jobs, the arena's votes): any SQLAlchemy URL;
a SQLite file gets its folder made and waits for a busy lock instead of failing at once."""

from __future__ import annotations

from pathlib import Path

import sqlalchemy as sa

SQLITE_BUSY_TIMEOUT_S = 30


def open_database(url: str, metadata: sa.MetaData) -> sa.Engine:
    """An engine for ``url`` with ``metadata``'s tables created when missing."""
    db_url = sa.make_url(url)
    sqlite = db_url.get_backend_name() == "sqlite"
    if sqlite and db_url.database not in (None, "", ":memory:"):
        Path(str(db_url.database)).parent.mkdir(parents=True, exist_ok=True)
    engine = sa.create_engine(db_url, connect_args={"timeout": SQLITE_BUSY_TIMEOUT_S} if sqlite else {})
    metadata.create_all(engine)
    return engine
