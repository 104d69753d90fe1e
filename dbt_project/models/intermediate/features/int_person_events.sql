-- Behavioural events attributed to persons (bots have no person, so they drop out here), with
-- the person's local time and the referrer classified.
with identity as (
    select identifier_type, identifier, person_id from {{ ref('identity_map') }}
),

events as (
    select * from {{ ref('int_segment__events') }}
),

attributed as (
    select
        e.*,
        -- A userId decides over a shared device's anonymousId.
        coalesce(u.person_id, a.person_id) as person_id,
        coalesce(tz.time_zone, 'UTC') as local_timezone
    from events e
    left join {{ ref('time_zones') }} tz on tz.time_zone = e.timezone
    left join identity u on u.identifier_type = 'user_id' and u.identifier = e.user_id
    left join identity a on a.identifier_type = 'anonymous_id' and a.identifier = e.anonymous_id
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
    end as referrer_class
from localised
