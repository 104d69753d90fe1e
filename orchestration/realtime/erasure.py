"""Erasure in Redis: what the real-time path holds of an erased person goes, as the batch run's copies do.

`erase` puts the suppression list's hashes into the set `tessera:rt:erased`, which the collector and
the processor check before they store or count a message. Both WATCH that set, so a batch checked
against an older list is done again. It then finds the stream's persons with a listed identifier
(by the links it made and by their key names), lists their other identifiers too (as the batch run
extends the list over links), and reads every key of the path: a stream entry, a hash field, a set
or sorted-set member or a value holding a listed identifier goes, acknowledged in every consumer
group so that no pending list keeps it. `traces` reads the same keys and deletes nothing, for the
no-trace check. Identifiers are found as the byte search of files finds them (orchestration/lib/traces.py).
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable

import redis

from orchestration.lib.traces import Scanner
from orchestration.realtime import broker

ERASED = f"{broker.PREFIX}erased"  # set of sha256 hashes: the suppression list's, and the links the stream made
UNFINISHED = f"{broker.PREFIX}erasure_unfinished"  # set while an erasure reads the keys: a killed one is redone
PAGE = 5000


def _sha(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()


class Match:
    """Does a text hold a listed identifier: a token (as in files), or the whole text, or its value
    after "<type>:" (a link), so that an id without a digit is found where Redis holds it whole."""

    def __init__(self, listed: Iterable[str]):
        self.listed = set(listed)
        self.scanner = Scanner(self.listed)

    def __call__(self, *texts: str | None) -> bool:
        for text in texts:
            if not text:
                continue
            if _sha(text) in self.listed or _sha(text.split(":", 1)[-1]) in self.listed:
                return True
            if self.scanner.count(text.encode()):
                return True
        return False


def erased_hashes(client: redis.Redis) -> set[str]:
    return client.smembers(ERASED)


class ErasedCache:
    """The erased hashes as a writer of the path checks them: read again when the set grew. Call
    `refresh` on a pipeline that WATCHes ERASED, so that its transaction fails if the set grows after."""

    def __init__(self) -> None:
        self.hashes: set[str] = set()

    def refresh(self, watching: redis.client.Pipeline) -> set[str]:
        if watching.scard(ERASED) != len(self.hashes):
            self.hashes = watching.smembers(ERASED)
        return self.hashes


def _persons(client: redis.Redis, match: Match) -> tuple[set[str], set[str]]:
    """(the stream's persons with a listed identifier or id, every identifier the stream links to them)."""
    persons = set()
    for field, person in client.hscan_iter(broker.IDS, count=PAGE):
        if match(field, person):
            persons.add(person)
    for name in client.scan_iter(match=broker.key("*", "*"), count=PAGE):
        person = name.removeprefix(broker.PREFIX).split(":", 1)[1]
        if match(person) or (name.startswith(broker.key("links", "")) and any(match(m) for m in client.smembers(name))):
            persons.add(person)
    identifiers = {field for field, person in client.hscan_iter(broker.IDS, count=PAGE) if person in persons}
    for person in persons:
        identifiers |= client.smembers(broker.key("links", person))
    return persons, identifiers


def _walk(client: redis.Redis, match: Match, delete: bool) -> dict[str, int]:
    """Listed identifiers per key of the real-time path (keys, stream entries, fields, members); with
    `delete`, each goes."""
    found: dict[str, int] = {}
    for name in client.scan_iter(match=f"{broker.PREFIX.split(':')[0]}:*", count=PAGE):
        if name in (ERASED, UNFINISHED):
            continue
        kind = client.type(name)
        hits: list = []
        if match(name) and kind != "stream":
            found[name] = 1
            if delete:
                client.delete(name)
            continue
        if kind == "stream":
            start = "-"
            while entries := client.xrange(name, min=start, count=PAGE):
                hits += [i for i, fields in entries if match(*fields.values())]
                start = "(" + entries[-1][0]
            if hits and delete:
                with client.pipeline(transaction=True) as tx:
                    tx.xdel(name, *hits)
                    for group in client.xinfo_groups(name):  # no pending list keeps them either
                        tx.xack(name, group["name"], *hits)
                    tx.execute()
        elif kind == "hash":
            hits = [f for f, v in client.hscan_iter(name, count=PAGE) if match(f, v)]
            if hits and delete:
                client.hdel(name, *hits)
        elif kind == "set":
            hits = [m for m in client.sscan_iter(name, count=PAGE) if match(m)]
            if hits and delete:
                _remove_from_set(client, name, hits)
        elif kind == "zset":
            hits = [m for m, _ in client.zscan_iter(name, count=PAGE) if match(m)]
            if hits and delete:
                client.zrem(name, *hits)
        elif kind == "list":
            hits = [v for v in client.lrange(name, 0, -1) if match(v)]
            if hits and delete:
                for value in set(hits):
                    client.lrem(name, 0, value)
        elif kind == "string" and match(client.get(name)):
            hits = [name]
            if delete:
                client.delete(name)
        if hits:
            found[name] = len(hits)
    return found


def _remove_from_set(client: redis.Redis, name: str, members: list[str]) -> None:
    """A closing's set of persons keeps its count in the closing's hash: both change together."""
    closing = name.rsplit(":", 1)[0]
    with client.pipeline(transaction=True) as tx:
        tx.srem(name, *members)
        if name.startswith(broker.closing("")) and closing != name:
            tx.hincrby(closing, name.rsplit(":", 1)[1], -len(members))
        tx.execute()


def erase(client: redis.Redis, listed: Iterable[str]) -> dict[str, int]:
    """Erase the persons of `listed` (the suppression list's hashes) from Redis; returns what went,
    per key. Nothing to do (and nothing read) when every hash was applied before."""
    listed = set(listed)
    if not listed - erased_hashes(client) and not client.exists(UNFINISHED):
        return {}
    with client.pipeline(
        transaction=True
    ) as tx:  # from here on, the collector and the processor store nothing of theirs
        tx.set(UNFINISHED, 1)
        if listed:
            tx.sadd(ERASED, *listed)
        tx.execute()
    persons, identifiers = _persons(client, Match(listed | erased_hashes(client)))
    more = {_sha(p) for p in persons} | {_sha(i.split(":", 1)[-1]) for i in identifiers}
    if more:
        client.sadd(ERASED, *more)
    found = _walk(client, Match(erased_hashes(client)), delete=True)
    client.delete(UNFINISHED)
    return found


def traces(client: redis.Redis, listed: Iterable[str]) -> dict[str, int]:
    """Listed identifiers left in Redis, per key; empty when there are none."""
    listed = set(listed) | erased_hashes(client)
    return _walk(client, Match(listed), delete=False) if listed else {}
