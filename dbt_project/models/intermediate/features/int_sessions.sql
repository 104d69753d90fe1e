-- Sessions per person and device, as of each feature date: events after the date are left out
-- before sessionising, so a session never includes the future. A gap of more than
-- session_timeout_minutes starts a new session.
with dates as (
    select as_of from {{ ref('int_feature_dates') }}
),

events as (
    select d.as_of, e.*
    from {{ ref('int_person_events') }} e
    join dates d on e.event_date <= d.as_of
),

gaps as (
    select
        *,
        case
            when lag(occurred_at) over (partition by as_of, person_id, device_key order by occurred_at, message_id) is null
              or {{ dbt.datediff("lag(occurred_at) over (partition by as_of, person_id, device_key order by occurred_at, message_id)", "occurred_at", "second") }}
                 > {{ var('session_timeout_minutes') }} * 60
            then 1 else 0
        end as starts_session
    from events
),

numbered as (
    select
        *,
        sum(starts_session) over (
            partition by as_of, person_id, device_key order by occurred_at, message_id rows unbounded preceding
        ) as session_number
    from gaps
),

first_event as (
    select as_of, person_id, device_key, session_number, referrer_class
    from (
        select *, row_number() over (
            partition by as_of, person_id, device_key, session_number order by occurred_at, message_id) as rn
        from numbered
        where behaviour = 'page_view'
    ) ranked
    where rn = 1
)

select
    md5({{ dbt.concat(["cast(n.as_of as " ~ dbt.type_string() ~ ")", "'|'", "n.person_id", "'|'", "n.device_key", "'|'",
                       "cast(n.session_number as " ~ dbt.type_string() ~ ")"]) }}) as session_id,
    n.as_of,
    n.person_id,
    n.device_key,
    n.session_number,
    min(n.occurred_at) as session_start,
    max(n.occurred_at) as session_end,
    {{ dbt.datediff("min(n.occurred_at)", "max(n.occurred_at)", "second") }} as duration_seconds,
    count(*) as events,
    count(case when n.behaviour = 'page_view' then 1 end) as pages,
    max(case when n.behaviour = 'add_to_cart' then 1 else 0 end) = 1 as added_to_cart,
    max(case when n.behaviour = 'purchase' then 1 else 0 end) = 1 as purchased,
    max(n.device_type) as device_type,
    max(f.referrer_class) as referrer_class
from numbered n
left join first_event f
  on f.as_of = n.as_of and f.person_id = n.person_id and f.device_key = n.device_key
 and f.session_number = n.session_number
group by n.as_of, n.person_id, n.device_key, n.session_number
