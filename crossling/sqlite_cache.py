"""One SQLite file as a cache shared by threads and processes (the generation and translation caches)."""

from __future__ import annotations

import sqlite3
import time
from pathlib import Path


def open_wal_db(path: str | Path, create_table: str) -> sqlite3.Connection:
    """A SQLite cache file in WAL mode, shared by threads and processes. Switching a fresh file to
    WAL takes an exclusive lock that SQLite's busy timeout does not wait for: processes opening one
    new cache together retry it (measured: "database is locked" for 1 of 4 workers in a clean CI run)."""
    db = sqlite3.connect(str(path), timeout=60, check_same_thread=False)
    attempts = 0
    while True:
        try:
            db.execute("PRAGMA journal_mode=WAL")
            db.execute(create_table)
            db.commit()
            return db
        except sqlite3.OperationalError as e:
            attempts += 1
            if "locked" not in str(e) or attempts == 200:  # 200 x 50 ms
                raise
            time.sleep(0.05)
