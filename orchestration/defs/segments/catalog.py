"""Segment definitions: YAML files in segments/, validated and compiled when they load.

Every problem in every file is collected into one SegmentConfigError, each line naming the
file, the segment, the key, what was wrong and how to fix it.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from orchestration.defs.segments.rules import CompiledRule, Compiler, RuleError, rule_type
from orchestration.lib.config_errors import ConfigProblems, pydantic_problems

ATTRIBUTES_MODEL = "model.tessera.segment_attributes"
# The stream processor's live state (orchestration/realtime/processor.py), which only segments with
# `refresh: realtime` may read. The stream also keeps these attribute columns live: the latest of
# their batch value and the stream's (last_seen_at, last_add_to_cart_at, last_order_at), the day
# counts derived from them (recency_days, days_since_last_order), and as_of and evaluated_at (now).
LIVE_COLUMNS = {
    "rt_events_1h": "number",
    "rt_events_24h": "number",
    "rt_cart_value": "number",
    "rt_last_product_viewed": "text",
}
NAME_PATTERN = r"^[a-z][a-z0-9_]{0,62}$"


class SegmentConfigError(ConfigProblems):
    """One or more segment definitions cannot be used."""

    heading = "Segment definitions have problems:"


class SegmentSpec(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    name: str = Field(pattern=NAME_PATTERN)
    description: str = Field(min_length=1)
    owner: str = Field(min_length=1)
    type: Literal["rule", "contextual", "cluster", "propensity"]
    rule: str = Field(min_length=1)
    min_size: int = Field(default=0, ge=0)
    # `cluster`: one segment per cluster of the champion clustering, named <name>_<cluster name>.
    for_each: Literal["cluster"] | None = None
    # Attribute columns written to the audience export beside the ids and hashed email.
    export_attributes: tuple[str, ...] = ()
    # The audience export also carries each member's top N recommended products (marts.recommendations).
    export_recommendations: int = Field(default=0, ge=0, le=10)
    # `realtime`: the stream processor also evaluates it at each event (docs/realtime.md); its rule
    # may read the live columns (LIVE_COLUMNS), and then only the stream evaluates it.
    refresh: Literal["daily", "realtime"] = "daily"


class _SegmentFile(BaseModel):
    model_config = ConfigDict(extra="forbid")
    segments: list[dict]


@dataclass(frozen=True)
class Segment:
    spec: SegmentSpec
    compiled: CompiledRule
    source: str  # the YAML file it came from

    @property
    def name(self) -> str:
        return self.spec.name

    @property
    def live_only(self) -> bool:
        """Reads live state, so the daily run cannot evaluate it."""
        return any(c in LIVE_COLUMNS for c in self.compiled.columns)


@dataclass
class Catalog:
    segments: dict[str, Segment]
    schema: dict[str, str]

    def compiler(self) -> Compiler:
        return Compiler(self.schema, {n: s.spec.rule for n, s in self.segments.items()})


def attribute_schema(manifest_path: Path) -> dict[str, str]:
    """Column -> rule type, from the enforced dbt contract of segment_attributes."""
    if not manifest_path.exists():
        raise SegmentConfigError([f"{manifest_path} does not exist: run `make install` (it runs `dbt parse`)."])
    node = json.loads(manifest_path.read_text())["nodes"].get(ATTRIBUTES_MODEL)
    if node is None:
        raise SegmentConfigError([f"{manifest_path} has no segment_attributes model: re-run `dbt parse`."])
    schema = {}
    for name, column in node["columns"].items():
        kind = rule_type(column.get("data_type") or "")
        if kind:
            schema[name] = kind
    return schema


def slug(text: str) -> str:
    return re.sub(r"[^a-z0-9]+", "_", text.lower()).strip("_") or "unnamed"


def load_catalog(folder: Path, schema: dict[str, str]) -> Catalog:
    files = sorted(folder.glob("*.yml")) + sorted(folder.glob("*.yaml"))
    if not folder.is_dir() or not files:
        raise SegmentConfigError(
            [
                f"{folder}: no segment definitions (*.yml) found. Set TESSERA_SEGMENTS_DIR to "
                "the folder that holds them, or copy the project's segments/ folder."
            ]
        )
    problems: list[str] = []
    specs: dict[str, tuple[SegmentSpec, str]] = {}
    for path in files:
        try:
            document = yaml.safe_load(path.read_text()) or {}
            entries = _SegmentFile.model_validate(document).segments
        except yaml.YAMLError as exc:
            problems.append(f"{path.name}: not valid YAML ({str(exc).splitlines()[0]}). Check the indentation.")
            continue
        except ValidationError as exc:
            problems += pydantic_problems(path.name, exc, _SegmentFile)
            continue
        for i, entry in enumerate(entries):
            label = (
                f"{path.name}, segment '{entry.get('name', f'#{i + 1}')}'"
                if isinstance(entry, dict)
                else f"{path.name}, entry #{i + 1}"
            )
            try:
                spec = SegmentSpec.model_validate(entry)
            except ValidationError as exc:
                problems += pydantic_problems(label, exc, SegmentSpec)
                continue
            if spec.name in specs:
                problems.append(
                    f"{label}: the name is already used in {specs[spec.name][1]}. Segment names are unique."
                )
                continue
            for column in spec.export_attributes:
                if column not in schema:
                    problems.append(
                        f"{label}, key 'export_attributes': unknown column '{column}'. Use columns of "
                        "marts.segment_attributes."
                    )
            if spec.refresh == "realtime" and spec.for_each:
                problems.append(
                    f"{label}, key 'refresh': a `for_each: cluster` segment is daily (clusters come from the "
                    "weekly model); remove `refresh: realtime`."
                )
                continue
            specs[spec.name] = (spec, path.name)
    rules = {name: spec.rule for name, (spec, _) in specs.items()}
    compilers = {"daily": Compiler(schema, rules), "realtime": Compiler(schema | LIVE_COLUMNS, rules)}
    segments = {}
    for name, (spec, source) in specs.items():
        try:
            segments[name] = Segment(spec, compilers[spec.refresh].compile(name), source)
        except RuleError as exc:
            if spec.refresh == "daily" and any(c in str(exc) for c in LIVE_COLUMNS):
                exc = RuleError(
                    name,
                    spec.rule,
                    exc.position,
                    exc.problem,
                    f"{', '.join(sorted(LIVE_COLUMNS))} are live state: set `refresh: realtime` to use them.",
                )
            problems.append(f"{source}, key 'rule': {exc}")
    if problems:
        raise SegmentConfigError(problems)
    return Catalog(segments, schema)


def expand_clusters(catalog: Catalog, clusters: list[tuple[int, str]]) -> list[Segment]:
    """Concrete segments: each `for_each: cluster` entry becomes one segment per cluster."""
    out = []
    compiler = catalog.compiler()
    for segment in catalog.segments.values():
        if segment.live_only:  # the stream processor's alone
            continue
        if segment.spec.for_each != "cluster":
            out.append(segment)
            continue
        for cluster_id, cluster_name in clusters:
            name = f"{segment.name}_{slug(cluster_name)}"[:63]
            rule = f"({segment.spec.rule}) and cluster_id = {int(cluster_id)}"
            spec = segment.spec.model_copy(
                update={
                    "name": name,
                    "rule": rule,
                    "for_each": None,
                    "description": f"{segment.spec.description} Cluster {cluster_id}: {cluster_name}.",
                }
            )
            out.append(Segment(spec, compiler.compile(name, rule), segment.source))
    return out
