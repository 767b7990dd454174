"""The per-partition manifest that makes a multi-file flush crash-safe (pure).

A flush of offsets ``[s, e]`` of one partition may write several files, one per event date, and no
store can write several objects atomically. So a flush goes:

1. write ``_manifests/<topic>+<partition>.json`` = ``{first: s, last: e, files: [...]}``
   (atomically: a rename locally, one PUT on S3);
2. write the files (each atomically);
3. commit offset ``e + 1`` in Kafka, synchronously.

When a partition is assigned (at start too), the sink reads the committed offset ``c`` and the
manifest before it writes anything for that partition. If the manifest's ``first >= c``, its flush
was never committed: the files it lists are deleted (those that exist), and consuming resumes at
``c``. Whatever the crash point, that leaves no duplicate and no missing row:

- before step 1 completes: the manifest is the previous, committed flush's (``first < c``); nothing
  of this flush exists; it is consumed again from ``c = s``.
- during or after step 2, before step 3: ``first = s = c``; the files written so far are deleted and
  the range is consumed and written again. The replay may cut the range differently (another
  ``last``, other dates), which is why deleting by the manifest matters: a file of a date the new
  range does not reach would otherwise be left behind, holding rows written again elsewhere.
- after step 3: ``first = s < c = e + 1``: the files are the committed truth and stay.

Every file name carries the first offset of its flush, so a rewrite replaces rather than adds, and
files of committed flushes (``first < c``) are never touched. Offsets only move forward here; a
consumer group reset to an older offset (by hand) would re-land what is already written.
"""

from __future__ import annotations

import json
from dataclasses import dataclass

from analytics_sink.exceptions import SinkError


@dataclass(frozen=True)
class Manifest:
    topic: str
    partition: int
    first: int
    last: int
    files: tuple[str, ...]

    def to_bytes(self) -> bytes:
        body = {
            "topic": self.topic,
            "partition": self.partition,
            "first": self.first,
            "last": self.last,
            "files": list(self.files),
        }
        return json.dumps(body, indent=1).encode()

    @classmethod
    def from_bytes(cls, data: bytes) -> Manifest:
        try:
            body = json.loads(data)
            manifest = cls(
                topic=str(body["topic"]),
                partition=int(body["partition"]),
                first=int(body["first"]),
                last=int(body["last"]),
                files=tuple(str(f) for f in body["files"]),
            )
        except (ValueError, KeyError, TypeError) as exc:
            raise SinkError(f"unreadable sink manifest: {exc}") from exc
        return manifest

    def uncommitted(self, committed: int | None) -> bool:
        """True when this flush was never committed: ``committed`` (the group's next offset for the
        partition, None when the group has committed nothing) is at or before its first offset."""
        return committed is None or self.first >= committed


def stale_files(manifest: Manifest | None, committed: int | None) -> tuple[str, ...]:
    """The files to delete before a newly assigned partition is written again (see the docstring)."""
    if manifest is None or not manifest.uncommitted(committed):
        return ()
    return manifest.files
