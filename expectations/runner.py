"""Run a Great Expectations 1.x suite on a pandas frame; results and Data Docs go to a local folder.

GX validates pandas frames here, not DuckDB through SQLAlchemy (see docs/stack_notes.md). Each table's
suite lives in its own module beside this one, as `expectations(previous_row_count)`.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd

ROW_COUNT_RANGE = (0.5, 2.0)  # against the previous run: a halving or doubling is a problem, not growth


def row_count_bounds(previous_row_count: int) -> tuple[int, int]:
    low, high = ROW_COUNT_RANGE
    return int(previous_row_count * low), int(previous_row_count * high)


def gx_expectations():
    """GX's expectation classes, imported when a suite is built: GX takes seconds to import, and
    loading the Dagster definitions needs none of it."""
    import great_expectations as gx

    return gx.expectations


def row_count_sanity(previous_row_count: int | None) -> list:
    """The table is not empty and, when there was a previous run, its size is within range of it."""
    e = gx_expectations()
    if not previous_row_count:
        return [e.ExpectTableRowCountToBeBetween(min_value=1)]
    low, high = row_count_bounds(previous_row_count)
    return [e.ExpectTableRowCountToBeBetween(min_value=low, max_value=high)]


def columns_of(expectations: list) -> list[str]:
    """The columns a suite reads. GX copies the frame for each metric it computes, so a gate reads
    only these (half the time on marts.user_features)."""
    columns: dict[str, None] = {}
    for expectation in expectations:
        for attribute in ("column", "column_A", "column_B"):
            if getattr(expectation, attribute, None):
                columns[getattr(expectation, attribute)] = None
        columns.update(dict.fromkeys(getattr(expectation, "column_list", None) or []))
    return list(columns)


@dataclass
class Failure:
    expectation: str
    column: str | None
    unexpected_count: int | None
    examples: list


@dataclass
class Outcome:
    success: bool
    evaluated: int
    failures: list[Failure] = field(default_factory=list)
    docs_index: Path | None = None


def validate(
    name: str,
    frame: pd.DataFrame,
    expectations: list,
    gx_root: Path,
    personal: Callable[[str], bool] = lambda column: False,
) -> Outcome:
    """Validate `frame` in a file-backed GX project at `gx_root`, and update its Data Docs.

    Expectations on columns that `personal` names run as a suite of their own (`<name>__identifiers`)
    whose results keep no failing values, in the Data Docs or in the outcome: an identifier there
    would outlive an erasure. The other suite keeps a few failing values as examples."""
    import great_expectations as gx
    from great_expectations.checkpoint import UpdateDataDocsAction
    from great_expectations.data_context.types.base import ProgressBarsConfig

    logging.getLogger("great_expectations").setLevel(logging.ERROR)
    gx_root.mkdir(parents=True, exist_ok=True)
    context = gx.get_context(mode="file", project_root_dir=str(gx_root))
    context.variables.progress_bars = ProgressBarsConfig(globally=False)
    try:
        source = context.data_sources.get("tessera")
    except (KeyError, ValueError):
        source = context.data_sources.add_pandas("tessera")
    try:
        asset = source.get_asset(name)
    except LookupError:
        asset = source.add_dataframe_asset(name)
    try:
        batch_definition = asset.get_batch_definition("whole_table")
    except (KeyError, ValueError, LookupError):
        batch_definition = asset.add_batch_definition_whole_dataframe("whole_table")
    groups = {
        name: ([e for e in expectations if not any(personal(c) for c in columns_of([e]))], 20),
        f"{name}__identifiers": ([e for e in expectations if any(personal(c) for c in columns_of([e]))], 0),
    }
    success, evaluated, failures = True, 0, []
    for suite_name, (group, examples) in groups.items():
        if not group:
            continue
        suite = context.suites.add_or_update(gx.ExpectationSuite(name=suite_name, expectations=group))
        validation = context.validation_definitions.add_or_update(
            gx.ValidationDefinition(name=f"{suite_name}_gate", data=batch_definition, suite=suite)
        )
        checkpoint = context.checkpoints.add_or_update(
            gx.Checkpoint(
                name=f"{suite_name}_checkpoint",
                validation_definitions=[validation],
                actions=[UpdateDataDocsAction(name="update_data_docs")],
                result_format={"result_format": "SUMMARY", "partial_unexpected_count": examples},
            )
        )
        result = checkpoint.run(batch_parameters={"dataframe": frame})
        run_result = next(iter(result.run_results.values()))
        success &= bool(result.success)
        evaluated += len(run_result.results)
        for r in run_result.results:
            if r.success:
                continue
            cfg = r.expectation_config
            res = r.result or {}
            failures.append(
                Failure(
                    expectation=cfg.type,
                    column=cfg.kwargs.get("column"),
                    unexpected_count=res.get("unexpected_count"),
                    examples=list(
                        res.get("partial_unexpected_list") or [v for v in [res.get("observed_value")] if v is not None]
                    ),
                )
            )
    docs = gx_root / "gx" / "uncommitted" / "data_docs" / "local_site" / "index.html"
    return Outcome(success=success, evaluated=evaluated, failures=failures, docs_index=docs if docs.exists() else None)
