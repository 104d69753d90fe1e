"""Real-time and daily membership, compared for the same moment.

The processor closes each UTC day it runs through: at the end of the day it evaluates every
person's real-time segments (broker.closing). A daily run of that day evaluates its segments at the
same moment (`evaluated_at`, the end of the `as_of` day). For each real-time segment the daily run
evaluates too (one that reads no live column), the two sets of persons should be the same. The
closing names each person by an identifier, which the daily run's identity map resolves: its
person ids may differ from those the stream knew (a new link merges two persons), and a person the
stream met first has a live id.
"""

from __future__ import annotations

import dataclasses
import datetime as dt

import duckdb
import redis

from orchestration.realtime import broker


@dataclasses.dataclass(frozen=True)
class SegmentAgreement:
    segment: str
    daily: int
    stream: int
    both: int

    @property
    def disagreement(self) -> int:
        return self.daily + self.stream - 2 * self.both


def reconcile(
    con: duckdb.DuckDBPyConnection, client: redis.Redis, day: dt.date, segments: list[str]
) -> list[SegmentAgreement]:
    """Per segment of `segments`, the daily run's members (marts.segment_membership) against the
    stream's closing of `day`. Raises LookupError when the stream did not close that day."""
    closing = broker.closing(day)
    if not client.exists(closing):
        raise LookupError(f"the stream processor did not run through the end of {day}: no closing to compare")
    resolve = {
        (t, i): p
        for t, i, p in con.execute("SELECT identifier_type, identifier, person_id FROM marts.identity_map").fetchall()
    }
    out = []
    for segment in segments:
        daily = {
            p
            for (p,) in con.execute(
                "SELECT person_id FROM marts.segment_membership WHERE segment_name = ?", [segment]
            ).fetchall()
        }
        stream = set()
        for identifier in client.smembers(f"{closing}:{segment}"):
            kind, value = identifier.split(":", 1)
            stream.add(value if kind == "person_id" else resolve.get((kind, value), identifier))
        out.append(SegmentAgreement(segment, len(daily), len(stream), len(daily & stream)))
    return out
