-- Every identifier observation, normalised (emails trimmed and lower-cased, phones in E.164) and
-- hashed where it is PII. Junk values and bot devices are dropped here, before any edge exists.
-- A view: the edges and the nodes each read it once, which costs less than writing one row per
-- message to disk (at 100k persons 6 s against 15 s for the three models).
{{ config(materialized='view') }}
with events as (
    select * from {{ ref('int_segment__events') }}
    where anonymous_id is null or anonymous_id not in (select anonymous_id from {{ ref('int_identity__bots') }})
),

observations as (
    select message_id as evidence_id, 'events' as source, occurred_at as observed_at,
           anonymous_id, user_id, cast(null as {{ dbt.type_string() }}) as customer_id,
           traits_email_normalised as email, traits_phone_e164 as phone
    from events
    union all
    select customer_record_id, 'crm', updated_at, null, null, customer_id, email_normalised, phone_e164
    from {{ ref('stg_crm__customers') }}
    union all
    select order_line_id, 'orders', ordered_at, null, null, customer_id, email_normalised, null
    from {{ ref('stg_commerce__order_lines') }}
    union all
    -- An Order Completed event and its orders/ row: the device or user that bought, and the customer.
    select {{ dbt.concat(["e.message_id", "'|'", "o.order_id"]) }}, 'order_events', e.occurred_at,
           e.anonymous_id, e.user_id, o.customer_id, o.email_normalised, null
    from events e
    join (
        select distinct order_id, customer_id, email_normalised from {{ ref('stg_commerce__order_lines') }}
    ) o on o.order_id = e.order_id
    where e.behaviour = 'purchase'
),

cleaned as (
    select
        evidence_id,
        source,
        observed_at,
        case when lower(anonymous_id) not in {{ blocked_values_sql() }} then anonymous_id end as anonymous_id,
        case when lower(user_id) not in {{ blocked_values_sql() }} then user_id end as user_id,
        case when lower(customer_id) not in {{ blocked_values_sql() }} then customer_id end as customer_id,
        case when email not in {{ blocked_values_sql() }} and email like '%_@_%' then email end as email,
        case when phone not in {{ blocked_values_sql() }} then phone end as phone
    from observations
)

select
    evidence_id,
    source,
    observed_at,
    anonymous_id,
    user_id,
    customer_id,
    email,
    phone,
    {{ sha256_hex('email') }} as email_sha256,
    {{ sha256_hex('phone') }} as phone_sha256
from cleaned
