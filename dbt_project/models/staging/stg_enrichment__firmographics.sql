-- One row per email domain; when files disagree the last row read wins.
with source as (
    select * from {{ source('enrichment', 'firmographics') }}
),

ranked as (
    select
        *,
        row_number() over (partition by email_domain order by source_file desc, source_line desc) as row_rank
    from source
)

select
    email_domain,
    company_name,
    industry,
    employee_count,
    annual_revenue_usd,
    loaded_at
from ranked
where row_rank = 1
