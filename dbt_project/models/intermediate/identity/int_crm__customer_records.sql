-- The latest record of each CRM customer, with names folded for probabilistic matching (PII:
-- read only by the identity graph asset, which writes hashed ids only).
with ranked as (
    select
        *,
        row_number() over (partition by customer_id order by updated_at desc, source_file desc) as recency_rank
    from {{ ref('stg_crm__customers') }}
)

select
    customer_id,
    {{ fold_name('first_name') }} as first_name,
    {{ fold_name('last_name') }} as last_name,
    birth_date,
    upper(replace(postcode, ' ', '')) as postcode,
    {{ fold_name('city') }} as city,
    {{ fold_name('street') }} as street,
    country,
    case when email_normalised not in {{ blocked_values_sql() }} then email_normalised end as email,
    case when phone_valid then phone_e164 end as phone,
    updated_at
from ranked
where recency_rank = 1
