"""Probabilistic matching of CRM records that share no key (Fellegi-Sunter, via Splink on DuckDB).

Plain Python. u-probabilities come from random sampling, m-probabilities from expectation
maximisation over narrow blocking passes (EM_PASSES); pairs above `threshold` come back with their
match probability.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

import pandas as pd

from orchestration.lib.warehouse import scratch_database

log = logging.getLogger(__name__)
COLUMNS = ["customer_id", "first_name", "last_name", "birth_date", "postcode", "city", "street"]


# Each EM pass estimates the comparisons it does not block on. The blocks are narrow on purpose:
# in a wide block (one birth date, one postcode) chance pairs outnumber true ones once the table
# is large, and EM then learns "same town" instead of "same person" (at 100k CRM records the
# birth-date m-probabilities came out equal to the u-probabilities).
EM_PASSES = (("birth_date", "street"), ("first_name", "last_name", "street"), ("first_name", "last_name", "birth_date"))


@dataclass(frozen=True)
class MatchSettings:
    threshold: float = 0.99
    max_pairs_for_u: float = 2e6
    # Blocks with more records than this generate no pairs (see BLOCKING_KEYS).
    max_block_size: int = 100
    seed: int = 42
    # Records whose birth dates differ beyond a one-character typo, a day/month swap and this many
    # days, and whose contact details differ too (both have an email and they differ, or both a
    # phone), are two people however well names and address agree: a parent and child of one name
    # at one address. A birth-date conflict alone may be a re-keyed date (FEBRL3 has many), so it
    # does not split records without contact details. None turns the guard off.
    max_birth_date_gap_days: int | None = 31
    # Records that share no similar name in any order (Jaro-Winkler below this, first and last
    # names compared both ways) are two people, even at one address with one birth date.
    min_name_similarity: float | None = 0.8
    # A column compares (and its EM passes run) when at least this share of records fill it.
    min_column_fill: float = 0.05
    # An EM pass (or the prior) runs only when its block pairs at least this many records: Splink
    # stops the run on a pass with none (EMTrainingException). Small CRMs train well on a few.
    min_em_pairs: int = 1


def names_conflict(left: pd.DataFrame, right: pd.DataFrame, min_similarity: float) -> pd.Series:
    """True where both records have first and last names and none of one record's names is
    similar to any of the other's (a changed surname or swapped names still agree somewhere)."""
    from rapidfuzz.distance import JaroWinkler

    if min_similarity is None:
        return pd.Series(False, index=left.index)
    out = []
    for (fl, ll), (fr, lr) in zip(
        left[["first_name", "last_name"]].itertuples(index=False),
        right[["first_name", "last_name"]].itertuples(index=False),
        strict=True,
    ):
        names = (fl, ll, fr, lr)
        if any(pd.isna(n) for n in names):
            out.append(False)
            continue
        best = max(JaroWinkler.similarity(a, b) for a in (fl, ll) for b in (fr, lr))
        out.append(best < min_similarity)
    return pd.Series(out, index=left.index, dtype=bool)


def contacts_conflict(left: pd.DataFrame, right: pd.DataFrame) -> pd.Series:
    """True where both records have an email and the (trimmed, lower-cased) emails differ, or both
    have a phone and the phones differ."""

    def differ(column: str) -> pd.Series:
        if column not in left or column not in right:
            return pd.Series(False, index=left.index)
        a = left[column].astype("string").str.strip().str.lower()
        b = right[column].astype("string").str.strip().str.lower()
        return (a.notna() & b.notna() & (a != b)).fillna(False).astype(bool)

    return differ("email") | differ("phone")


def birth_dates_conflict(left: pd.Series, right: pd.Series, max_gap_days: int | None) -> pd.Series:
    """True where both ISO dates are known and differ beyond a typo (Damerau-Levenshtein 1 on the
    text: one wrong or two adjacent swapped digits), beyond a day/month swap, and beyond
    `max_gap_days`."""
    from rapidfuzz.distance import DamerauLevenshtein

    if max_gap_days is None:
        return pd.Series(False, index=left.index)
    left_dates, right_dates = pd.to_datetime(left, errors="coerce"), pd.to_datetime(right, errors="coerce")
    known = left_dates.notna() & right_dates.notna()
    gap = (left_dates - right_dates).dt.days.abs()
    swapped = (
        (left_dates.dt.year == right_dates.dt.year)
        & (left_dates.dt.month == right_dates.dt.day)
        & (left_dates.dt.day == right_dates.dt.month)
    )
    typo = pd.Series(
        [
            bool(k) and DamerauLevenshtein.distance(str(a), str(b)) <= 1
            for a, b, k in zip(left, right, known, strict=True)
        ],
        index=left.index,
    )
    return known & ~typo & ~swapped & (gap > max_gap_days)


# Splink scores only pairs of records that share one of these blocking keys (SQL over the folded
# record; a key with a null part blocks nothing). Names go unordered, so swapped names share them.
# The narrow keys pair two rarely shared fields; the wide ones catch duplicates whose corruption
# broke every narrow key (FEBRL3 has many), but their blocks (one birth date, one name in one town)
# grow with the table, so their pairs grow with its square: blocks above `max_block_size` records
# are skipped (block purging), which keeps the pairs linear in the table.
NAMES = ("least(first_name, last_name)", "greatest(first_name, last_name)")
BLOCKING_KEYS = (
    (*NAMES, "substr(birth_date, 1, 4)"),
    (*NAMES, "postcode"),
    (*NAMES, "city"),
    ("birth_date", "postcode"),
    ("birth_date", "street"),
    ("birth_date", "first_name"),
    ("birth_date", "last_name"),
    ("postcode", "street"),
    ("first_name", "street"),
    ("last_name", "street"),
    # wide
    NAMES,
    ("birth_date",),
    ("postcode", "last_name"),
    ("postcode", "first_name"),
    ("city", "street"),
    ("last_name", "substr(birth_date, 1, 4)"),
    ("first_name", "city"),
    ("last_name", "city"),
)


def _pairs_sharing(frame: pd.DataFrame, fields: tuple[str, ...]) -> int:
    """Record pairs that agree exactly on every one of `fields` (none of them null)."""
    sizes = frame.dropna(subset=list(fields)).groupby(list(fields)).size()
    return int((sizes * (sizes - 1) // 2).sum())


def block_column(key: tuple[str, ...]) -> str:
    """The column `with_blocking_keys` writes for one of BLOCKING_KEYS."""
    return f"block_{BLOCKING_KEYS.index(key)}"


def prediction_blocking_rules() -> list:
    """One Splink rule per blocking key, over the columns of `with_blocking_keys`."""
    from splink import block_on

    return [block_on(block_column(key)) for key in BLOCKING_KEYS]


def with_blocking_keys(con, frame: pd.DataFrame, max_block_size: int) -> pd.DataFrame:
    """`frame` with one column per BLOCKING_KEYS entry (see block_column): the key, or null where
    it has a null part or more than `max_block_size` records share it."""
    con.register("_records", frame)
    sql_of = {key: " || '|' || ".join(f"({part})" for part in key) for key in BLOCKING_KEYS}
    columns = ",\n".join(
        f"CASE WHEN count(*) OVER (PARTITION BY {sql}) <= {max_block_size} THEN {sql} END AS {block_column(key)}"
        for key, sql in sql_of.items()
    )
    try:
        return con.execute(f"SELECT *, {columns} FROM _records ORDER BY customer_id").df()
    finally:
        con.unregister("_records")


def match_customer_records(records: pd.DataFrame, settings: MatchSettings = MatchSettings()) -> pd.DataFrame:
    """Pairs of customer records that are one person: customer_id_l, customer_id_r, match_probability.

    `records` has one row per customer_id and the columns in COLUMNS (street may be absent);
    email and phone, when present, are not compared by Splink but feed the household guard.
    """
    empty = pd.DataFrame(
        {
            "customer_id_l": pd.Series(dtype="string"),
            "customer_id_r": pd.Series(dtype="string"),
            "match_probability": pd.Series(dtype="float64"),
            "match_weight": pd.Series(dtype="float64"),
        }
    )
    if len(records) < 3:
        return empty
    import splink.comparison_library as cl
    from splink import DuckDBAPI, Linker, SettingsCreator, block_on

    frame = records.reindex(columns=COLUMNS).copy()
    frame["birth_date"] = frame["birth_date"].astype("string")
    for col in COLUMNS:
        frame[col] = frame[col].astype("string").str.strip().replace("", pd.NA)
    # Comparisons and EM passes are built from the columns that hold values: an export without
    # streets or birth dates is matched on what it has.
    present = {col for col in COLUMNS[1:] if frame[col].notna().mean() >= settings.min_column_fill}
    comparisons = {
        ("first_name", "last_name"): lambda: cl.ForenameSurnameComparison("first_name", "last_name"),
        ("birth_date",): lambda: cl.DateOfBirthComparison(
            "birth_date", input_is_string=True, datetime_format="%Y-%m-%d"
        ),
        ("postcode",): lambda: cl.LevenshteinAtThresholds("postcode", [1, 2]),
        ("city",): lambda: cl.JaroWinklerAtThresholds("city", [0.9]),
        # A street shared by many records (a big building, a common name and number) says less
        # than a rare one: exact matches are weighted by how often the value occurs.
        ("street",): lambda: cl.JaroWinklerAtThresholds("street", [0.9, 0.8]).configure(
            term_frequency_adjustments=True
        ),
    }
    used = [make() for cols, make in comparisons.items() if set(cols) <= present]
    if len(used) < 2 or not {"first_name", "last_name"} <= present:
        log.warning(
            "CRM matching skipped: it needs names and one more filled column; filled: %s",
            ", ".join(sorted(present)) or "none",
        )
        return empty

    creator = SettingsCreator(
        link_type="dedupe_only",
        unique_id_column_name="customer_id",
        blocking_rules_to_generate_predictions=prediction_blocking_rules(),
        comparisons=used,
        retain_intermediate_calculation_columns=False,
        retain_matching_columns=False,
    )
    # Small CRM tables leave some comparison levels unobserved; Splink then uses its defaults, which
    # is expected, so only its errors are worth showing.
    logging.getLogger("splink").setLevel(logging.ERROR)
    with scratch_database() as con:
        db = DuckDBAPI(connection=con)
        blocked = with_blocking_keys(con, frame, settings.max_block_size)
        linker = Linker(db.register(blocked), creator, log_level=None)
        prior = ("first_name", "last_name", "birth_date" if "birth_date" in present else "postcode")
        if set(prior) <= present and _pairs_sharing(frame, prior) >= settings.min_em_pairs:
            linker.training.estimate_probability_two_random_records_match([block_on(*prior)], recall=0.7)
        else:
            log.warning("Splink keeps its prior match probability: too few records share %s", ", ".join(prior))
        linker.training.estimate_u_using_random_sampling(max_pairs=settings.max_pairs_for_u, seed=settings.seed)
        for fields in EM_PASSES:
            if not set(fields) <= present:
                continue
            if (pairs := _pairs_sharing(frame, fields)) < settings.min_em_pairs:
                log.warning(
                    "Splink EM pass blocked on %s skipped: %d record pairs share them (at least %d needed); "
                    "the other passes (or Splink's defaults) stand",
                    ", ".join(fields),
                    pairs,
                    settings.min_em_pairs,
                )
                continue
            try:
                linker.training.estimate_parameters_using_expectation_maximisation(block_on(*fields))
            except ValueError as exc:
                # On small tables EM can drive an m-probability to 0, which Splink rejects; the
                # estimates of the other pass (or Splink's defaults) then stand.
                log.warning("Splink EM blocked on %s did not converge to usable values: %s", fields, exc)
        predictions = linker.inference.predict(
            threshold_match_probability=settings.threshold, warning_mode="never"
        ).as_pandas_dataframe()
    if predictions.empty:
        return empty
    # Hard disagreements that outweigh any score (see MatchSettings).
    by_id = frame.join(
        records.set_index("customer_id").reindex(columns=["email", "phone"]), on="customer_id"
    ).set_index("customer_id")
    left, right = by_id.loc[predictions["customer_id_l"]], by_id.loc[predictions["customer_id_r"]]
    left.index = right.index = predictions.index
    household = birth_dates_conflict(
        left["birth_date"], right["birth_date"], settings.max_birth_date_gap_days
    ) & contacts_conflict(left, right)
    conflict = household | names_conflict(left, right, settings.min_name_similarity)
    if conflict.any():
        log.info("%d candidate pairs refused: birth dates or names disagree beyond a typo", int(conflict.sum()))
    out = predictions.loc[~conflict, ["customer_id_l", "customer_id_r", "match_probability", "match_weight"]].copy()
    # The same pair in the same order every run: the smaller id on the left.
    swap = out["customer_id_l"] > out["customer_id_r"]
    out.loc[swap, ["customer_id_l", "customer_id_r"]] = out.loc[swap, ["customer_id_r", "customer_id_l"]].values
    return out.sort_values(["customer_id_l", "customer_id_r"]).reset_index(drop=True)
