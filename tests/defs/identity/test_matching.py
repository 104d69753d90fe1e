"""Splink matching on CRM records: typo duplicates match, namesakes with other lives do not."""

from __future__ import annotations

import pandas as pd

from orchestration.defs.identity.matching import match_customer_records


def test_too_few_records_give_no_pairs_not_an_error():
    records = pd.DataFrame({"customer_id": ["C1", "C2"], "first_name": ["ann", "ann"], "last_name": ["lee", "lee"],
                            "birth_date": ["1980-01-01", "1980-01-01"], "postcode": ["1011", "1011"],
                            "city": ["amsterdam", "amsterdam"], "street": ["1 kerkstraat", "1 kerkstraat"]})
    out = match_customer_records(records)
    assert out.empty and list(out.columns) == ["customer_id_l", "customer_id_r", "match_probability", "match_weight"]


def test_typo_duplicate_matches_and_namesake_does_not(sample):
    """On the generated CRM (hundreds of records), with a planted typo pair and a namesake added."""
    import duckdb  # noqa: F401  (Splink's backend)

    base = pd.DataFrame([
        ("X1", "margarethe", "oosterhuis", "1961-03-14", "3511", "utrecht", "12 molenweg"),
        ("X2", "margarethe", "oosterhius", "1961-03-14", "3511", "utrecht", "12 molenweg"),   # typo twin of X1
        ("X3", "margarethe", "oosterhuis", "1990-11-02", "1011", "amsterdam", "3 dorpsstraat"),  # namesake
    ], columns=["customer_id", "first_name", "last_name", "birth_date", "postcode", "city", "street"])
    crm = pd.read_csv(next((sample.landing / "crm").glob("customers_base-*.csv")), dtype=str).dropna(subset=["customer_id"])
    crm = crm.drop_duplicates("customer_id").assign(
        first_name=lambda d: d.first_name.str.lower(), last_name=lambda d: d.last_name.str.lower(),
        city=lambda d: d.city.str.lower(), street=lambda d: d.street.str.lower())
    records = pd.concat([crm[base.columns], base], ignore_index=True)
    pairs = match_customer_records(records)
    matched = set(zip(pairs.customer_id_l, pairs.customer_id_r))
    assert ("X1", "X2") in matched
    assert ("X1", "X3") not in matched and ("X2", "X3") not in matched
