"""A collector compatible with Segment's HTTP Tracking API: existing Segment SDKs send to it unchanged.

    POST /v1/track | /v1/identify | /v1/page | /v1/screen | /v1/alias   one message
    POST /v1/batch                                                       {"batch": [...], "context": {...}}

The write key is the HTTP Basic user name, as Segment's SDKs send it. Each message is checked by
the batch loader's own checks (`check_messages`: one validator, the same reason codes), and every
message, valid or not, is appended to the Redis stream before the response: a 200 means the
messages are durably in the stream (Redis appends and fsyncs each write before it answers). The
response lists the messages quarantined and why; they travel on to the landing files and the batch
run's quarantine. When Redis cannot be reached the answer is 503, which Segment's SDKs retry.
"""

from __future__ import annotations

import asyncio
import base64
import datetime as dt
import gzip
import hmac
import json
import logging
import queue
import threading
from concurrent.futures import Future
from typing import Any

import duckdb
import redis
from fastapi import FastAPI, HTTPException, Request
from fastapi.responses import JSONResponse

from orchestration.defs.ingest.loaders.events import check_messages
from orchestration.realtime import broker, erasure

log = logging.getLogger("tessera.collector")

SINGLE = ("track", "identify", "page", "screen", "alias")
MAX_BODY_BYTES = 4 * 1024**2  # Segment's own API takes 500 KB per batch


class Collector:
    """Checks and appends messages. Requests that arrive together are checked together: one thread
    takes every request waiting and runs the checks and the Redis transaction once for all of them,
    since a check costs some 14 ms whatever its size (DuckDB plans the query), and 100 lines add 3."""

    MAX_LINES = 5000  # per round of checks

    def __init__(self, client: redis.Redis, write_key: str):
        if len(write_key) < 16:
            raise ValueError(
                "TESSERA_COLLECTOR_WRITE_KEY must be set to a write key of at least 16 characters; the "
                "collector accepts only messages sent with it (Segment's SDKs send it as the HTTP Basic user)."
            )
        self.client, self.write_key = client, write_key
        self._erased = erasure.ErasedCache()
        broker.ensure_groups(client)
        self._con = duckdb.connect()
        self._con.execute("SET TimeZone = 'UTC'")
        self._waiting: queue.Queue[tuple[list[str], dt.datetime, Future]] = queue.Queue()
        threading.Thread(target=self._check_rounds, name="collector-checks", daemon=True).start()

    def authorised(self, header: str | None) -> bool:
        if not header or not header.lower().startswith("basic "):
            return False
        try:
            user = base64.b64decode(header[6:].strip()).decode().split(":", 1)[0]
        except ValueError:
            return False
        return hmac.compare_digest(user.encode(), self.write_key.encode())

    def submit(self, messages: list[Any], received_at: dt.datetime) -> Future:
        """A future of `accept`'s answer."""
        lines = [json.dumps(m, separators=(",", ":"), ensure_ascii=False, default=str) for m in messages]
        done: Future = Future()
        self._waiting.put((lines, received_at, done))
        return done

    def accept(self, messages: list[Any], received_at: dt.datetime) -> dict:
        """Check `messages`, append them all to the stream in one transaction, and say what was quarantined."""
        return self.submit(messages, received_at).result()

    def _check_rounds(self) -> None:
        while True:
            requests = [self._waiting.get()]
            size = len(requests[0][0])
            while size < self.MAX_LINES and not self._waiting.empty():
                requests.append(self._waiting.get_nowait())
                size += len(requests[-1][0])
            try:
                answers = self._round(requests)
            except Exception as exc:  # noqa: BLE001 - each waiting request gets the error (503 for Redis)
                for _, _, done in requests:
                    done.set_exception(exc)
                continue
            for (_, _, done), answer in zip(requests, answers, strict=True):
                done.set_result(answer)

    def _round(self, requests: list[tuple[list[str], dt.datetime, Future]]) -> list[dict]:
        lines = [line for r in requests for line in r[0]]
        received = [r[1] for r in requests for _ in r[0]]
        checked = check_messages(self._con, lines, received)
        while True:
            with self.client.pipeline(transaction=True) as pipe:
                pipe.watch(erasure.ERASED)  # an erasure between the check below and the append: done again
                erased = self._erased.refresh(pipe)
                pipe.multi()
                answers = self._append(pipe, requests, checked, erased)
                try:
                    pipe.execute()
                    return answers
                except redis.WatchError:
                    continue

    def _append(self, pipe, requests, checked: list[dict], erased: set[str]) -> list[dict]:
        """Queue every message on `pipe`, but those of an erased person: they are answered as
        accepted and never stored (the batch run would drop them too)."""
        answers, position, dropped = [], 0, 0
        match = erasure.Match(erased) if erased else None
        for request_lines, _, _ in requests:
            quarantined = []
            for line, row in zip(request_lines, checked[position : position + len(request_lines)], strict=True):
                if match and (match(row["user_id"], row["anonymous_id"]) if not row["reason_code"] else match(line)):
                    dropped += 1
                    continue
                fields = {"line": line}
                if not row["reason_code"]:  # the checks' typed fields, so the processor never parses the line
                    fields |= {k: _text(row[k]) for k in TYPED if row[k] is not None}
                else:
                    fields |= {"reason_code": row["reason_code"], "reason": row["reason"]}
                    quarantined.append(
                        {"messageId": row["message_id"], "reason_code": row["reason_code"], "reason": row["reason"]}
                    )
                pipe.xadd(broker.EVENTS, fields)
            position += len(request_lines)
            answers.append(
                {"success": True, "accepted": len(request_lines) - len(quarantined), "quarantined": quarantined}
            )
        if dropped:
            pipe.hincrby(broker.STATS, "collector_erased", dropped)
        return answers


# The typed fields of a valid message that the processor reads (the names of check_messages).
TYPED = ("message_id", "type", "event", "user_id", "anonymous_id", "occurred_at", "revenue", "product_id")


def _text(value: Any) -> str:
    return value.isoformat() if isinstance(value, dt.datetime) else str(value)


def _messages(kind: str, body: Any, received_at: dt.datetime) -> list[Any]:
    """The messages of a request as Segment's API reads them: the path gives a single message its
    type; a batch's top-level context fills what its messages leave out."""
    if not isinstance(body, dict):
        raise HTTPException(400, "The body must be a JSON object.")
    if kind == "batch":
        items = body.get("batch")
        if not isinstance(items, list):
            raise HTTPException(400, 'A batch body needs "batch": a list of messages.')
        shared = body.get("context") if isinstance(body.get("context"), dict) else {}
    else:
        items, shared = [{**body, "type": kind}], {}
    stamp = received_at.isoformat(timespec="milliseconds") + "Z"
    out = []
    for item in items:
        if isinstance(item, dict):
            item = dict(item)
            item.pop("writeKey", None)  # a credential: never stored
            if shared:
                item["context"] = {**shared, **(item.get("context") or {})}
            if "sentAt" not in item and "sentAt" in body:
                item["sentAt"] = body["sentAt"]
            item["receivedAt"] = stamp
        out.append(item)  # anything else is quarantined by the checks (not an object)
    return out


def create_app(collector: Collector) -> FastAPI:
    app = FastAPI(title="Tessera collector", description=__doc__, version="1")

    async def receive(kind: str, request: Request) -> JSONResponse:
        if not collector.authorised(request.headers.get("authorization")):
            raise HTTPException(401, "Send the write key as the HTTP Basic user name (TESSERA_COLLECTOR_WRITE_KEY).")
        raw = await request.body()
        if len(raw) > MAX_BODY_BYTES:
            raise HTTPException(413, f"The body is over {MAX_BODY_BYTES // 1024**2} MB; send smaller batches.")
        try:
            if request.headers.get("content-encoding", "").lower() == "gzip":
                raw = gzip.decompress(raw)
            body = json.loads(raw)
        except (OSError, ValueError) as exc:
            raise HTTPException(400, f"The body is not JSON ({exc}).") from None
        received_at = dt.datetime.now(dt.UTC).replace(tzinfo=None)
        messages = _messages(kind, body, received_at)
        try:
            result = await asyncio.wrap_future(collector.submit(messages, received_at))
        except redis.RedisError as exc:
            log.error("Redis refused the messages: %s", exc)
            raise HTTPException(503, "The stream is unavailable; retry later.", headers={"Retry-After": "1"}) from None
        return JSONResponse(result)

    def route(kind: str):
        async def endpoint(request: Request) -> JSONResponse:
            return await receive(kind, request)

        return endpoint

    for kind in (*SINGLE, "batch"):
        app.add_api_route(f"/v1/{kind}", route(kind), methods=["POST"], name=kind)

    @app.get("/health")
    def health() -> dict:
        try:
            length = collector.client.xlen(broker.EVENTS)
        except redis.RedisError:
            raise HTTPException(503, "Redis cannot be reached.") from None
        return {"status": "ok", "stream_length": length}

    return app


def app_from_environment() -> FastAPI:
    from orchestration.lib.settings import load_settings

    settings = load_settings()
    return create_app(Collector(broker.connect(settings.redis_url), settings.collector_write_key.get_secret_value()))
