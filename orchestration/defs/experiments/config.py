"""Experiments as YAML (experiments/*.yml, TESSERA_EXPERIMENTS_DIR), checked when the code location
loads like the segment definitions: every mistake named with its file, experiment and key.

    experiments:
      - name: winback_offer
        description: A 10% voucher to buyers who have probably churned.
        owner: team:retention
        segment: churn_risk                  # who enters: the segment's members, from `start`
        start: 2026-10-01
        variants: {control: 50, voucher: 50} # shares of the split; `control` is the baseline
        metric: {kind: conversion, days: 30} # or {kind: revenue, days: 30}: revenue per person
        guardrails: [{kind: refund_rate, days: 30, max_increase: 0.02}]
        mode: fixed                          # or bandit: Thompson sampling re-allocates daily
        floor: 0.1                           # bandit: the least share an arm keeps
"""

from __future__ import annotations

import datetime as dt
from pathlib import Path
from typing import Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from orchestration.lib.config_errors import ConfigProblems, pydantic_problems, suggest

NAME_PATTERN = r"^[a-z][a-z0-9_]*$"
CONTROL = "control"


class ExperimentConfigError(ConfigProblems):
    heading = "Experiment definitions have problems:"


class Metric(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    kind: Literal["conversion", "revenue"]  # a completed order / the revenue of completed orders, per person
    days: int = Field(ge=1, le=90)  # counted from the day the person entered the experiment


class Guardrail(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    kind: Literal["refund_rate"]  # the share of persons with a refunded order
    days: int = Field(ge=1, le=90)
    max_increase: float = Field(gt=0, le=1)  # the most the treatment may raise it by (absolute)


class ExperimentSpec(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    name: str = Field(pattern=NAME_PATTERN)
    description: str = Field(min_length=1)
    owner: str = Field(min_length=1)
    segment: str
    start: dt.date
    end: dt.date | None = None  # no one enters after it; the analysis goes on
    variants: dict[str, float]
    metric: Metric
    guardrails: tuple[Guardrail, ...] = ()
    mode: Literal["fixed", "bandit"] = "fixed"
    floor: float = Field(default=0.1, ge=0, le=0.5)
    salt: str | None = None  # the hash's salt: by default the name, so each experiment splits anew

    @model_validator(mode="after")
    def _split(self) -> ExperimentSpec:
        if CONTROL not in self.variants:
            raise ValueError(f"variants must include '{CONTROL}', the baseline the others are compared with")
        if len(self.variants) < 2 or any(share <= 0 for share in self.variants.values()):
            raise ValueError("variants needs two or more variants, each with a share above 0")
        if self.mode == "bandit" and self.metric.kind != "conversion":
            raise ValueError("a bandit re-allocates on conversions: give it metric kind 'conversion'")
        if self.end is not None and self.end < self.start:
            raise ValueError(f"end {self.end} is before start {self.start}")
        return self

    @property
    def split(self) -> dict[str, float]:
        total = sum(self.variants.values())
        return {name: share / total for name, share in self.variants.items()}

    @property
    def hash_salt(self) -> str:
        return self.salt or self.name


class _ExperimentFile(BaseModel):
    model_config = ConfigDict(extra="forbid")
    experiments: list[dict]


def load_experiments(folder: Path, segments: set[str]) -> dict[str, ExperimentSpec]:
    """Every experiment of `folder` (none when it has no file), each on a known daily segment."""
    files = sorted(folder.glob("*.yml")) + sorted(folder.glob("*.yaml")) if folder.is_dir() else []
    problems: list[str] = []
    found: dict[str, ExperimentSpec] = {}
    for path in files:
        try:
            entries = _ExperimentFile.model_validate(yaml.safe_load(path.read_text()) or {}).experiments
        except yaml.YAMLError as exc:
            problems.append(f"{path.name}: not valid YAML ({str(exc).splitlines()[0]}). Check the indentation.")
            continue
        except ValidationError as exc:
            problems += pydantic_problems(path.name, exc, _ExperimentFile)
            continue
        for i, entry in enumerate(entries):
            label = f"{path.name}, experiment '{entry.get('name', f'#{i + 1}') if isinstance(entry, dict) else i + 1}'"
            try:
                spec = ExperimentSpec.model_validate(entry)
            except ValidationError as exc:
                problems += pydantic_problems(label, exc, ExperimentSpec)
                continue
            if spec.segment not in segments:
                hint = suggest(spec.segment, segments, "segment")
                problems.append(f"{label}, key 'segment': no daily segment is named '{spec.segment}'. {hint}".strip())
            if spec.name in found:
                problems.append(f"{label}: the name '{spec.name}' is taken by another experiment.")
            found[spec.name] = spec
    if problems:
        raise ExperimentConfigError(problems)
    return found
