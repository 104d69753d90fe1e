-- stg_segment__events materialised with each message's parsed user agent, incremental by event
-- day: a daily run flattens the JSON of its partition plus the late-arrival lookback, and any day
-- whose messages no longer match the landing zone (a file re-sent, withdrawn or arriving very
-- late), not the whole history (macros/event_window.sql). Every model downstream reads events here.
-- The days to rebuild are emptied by the pre-hook, then appended: `append` is the strategy both
-- DuckDB and Spark (Parquet, no Delta) run. message_id stays unique because whole days are
-- replaced (its unique test guards it). Spark stores it partitioned by day; DuckDB tables have no
-- partitions (dbt-duckdb would warn on every run).
{{ config(
    materialized='incremental',
    unique_key='message_id',
    incremental_strategy='append',
    on_schema_change='append_new_columns',
    partition_by=(['event_date'] if target.type == 'spark' else none),
    pre_hook="{{ delete_event_days_to_rebuild() }}",
) }}

with events as (
    select * from {{ ref('stg_segment__events') }}
    {% if is_incremental() %}
    where {{ event_days_to_rebuild('occurred_at') }}
    {% endif %}
),

user_agents as (
    select * from {{ ref('stg_segment__user_agents') }}
)

select
    e.*,
    ua.device_type as device_type_parsed,
    coalesce(e.device_type_reported, ua.device_type) as device_type,
    ua.browser_family,
    ua.os_family,
    coalesce(ua.is_bot, false) as user_agent_is_bot,
    cast({{ dbt.date_trunc('day', 'e.occurred_at') }} as date) as event_date
from events e
left join user_agents ua on ua.user_agent = e.user_agent
