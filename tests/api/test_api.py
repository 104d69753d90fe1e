"""The lookup API as users meet it: a real uvicorn server on 127.0.0.1, real HTTP requests."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

import pytest

from orchestration.lib.identifiers import sha256_hex
from orchestration.lib.warehouse import connect

TOKEN = "test-token-0123456789abcdef"


def _build_warehouse(path: Path) -> None:
    with connect(path) as con:
        con.execute("CREATE TABLE marts.identity_map (identifier_type VARCHAR, identifier VARCHAR, person_id VARCHAR)")
        con.executemany(
            "INSERT INTO marts.identity_map VALUES (?, ?, ?)",
            [
                ("customer_id", "C1", "p_one"),
                ("email_sha256", sha256_hex("ann@example.com"), "p_one"),
                ("phone_sha256", sha256_hex("+447700900123"), "p_one"),
                ("anonymous_id", "anon-2", "p_two"),
            ],
        )
        con.execute("""CREATE TABLE marts.segment_membership AS SELECT * FROM (VALUES
            ('p_one', 'vip', 'rule', TIMESTAMP '2026-10-01', TIMESTAMP '2026-10-31'),
            ('p_one', 'active', 'rule', TIMESTAMP '2026-10-31', TIMESTAMP '2026-10-31'))
            t(person_id, segment_name, segment_type, entered_at, as_of)""")
        con.execute("""CREATE TABLE marts.recommendations AS SELECT * FROM (VALUES
            ('p_one', 2, 'SKU-2', 0.4, 'tessera_recommender v3', 'bought with SKU-1', DATE '2026-10-31'),
            ('p_one', 1, 'SKU-1', 0.7, 'tessera_recommender v3', 'bought before (3 times)', DATE '2026-10-31'))
            t(person_id, rank, item_id, score, model, reason, as_of)""")
        con.execute("""CREATE TABLE marts.experiment_assignments AS SELECT * FROM (VALUES
            ('winback_voucher', 'p_one', 'voucher', DATE '2026-10-02'))
            t(experiment, person_id, variant, assigned_at)""")
        con.execute("""CREATE TABLE marts.segment_report AS SELECT * FROM (VALUES
            (TIMESTAMP '2026-10-31', 'vip', 'rule', 'Big spenders', 'team:crm', 'monetary_total > 500', 0, 1, 0, 1, 0, 0,
             true, 'published'),
            (TIMESTAMP '2026-10-31', 'active', 'rule', 'Active', 'team:growth', 'recency_days <= 7', 0, 1, 0, 1, 1, 0,
             true, 'published'))
            t(as_of, segment_name, segment_type, description, owner, rule, min_size, matched, excluded_by_consent,
              size, entered, exited, published, status)""")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _start(warehouse: Path, **settings: str) -> tuple[subprocess.Popen, str]:
    port = _free_port()
    env = {
        **os.environ,
        "TESSERA_WAREHOUSE": str(warehouse),
        "TESSERA_API_TOKEN": TOKEN,
        "TESSERA_API_REFRESH_SECONDS": "0",
        **settings,
    }
    proc = subprocess.Popen(
        [sys.executable, "-m", "orchestration.cli", "api", "--port", str(port)],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
    )
    return proc, f"http://127.0.0.1:{port}"


def _wait_for(proc: subprocess.Popen, base: str, seconds: float = 60) -> None:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        try:
            urllib.request.urlopen(f"{base}/health", timeout=1)
            return
        except OSError:
            if proc.poll() is not None:
                pytest.fail(f"the API exited: {proc.stdout.read().decode()}")
            time.sleep(0.2)
    proc.kill()
    pytest.fail(f"the API did not answer /health within {seconds:.0f} s")


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    warehouse = tmp_path_factory.mktemp("api") / "warehouse.duckdb"
    _build_warehouse(warehouse)
    proc, base = _start(warehouse)
    _wait_for(proc, base)
    yield base, warehouse
    proc.terminate()
    proc.wait(timeout=10)


def get(url: str, token: str | None = TOKEN) -> tuple[int, dict, dict]:
    request = urllib.request.Request(url, headers={"Authorization": f"Bearer {token}"} if token else {})
    try:
        with urllib.request.urlopen(request, timeout=5) as response:
            return response.status, json.loads(response.read()), dict(response.headers)
    except urllib.error.HTTPError as err:
        return err.code, json.loads(err.read()), dict(err.headers)


@pytest.mark.parametrize(
    ("path", "token"),
    [
        ("/v1/segments", None),
        ("/v1/segments", "wrong-token"),
        ("/v1/identities/customer_id/C1/segments", None),
        ("/v1/segments/vip", "x" * 40),
    ],
)
def test_every_v1_route_needs_the_bearer_token(server, path, token):
    status, body, headers = get(server[0] + path, token)
    assert status == 401 and "bearer token" in body["detail"] and headers.get("www-authenticate") == "Bearer"


@pytest.mark.parametrize(
    ("kind", "value"),
    [
        ("customer_id", "C1"),
        ("email", "%20Ann@Example.COM%20"),
        ("phone", "+44%207700%20900123"),
        ("email_sha256", sha256_hex("ann@example.com")),
        ("person_id", "p_one"),
    ],
)
def test_any_identifier_resolves_to_the_person_and_their_segments(server, kind, value):
    status, body, _ = get(f"{server[0]}/v1/identities/{kind}/{value}/segments")
    assert status == 200
    assert body["person_id"] == "p_one" and body["as_of"] == "2026-10-31"
    assert [(s["segment"], s["entered_at"][:10]) for s in body["segments"]] == [
        ("active", "2026-10-31"),
        ("vip", "2026-10-01"),
    ]


def test_a_known_person_in_no_segment_gets_an_empty_list(server):
    status, body, _ = get(f"{server[0]}/v1/identities/anonymous_id/anon-2/segments")
    assert status == 200 and body["person_id"] == "p_two" and body["segments"] == []


def test_a_person_gets_their_recommendations_best_first_and_their_experiment_variants(server):
    status, body, _ = get(f"{server[0]}/v1/identities/customer_id/C1/recommendations")
    assert status == 200 and body["person_id"] == "p_one"
    assert [(r["rank"], r["item_id"], r["reason"]) for r in body["recommendations"]] == [
        (1, "SKU-1", "bought before (3 times)"),
        (2, "SKU-2", "bought with SKU-1"),
    ]
    status, body, _ = get(f"{server[0]}/v1/identities/email/ann@example.com/experiments")
    assert status == 200 and body["experiments"] == [
        {"experiment": "winback_voucher", "variant": "voucher", "assigned_at": "2026-10-02"}
    ]
    status, body, _ = get(f"{server[0]}/v1/identities/anonymous_id/anon-2/recommendations")  # none: refused, say
    assert status == 200 and body["recommendations"] == []
    assert get(f"{server[0]}/v1/identities/customer_id/C404/experiments")[0] == 404


@pytest.mark.parametrize(
    ("path", "status", "text"),
    [
        ("/v1/identities/customer_id/C404/segments", 404, "No person has this customer_id"),
        ("/v1/identities/email/nobody@example.com/segments", 404, "No person has this email"),
        ("/v1/identities/ssn/123/segments", 422, "unknown identifier type 'ssn'"),
        ("/v1/identities/phone/not-a-phone/segments", 422, "is not a phone number"),
        ("/v1/segments/nope", 404, "No segment is named 'nope'"),
    ],
)
def test_unknown_and_invalid_lookups_say_what_was_wrong(server, path, status, text):
    code, body, _ = get(server[0] + path)
    assert code == status and text in body["detail"]


def test_segments_list_and_detail(server):
    status, body, _ = get(f"{server[0]}/v1/segments")
    assert status == 200 and [s["name"] for s in body] == ["active", "vip"]
    status, vip, _ = get(f"{server[0]}/v1/segments/vip")
    assert status == 200 and vip["size"] == 1 and vip["rule"] == "monetary_total > 500" and vip["published"]


def test_openapi_schema_lists_the_routes_and_declares_the_bearer_scheme(server):
    status, schema, _ = get(f"{server[0]}/openapi.json", token=None)
    assert status == 200
    assert {
        "/v1/identities/{identifier_type}/{value}/segments",
        "/v1/identities/{identifier_type}/{value}/recommendations",
        "/v1/identities/{identifier_type}/{value}/experiments",
        "/v1/segments",
        "/v1/segments/{name}",
    } <= set(schema["paths"])
    assert schema["components"]["securitySchemes"]["HTTPBearer"] == {
        "type": "http",
        "scheme": "bearer",
        "description": "TESSERA_API_TOKEN",
    }
    assert schema["paths"]["/v1/segments"]["get"]["security"] == [{"HTTPBearer": []}]
    assert "security" not in schema["paths"]["/health"]["get"]


def test_a_token_over_its_rate_gets_429_with_retry_after_and_docs_can_need_the_token(tmp_path):
    warehouse = tmp_path / "warehouse.duckdb"
    _build_warehouse(warehouse)
    proc, base = _start(warehouse, TESSERA_API_RATE_LIMIT="4/minute", TESSERA_API_DOCS_NEED_TOKEN="true")
    try:
        _wait_for(proc, base)
        assert get(f"{base}/openapi.json", token=None)[0] == 401
        assert get(f"{base}/openapi.json")[0] == 200  # 1 of 4
        assert [get(f"{base}/v1/segments")[0] for _ in range(3)] == [200, 200, 200]
        status, body, headers = get(f"{base}/v1/segments")
        assert status == 429 and "4/minute per token" in body["detail"]
        assert 0 < int(headers["retry-after"]) <= 60
        assert get(f"{base}/v1/segments", token="another-token-that-is-wrong")[0] == 401  # refused before the limit
    finally:
        proc.terminate()
        proc.wait(timeout=10)


def test_started_while_a_run_holds_the_warehouse_the_api_waits_and_says_so(tmp_path):
    warehouse = tmp_path / "warehouse.duckdb"
    _build_warehouse(warehouse)
    with connect(warehouse) as con:  # a pipeline step holds DuckDB's write lock
        con.execute("SELECT 1")
        proc, base = _start(warehouse)
        time.sleep(6)
        assert proc.poll() is None, proc.stdout.read().decode()  # still there, no traceback exit
    try:
        _wait_for(proc, base, seconds=30)
        assert get(f"{base}/v1/segments")[0] == 200
    finally:
        proc.terminate()
        output = proc.communicate(timeout=10)[0].decode()
    assert "locked by a running pipeline step" in output and "Traceback" not in output


def test_the_api_holds_no_lock_and_serves_new_data_after_a_run(server):
    base, warehouse = server
    with connect(warehouse) as con:  # a pipeline run can write while the API serves
        con.execute("INSERT INTO marts.identity_map VALUES ('customer_id', 'C3', 'p_three')")
        con.execute(
            "INSERT INTO marts.segment_membership VALUES ('p_three', 'vip', 'rule', TIMESTAMP '2026-10-31', "
            "TIMESTAMP '2026-10-31')"
        )
    os.utime(warehouse)
    status, body, _ = get(f"{base}/v1/identities/customer_id/C3/segments")
    assert status == 200 and [s["segment"] for s in body["segments"]] == ["vip"]
