-- Sessions per person and device as of each feature date: the session days up to the date
-- (int_session_days), so a session never includes the future; one that runs past the date is cut
-- there, with the same number. Its referrer is that of its first page view by the date.
with dates as (
    select as_of from {{ ref('int_feature_dates') }}
),

session_days as (
    select d.as_of, s.*
    from {{ ref('int_session_days') }} s
    join dates d on s.event_date <= d.as_of
),

sessions as (
    select
        as_of,
        person_id,
        device_key,
        session_number,
        min(first_at) as session_start,
        max(last_at) as session_end,
        sum(events) as events,
        sum(pages) as pages,
        max(added_to_cart) = 1 as added_to_cart,
        max(purchased) = 1 as purchased,
        max(device_type) as device_type
    from session_days
    group by as_of, person_id, device_key, session_number
),

first_page_view as (
    select as_of, person_id, device_key, session_number, first_page_referrer_class as referrer_class
    from (
        select *, row_number() over (
            partition by as_of, person_id, device_key, session_number order by event_date) as rn
        from session_days
        where pages > 0
    ) ranked
    where rn = 1
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
  on f.as_of = s.as_of and f.person_id = s.person_id and f.device_key = s.device_key
 and f.session_number = s.session_number
