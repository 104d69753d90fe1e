"""Consent to personalisation, as every personalised output applies it: segments (daily and
real-time) and recommendations. A person without an answer gets TESSERA_CONSENT_DEFAULT_ALLOWED."""


def personalisation_allowed_sql(default_allowed: bool, column: str = "personalization_opt_in") -> str:
    """SQL true for a person who may be personalised for (`column` from marts.segment_attributes)."""
    return f"coalesce({column}, {'true' if default_allowed else 'false'})"
