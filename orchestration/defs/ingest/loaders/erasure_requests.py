"""Erasure requests (privacy/*.csv) -> raw.erasure_requests, which the privacy domain applies."""

from __future__ import annotations

from orchestration.defs.ingest.loaders.common import Rule
from orchestration.defs.ingest.loaders.tabular import CsvSource, required_rule, timestamp_rule, timestamp_sql
from orchestration.lib import reason_codes as F

PRIVACY = CsvSource(
    name="privacy",
    table="erasure_requests",
    columns=("requested_at", "identifier_type", "identifier"),
    required=(("requested_at",), ("identifier_type",), ("identifier",)),
    rules=(
        required_rule("requested_at", "identifier_type", "identifier"),
        timestamp_rule("requested_at"),
        Rule(
            F.INVALID_VALUE,
            "lower(identifier_type) NOT IN ('email', 'phone', 'user_id', 'customer_id', 'anonymous_id')",
            "'identifier_type \"' || identifier_type || '\" is not one of email, phone, user_id, customer_id, anonymous_id'",
        ),
    ),
    # identifier is cleared once the erasure step has processed the request; the hash stays as proof.
    select=(
        f"{timestamp_sql('requested_at')}, lower(identifier_type) AS identifier_type, identifier, "
        "sha256(CASE WHEN lower(identifier_type) = 'email' THEN lower(trim(identifier)) ELSE trim(identifier) END) "
        "AS identifier_sha256"
    ),
    dedupe=True,
)
