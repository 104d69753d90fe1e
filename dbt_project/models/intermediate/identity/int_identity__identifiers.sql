-- Every identifier observation, normalised (emails by ingestion's check_email, valid phones in E.164) and
-- hashed where it is PII. Junk values and bot devices are dropped here, before any edge exists.
-- Events come summed per day and combination of identifiers (int_segment__event_days), CRM records
-- and order lines one by one: each row says when its identifiers were first and last seen together,
-- and how often.
-- A view: the edges and the nodes each read it once, which costs less than writing it to disk.
{{ config(materialized='view') }}
with bots as (
    select anonymous_id from {{ ref('int_identity__bots') }}
),

observations as (
    select 'events' as source, first_observed_at, last_observed_at, observations,
           anonymous_id, user_id, cast(null as {{ dbt.type_string() }}) as customer_id,
           traits_email_normalised as email, traits_phone_e164 as phone
    from {{ ref('int_segment__event_days') }}
    union all
    select 'crm', updated_at, updated_at, 1, null, null, customer_id, email_normalised,
           case when phone_valid then phone_e164 end  -- unassigned numbers are often typed-in fakes
    from {{ ref('stg_crm__customers') }}
    union all
    select 'orders', ordered_at, ordered_at, 1, null, null, customer_id, email_normalised, null
    from {{ ref('stg_commerce__order_lines') }}
    union all
    -- An Order Completed event and its orders/ row: the device or user that bought, and the customer.
    select 'order_events', e.occurred_at, e.occurred_at, 1, e.anonymous_id, e.user_id, o.customer_id, o.email_normalised, null
    from {{ ref('int_segment__events') }} e
    join (
        select distinct order_id, customer_id, email_normalised from {{ ref('stg_commerce__order_lines') }}
    ) o on o.order_id = e.order_id
    where e.behaviour = 'purchase'
),

cleaned as (
    select
        source,
        first_observed_at,
        last_observed_at,
        observations,
        case when lower(anonymous_id) not in {{ blocked_values_sql() }} then anonymous_id end as anonymous_id,
        case when lower(user_id) not in {{ blocked_values_sql() }} then user_id end as user_id,
        -- A CRM record's own key is its customer id whatever it reads ("0" is a real key there); elsewhere
        -- a placeholder such as "0" or "-1" would join every guest to one person.
        case when source = 'crm' or lower(customer_id) not in {{ blocked_values_sql() }} then customer_id end as customer_id,
        case when email not in {{ blocked_values_sql() }} and email like '%_@_%' then email end as email,
        case when phone not in {{ blocked_values_sql() }} then phone end as phone
    from observations
    where anonymous_id is null or anonymous_id not in (select anonymous_id from bots)
)

select
    source,
    first_observed_at,
    last_observed_at,
    observations,
    anonymous_id,
    user_id,
    customer_id,
    email,
    phone,
    {{ sha256_hex('email') }} as email_sha256,
    {{ sha256_hex('phone') }} as phone_sha256
from cleaned
