"""Reason codes for rejected input: `reason_code` in raw.quarantine (a record refused) and
raw.field_issues (an optional field nulled). Ingestion assigns them (orchestration/defs/ingest,
orchestration.lib.identifiers for emails); the sample generator plants one fault of each kind, so
tests can check every code is caught."""

from __future__ import annotations

# Whole files that cannot be read at all.
FILE_NOT_GZIP = "file_not_gzip"
FILE_NOT_UTF8 = "file_not_utf8"
FILE_MISSING_HEADER = "file_missing_header"
FILE_UNREADABLE = "file_unreadable"

# Event lines.
INVALID_JSON = "invalid_json"
NOT_AN_OBJECT = "not_an_object"
MISSING_MESSAGE_ID = "missing_message_id"
MISSING_IDS = "missing_ids"
UNKNOWN_TYPE = "unknown_type"
MISSING_TIMESTAMP = "missing_timestamp"
INVALID_TIMESTAMP = "invalid_timestamp"
FUTURE_TIMESTAMP = "future_timestamp"
MISSING_EVENT_NAME = "missing_event_name"
INVALID_FIELD_TYPE = "invalid_field_type"

# CSV rows (every tabular source).
WRONG_FIELD_COUNT = "wrong_field_count"
MISSING_REQUIRED = "missing_required"
INVALID_EMAIL = "invalid_email"
MIXED_SCRIPT_EMAIL = "mixed_script_email"  # a look-alike address: Latin and Cyrillic letters, say
INVALID_PHONE = "invalid_phone"
INVALID_DATE = "invalid_date"
INVALID_BOOLEAN = "invalid_boolean"
INVALID_NUMBER = "invalid_number"
INVALID_VALUE = "invalid_value"
MISSING_CUSTOMER = "missing_customer"
NEGATIVE_AMOUNT = "negative_amount"  # a completed order with an amount below zero
CONFLICTING_DUPLICATE = "conflicting_duplicate"  # a messageId sent again with another payload
