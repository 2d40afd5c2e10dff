"""Shards of a sweep: n workers (processes, machines or torchrun ranks) fill one cache.

A sweep (the white-box attacks of an experiment) cuts its (slice, eps) pairs into batches that
the call fixes (eps-major, every ``batch_size`` pairs).  Batch ``k`` belongs to shard
``k mod n``; a worker given shard ``i/n`` attacks only its batches and writes them to the
per-entry cache.  Because a batch is attacked whole, with the same pairs as in one process, its
entries are bit-identical to those one process makes (the batched network passes round
differently for other batch compositions).  A merge step then runs the sweep without a shard,
with every entry required from the cache (each one re-validated on load), and writes the same
result files a single process writes.

Shards come from ``--shard i/n`` or, under torchrun, from ``RANK`` / ``WORLD_SIZE``; nothing
here communicates between workers.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass

__all__ = ["MissingEntries", "Shard"]


class MissingEntries(RuntimeError):
    """A merge found batches of a sweep missing from the cache (a shard has not finished)."""


@dataclass(frozen=True)
class Shard:
    """Shard ``index`` of ``count`` (``0 <= index < count``)."""

    index: int
    count: int

    def __post_init__(self) -> None:
        if not (isinstance(self.count, int) and self.count >= 1):
            raise ValueError(f"a shard count must be a positive integer, got {self.count!r}")
        if not (isinstance(self.index, int) and 0 <= self.index < self.count):
            raise ValueError(f"shard index must be in 0..{self.count - 1}, got {self.index!r}")

    @classmethod
    def parse(cls, text: str) -> Shard:
        """``"i/n"`` (e.g. ``"0/2"``) -> ``Shard(i, n)``."""
        m = re.fullmatch(r"\s*(\d+)\s*/\s*(\d+)\s*", str(text))
        if m is None:
            raise ValueError(f"a shard is written i/n (e.g. 0/2), got {text!r}")
        return cls(int(m.group(1)), int(m.group(2)))

    @classmethod
    def from_torchrun(cls) -> Shard | None:
        """This rank's shard when torchrun started the process (``RANK`` / ``WORLD_SIZE``),
        else ``None``."""
        if "RANK" not in os.environ or "WORLD_SIZE" not in os.environ:
            return None
        return cls(int(os.environ["RANK"]), int(os.environ["WORLD_SIZE"]))

    def owns(self, batch: int) -> bool:
        """Whether batch number ``batch`` of a sweep is this shard's."""
        return batch % self.count == self.index

    def __str__(self) -> str:
        return f"{self.index}/{self.count}"
