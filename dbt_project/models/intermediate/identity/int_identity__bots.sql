-- Devices that are bots: by user agent (the parser's verdict or our pattern) or by a rate no person reaches. They never become persons.
-- Reads the events summed per device and day (int_segment__event_days), which keep each device's busiest minute.
with devices as (
    select anonymous_id, user_agent, user_agent_is_bot, busiest_minute_events
    from {{ ref('int_segment__event_days') }}
    where anonymous_id is not null
),

-- The pattern runs once per distinct user agent (ingestion lists every agent it loads), not per event.
user_agents_by_pattern as (
    select user_agent from {{ ref('stg_segment__user_agents') }}
    where {{ regex_matches('user_agent', var('tessera__identity_bot_user_agent_pattern')) }}
),

by_user_agent as (
    select anonymous_id, 'user_agent' as detected_by
    from devices
    where user_agent_is_bot or user_agent in (select user_agent from user_agents_by_pattern)
    group by anonymous_id
),

by_rate as (
    select anonymous_id, 'event_rate' as detected_by
    from devices
    group by anonymous_id
    having max(busiest_minute_events) > {{ var('tessera__identity_bot_max_events_per_minute') }}
),

flagged as (
    select * from by_user_agent
    union all
    select r.* from by_rate r where r.anonymous_id not in (select anonymous_id from by_user_agent)
)

select anonymous_id, detected_by from flagged
