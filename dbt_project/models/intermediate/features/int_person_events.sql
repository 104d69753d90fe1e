-- Behavioural events attributed to persons (bots have no person, so they drop out here), with
-- the person's local time and the referrer classified.
-- Incremental on DuckDB, kept in step with its sources rather than rebuilt: the pre-hook deletes the
-- rows whose event changed or left int_segment__events (a version is message_id, source_file and
-- loaded_at, which ingestion renews when a file changes) and the rows whose person the identity map
-- now gives differently (a merge or split); the run then adds every event that has no row. So a
-- daily run writes the day's events and the few moved by identity, and equals a full rebuild.
-- dbt_invocation_id tells which run wrote a row.
-- Spark's Parquet tables cannot delete rows: there it is a table, rebuilt each run. A change of
-- its columns fails the run (on_schema_change: fail) until a full refresh: rows added to old ones
-- with a new column left empty would differ from a rebuild.
{{ config(
    materialized=('table' if target.type == 'spark' else 'incremental'),
    unique_key='message_id',
    incremental_strategy='append',
    on_schema_change='fail',
    pre_hook="{{ delete_stale_person_events() }}",
) }}

with identity as (
    select identifier_type, identifier, person_id from {{ ref('identity_map') }}
),

events as (
    select * from {{ ref('int_segment__events') }} e
    {% if is_incremental() %}
    where not exists (select 1 from {{ this }} t where t.message_id = e.message_id)
    {% endif %}
),

attributed as (
    select
        e.*,
        {{ person_of_event('u', 'a') }} as person_id,
        coalesce(tz.time_zone, 'UTC') as local_timezone
    from events e
    left join {{ ref('time_zones') }} tz on tz.time_zone = e.timezone
    {{ join_event_identity('e', 'identity') }}
),

localised as (
    select
        *,
        {{ to_local_time('occurred_at', 'local_timezone') }} as local_at
    from attributed
    where person_id is not null
)

select
    message_id,
    person_id,
    user_id,
    anonymous_id,
    coalesce(anonymous_id, {{ dbt.concat(["'user:'", "user_id"]) }}) as device_key,
    occurred_at,
    local_at,
    cast({{ dbt.date_trunc('day', 'occurred_at') }} as date) as event_date,
    extract(hour from local_at) as local_hour,
    {{ day_of_week('local_at') }} as local_iso_weekday,
    message_type,
    behaviour,
    order_id,
    revenue,
    category,
    video_percent_watched,
    scroll_percent,
    device_type,
    country,
    local_timezone,
    case
        when page_referrer is null then 'direct'
        when {{ regex_matches('page_referrer', '(?i)://([a-z0-9-]+\\.)*(google|bing|duckduckgo|yahoo|baidu|yandex|ecosia)\\.') }} then 'search'
        when {{ regex_matches('page_referrer', '(?i)://([a-z0-9-]+\\.)*(facebook|t\\.co|twitter|x\\.com|instagram|tiktok|linkedin|pinterest|reddit|youtube)') }} then 'social'
        when page_url is not null and {{ dbt.split_part('page_referrer', "'/'", 3) }} = {{ dbt.split_part('page_url', "'/'", 3) }} then 'internal'
        else 'other'
    end as referrer_class,
    source_file,
    loaded_at,
    '{{ invocation_id }}' as dbt_invocation_id
from localised
