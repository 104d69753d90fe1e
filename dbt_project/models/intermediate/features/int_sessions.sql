-- Sessions per person and device, as of each feature date: events after the date are left out,
-- so a session never includes the future. A gap of more than session_timeout_minutes starts a
-- new session. The events after a date never change the sessions before it, so events are
-- sessionised once, summed per session and day, and each date takes the days up to it: a session
-- that runs past midnight is cut there, with the same number. This keeps the window functions to
-- one pass over the events instead of one per date.
with dates as (
    select as_of from {{ ref('int_feature_dates') }}
),

events as (
    select e.person_id, e.device_key, e.message_id, e.occurred_at, e.event_date, e.behaviour, e.device_type,
           e.referrer_class
    from {{ ref('int_person_events') }} e
    where e.event_date <= (select max(as_of) from dates)
),

gaps as (
    select
        *,
        case
            when lag(occurred_at) over (partition by person_id, device_key order by occurred_at, message_id) is null
              or {{ dbt.datediff("lag(occurred_at) over (partition by person_id, device_key order by occurred_at, message_id)", "occurred_at", "second") }}
                 > {{ var('session_timeout_minutes') }} * 60
            then 1 else 0
        end as starts_session
    from events
),

numbered as (
    select
        *,
        sum(starts_session) over (
            partition by person_id, device_key order by occurred_at, message_id rows unbounded preceding
        ) as session_number
    from gaps
),

-- The referrer of a session's first page view, from the date that page view is in.
first_page_view as (
    select person_id, device_key, session_number, event_date, referrer_class
    from (
        select *, row_number() over (
            partition by person_id, device_key, session_number order by occurred_at, message_id) as rn
        from numbered
        where behaviour = 'page_view'
    ) ranked
    where rn = 1
),

session_days as (
    select
        person_id,
        device_key,
        session_number,
        event_date,
        min(occurred_at) as first_at,
        max(occurred_at) as last_at,
        count(*) as events,
        count(case when behaviour = 'page_view' then 1 end) as pages,
        max(case when behaviour = 'add_to_cart' then 1 else 0 end) as added_to_cart,
        max(case when behaviour = 'purchase' then 1 else 0 end) as purchased,
        max(device_type) as device_type
    from numbered
    group by person_id, device_key, session_number, event_date
),

sessions as (
    select
        d.as_of,
        s.person_id,
        s.device_key,
        s.session_number,
        min(s.first_at) as session_start,
        max(s.last_at) as session_end,
        sum(s.events) as events,
        sum(s.pages) as pages,
        max(s.added_to_cart) = 1 as added_to_cart,
        max(s.purchased) = 1 as purchased,
        max(s.device_type) as device_type
    from session_days s
    join dates d on s.event_date <= d.as_of
    group by d.as_of, s.person_id, s.device_key, s.session_number
)

select
    md5({{ dbt.concat(["cast(s.as_of as " ~ dbt.type_string() ~ ")", "'|'", "s.person_id", "'|'", "s.device_key", "'|'",
                       "cast(s.session_number as " ~ dbt.type_string() ~ ")"]) }}) as session_id,
    s.as_of,
    s.person_id,
    s.device_key,
    s.session_number,
    s.session_start,
    s.session_end,
    {{ dbt.datediff("s.session_start", "s.session_end", "second") }} as duration_seconds,
    cast(s.events as bigint) as events,
    cast(s.pages as bigint) as pages,
    s.added_to_cart,
    s.purchased,
    s.device_type,
    f.referrer_class
from sessions s
left join first_page_view f
  on f.person_id = s.person_id and f.device_key = s.device_key and f.session_number = s.session_number
 and f.event_date <= s.as_of
