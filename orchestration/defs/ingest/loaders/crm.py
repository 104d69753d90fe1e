"""CRM customer records (crm/*.csv) -> raw.crm_customers, and the opt-outs of records that cannot
load -> raw.crm_rejected_opt_outs."""

from __future__ import annotations

import babel

from orchestration.defs.ingest.loaders.common import FieldCheck
from orchestration.defs.ingest.loaders.tabular import (
    CsvSource,
    bool_sql,
    boolean_check,
    code_list,
    email_checks,
    optional_timestamp_check,
    required_rule,
    timestamp_rule,
    timestamp_sql,
)
from orchestration.lib import reason_codes as F

# ISO 3166-1 alpha-2 countries, as CLDR (through Babel) knows them.
COUNTRY_CODES = code_list(c for c in babel.Locale("en").territories if len(c) == 2 and c.isalpha() and c != "ZZ")

# CRM records that cannot load (no key, no readable updated_at) but whose consent fields say no:
# their opt-out still withholds the person they identify (marts.profiles).
REJECTED_OPT_OUTS_SQL = f"""
    SELECT nullif(trim(customer_id), '') AS customer_id, email_normalised,
           timezone('UTC', try_cast(nullif(updated_at, '') AS TIMESTAMPTZ)) AS updated_at,
           {bool_sql("marketing_opt_in")} AS marketing_opt_in,
           {bool_sql("personalization_opt_in")} AS personalization_opt_in,
           reason_code, file AS source_file, line_no AS source_line, loaded_at
    FROM _checked
    WHERE reason_code IS NOT NULL AND shape_error IS NULL
      AND (nullif(trim(customer_id), '') IS NOT NULL OR email_normalised IS NOT NULL)
      AND false IN ({bool_sql("marketing_opt_in")}, {bool_sql("personalization_opt_in")})
"""

CRM = CsvSource(
    name="crm",
    table="crm_customers",
    columns=(
        "customer_id",
        "email",
        "phone",
        "first_name",
        "last_name",
        "birth_date",
        "street",
        "city",
        "postcode",
        "country",
        "signup_at",
        "updated_at",
        "marketing_opt_in",
        "personalization_opt_in",
    ),
    required=(("customer_id",), ("updated_at",)),
    rules=(
        required_rule("customer_id", "updated_at"),
        timestamp_rule("updated_at"),
    ),
    fields=(
        *email_checks(),
        FieldCheck(
            "phone",
            F.INVALID_PHONE,
            "nullif(phone, '') IS NOT NULL AND phone_e164 IS NULL",
            "'phone \"' || phone || '\" is not a phone number' || coalesce(' for country ' || nullif(country, ''), '')",
        ),
        FieldCheck(
            "birth_date",
            F.INVALID_DATE,
            "nullif(birth_date, '') IS NOT NULL AND try_cast(birth_date AS DATE) IS NULL",
            "'birth_date \"' || birth_date || '\" is not a date (use YYYY-MM-DD)'",
        ),
        optional_timestamp_check("signup_at"),
        boolean_check("marketing_opt_in"),
        boolean_check("personalization_opt_in"),
        FieldCheck(
            "country",
            F.INVALID_VALUE,
            f"nullif(country, '') IS NOT NULL AND upper(trim(country)) NOT IN ({COUNTRY_CODES})",
            "'country \"' || country || '\" is not an ISO 3166 two-letter code'",
        ),
    ),
    select=(
        "customer_id, nullif(email, '') AS email, email_normalised, nullif(phone, '') AS phone, phone_e164, "
        "CASE WHEN phone_e164 IS NOT NULL THEN phone_valid END AS phone_valid, "
        "nullif(first_name, '') AS first_name, nullif(last_name, '') AS last_name, "
        "try_cast(nullif(birth_date, '') AS DATE) AS birth_date, nullif(street, '') AS street, "
        "nullif(city, '') AS city, nullif(postcode, '') AS postcode, upper(trim(nullif(country, ''))) AS country, "
        f"{timestamp_sql('signup_at')}, {timestamp_sql('updated_at')}, "
        f"{bool_sql('marketing_opt_in')} AS marketing_opt_in, "
        f"{bool_sql('personalization_opt_in')} AS personalization_opt_in"
    ),
    dedupe=True,
    # An opt-out withholds the person even from a record that cannot load.
    companions=(("raw.crm_rejected_opt_outs", REJECTED_OPT_OUTS_SQL),),
    table_counts=(("withheld_opt_outs", "raw.crm_rejected_opt_outs"),),
)
