"""Experiments (issue #35): does the analysis find a planted uplift, and only a planted one?

    .venv/bin/python benchmarks/experiments_simulation.py --warehouse data/warehouse.duckdb --truth data/truth

On a warehouse the pipeline built from generated data, and that data's ground truth:
- the members of a few segments enter an experiment with a 50/50 split by Tessera's own salted hash
  (a new salt per simulated experiment);
- each person's outcome is the generator's truth: did they complete an order in the 30 days after
  as_of (`purchased_next_30d`); the metric before assignment (for CUPED) is whether they ordered in
  the 30 days before it (marts.purchased_items / orders);
- a known uplift per segment is planted in the treatment arm: a person who did not convert does
  with probability u / (1 - p), so the treatment's expected conversion is the control's plus u
  (u = 0 is an A/A test);
- persons enter in a random order and the analysis looks ten times (after each tenth).
For each segment: how often the 95% interval (plain, CUPED) and the confidence sequence cover u;
how often an A/A test rejects, at the last look, with the fixed-horizon test peeked at ten times,
and with the always-valid test; the power for u > 0; and CUPED's interval width against plain.
Figures go to benchmarks/results/experiments_simulation.json.
"""

from __future__ import annotations

import argparse
import csv
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import duckdb  # noqa: E402
import numpy as np  # noqa: E402

from benchmarks._pipeline import save_result  # noqa: E402
from ml.experiments import assign, compare, cuped  # noqa: E402

PLANTED = {"churn_risk": 0.05, "vip": 0.03, "active": 0.0, "rfm_champions": 0.0}
LOOKS = 10


def _outcomes(warehouse: Path, truth: Path) -> tuple[dict[str, list[str]], dict[str, float], dict[str, float]]:
    """(segment -> members, person -> converted in the 30 days after as_of, person -> ordered in the 30 before)."""
    con = duckdb.connect(str(warehouse), read_only=True)
    members: dict[str, list[str]] = {}
    for segment, person in con.execute(
        "SELECT segment_name, person_id FROM marts.segment_membership ORDER BY ALL"
    ).fetchall():
        members.setdefault(segment, []).append(person)
    identities = {
        (kind, value): person
        for kind, value, person in con.execute(
            "SELECT identifier_type, identifier, person_id FROM marts.identity_map "
            "WHERE identifier_type IN ('user_id', 'customer_id', 'anonymous_id')"
        ).fetchall()
    }
    before = dict(
        con.execute(
            """SELECT person_id, CAST(1 AS DOUBLE) FROM intermediate.int_orders
               WHERE status = 'completed' AND ordered_at > (SELECT max(as_of) FROM marts.segment_membership) - INTERVAL 30 DAY
               GROUP BY 1"""
        ).fetchall()
    )
    with (truth / "identifiers.csv").open() as fh:
        person_of = {
            r["person_key"]: identities[(r["identifier_type"], r["identifier"])]
            for r in csv.DictReader(fh)
            if (r["identifier_type"], r["identifier"]) in identities
        }
    with (truth / "persons.csv").open() as fh:
        after = {
            person_of[r["person_key"]]: float(r["purchased_next_30d"] == "True")
            for r in csv.DictReader(fh)
            if r["person_key"] in person_of
        }
    return members, after, before


def simulate(persons: list[str], after: dict, before: dict, uplift: float, runs: int, seed: int) -> dict:
    rng = np.random.default_rng(seed)
    persons = [p for p in persons if p in after]
    base = np.array([after[p] for p in persons])
    pre = np.array([before.get(p, 0.0) for p in persons])
    counts = {"covered": 0, "covered_cuped": 0, "covered_sequence": 0, "reject_last": 0, "reject_peeking": 0}
    counts |= {"reject_always_valid": 0}
    widths = []
    for run in range(runs):
        salt = f"simulation-{seed}-{run}"
        treated = np.array([assign(salt, p, {"control": 0.5, "treatment": 0.5}) == "treatment" for p in persons])
        p_base = base[~treated].mean() if (~treated).any() else 0.0
        lift = rng.random(len(persons)) < (uplift / (1 - p_base) if p_base < 1 else 0)
        y = np.where(treated & (base == 0) & lift, 1.0, base)
        order = rng.permutation(len(persons))
        looks, sequence_p = [], 1.0
        for share in np.linspace(0.1, 1.0, LOOKS):
            seen = order[: max(4, int(share * len(persons)))]
            adjusted, _ = cuped(y[seen], pre[seen])
            t = treated[seen]
            plain = compare(y[seen][~t], y[seen][t])
            reduced = compare(adjusted[~t], adjusted[t])
            sequence_p = min(sequence_p, reduced.always_valid_p)
            looks.append((plain, reduced))
        plain, reduced = looks[-1]
        counts["covered"] += int(plain.ci_low <= uplift <= plain.ci_high)
        counts["covered_cuped"] += int(reduced.ci_low <= uplift <= reduced.ci_high)
        counts["covered_sequence"] += int(reduced.sequence_low <= uplift <= reduced.sequence_high)
        counts["reject_last"] += int(plain.p_value < 0.05)
        counts["reject_peeking"] += int(any(p.p_value < 0.05 for p, _ in looks))
        counts["reject_always_valid"] += int(sequence_p < 0.05)
        widths.append((reduced.ci_high - reduced.ci_low) / (plain.ci_high - plain.ci_low))
    return {
        "persons": len(persons),
        "base_rate": round(float(base.mean()), 4),
        "planted_uplift": uplift,
        **{k: round(v / runs, 4) for k, v in counts.items()},
        "cuped_width_over_plain": round(float(np.mean(widths)), 4),
    }


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--warehouse", type=Path, default=ROOT / "data" / "warehouse.duckdb")
    ap.add_argument("--truth", type=Path, default=ROOT / "data" / "truth")
    ap.add_argument("--runs", type=int, default=1000)
    args = ap.parse_args()
    members, after, before = _outcomes(args.warehouse, args.truth)
    result = {"warehouse": str(args.warehouse), "runs_per_segment": args.runs, "looks": LOOKS, "segments": {}}
    for n, (segment, uplift) in enumerate(PLANTED.items()):
        if segment not in members:
            print(f"{segment}: no members in this warehouse, skipped")
            continue
        figures = simulate(members[segment], after, before, uplift, args.runs, seed=n)
        result["segments"][segment] = figures
        print(segment, figures)
    aa = [f for f in result["segments"].values() if f["planted_uplift"] == 0]
    planted = [f for f in result["segments"].values() if f["planted_uplift"] > 0]
    result["coverage_mean"] = round(float(np.mean([f["covered"] for f in result["segments"].values()])), 4)
    result["aa_false_positive_rate_last_look"] = (
        round(float(np.mean([f["reject_last"] for f in aa])), 4) if aa else None
    )
    result["aa_false_positive_rate_peeking"] = (
        round(float(np.mean([f["reject_peeking"] for f in aa])), 4) if aa else None
    )
    result["aa_false_positive_rate_always_valid"] = (
        round(float(np.mean([f["reject_always_valid"] for f in aa])), 4) if aa else None
    )
    result["power_planted"] = {f"{f['planted_uplift']}": f["reject_last"] for f in planted}
    save_result("experiments_simulation", result)
    return 0


if __name__ == "__main__":
    sys.exit(main())
