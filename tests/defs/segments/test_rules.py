"""The rule language: valid rules select the right rows, every error class explains itself,
and hostile input cannot reach the SQL."""

from __future__ import annotations

import datetime as dt

import duckdb
import pytest

from orchestration.defs.dbt.project import dbt_project
from orchestration.defs.segments.catalog import SegmentConfigError, attribute_schema, expand_clusters, load_catalog
from orchestration.defs.segments.rules import Compiler, RuleError

SCHEMA = {
    "person_id": "text",
    "as_of": "timestamp",
    "evaluated_at": "timestamp",
    "recency_days": "number",
    "events_7d": "number",
    "monetary_total": "number",
    "country": "text",
    "timezone": "text",
    "last_seen_at": "timestamp",
    "first_seen_at": "timestamp",
    "is_customer": "boolean",
    "primary_device_type": "text",
}
AS_OF = dt.datetime(2026, 10, 31)
# person, recency, events_7d, spend, country, tz, last_seen (UTC), first_seen, customer, device
ROWS = [
    (
        "a",
        2,
        15,
        900.0,
        "DE",
        "Europe/Berlin",
        dt.datetime(2026, 10, 30, 8, 30),
        dt.datetime(2026, 10, 28),
        True,
        "mobile",
    ),
    (
        "b",
        40,
        0,
        20.0,
        "GB",
        "Europe/London",
        dt.datetime(2026, 9, 21, 8, 30),
        dt.datetime(2026, 1, 1),
        True,
        "desktop",
    ),
    (
        "c",
        5,
        11,
        100.0,
        "US",
        "America/New_York",
        dt.datetime(2026, 10, 26, 14, 0),
        dt.datetime(2026, 6, 1),
        False,
        "mobile",
    ),
    ("d", 1, 3, 0.0, None, None, dt.datetime(2026, 10, 31, 5, 0), dt.datetime(2026, 10, 30), False, "mobile"),
]


@pytest.fixture()
def con():
    con = duckdb.connect()
    con.execute("SET TimeZone = 'UTC'")
    con.execute("""CREATE TABLE attrs (person_id VARCHAR, as_of TIMESTAMP, evaluated_at TIMESTAMP, recency_days BIGINT, events_7d BIGINT,
                   monetary_total DOUBLE, country VARCHAR, timezone VARCHAR, last_seen_at TIMESTAMP,
                   first_seen_at TIMESTAMP, is_customer BOOLEAN, primary_device_type VARCHAR)""")
    con.executemany(
        "INSERT INTO attrs VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
        [(r[0], AS_OF, AS_OF + dt.timedelta(days=1), *r[1:]) for r in ROWS],
    )
    yield con
    con.close()


def members(con, rule: str, segments: dict[str, str] | None = None) -> set[str]:
    compiled = Compiler(SCHEMA, segments).compile("test", rule)
    return {
        r[0]
        for r in con.execute(
            f"SELECT person_id FROM attrs WHERE {compiled.sql.text}", list(compiled.sql.params)
        ).fetchall()
    }


@pytest.mark.parametrize(
    ("rule", "expected"),
    [
        ("recency_days <= 7 and events_7d > 10", {"a", "c"}),
        ("recency_days > 30", {"b"}),
        ("monetary_total > 500 and recency_days <= 7", {"a"}),
        ("country in ('DE', 'GB')", {"a", "b"}),
        ("country not in ('DE')", {"b", "c"}),  # NULL country is in no list
        ("recency_days between 2 and 5", {"a", "c"}),
        ("recency_days not between 2 and 5", {"b", "d"}),
        ("not is_customer", {"c", "d"}),
        ("country is null or (events_7d = 15)", {"a", "d"}),
        ("monetary_total / recency_days > 100", {"a"}),  # d has 0 / 1, nothing divides by zero
        ("monetary_total / (recency_days - recency_days) > 0", set()),
        ("days_since(first_seen_at) <= 7", {"a", "d"}),
        ("hours_since(last_seen_at) < 24", {"d"}),
        # Local time of the latest activity: a 09:30 CET (Fri), b 09:30 BST (Mon), c 10:00 EDT (Mon);
        # d has no time zone, so UTC: 05:00 on Saturday 31 October.
        ("local_hour() between 9 and 17", {"a", "b", "c"}),
        ("local_hour() = 5", {"d"}),
        ("local_weekday() between 1 and 5", {"a", "b", "c"}),
        ("local_weekday() = 6", {"d"}),
        ("primary_device_type = 'mobile' and country in ('DE', 'FR') and local_hour() between 9 and 17", {"a"}),
        ("in_segment('vip') or recency_days > 30", {"a", "b"}),
        ("lower(country) = 'de' and starts_with(timezone, 'Europe/')", {"a"}),
        ("coalesce(country, 'none') = 'none'", {"d"}),
        ("recency_days <= 2 AND NOT (country = 'DE')", set()),  # keywords in any case; NULL country is unknown
    ],
)
def test_valid_rules_select_the_expected_people(con, rule, expected):
    assert members(con, rule, {"vip": "monetary_total > 500 and recency_days <= 7"}) == expected


@pytest.mark.parametrize(
    ("rule", "problem", "column", "hint"),
    [
        ("recency_dayz <= 7", "unknown column 'recency_dayz'", 1, "Did you mean column 'recency_days'?"),
        ("country = 3", "'=' compares a text with a number", 1, "single quotes"),
        ("recency_days = 'seven'", "'=' compares a number with a text", 1, "Use a number here"),
        ("last_seen_at > 7", "compares a timestamp with a number", 1, "days_since(column)"),
        ("recency_days + country > 1", "'+' needs numbers; found text", 16, ""),
        ("is_customer < true", "'<' cannot order booleans", 1, "Use = or <>"),
        ("recency_days", "the rule is a number, not a condition", 1, "Compare it with something"),
        ("recency_days and events_7d > 1", "'and' needs a condition on each side; found number", 1, ""),
        ("recency_days < 7 events_7d > 1", "unexpected 'events_7d'", 18, "combine with 'and' / 'or'"),
        ("recency_days <", "the rule ends too early", 15, "unclosed '('"),
        ("(recency_days < 7", "the rule ends too early", 18, "unclosed '('"),
        ('country = "DE"', "unexpected character '\"'", 11, "single quotes"),
        ("recency_days < 7; DROP TABLE attrs", "unexpected character ';'", 17, "no SQL statements"),
        ("select * from attrs", "the rule is an SQL statement, not an expression", 1, "Write one condition"),
        ("foo(recency_days) > 1", "unknown function 'foo'", 1, "Functions:"),
        ("day_since(first_seen_at) < 3", "unknown function 'day_since'", 1, "Did you mean function 'days_since'?"),
        ("days_since(recency_days) < 3", "argument 1 of days_since() must be timestamp; found number", 12, ""),
        ("days_since() < 3", "days_since() takes 1 argument, not 0", 1, "days_since(timestamp)"),
        ("in_segment('vipp')", "unknown segment 'vipp'", 12, "Did you mean segment 'vip'?"),
        ("in_segment(country)", "in_segment() takes a segment name in quotes", 12, ""),
        ("", "the rule is empty", None, "Write one boolean expression"),
    ],
)
def test_every_error_names_the_segment_the_position_and_a_fix(rule, problem, column, hint):
    with pytest.raises(RuleError) as info:
        Compiler(SCHEMA, {"vip": "monetary_total > 500"}).compile("my_segment", rule)
    message = str(info.value)
    assert message.startswith("Segment 'my_segment': ") and problem in message
    if column is not None:
        assert f"line 1, column {column}" in message
    assert hint in message


@pytest.mark.parametrize(
    "rule, problem, hint",
    [
        (" or ".join(["recency_days > 1"] * 400), "the rule has 400 clauses; the limit is 200", "in (...)"),
        ("not " * 5000 + "recency_days > 1", "nested too deeply", "parentheses"),
        ("recency_days > " + "9" * 40, "out of range", "at most 18 digits"),
        ("recency_days > \u0663", "unexpected character", "digits 0-9"),  # Arabic-Indic three
        ("recency_days > \uff13", "unexpected character", "digits 0-9"),  # full-width three
    ],
)
def test_oversized_rules_and_odd_numbers_say_what_the_limit_is(rule, problem, hint):
    with pytest.raises(RuleError) as raised:
        Compiler(SCHEMA).compile("huge", rule)
    assert problem in str(raised.value) and hint in str(raised.value)


def test_segment_reference_cycles_are_rejected():
    compiler = Compiler(SCHEMA, {"a": "in_segment('b') and recency_days < 3", "b": "in_segment('a')"})
    with pytest.raises(RuleError, match=r"segment references form a cycle \(a -> b -> a\)"):
        compiler.compile("a")


@pytest.mark.parametrize(
    "hostile",
    [
        "x'); DROP TABLE attrs; --",
        "' OR 1=1 --",
        "DE' OR '1'='1",
        "\\'; DELETE FROM attrs; SELECT '",
        "Robert'); DROP TABLE Students;--",
    ],
)
def test_hostile_strings_are_parameters_and_never_sql(con, hostile):
    literal = "'" + hostile.replace("'", "''") + "'"
    compiled = Compiler(SCHEMA).compile("hostile", f"country = {literal} or country in ({literal}, 'zz')")
    assert hostile not in compiled.sql.text and "DROP" not in compiled.sql.text.upper()
    assert compiled.sql.params.count(hostile) == 2
    assert members(con, f"country = {literal}") == set()
    assert con.execute("SELECT count(*) FROM attrs").fetchone()[0] == len(ROWS)


@pytest.mark.parametrize(
    "hostile",
    [
        "country = 'DE' -- and recency_days > 1",
        "country = 'DE' /* comment */",
        "\"country\" = 'DE'",
        "country = 'DE'; SELECT 1",
        "recency_days < 7 UNION SELECT person_id FROM attrs",
        "attrs.country = 'DE'",
        "country = 'DE",
    ],
)
def test_anything_but_one_expression_is_rejected(hostile):
    with pytest.raises(RuleError):
        Compiler(SCHEMA).compile("hostile", hostile)


def test_clauses_keep_their_text_and_columns_for_explanations():
    compiled = Compiler(SCHEMA).compile("s", "recency_days <= 7 and (country in ('DE') or local_hour() > 9)")
    assert [c.text for c in compiled.clauses] == ["recency_days <= 7", "country in ('DE')", "local_hour() > 9"]
    assert compiled.clauses[2].columns == ["as_of", "last_seen_at", "timezone"]


def test_the_shipped_segments_load_against_the_dbt_contract():
    from orchestration.lib.settings import load_settings

    catalog = load_catalog(load_settings().segments_dir, attribute_schema(dbt_project.manifest_path))
    expected = {
        "active",
        "churned",
        "vip",
        "frequent_buyers",
        "occasional_buyers",
        "rare_buyers",
        "deep_browsers",
        "quick_lookers",
        "cart_abandoners",
        "new_users",
        "browsers_never_buy",
        "mobile_europe_business_hours",
        "cluster",
        "purchase_30d_top_decile",
        "churn_risk",
        "rfm_champions",
        "rfm_loyal",
        "rfm_new_customers",
        "rfm_at_risk",
        "rfm_hibernating",
        "high_value_at_risk",
        "browsing_now",  # segments/realtime.yml: the stream's alone
        "high_value_cart",
    }
    assert set(catalog.segments) == expected
    live_only = {n for n, s in catalog.segments.items() if s.live_only}
    assert live_only == {"browsing_now", "high_value_cart"}
    assert not live_only & {s.name for s in expand_clusters(catalog, [(0, "c")])}  # the daily run leaves them out
    assert {s.spec.type for s in catalog.segments.values()} == {"rule", "contextual", "cluster", "propensity"}


GOOD = """
  - name: vip
    description: Big spenders.
    owner: team:crm
    type: rule
    rule: monetary_total > 500
"""


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        (
            "segments:" + GOOD + "    colour: red\n",
            "a.yml, segment 'vip', key 'colour': unknown key. Allowed keys here: name, description",
        ),
        (
            "segments:\n  - name: vip\n    description: x\n    type: rule\n    rule: recency_days < 3\n",
            "a.yml, segment 'vip', key 'owner': required but missing",
        ),
        ("segments:" + GOOD.replace("name: vip", "name: ../../etc"), "key 'name': '../../etc' is not a valid name"),
        (
            "segments:" + GOOD.replace("type: rule", "type: magic"),
            "key 'type': 'magic' is not allowed. Input should be 'rule'",
        ),
        (
            "segments:" + GOOD.replace("rule: monetary_total > 500", "rule: monetary_totl > 500"),
            "a.yml, key 'rule': Segment 'vip': unknown column 'monetary_totl' at line 1, column 1",
        ),
        ("segments:" + GOOD + "    export_attributes: [email]\n", "key 'export_attributes': unknown column 'email'"),
        ("segments:" + GOOD + GOOD, "a.yml, segment 'vip': the name is already used in a.yml"),
        ("segments: [\n", "a.yml: not valid YAML"),
        ("segmints: []\n", "a.yml, key 'segmints': unknown key"),
        (
            "segments:" + GOOD.replace("rule: monetary_total > 500", "rule: rt_cart_value > 500"),
            "unknown column 'rt_cart_value' at line 1, column 1.\n    rt_cart_value > 500\n    ^\n  rt_cart_value, "
            "rt_events_1h, rt_events_24h, rt_last_product_viewed are live state: set `refresh: realtime` to use them.",
        ),
        (
            "segments:" + GOOD + "    refresh: hourly\n",
            "key 'refresh': 'hourly' is not allowed. Input should be 'daily' or 'realtime'",
        ),
    ],
)
def test_catalog_errors_name_the_file_segment_and_key(tmp_path, text, expected):
    (tmp_path / "a.yml").write_text(text)
    with pytest.raises(SegmentConfigError) as info:
        load_catalog(tmp_path, SCHEMA)
    assert expected in str(info.value)


def test_a_realtime_rule_may_read_the_live_columns(tmp_path):
    (tmp_path / "a.yml").write_text(
        "segments:"
        + GOOD.replace("monetary_total > 500", "monetary_total > 500 and rt_cart_value > 50")
        + "    refresh: realtime\n"
    )
    segment = load_catalog(tmp_path, SCHEMA).segments["vip"]
    assert segment.live_only and segment.compiled.columns == ["monetary_total", "rt_cart_value"]


def test_an_empty_segments_folder_says_where_to_look(tmp_path):
    with pytest.raises(SegmentConfigError, match="no segment definitions .* TESSERA_SEGMENTS_DIR"):
        load_catalog(tmp_path, SCHEMA)
