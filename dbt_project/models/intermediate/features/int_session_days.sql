-- Sessions per person and device, summed per session and day: a gap of more than
-- tessera__session_timeout_minutes starts a new session, and a session that runs past midnight has a
-- row for each day, with the same number. int_sessions adds the days up to each feature date. Events
-- after a date never change the sessions before it, so every event is sessionised once.
-- Incremental on DuckDB by device: each row keeps a digest of its person and device's events (count
-- and a sum of their version hashes). The pre-hook deletes the devices whose events differ from it
-- (new events, a changed file, an identity merge or split), and the run sessionises those devices
-- again from their first event, which gives exactly what a full rebuild gives. A daily run so reads
-- the events of the devices active that day. Spark's Parquet tables cannot delete rows: there it is
-- a table, rebuilt each run. A change of its columns fails the run (on_schema_change: fail) until a
-- full refresh: rows added to old ones with a new column left empty would differ from a rebuild.
{{ config(
    materialized=('table' if target.type == 'spark' else 'incremental'),
    unique_key='session_day_id',
    incremental_strategy='append',
    on_schema_change='fail',
    pre_hook="{{ delete_changed_digests(ref('int_person_events'), ['person_id', 'device_key'], 'device') }}",
) }}

with events as (
    select e.person_id, e.device_key, e.message_id, e.occurred_at, e.event_date, e.behaviour, e.device_type,
           e.referrer_class, e.source_file, e.loaded_at
    from {{ ref('int_person_events') }} e
    {% if is_incremental() %}
    where not exists (select 1 from {{ this }} t where t.person_id = e.person_id and t.device_key = e.device_key)
    {% endif %}
),

devices as (
    {{ event_digests('events', ['person_id', 'device_key'], 'device') }}
),

gaps as (
    select
        *,
        case
            when lag(occurred_at) over (partition by person_id, device_key order by occurred_at, message_id) is null
              or {{ dbt.datediff("lag(occurred_at) over (partition by person_id, device_key order by occurred_at, message_id)", "occurred_at", "second") }}
                 > {{ var('tessera__session_timeout_minutes') }} * 60
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

-- The referrer of each session day's first page view.
first_page_views as (
    select person_id, device_key, session_number, event_date, referrer_class
    from (
        select *, row_number() over (
            partition by person_id, device_key, session_number, event_date order by occurred_at, message_id) as rn
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
)

select
    md5({{ dbt.concat(["s.person_id", "'|'", "s.device_key", "'|'", "cast(s.session_number as " ~ dbt.type_string() ~ ")",
                       "'|'", "cast(s.event_date as " ~ dbt.type_string() ~ ")"]) }}) as session_day_id,
    s.person_id,
    s.device_key,
    cast(s.session_number as bigint) as session_number,
    s.event_date,
    s.first_at,
    s.last_at,
    cast(s.events as bigint) as events,
    cast(s.pages as bigint) as pages,
    s.added_to_cart,
    s.purchased,
    s.device_type,
    f.referrer_class as first_page_referrer_class,
    d.device_events,
    d.device_digest,
    '{{ invocation_id }}' as dbt_invocation_id
from session_days s
join devices d on d.person_id = s.person_id and d.device_key = s.device_key
left join first_page_views f
  on f.person_id = s.person_id and f.device_key = s.device_key and f.session_number = s.session_number
 and f.event_date = s.event_date
