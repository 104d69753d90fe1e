-- Events summed per event day: one row per day and combination of anonymous_id, user_id, email,
-- phone, user agent, country and device type seen on a message, with when it was first and last
-- seen that day and how often, and the device's busiest minute that day (for bot detection). The
-- bots, the identity graph's evidence and the profiles read this, a few rows per device and day,
-- instead of every event.
-- Incremental on DuckDB by day: each row keeps its day's digest in int_segment__events (count and
-- a sum of version hashes). The pre-hook deletes the days whose events differ from it (new or late
-- events, a re-sent or withdrawn file, an erasure), and the run sums those days again, which gives
-- exactly what a full rebuild gives. Spark's Parquet tables cannot delete rows: there it is a table,
-- rebuilt each run. A change of its columns fails the run (on_schema_change: fail) until a full
-- refresh: rows added to old ones with a new column left empty would differ from a rebuild.
{{ config(
    materialized=('table' if target.type == 'spark' else 'incremental'),
    incremental_strategy='append',
    on_schema_change='fail',
    pre_hook="{{ delete_changed_digests(ref('int_segment__events'), ['event_date'], 'day') }}",
) }}

with events as (
    select e.event_date, e.occurred_at, e.anonymous_id, e.user_id, e.traits_email_normalised, e.traits_phone_e164,
           e.user_agent, e.user_agent_is_bot, e.country, e.device_type, e.message_id, e.source_file, e.loaded_at
    from {{ ref('int_segment__events') }} e
    {% if is_incremental() %}
    where e.event_date not in (select distinct event_date from {{ this }})
    {% endif %}
),

days as (
    {{ event_digests('events', ['event_date'], 'day') }}
),

busiest_minutes as (
    select event_date, anonymous_id, max(events_in_minute) as busiest_minute_events
    from (
        select event_date, anonymous_id, {{ dbt.date_trunc('minute', 'occurred_at') }} as minute, count(*) as events_in_minute
        from events
        where anonymous_id is not null
        group by event_date, anonymous_id, {{ dbt.date_trunc('minute', 'occurred_at') }}
    ) per_minute
    group by event_date, anonymous_id
),

observations as (
    select event_date, anonymous_id, user_id, traits_email_normalised, traits_phone_e164, user_agent, user_agent_is_bot,
           country, device_type, min(occurred_at) as first_observed_at, max(occurred_at) as last_observed_at, count(*) as observations
    from events
    group by event_date, anonymous_id, user_id, traits_email_normalised, traits_phone_e164, user_agent, user_agent_is_bot,
             country, device_type
)

select
    o.event_date,
    o.anonymous_id,
    o.user_id,
    o.traits_email_normalised,
    o.traits_phone_e164,
    o.user_agent,
    o.user_agent_is_bot,
    o.country,
    o.device_type,
    o.first_observed_at,
    o.last_observed_at,
    o.observations,
    m.busiest_minute_events,
    d.day_events,
    d.day_digest,
    '{{ invocation_id }}' as dbt_invocation_id
from observations o
join days d on d.event_date = o.event_date
left join busiest_minutes m on m.event_date = o.event_date and m.anonymous_id = o.anonymous_id
