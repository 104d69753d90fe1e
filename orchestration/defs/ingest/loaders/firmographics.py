"""Firmographics by email domain (enrichment/*.csv) -> raw.firmographics."""

from __future__ import annotations

from orchestration.defs.ingest.loaders.tabular import CsvSource, optional_number_check, required_rule

ENRICHMENT = CsvSource(
    name="enrichment",
    table="firmographics",
    columns=("email_domain", "company_name", "industry", "employee_count", "annual_revenue_usd"),
    required=(("email_domain",),),
    rules=(required_rule("email_domain"),),
    fields=(
        optional_number_check("employee_count", "BIGINT"),
        optional_number_check("annual_revenue_usd", "DECIMAL(18, 2)"),
    ),
    select=(
        "lower(email_domain) AS email_domain, nullif(company_name, '') AS company_name, "
        "nullif(industry, '') AS industry, try_cast(nullif(employee_count, '') AS BIGINT) AS employee_count, "
        "try_cast(nullif(annual_revenue_usd, '') AS DECIMAL(18, 2)) AS annual_revenue_usd"
    ),
    dedupe=True,
)
