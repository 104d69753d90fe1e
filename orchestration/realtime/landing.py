"""Rolls the collector's stream into landing files, so that the daily batch run replays every message.

Each batch of the consumer group `landing` becomes one file, landing/events/collector-<day>-<first
stream id>.jsonl, written under a temporary name and renamed: the batch loader never sees half a
file. A writer killed after the rename but before its acknowledgement writes the same messages
again on restart; the loader keeps one copy of each messageId.
"""

from __future__ import annotations

import datetime as dt
import os
from pathlib import Path

import redis

from orchestration.realtime import broker


class LandingWriter:
    def __init__(self, client: redis.Redis, landing_dir: Path, consumer: str = "landing"):
        self.client, self.folder, self.consumer = client, Path(landing_dir) / "events", consumer
        self._pending = True
        broker.ensure_groups(client)

    def step(self, count: int = 5000, block_ms: int = 100) -> int:
        entries, self._pending = broker.read_group(
            self.client, broker.LANDING, self.consumer, self._pending, count, block_ms
        )
        if not entries:
            return 0
        first = entries[0][0]
        day = dt.datetime.fromtimestamp(int(first.split("-")[0]) / 1000, dt.UTC).date()
        path = self.folder / f"collector-{day}-{first.replace('-', '_')}.jsonl"
        self.folder.mkdir(parents=True, exist_ok=True)
        partial = path.with_name(f".{path.name}.partial")
        with partial.open("w", encoding="utf-8") as out:
            out.writelines(fields["line"] + "\n" for _, fields in entries)
            out.flush()
            os.fsync(out.fileno())
        os.replace(partial, path)
        self.client.xack(broker.EVENTS, broker.LANDING, *[sid for sid, _ in entries])
        return len(entries)
