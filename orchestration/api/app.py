"""The read-only lookup API: identifiers to segments, and the segment catalogue.

The warehouse is opened read-only, copied into an in-memory snapshot and closed again, so the API
never holds DuckDB's file lock against a pipeline run. The snapshot reloads when the file changes
(checked at most every `refresh_seconds`); while a run holds the lock, the last snapshot serves.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import hmac
import logging
import math
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

import duckdb
import limits
import limits.storage
import limits.strategies
import numpy as np
import pyarrow as pa
from fastapi import Depends, FastAPI, HTTPException
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from pydantic import BaseModel

from orchestration.lib.identifiers import LOOKUP_TYPES, IdentifierError, lookup_key
from orchestration.lib.warehouse import table_exists
from orchestration.realtime.broker import LiveMembership

log = logging.getLogger("tessera.api")
LOOKUP_ERRORS = {404: {"description": "Unknown identifier"}, 422: {"description": "Invalid identifier type or value"}}


class SegmentMembership(BaseModel):
    segment: str
    type: str
    entered_at: dt.datetime


class IdentitySegments(BaseModel):
    person_id: str
    as_of: dt.date | None
    segments: list[SegmentMembership]


class Recommendation(BaseModel):
    rank: int
    item_id: str
    score: float
    reason: str
    model: str


class IdentityRecommendations(BaseModel):
    person_id: str
    as_of: dt.date | None
    recommendations: list[Recommendation]


class Assignment(BaseModel):
    experiment: str
    variant: str
    assigned_at: dt.date


class IdentityExperiments(BaseModel):
    person_id: str
    as_of: dt.date | None
    experiments: list[Assignment]


class Segment(BaseModel):
    name: str
    type: str
    description: str | None
    owner: str | None
    rule: str | None
    size: int
    entered: int
    exited: int
    published: bool
    status: str
    as_of: dt.date


class Health(BaseModel):
    status: str
    as_of: dt.date | None
    snapshot_loaded_at: dt.datetime | None
    persons: int
    identifiers: int


class PerPerson:
    """A table's rows grouped by person, each column dictionary-encoded by Arrow: a few bytes a row,
    where a Python object per row took the snapshot to 964 MB at 100k persons (528 MB through pandas,
    whose per-row strings fragment the heap). `get` makes a person's rows, each a `model` whose fields
    are the table's columns, when they are asked for."""

    def __init__(self, table: pa.Table | None = None, model: type[BaseModel] | None = None):
        self._model, self._at, self._columns = model, {}, []
        if table is None or table.num_rows == 0:
            return
        encoded = [table.column(name).combine_chunks().dictionary_encode("encode") for name in table.column_names]
        (_, codes, names), *columns = [
            (name, c.indices.to_numpy(zero_copy_only=False), c.dictionary.to_pylist())
            for name, c in zip(table.column_names, encoded, strict=True)
        ]
        change = np.flatnonzero(codes[1:] != codes[:-1]) + 1  # the rows come ordered by person
        starts, ends = np.r_[0, change], np.r_[change, len(codes)]
        self._at = {
            names[c]: (s, e) for c, s, e in zip(codes[starts].tolist(), starts.tolist(), ends.tolist(), strict=True)
        }
        self._columns = columns

    def get(self, person: str) -> list:
        start, end = self._at.get(person, (0, 0))
        return [
            self._model(**{name: values[codes[i]] for name, codes, values in self._columns}) for i in range(start, end)
        ]


def _per_person(con, table: str, columns: str, order: str, model: type[BaseModel]) -> PerPerson:
    """`marts.<table>`'s rows per person, in `order`, as `model`s (`columns` named as its fields); none if the
    table is not built yet."""
    if not table_exists(con, "marts", table):
        return PerPerson()
    sql = f"SELECT person_id, {columns} FROM marts.{table} ORDER BY person_id, {order}"
    with con.cursor() as cursor:  # a relation of its own: the connection may hold another's unfinished result
        return PerPerson(cursor.sql(sql).to_arrow_table(), model)


@dataclass
class Snapshot:
    as_of: dt.date | None = None
    identities: dict[tuple[str, str], str] = field(default_factory=dict)
    persons: set[str] = field(default_factory=set)
    memberships: PerPerson = field(default_factory=PerPerson)  # of SegmentMembership
    segments: dict[str, Segment] = field(default_factory=dict)
    recommendations: PerPerson = field(default_factory=PerPerson)  # of Recommendation, best first
    assignments: PerPerson = field(default_factory=PerPerson)  # of Assignment
    loaded_at: dt.datetime | None = None


def load_snapshot(warehouse: Path) -> Snapshot:
    snap = Snapshot(loaded_at=dt.datetime.now(dt.UTC).replace(tzinfo=None))
    with duckdb.connect(str(warehouse), read_only=True) as con:
        if table_exists(con, "marts", "identity_map"):
            for kind, identifier, person in con.execute(
                "SELECT identifier_type, identifier, person_id FROM marts.identity_map"
            ).fetchall():
                snap.identities[(kind, identifier)] = person
                snap.persons.add(person)
        memberships = "segment_name AS segment, segment_type AS type, entered_at"
        snap.memberships = _per_person(con, "segment_membership", memberships, "segment_name", SegmentMembership)
        recommendations = "rank, item_id, score, reason, model"
        snap.recommendations = _per_person(con, "recommendations", recommendations, "rank", Recommendation)
        assignments = "experiment, variant, assigned_at"
        snap.assignments = _per_person(con, "experiment_assignments", assignments, "experiment", Assignment)
        if table_exists(con, "marts", "segment_report"):
            cursor = con.execute("""
                SELECT segment_name AS name, segment_type AS type, description, owner, rule, size, entered, exited,
                       published, status, CAST(as_of AS DATE) AS as_of
                FROM marts.segment_report WHERE as_of = (SELECT max(as_of) FROM marts.segment_report) ORDER BY 1""")
            columns = [d[0] for d in cursor.description]
            for row in cursor.fetchall():
                segment = Segment(**dict(zip(columns, row, strict=True)))
                snap.segments[segment.name] = segment
                snap.as_of = segment.as_of
    return snap


def _is_lock_error(exc: BaseException) -> bool:
    return isinstance(exc, duckdb.IOException) and "lock" in str(exc).lower()


class SnapshotStore:
    def __init__(self, warehouse: Path, refresh_seconds: float = 30.0, wait_seconds: float = 2.0):
        self.warehouse, self.refresh_seconds = warehouse, refresh_seconds
        self._lock = threading.Lock()
        self._checked = 0.0
        self._mtime = self._file_mtime()
        self.snapshot = self._first_snapshot(wait_seconds)

    def _first_snapshot(self, wait_seconds: float) -> Snapshot:
        """With no snapshot yet to serve, wait while a pipeline run holds the warehouse's lock."""
        said = False
        while True:
            try:
                return load_snapshot(self.warehouse)
            except duckdb.IOException as exc:
                if not _is_lock_error(exc):
                    raise
                if not said:
                    log.warning(
                        "The warehouse %s is locked by a running pipeline step; the API starts serving as "
                        "soon as it is released (waiting, checking every %.0f s).",
                        self.warehouse,
                        wait_seconds,
                    )
                    said = True
                time.sleep(wait_seconds)

    def _file_mtime(self) -> float:
        return self.warehouse.stat().st_mtime

    def current(self) -> Snapshot:
        now = time.monotonic()
        if now - self._checked >= self.refresh_seconds and self._lock.acquire(blocking=False):
            try:
                self._checked = now
                mtime = self._file_mtime()
                if mtime != self._mtime:
                    self.snapshot, self._mtime = load_snapshot(self.warehouse), mtime
            except (duckdb.IOException, OSError) as exc:  # a run holds the lock: keep serving the last snapshot
                log.warning("Keeping the previous snapshot: %s", exc)
            finally:
                self._lock.release()
        return self.snapshot


def _problem(status: int, detail: str, headers: dict | None = None) -> HTTPException:
    return HTTPException(status_code=status, detail=detail, headers=headers)


def create_app(
    warehouse: Path,
    token: str,
    refresh_seconds: float = 30.0,
    rate_limit: str = "50/second",
    docs_need_token: bool = False,
    live: LiveMembership | None = None,
) -> FastAPI:
    """`rate_limit` (the `limits` notation, per token): a client over it gets 429 with Retry-After.
    With `docs_need_token`, /docs and /openapi.json need the token too. `live`
    (orchestration/realtime/broker.py): the stream's real-time membership, on top."""
    if not warehouse.exists():
        raise FileNotFoundError(
            f"The warehouse {warehouse} does not exist: run `make run` first, or point "
            "TESSERA_WAREHOUSE at an existing DuckDB file."
        )
    store = SnapshotStore(warehouse, refresh_seconds)
    bearer = HTTPBearer(auto_error=False, description="TESSERA_API_TOKEN")
    limit = limits.parse(rate_limit)
    limiter = limits.strategies.MovingWindowRateLimiter(limits.storage.MemoryStorage())

    def authorised(credentials: HTTPAuthorizationCredentials | None = Depends(bearer)) -> None:
        given = credentials.credentials.encode() if credentials else b""
        if not hmac.compare_digest(given, token.encode()):
            raise _problem(
                401,
                "A valid bearer token is required: send 'Authorization: Bearer <TESSERA_API_TOKEN>'.",
                {"WWW-Authenticate": "Bearer"},
            )
        client = hashlib.sha256(given).hexdigest()  # the limiter's key: never the token itself
        if not limiter.hit(limit, client):
            reset = limiter.get_window_stats(limit, client).reset_time
            retry = max(1, math.ceil(reset - time.time()))
            raise _problem(
                429,
                f"Too many requests: the limit is {rate_limit} per token "
                f"(TESSERA_API_RATE_LIMIT). Retry after {retry} s.",
                {"Retry-After": str(retry)},
            )

    docs = {} if not docs_need_token else {"docs_url": None, "redoc_url": None, "openapi_url": None}
    app = FastAPI(
        title="Tessera lookup API",
        version="1",
        **docs,
        description=(
            "Read-only lookups of segment membership by any identifier. Every /v1 route needs "
            "`Authorization: Bearer <TESSERA_API_TOKEN>`, and allows " + rate_limit + " per token."
        ),
    )
    if docs_need_token:
        from fastapi.openapi.docs import get_swagger_ui_html

        @app.get("/openapi.json", include_in_schema=False, dependencies=[Depends(authorised)])
        def openapi_document() -> dict:
            return app.openapi()

        @app.get("/docs", include_in_schema=False, dependencies=[Depends(authorised)])
        def swagger():
            return get_swagger_ui_html(openapi_url="/openapi.json", title=app.title)

    secured = [Depends(authorised)]

    @app.get("/health", response_model=Health, summary="Liveness and the snapshot's as_of (no token needed)")
    def health() -> Health:
        snap = store.current()
        return Health(
            status="ok",
            as_of=snap.as_of,
            snapshot_loaded_at=snap.loaded_at,
            persons=len(snap.persons),
            identifiers=len(snap.identities),
        )

    def resolve(identifier_type: str, value: str) -> tuple[Snapshot, str]:
        """The snapshot and the person an identifier names (the stream's links first); 422 or 404."""
        snap = store.current()
        try:
            kind, key = lookup_key(identifier_type, value)
        except IdentifierError as exc:
            raise _problem(422, f"{exc}. Identifier types: {', '.join(LOOKUP_TYPES)}.") from None
        person = key if kind == "person_id" and key in snap.persons else snap.identities.get((kind, key))
        if live is not None:
            import redis

            try:  # the stream may have linked this identifier since the daily run
                person = live.person(kind, key) or person
            except redis.RedisError as exc:
                log.warning("Resolving by the daily identity map only; Redis: %s", exc)
        if person is None:
            raise _problem(404, f"No person has this {identifier_type}.")
        return snap, person

    @app.get(
        "/v1/identities/{identifier_type}/{value}/segments",
        response_model=IdentitySegments,
        dependencies=secured,
        responses=LOOKUP_ERRORS,
        summary="Resolve an identifier to its person and return their current segments",
    )
    def identity_segments(identifier_type: str, value: str) -> IdentitySegments:
        """`identifier_type` is one of person_id, anonymous_id, user_id, customer_id, email, phone (E.164),
        email_sha256 or phone_sha256. Emails and phones are normalised and hashed before the lookup."""
        snap, person = resolve(identifier_type, value)
        current, realtime = None, {}
        if live is not None:
            import redis

            try:
                current, realtime = live.segments(person), live.realtime()
            except redis.RedisError as exc:  # the stream's store is down: the daily membership still answers
                log.warning("Serving the daily membership only; Redis: %s", exc)
        daily = snap.memberships.get(person)
        if current is None:  # no stream, or it has not evaluated this person
            return IdentitySegments(person_id=person, as_of=snap.as_of, segments=daily)
        merged = [m for m in daily if m.segment not in realtime] + [
            SegmentMembership(segment=name, type=realtime[name], entered_at=at)
            for name, at in current.items()
            if name in realtime
        ]
        return IdentitySegments(person_id=person, as_of=snap.as_of, segments=sorted(merged, key=lambda m: m.segment))

    @app.get(
        "/v1/identities/{identifier_type}/{value}/recommendations",
        response_model=IdentityRecommendations,
        dependencies=secured,
        responses=LOOKUP_ERRORS,
        summary="Resolve an identifier to its person and return the products recommended to them",
    )
    def identity_recommendations(identifier_type: str, value: str) -> IdentityRecommendations:
        """Ten products, best first, each with its score, the model that ranked it and why
        (marts.recommendations). A person who did not consent to personalisation gets none."""
        snap, person = resolve(identifier_type, value)
        return IdentityRecommendations(
            person_id=person, as_of=snap.as_of, recommendations=snap.recommendations.get(person)
        )

    @app.get(
        "/v1/identities/{identifier_type}/{value}/experiments",
        response_model=IdentityExperiments,
        dependencies=secured,
        responses=LOOKUP_ERRORS,
        summary="Resolve an identifier to its person and return the variant of each experiment they entered",
    )
    def identity_experiments(identifier_type: str, value: str) -> IdentityExperiments:
        """The variants to show this person (marts.experiment_assignments): sticky, one per experiment."""
        snap, person = resolve(identifier_type, value)
        return IdentityExperiments(person_id=person, as_of=snap.as_of, experiments=snap.assignments.get(person))

    @app.get(
        "/v1/segments",
        response_model=list[Segment],
        dependencies=secured,
        summary="Every segment of the latest run, with its size and whether it was published",
    )
    def segments() -> list[Segment]:
        return list(store.current().segments.values())

    @app.get(
        "/v1/segments/{name}",
        response_model=Segment,
        dependencies=secured,
        responses={404: {"description": "Unknown segment"}},
        summary="One segment",
    )
    def segment(name: str) -> Segment:
        found = store.current().segments.get(name)
        if found is None:
            raise _problem(404, f"No segment is named '{name}'. GET /v1/segments lists them.")
        return found

    return app


def app_from_environment() -> FastAPI:
    """The app with the settings of the environment (TESSERA_WAREHOUSE, TESSERA_API_*), for
    `uvicorn --factory`. The settings check each value; the token is required here only."""
    from orchestration.lib.settings import SettingsError, load_settings

    settings = load_settings()
    token = settings.api_token.get_secret_value()
    if len(token) < 16:
        raise SettingsError(
            "TESSERA_API_TOKEN must be set to a secret of at least 16 characters, for example "
            "`export TESSERA_API_TOKEN=$(python -c 'import secrets; print(secrets.token_urlsafe(32))')`."
        )
    return create_app(
        settings.warehouse,
        token,
        settings.api_refresh_seconds,
        rate_limit=settings.api_rate_limit,
        docs_need_token=settings.api_docs_need_token,
        live=_live_membership(settings),
    )


def _live_membership(settings):
    """The stream's membership, when Redis answers (docs/realtime.md)."""
    import redis

    from orchestration.realtime.broker import LiveMembership, connect

    client = connect(settings.redis_url)
    try:
        client.ping()
    except redis.RedisError:
        log.info("Redis at %s does not answer: the API serves the daily membership only.", settings.redis_url)
        return None
    return LiveMembership(client)
