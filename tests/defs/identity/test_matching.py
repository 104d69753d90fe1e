"""Splink matching on CRM records: typo duplicates match, namesakes with other lives do not."""

from __future__ import annotations

import pandas as pd

from orchestration.defs.identity.matching import (
    NAMES,
    MatchSettings,
    block_column,
    match_customer_records,
    with_blocking_keys,
)


def generated_crm(sample) -> pd.DataFrame:
    """One CRM record per customer of the generated sample, names folded as the dbt model folds them."""
    crm = pd.read_csv(next((sample.landing / "crm").glob("customers_base-*.csv")), dtype=str).dropna(
        subset=["customer_id"]
    )
    return crm.drop_duplicates("customer_id").assign(
        first_name=lambda d: d.first_name.str.lower(),
        last_name=lambda d: d.last_name.str.lower(),
        city=lambda d: d.city.str.lower(),
        street=lambda d: d.street.str.lower(),
    )


def test_too_few_records_give_no_pairs_not_an_error():
    records = pd.DataFrame(
        {
            "customer_id": ["C1", "C2"],
            "first_name": ["ann", "ann"],
            "last_name": ["lee", "lee"],
            "birth_date": ["1980-01-01", "1980-01-01"],
            "postcode": ["1011", "1011"],
            "city": ["amsterdam", "amsterdam"],
            "street": ["1 kerkstraat", "1 kerkstraat"],
        }
    )
    out = match_customer_records(records)
    assert out.empty and list(out.columns) == ["customer_id_l", "customer_id_r", "match_probability", "match_weight"]


def test_typo_duplicate_matches_and_namesake_does_not(sample):
    """On the generated CRM (hundreds of records), with a planted typo pair and a namesake added."""
    import duckdb  # noqa: F401  (Splink's backend)

    base = pd.DataFrame(
        [
            ("X1", "margarethe", "oosterhuis", "1961-03-14", "3511", "utrecht", "12 molenweg"),
            ("X2", "margarethe", "oosterhius", "1961-03-14", "3511", "utrecht", "12 molenweg"),  # typo twin of X1
            ("X3", "margarethe", "oosterhuis", "1990-11-02", "1011", "amsterdam", "3 dorpsstraat"),  # namesake
        ],
        columns=["customer_id", "first_name", "last_name", "birth_date", "postcode", "city", "street"],
    )
    records = pd.concat([generated_crm(sample)[base.columns], base], ignore_index=True)
    pairs = match_customer_records(records)
    matched = set(zip(pairs.customer_id_l, pairs.customer_id_r, strict=True))
    assert ("X1", "X2") in matched
    assert ("X1", "X3") not in matched and ("X2", "X3") not in matched


def test_hard_guards_refuse_a_parent_and_child_and_strangers_at_one_address():
    from orchestration.defs.identity.matching import birth_dates_conflict, contacts_conflict, names_conflict

    left = pd.Series(["1975-05-25", "1961-03-14", "1961-03-14", "1985-03-07", "1980-01-01", None, "1980-01-01"])
    right = pd.Series(
        ["1951-08-18", "1961-03-41", "1961-03-15", "1985-07-03", "1980-01-20", "1990-01-01", "1987-06-15"]
    )
    # parent/child; a digit typo; a day off; a day/month swap; within a month; one unknown; years apart
    assert birth_dates_conflict(left, right, 31).tolist() == [True, False, False, False, False, False, True]
    assert not birth_dates_conflict(left, right, None).any()
    names_l = pd.DataFrame(
        {"first_name": ["marco", "ann", "jan", "noah", None], "last_name": ["kowalski", "lee", "de vries", "cook", "x"]}
    )
    names_r = pd.DataFrame(
        {"first_name": ["noah", "ann", "de vries", "noah", "y"], "last_name": ["cook", "smith", "jan", "cooke", "z"]}
    )
    # nothing in common; a changed surname; swapped names; a typo; a name unknown
    assert names_conflict(names_l, names_r, 0.8).tolist() == [True, False, False, False, False]
    contacts_l = pd.DataFrame({"email": ["a@x.com", "A@x.com ", None, "a@x.com"], "phone": [None, "+1", "+1", "+1"]})
    contacts_r = pd.DataFrame({"email": ["b@x.com", "a@x.com", "b@x.com", None], "phone": [None, "+2", None, "+1"]})
    # other emails; same email (case) but other phones; nothing comparable; same phone
    assert contacts_conflict(contacts_l, contacts_r).tolist() == [True, True, False, False]
    assert not contacts_conflict(contacts_l[[]], contacts_r[[]]).any()  # sources without contact details


def test_a_parent_and_child_of_one_name_at_one_address_stay_apart(sample):
    """Same name, same full address: Splink's score passes 0.99 on that alone. Birth dates 24 years
    apart and different emails say parent and child; a re-keyed birth date alone does not."""
    base = pd.DataFrame(
        [
            ("P1", "marco", "peterson", "1975-05-25", "3000", "melbourne", "114 george street", "marco.p@gmx.de"),
            ("P2", "marco", "peterson", "1951-08-18", "3000", "melbourne", "114 george street", "mp51@globex.io"),
            ("P3", "marco", "petersen", "1975-05-25", "3000", "melbourne", "114 george street", "marco.p@gmx.de"),
        ],
        columns=["customer_id", "first_name", "last_name", "birth_date", "postcode", "city", "street", "email"],
    )
    # P3 is P1's record with a typo in the surname.
    records = pd.concat([generated_crm(sample)[base.columns], base], ignore_index=True)
    without_contacts = records.drop(columns=["email"])

    def matched(settings: MatchSettings) -> set:
        return set(
            zip(
                *match_customer_records(records, settings)[["customer_id_l", "customer_id_r"]].T.to_numpy(), strict=True
            )
        )

    guarded = matched(MatchSettings())
    assert ("P1", "P3") in guarded
    assert ("P1", "P2") not in guarded and ("P2", "P3") not in guarded
    assert ("P1", "P2") in matched(MatchSettings(max_birth_date_gap_days=None))  # the score alone merges them
    records = without_contacts  # no contact details to disagree on: the birth dates alone do not split them
    assert ("P1", "P2") in matched(MatchSettings())


def test_blocks_above_the_cap_are_skipped_yet_a_twin_inside_one_still_matches(sample):
    """150 namesakes in one town (151 with T1) make one wide block. With the cap at 100 that block
    pairs nobody, yet a typo twin among them still meets its original on a narrow key (birth date
    and street), and a record with swapped names shares the unordered names key."""
    namesakes = pd.DataFrame(
        {
            "customer_id": [f"N{i:03d}" for i in range(150)],
            "first_name": "anna",
            "last_name": "visser",
            "birth_date": [f"{1940 + i % 60}-{1 + i % 12:02d}-{1 + i % 28:02d}" for i in range(150)],
            "postcode": "3511",
            "city": "utrecht",
            "street": [f"{i + 1} oudegracht" for i in range(150)],
        }
    )
    twins = pd.DataFrame(
        [
            ("T1", "anna", "visser", "1977-06-05", "3512", "utrecht", "7 lange nieuwstraat"),
            ("T2", "anna", "vissser", "1977-06-05", "3512", "utrecht", "7 lange nieuwstraat"),  # typo twin of T1
            ("S1", "jorinde", "bakema", "1983-02-11", "9711", "groningen", "40 vismarkt"),
            ("S2", "bakema", "jorinde", "1983-02-11", "9711", "groningen", "40 vismarkt"),  # S1, names swapped
        ],
        columns=namesakes.columns,
    )
    records = pd.concat([generated_crm(sample)[namesakes.columns], namesakes, twins], ignore_index=True)

    import duckdb

    names_key, birth_date_street_key = block_column(NAMES), block_column(("birth_date", "street"))
    with duckdb.connect() as con:
        blocked = with_blocking_keys(con, records, max_block_size=100).set_index("customer_id")
    assert blocked.loc[namesakes["customer_id"], names_key].isna().all()  # 151 Anna Vissers: skipped
    assert blocked.loc["S1", names_key] == blocked.loc["S2", names_key]
    assert blocked.loc["T1", birth_date_street_key] == blocked.loc["T2", birth_date_street_key]

    pairs = match_customer_records(records, MatchSettings(max_block_size=100))
    matched = set(zip(pairs.customer_id_l, pairs.customer_id_r, strict=True))
    assert ("T1", "T2") in matched and ("S1", "S2") in matched
    assert not any(a.startswith("N") and b.startswith("N") for a, b in matched)


def test_unchanged_crm_records_reuse_the_stored_pairs_and_a_changed_record_rematches(sample, tmp_path):
    import dagster as dg

    from orchestration.defs.identity.assets import crm_match_pairs
    from orchestration.defs.resources import WarehouseResource
    from orchestration.lib.warehouse import connect

    warehouse = tmp_path / "warehouse.duckdb"
    records = generated_crm(sample)[
        ["customer_id", "first_name", "last_name", "birth_date", "postcode", "city", "street"]
    ]

    def run(frame: pd.DataFrame, **config) -> tuple[bool, set]:
        with connect(warehouse) as con:
            con.execute("CREATE SCHEMA IF NOT EXISTS intermediate")
            con.register("frame", frame)
            con.execute("CREATE OR REPLACE TABLE intermediate.int_crm__customer_records AS SELECT * FROM frame")
        result = dg.materialize(
            [crm_match_pairs],
            resources={"warehouse": WarehouseResource(path=str(warehouse))},
            run_config={"ops": {"intermediate__crm_match_pairs": {"config": config}}},
        )
        (materialization,) = result.asset_materializations_for_node("intermediate__crm_match_pairs")
        with connect(warehouse, read_only=True) as con:
            pairs = set(con.execute("SELECT customer_id_l, customer_id_r FROM intermediate.crm_match_pairs").fetchall())
        return materialization.metadata["reused"].value, pairs

    twin = records.iloc[[0]].assign(customer_id="TWIN", last_name=lambda d: d.last_name + "x")
    first_reused, first = run(records)
    again_reused, again = run(records.sample(frac=1.0, random_state=1))  # the same records in another order
    twin_reused, with_twin = run(pd.concat([records, twin]))
    forced_reused, forced = run(pd.concat([records, twin]), rematch=True)
    assert (first_reused, again_reused, twin_reused, forced_reused) == (False, True, False, False)
    assert again == first and forced == with_twin
    assert (records.customer_id.iloc[0], "TWIN") in with_twin - first


def test_matching_adapts_to_the_columns_present_and_skips_passes_that_pair_nobody(caplog):
    """A CRM export with names, birth dates and postcodes but no street or city, and no two records
    sharing a birth date and street: Splink stopped the run on that EM pass (EMTrainingException).
    The pass is skipped with a message, and a typo twin is still found on what the export has."""
    people = pd.DataFrame(
        {
            "customer_id": [f"X{i:03d}" for i in range(200)],
            "first_name": [f"name{i}" for i in range(200)],
            "last_name": [f"family{i % 37}" for i in range(200)],
            "birth_date": [f"{1940 + i % 60}-{1 + i % 12:02d}-{1 + i % 28:02d}" for i in range(200)],
            "postcode": [f"{1000 + i}" for i in range(200)],
            "city": None,
            "street": None,
        }
    )
    twin = people.iloc[[5]].assign(customer_id="X999", first_name="name5x")
    with caplog.at_level("WARNING"):
        pairs = match_customer_records(pd.concat([people, twin], ignore_index=True))
    assert set(zip(pairs["customer_id_l"], pairs["customer_id_r"], strict=True)) == {("X005", "X999")}
    assert "street" not in " ".join(r.getMessage() for r in caplog.records if "EM pass" in r.getMessage())
    alone = match_customer_records(people.assign(birth_date=None))  # no duplicates at all: no crash
    assert alone.empty
