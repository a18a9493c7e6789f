"""Held-out splits by group that stay put.

A group's side of a split comes from a hash of its name, not from a draw over the list of groups.
Adding or removing other groups therefore leaves every group where it was, so two models trained
before and after a data change can be compared on the groups that both held out. The data
builder's dev split (``data_recipes.schema.in_dev_split``) and the guard model's calib/check split
(``safety.guard_train.split_rows``) both use it.
"""

from __future__ import annotations

import hashlib


def stable_hash(*parts: str) -> int:
    """A process-independent 64-bit hash (Python's ``hash`` is salted per process)."""
    digest = hashlib.blake2b("\x1f".join(parts).encode("utf-8"), digest_size=8).digest()
    return int.from_bytes(digest, "little")


def split_point(*parts: str) -> float:
    """Where ``parts`` (a split's name, then the group) fall in [0, 1): a group is held out by a split
    of fraction f when its point is below f."""
    return stable_hash(*parts) / 2**64
