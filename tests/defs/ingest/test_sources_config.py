"""Bring your own data: mapped files land in the same raw tables, and every config mistake says
which file, which key, what was wrong and how to fix it."""

from __future__ import annotations

import datetime as dt
import json
import subprocess
import sys
import textwrap
from pathlib import Path

import pandas as pd
import pytest

from orchestration.defs.dbt.project import dbt_project
from orchestration.defs.ingest.loaders import load_source
from orchestration.defs.ingest.sources_config import SourcesConfigError, load_sources_config
from orchestration.lib.warehouse import connect

NOW = dt.datetime(2026, 11, 1)

# A shop's export: semicolon-separated, one row per invoice line, a constant currency, the status
# derived from the invoice number, one row with a field too many and one guest line.
SHOP_CSV = """\
Invoice;Client;Date;Qty;Price
A-1;c1;2026-10-01 10:00:00;2;5.5
A-1;c1;2026-10-01 10:00:00;1;10
A-2;c2;2026-10-02 11:00:00;3;1.25
A-2;c2;2026-10-02 11:00:00;1;2;extra
X-3;c1;2026-10-03 12:00:00;-1;5.5
A-4;;2026-10-04 09:00:00;1;3
A-5;c3;2026-10-05 08:30:00;4;2.5
"""

SHOP_CONFIG = """\
sources:
  orders:
    paths: shop/*.csv
    format: csv
    csv: {delimiter: ";"}
    columns:
      order_id: Invoice
      customer_id: Client
      ordered_at: Date
      amount: Qty * Price
      currency: "'EUR'"
      status: "CASE WHEN Invoice LIKE 'X-%' THEN 'cancelled' ELSE 'completed' END"
"""


def _write(root: Path, files: dict[str, str]) -> Path:
    for name, text in files.items():
        (root / name).parent.mkdir(parents=True, exist_ok=True)
        (root / name).write_text(textwrap.dedent(text), encoding="utf-8")
    return root / "sources.yml"


def test_a_mapping_with_expressions_constants_and_csv_options(tmp_path):
    config = load_sources_config(_write(tmp_path, {"sources.yml": SHOP_CONFIG, "shop/lines.csv": SHOP_CSV}))
    (tmp_path / "shop" / "old.csv").write_bytes(SHOP_CSV.replace("c3", "Zoë").encode("utf-16"))  # not UTF-8
    with connect(tmp_path / "w.duckdb") as con:
        report = load_source(con, config.files("orders", tmp_path / "landing"), "orders", NOW)
        lines = con.execute(
            "SELECT order_id, customer_id, amount, currency, status, source_file, source_line "
            "FROM raw.order_lines ORDER BY source_line"
        ).fetchall()
        quarantine = con.execute(
            "SELECT file, line, reason_code, reason, raw FROM raw.quarantine WHERE line IS NOT NULL ORDER BY line"
        ).fetchall()
    amounts = {(o, line): float(a) for o, _, a, *_, line in lines}
    assert amounts == {("A-1", 2): 11.0, ("A-1", 3): 10.0, ("A-2", 4): 3.75, ("X-3", 6): -5.5, ("A-5", 8): 10.0}
    assert {r[3] for r in lines} == {"EUR"}
    assert {r[0]: r[4] for r in lines}["X-3"] == "cancelled"
    assert {r[5] for r in lines} == {"shop/lines.csv"}
    # The row with a field too many and the guest line, each at its own line with a reason and its text.
    assert [(q[1], q[2]) for q in quarantine] == [(5, "wrong_field_count"), (7, "missing_customer")]
    assert quarantine[0][4] == "A-2;c2;2026-10-02 11:00:00;1;2;extra"
    assert quarantine[0][3] == "row does not fit the header: Expected Number of Columns: 5 Found: 6"
    assert json.loads(quarantine[1][4])["Invoice"] == "A-4"
    assert report.files_rejected == {"shop/old.csv": "file_unreadable"}  # the whole file, with its reason
    assert (report.rows_read, report.rows_loaded, report.rows_quarantined, report.guest_orders) == (7, 5, 3, 1)


CLICKS_CONFIG = """\
sources:
  events:
    paths: [clicks/*.jsonl]
    format: jsonl
    columns:
      messageId: id
      type: "'track'"
      event: action
      userId: user
      timestamp: ts
      properties: "{'product_id': sku, 'category': cat}"
      context: "{'timezone': 'Europe/Berlin'}"
taxonomy:
  product_viewed: [view_item, "O'Brien view"]
"""
CLICKS = (
    "\n".join(
        json.dumps(r)
        for r in [
            {
                "id": "m1",
                "user": "u1",
                "action": "view_item",
                "ts": "2026-10-01T10:00:00Z",
                "sku": "p1",
                "cat": "Shoes",
            },
            {"id": "m2", "user": None, "action": "view_item", "ts": "2026-10-01T10:01:00Z", "sku": "p2", "cat": "Hats"},
            {"id": "m3", "user": "u2", "action": "add", "ts": "2026-10-02T09:00:00Z", "sku": "p1", "cat": "Shoes"},
        ]
    )
    + "\n"
)


def test_mapped_events_become_segment_messages_and_the_taxonomy_reaches_dbt(tmp_path):
    config = load_sources_config(_write(tmp_path, {"sources.yml": CLICKS_CONFIG, "clicks/a.jsonl": CLICKS}))
    with connect(tmp_path / "w.duckdb") as con:
        report = load_source(con, config.files("events", tmp_path), "events", NOW)
        events = con.execute(
            "SELECT message_id, type, event, user_id, occurred_at, properties, context "
            "FROM raw.events ORDER BY message_id"
        ).fetchall()
        quarantine = con.execute("SELECT line, reason, raw FROM raw.quarantine").fetchall()
    assert [(e[0], e[1], e[2], e[3], e[4]) for e in events] == [
        ("m1", "track", "view_item", "u1", dt.datetime(2026, 10, 1, 10)),
        ("m3", "track", "add", "u2", dt.datetime(2026, 10, 2, 9)),
    ]
    assert json.loads(events[0][5]) == {"product_id": "p1", "category": "Shoes"}
    assert json.loads(events[0][6]) == {"timezone": "Europe/Berlin"}
    # The message with no user is quarantined with its source record, not the built JSON.
    assert quarantine[0][:2] == (2, "userId and anonymousId are both missing; a message needs at least one")
    assert json.loads(quarantine[0][2])["id"] == "m2"
    assert report.rows_quarantined == 1
    # The taxonomy is what dbt maps event names with (quotes escaped).
    dbt_vars = config.taxonomy.dbt_vars()
    assert dbt_vars["tessera__event_product_viewed"] == ["view_item", "O'Brien view"]
    assert dbt_vars["tessera__event_product_added"] == ["Product Added"]
    proc = subprocess.run(
        [
            str(Path(sys.executable).parent / "dbt"),
            "compile",
            "--quiet",
            "--profiles-dir",
            ".",
            "--select",
            "stg_segment__events",
            "--vars",
            json.dumps(dbt_vars),
            "--no-populate-cache",
        ],
        cwd=dbt_project.project_dir,
        capture_output=True,
        text=True,
        env={
            "PATH": str(Path(sys.executable).parent),
            "TESSERA_WAREHOUSE": str(tmp_path / "c.duckdb"),
            "HOME": str(tmp_path),
        },
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "when event_name in ('view_item', 'O''Brien view') then 'product_view'" in proc.stdout


def test_an_undeclared_source_still_reads_its_landing_folder(tmp_path):
    config = load_sources_config(
        _write(
            tmp_path,
            {
                "sources.yml": SHOP_CONFIG,
                "shop/lines.csv": SHOP_CSV,
                "landing/privacy/r.csv": "requested_at,identifier_type,identifier\n",
            },
        )
    )
    privacy = config.files("privacy", tmp_path / "landing")
    assert not privacy.mapped and [p.name for p in privacy.files] == ["r.csv"]
    assert config.files("crm", tmp_path / "landing").files == []


GOOD_ORDERS = SHOP_CONFIG


@pytest.mark.parametrize(
    ("config", "expected"),
    [
        ("sources: [\n", "sources.yml: not valid YAML at line 2"),
        ("sourcez: {}\n", "sources.yml, key 'sourcez': unknown key. Did you mean key 'sources'?"),
        (
            GOOD_ORDERS.replace("  orders:", "  order:"),
            "key 'sources.order.[key]': 'order' is not allowed. Input should be 'events', 'crm', 'orders'",
        ),
        (
            GOOD_ORDERS.replace("    columns:", "    colums:"),
            "key 'sources.orders.colums': unknown key. Did you mean key 'columns'?",
        ),
        (
            GOOD_ORDERS.replace("format: csv", "format: xlsx"),
            "key 'sources.orders.format': 'xlsx' is not allowed. Input should be 'jsonl', 'jsonl.gz', 'csv' or 'parquet'",
        ),
        (
            GOOD_ORDERS.replace("format: csv", "format: parquet"),
            "'csv' options apply to format csv only, and this source is parquet; remove them",
        ),
        (
            GOOD_ORDERS.replace("      amount:", "      amout:"),
            "key 'sources.orders.columns.amout': 'amout' is not a column of the orders contract. Did you mean column "
            "'amount'?",
        ),
        (
            GOOD_ORDERS.replace("      ordered_at: Date\n", ""),
            "key 'sources.orders.columns': no mapping for ordered_at, which the orders contract requires",
        ),
        (
            GOOD_ORDERS.replace("      customer_id: Client\n", ""),
            "no mapping for customer_id or email, which the orders contract requires",
        ),
        (
            GOOD_ORDERS.replace("Qty * Price", "Qty * Price; DROP TABLE raw.events"),
            "key 'sources.orders.columns.amount': `Qty * Price; DROP TABLE raw.events` must be one SQL expression",
        ),
        (
            GOOD_ORDERS.replace("shop/*.csv", "shop/*.tsv"),
            "key 'sources.orders.paths': 'shop/*.tsv' matches no file (relative paths start at",
        ),
        (
            GOOD_ORDERS.replace("Qty * Price", "Qtty * Price"),
            "key 'sources.orders.columns.amount': `Qtty * Price` does not work on lines.csv (Binder Error: Referenced "
            'column "Qtty" not found',
        ),
        (
            GOOD_ORDERS.replace("Qty * Price", "Qtty * Price"),
            "Did you mean column 'Qty'? The file's columns: Invoice, Client, Date, Qty, Price.",
        ),
        (
            GOOD_ORDERS.replace("Qty * Price", "CAST(Client AS INTEGER)"),
            "key 'sources.orders.columns.amount': "
            "`CAST(Client AS INTEGER)` does not work on lines.csv (Conversion Error: Could not convert string 'c1'",
        ),
        (
            GOOD_ORDERS.replace('csv: {delimiter: ";"}', 'csv: {delimiter: ";", encoding: ebcdic}'),
            "key 'sources.orders.csv.encoding': 'ebcdic' is not allowed. Input should be 'utf-8', 'utf-16' or 'latin-1'",
        ),
        (
            GOOD_ORDERS.replace("ordered_at: Date", "ordered_at: at"),
            "key 'sources.orders.columns.ordered_at': `at` does not work on lines.csv (Parser Error: syntax error at or "
            'near ")"). Put a column name that is an SQL keyword or holds spaces in double quotes',
        ),
        (
            GOOD_ORDERS + "taxonomy:\n  product_viewed: []\n",
            "key 'taxonomy.product_viewed': List should have at least 1 item",
        ),
        (
            GOOD_ORDERS + "taxonomy:\n  page_viewed: [Page]\n",
            "key 'taxonomy.page_viewed': unknown key. Did you mean key 'product_viewed'?",
        ),
    ],
)
def test_every_config_error_names_the_file_the_key_and_the_fix(tmp_path, config, expected):
    path = _write(tmp_path, {"sources.yml": config, "shop/lines.csv": SHOP_CSV})
    with pytest.raises(SourcesConfigError) as info:
        load_sources_config(path)
    assert expected in str(info.value)


def test_a_file_that_is_not_in_the_declared_format_is_named(tmp_path):
    path = _write(
        tmp_path,
        {
            "sources.yml": SHOP_CONFIG.replace("format: csv", "format: parquet")
            .replace('    csv: {delimiter: ";"}\n', "")
            .replace("*.csv", "*.parquet"),
            "shop/lines.parquet": SHOP_CSV,
        },
    )
    with pytest.raises(
        SourcesConfigError,
        match=r"key 'sources.orders.format': .*lines.parquet cannot be read as "
        r"parquet .* Check the format and the csv options",
    ):
        load_sources_config(path)


def test_a_missing_config_file_says_how_to_set_it(tmp_path):
    with pytest.raises(SourcesConfigError, match="no such file. Set TESSERA_SOURCES_CONFIG"):
        load_sources_config(tmp_path / "nope.yml")


def _tessera(args, env_extra, tmp_path):
    env = {"PATH": str(Path(sys.executable).parent), "HOME": str(tmp_path), **env_extra}
    return subprocess.run(
        [str(Path(sys.executable).parent / "tessera"), *args], capture_output=True, text=True, env=env, timeout=120
    )


def test_check_config_reports_what_each_source_reads_and_fails_with_exit_2(tmp_path):
    path = _write(tmp_path, {"sources.yml": SHOP_CONFIG, "shop/lines.csv": SHOP_CSV})
    env = {"TESSERA_SOURCES_CONFIG": str(path), "TESSERA_LANDING_DIR": str(tmp_path / "landing")}
    ok = _tessera(["check-config"], env, tmp_path)
    assert ok.returncode == 0, ok.stderr
    assert "orders         1 file(s)  csv, 6 mapped columns" in ok.stdout
    assert "OK: the configuration is valid." in ok.stdout
    path.write_text(SHOP_CONFIG.replace("Qty * Price", "Qtty * Price"))
    bad = _tessera(["check-config"], env, tmp_path)
    assert bad.returncode == 2
    assert "key 'sources.orders.columns.amount'" in bad.stderr and "Traceback" not in bad.stderr
    run = _tessera(["run"], env, tmp_path)  # the same report, and nothing runs
    assert run.returncode == 2 and "nothing was run" in run.stderr and "Traceback" not in run.stderr


def test_the_shipped_online_retail_config_is_valid():
    config = load_sources_config(Path(__file__).parents[3] / "examples" / "online_retail" / "sources.yml")
    files = config.files("orders", Path("/nonexistent"))
    assert files.format == "parquet" and len(files.files) == 1
    assert pd.read_parquet(files.files[0], columns=["InvoiceNo"]).shape[0] == 541_909


def test_a_mapped_file_that_cannot_be_read_is_quarantined_whole_and_the_others_load(tmp_path):
    import gzip

    _write(
        tmp_path,
        {
            "sources.yml": CLICKS_CONFIG.replace("clicks/*.jsonl", "clicks/*.jsonl.gz").replace(
                "format: jsonl", "format: jsonl.gz"
            )
        },
    )
    (tmp_path / "clicks").mkdir()
    (tmp_path / "clicks" / "good.jsonl.gz").write_bytes(gzip.compress(CLICKS.encode()))
    (tmp_path / "clicks" / "cut.jsonl.gz").write_bytes(gzip.compress(CLICKS.encode() * 50)[:60])
    config = load_sources_config(tmp_path / "sources.yml")
    with connect(tmp_path / "w.duckdb") as con:
        report = load_source(con, config.files("events", tmp_path), "events", NOW)
        whole = con.execute("SELECT file, reason_code FROM raw.quarantine WHERE line IS NULL").fetchall()
    assert report.files_rejected == {"clicks/cut.jsonl.gz": "file_unreadable"}
    assert whole == [("clicks/cut.jsonl.gz", "file_unreadable")]
    assert report.rows_loaded == 2


def test_parquet_with_the_contract_column_names_needs_no_mapping(tmp_path):
    pd.DataFrame(
        {
            "email_domain": ["Acme.com", None],
            "company_name": ["Acme", "Nobody"],
            "industry": ["x", "y"],
            "employee_count": [10, 5],
            "annual_revenue_usd": [1000.5, 2.0],
        }
    ).to_parquet(tmp_path / "firms.parquet")
    path = _write(tmp_path, {"sources.yml": "sources:\n  enrichment: {paths: firms.parquet, format: parquet}\n"})
    config = load_sources_config(path)
    with connect(tmp_path / "w.duckdb") as con:
        load_source(con, config.files("enrichment", tmp_path), "enrichment", NOW)
        rows = con.execute("SELECT email_domain, employee_count, annual_revenue_usd FROM raw.firmographics").fetchall()
        reasons = con.execute("SELECT reason FROM raw.quarantine").fetchall()
    assert [(d, n, float(r)) for d, n, r in rows] == [("acme.com", 10, 1000.5)]
    assert reasons == [("email_domain is empty",)]


def test_a_row_in_another_encoding_is_quarantined_alone(tmp_path):
    _write(tmp_path, {"sources.yml": SHOP_CONFIG})
    (tmp_path / "shop").mkdir()
    (tmp_path / "shop" / "lines.csv").write_bytes(SHOP_CSV.encode().replace(b"c3", "Zoë".encode("latin-1")))
    config = load_sources_config(tmp_path / "sources.yml")
    with connect(tmp_path / "w.duckdb") as con:
        report = load_source(con, config.files("orders", tmp_path), "orders", NOW)
        bad = con.execute("SELECT line, reason_code, reason FROM raw.quarantine WHERE line = 8").fetchall()
    assert bad == [(8, "file_not_utf8", "row is not utf-8 text; re-export the file, or set csv.encoding")]
    assert report.rows_loaded == 4 and report.rows_read == 7
