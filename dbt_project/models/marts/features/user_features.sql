-- One row per person and as_of date (int_feature_dates), computed only from events and orders up
-- to that date (CRM records only date a person who has neither). RFM counts completed orders once each (orders/ status wins; refunds and
-- cancellations excluded); R/F/M scores are quintiles among the persons of the same as_of.
{% set half_life = var('tessera__engagement_half_life_days') %}
with dates as (
    select as_of from {{ ref('int_feature_dates') }}
),

-- Events are summed per person and day first, and each as_of date adds up the days before it,
-- so the events are read once rather than once per date.
person_events as (
    select e.*
    from {{ ref('int_person_events') }} e
    where e.event_date <= (select max(as_of) from dates)
),

event_days as (
    select
        person_id,
        event_date,
        min(occurred_at) as first_at,
        max(occurred_at) as last_at,
        count(*) as events,
        count(case when behaviour = 'page_view' then 1 end) as page_views,
        count(case when behaviour = 'product_view' then 1 end) as product_views,
        count(case when behaviour = 'add_to_cart' then 1 end) as add_to_cart_count,
        count(case when behaviour = 'search' then 1 end) as searches,
        count(case when behaviour = 'video' then 1 end) as videos,
        count(case when behaviour = 'video' and video_percent_watched >= 80 then 1 end) as videos_completed,
        count(case when behaviour = 'scroll' then 1 end) as scrolls,
        count(case when behaviour = 'scroll' and scroll_percent >= 75 then 1 end) as deep_scrolls,
        count(case when device_type = 'mobile' then 1 end) as mobile_events,
        count(case when local_hour >= 6 and local_hour < 12 then 1 end) as morning_events,
        count(case when local_hour >= 12 and local_hour < 18 then 1 end) as afternoon_events,
        count(case when local_hour >= 18 then 1 end) as evening_events,
        count(case when local_hour < 6 then 1 end) as night_events,
        count(case when local_iso_weekday >= 6 then 1 end) as weekend_events,
        count(case when local_iso_weekday <= 5 and local_hour >= 9 and local_hour < 17 then 1 end) as business_hours_events
    from person_events
    group by person_id, event_date
),

order_features as (
    select
        d.as_of,
        o.person_id,
        count(case when o.status = 'completed' then 1 end) as frequency_orders,
        coalesce(sum(case when o.status = 'completed' then o.amount end), 0) as monetary_total,
        max(case when o.status = 'completed' then o.ordered_at end) as last_order_at,
        min(case when o.status = 'completed' then o.ordered_at end) as first_purchase_at,
        count(distinct case when o.status = 'completed' then cast(o.ordered_at as date) end) as purchase_days,
        min(o.ordered_at) as first_order_at,
        max(o.ordered_at) as last_order_any_at,
        count(case when o.status = 'refunded' then 1 end) as refunded_orders
    from {{ ref('int_orders') }} o
    join dates d on cast(o.ordered_at as date) <= d.as_of
    where o.person_id is not null
    group by d.as_of, o.person_id
),

event_features as (
    select
        as_of,
        person_id,
        min(first_at) as first_event_at,
        max(last_at) as last_event_at,
        {% for name in ['events', 'page_views', 'product_views', 'add_to_cart_count', 'searches', 'videos', 'videos_completed',
                        'scrolls', 'deep_scrolls', 'mobile_events', 'morning_events', 'afternoon_events',
                        'evening_events', 'night_events', 'weekend_events', 'business_hours_events'] %}
        cast(sum({{ name }}) as bigint) as {{ 'events_total' if name == 'events' else name }},
        {% endfor %}
        cast(sum(case when age_days < 7 then events else 0 end) as bigint) as events_7d,
        cast(sum(case when age_days < 30 then events else 0 end) as bigint) as events_30d,
        cast(sum(case when age_days < 90 then events else 0 end) as bigint) as events_90d,
        cast(sum(case when age_days >= 30 and age_days < 60 then events else 0 end) as bigint) as events_prev_30d,
        -- Summed as decimals: a sum of doubles depends on the order rows arrive in, and that order
        -- varies between runs of the same data.
        cast(sum(cast(events * exp(-ln(2) * age_days / {{ half_life }}) as decimal(38, 12))) as double) as decayed_engagement
    from (
        select d.as_of, e.*, {{ days_between('e.event_date', 'd.as_of') }} as age_days
        from event_days e
        join dates d on e.event_date <= d.as_of
    ) aged
    group by as_of, person_id
),

-- Distinct categories browsed, added or bought by as_of: each counts from its first day.
category_breadth as (
    select d.as_of, c.person_id, count(*) as category_breadth
    from (
        select person_id, category, min(event_date) as first_date
        from person_events
        where behaviour in ('product_view', 'add_to_cart', 'purchase') and category is not null
        group by person_id, category
    ) c
    join dates d on c.first_date <= d.as_of
    group by d.as_of, c.person_id
),

session_features as (
    select
        as_of,
        person_id,
        count(*) as sessions_total,
        count(case when {{ days_between('cast(session_start as date)', 'as_of') }} < 7 then 1 end) as sessions_7d,
        count(case when {{ days_between('cast(session_start as date)', 'as_of') }} < 30 then 1 end) as sessions_30d,
        count(case when {{ days_between('cast(session_start as date)', 'as_of') }} < 90 then 1 end) as sessions_90d,
        avg(duration_seconds) as avg_session_duration_seconds,
        count(case when added_to_cart then 1 end) as cart_sessions,
        count(case when added_to_cart and not purchased then 1 end) as abandoned_cart_sessions
    from {{ ref('int_sessions') }}
    group by as_of, person_id
),

{% for col in ['local_hour', 'local_iso_weekday', 'device_type', 'country', 'local_timezone'] %}
top_{{ col }} as (
    select as_of, person_id, {{ col }}
    from (
        select d.as_of, v.person_id, v.{{ col }},
               row_number() over (partition by d.as_of, v.person_id order by sum(v.events) desc, v.{{ col }}) as rn
        from (
            select person_id, event_date, {{ col }}, count(*) as events
            from person_events
            where {{ col }} is not null
            group by person_id, event_date, {{ col }}
        ) v
        join dates d on v.event_date <= d.as_of
        group by d.as_of, v.person_id, v.{{ col }}
    ) ranked
    where rn = 1
),
{% endfor %}

top_referrer as (
    select as_of, person_id, referrer_class
    from (
        select as_of, person_id, referrer_class,
               row_number() over (partition by as_of, person_id order by count(*) desc, referrer_class) as rn
        from {{ ref('int_sessions') }}
        where referrer_class is not null and referrer_class <> 'internal'
        group by as_of, person_id, referrer_class
    ) ranked
    where rn = 1
),

persons as (
    select d.as_of, p.person_id
    from dates d
    cross join {{ ref('profiles') }} p
),

-- A person known only from the CRM (no event or order by as_of) exists from their first CRM record
-- on, and was last seen at their latest one: a prospect who never bought is still someone to segment.
crm_seen as (
    select d.as_of, m.person_id, min(c.updated_at) as first_crm_at, max(c.updated_at) as last_crm_at
    from {{ ref('stg_crm__customers') }} c
    join {{ ref('identity_map') }} m on m.identifier_type = 'customer_id' and m.identifier = c.customer_id
    join dates d on cast(c.updated_at as date) <= d.as_of
    group by d.as_of, m.person_id
),

combined as (
    select
        p.person_id,
        p.as_of,
        o.last_order_at,
        o.first_purchase_at,
        coalesce(o.purchase_days, 0) as purchase_days,
        e.last_event_at,
        case
            when e.first_event_at is null and o.first_order_at is null then cr.first_crm_at
            when e.first_event_at is null then o.first_order_at
            when o.first_order_at is null then e.first_event_at
            else least(e.first_event_at, o.first_order_at)
        end as first_seen_at,
        case
            when e.last_event_at is null and o.last_order_any_at is null then cr.last_crm_at
            when e.last_event_at is null then o.last_order_any_at
            when o.last_order_any_at is null then e.last_event_at
            else greatest(e.last_event_at, o.last_order_any_at)
        end as last_seen_at,
        coalesce(o.frequency_orders, 0) as frequency_orders,
        cast(coalesce(o.monetary_total, 0) as decimal(18, 2)) as monetary_total,
        coalesce(o.refunded_orders, 0) as refunded_orders,
        coalesce(s.sessions_total, 0) as sessions_total,
        coalesce(s.sessions_7d, 0) as sessions_7d,
        coalesce(s.sessions_30d, 0) as sessions_30d,
        coalesce(s.sessions_90d, 0) as sessions_90d,
        s.avg_session_duration_seconds,
        coalesce(e.events_total, 0) as events_total,
        coalesce(e.events_7d, 0) as events_7d,
        coalesce(e.events_30d, 0) as events_30d,
        coalesce(e.events_90d, 0) as events_90d,
        coalesce(e.events_prev_30d, 0) as events_prev_30d,
        coalesce(e.page_views, 0) as page_views,
        coalesce(e.product_views, 0) as product_views,
        coalesce(e.add_to_cart_count, 0) as add_to_cart_count,
        case when s.cart_sessions > 0 then 1.0 * s.abandoned_cart_sessions / s.cart_sessions end as cart_abandonment_rate,
        coalesce(e.searches, 0) as searches,
        case when e.videos > 0 then 1.0 * e.videos_completed / e.videos end as video_completion_share,
        case when e.scrolls > 0 then 1.0 * e.deep_scrolls / e.scrolls end as deep_scroll_share,
        coalesce(cb.category_breadth, 0) as category_breadth,
        case when e.events_total > 0 then 1.0 * e.mobile_events / e.events_total end as mobile_share,
        case when e.events_total > 0 then 1.0 * e.weekend_events / e.events_total end as weekend_share,
        case when e.events_total > 0 then 1.0 * e.business_hours_events / e.events_total end as business_hours_share,
        case when e.events_total > 0 then 1.0 * e.night_events / e.events_total end as night_share,
        e.morning_events, e.afternoon_events, e.evening_events, e.night_events,
        coalesce(e.decayed_engagement, 0) as decayed_engagement,
        th.local_hour as preferred_local_hour,
        tw.local_iso_weekday as preferred_local_weekday,
        td.device_type as primary_device_type,
        tc.country as country,
        tz.local_timezone as timezone,
        tr.referrer_class as top_referrer_class
    from persons p
    left join order_features o on o.as_of = p.as_of and o.person_id = p.person_id
    left join event_features e on e.as_of = p.as_of and e.person_id = p.person_id
    left join session_features s on s.as_of = p.as_of and s.person_id = p.person_id
    left join category_breadth cb on cb.as_of = p.as_of and cb.person_id = p.person_id
    left join top_local_hour th on th.as_of = p.as_of and th.person_id = p.person_id
    left join top_local_iso_weekday tw on tw.as_of = p.as_of and tw.person_id = p.person_id
    left join top_device_type td on td.as_of = p.as_of and td.person_id = p.person_id
    left join top_country tc on tc.as_of = p.as_of and tc.person_id = p.person_id
    left join top_local_timezone tz on tz.as_of = p.as_of and tz.person_id = p.person_id
    left join top_referrer tr on tr.as_of = p.as_of and tr.person_id = p.person_id
    left join crm_seen cr on cr.as_of = p.as_of and cr.person_id = p.person_id
),

seen as (
    -- A person exists as of a date once an event, order or CRM record of theirs has happened by then.
    select
        *,
        {{ days_between('cast(last_seen_at as date)', 'as_of') }} as recency_days,
        {{ days_between('cast(last_order_at as date)', 'as_of') }} as days_since_last_order,
        -- BTYD summaries in days (BG/NBD's x, t_x and T): repeat purchase days, first to last purchase
        -- day, first purchase day to as_of. Null without a completed order.
        case when purchase_days > 0 then purchase_days - 1 end as btyd_frequency,
        {{ days_between('cast(first_purchase_at as date)', 'cast(last_order_at as date)') }} as btyd_recency_days,
        {{ days_between('cast(first_purchase_at as date)', 'as_of') }} as btyd_age_days,
        {{ days_between('cast(first_seen_at as date)', 'as_of') }} as tenure_days,
        case when frequency_orders > 0 then monetary_total / frequency_orders end as avg_order_value,
        case
            when events_30d + events_prev_30d = 0 then 0.0
            else 1.0 * (events_30d - events_prev_30d) / (events_30d + events_prev_30d)
        end as engagement_trend,
        case
            when greatest(morning_events, afternoon_events, evening_events, night_events) = 0 then null
            when evening_events >= greatest(morning_events, afternoon_events, night_events) then 'evening'
            when afternoon_events >= greatest(morning_events, night_events) then 'afternoon'
            when morning_events >= night_events then 'morning'
            else 'night'
        end as preferred_daypart
    from combined
    where first_seen_at is not null and cast(first_seen_at as date) <= as_of
),

scored as (
    select
        *,
        least(5, 1 + cast(floor(5 * percent_rank() over (partition by as_of order by recency_days desc)) as integer)) as r_score,
        least(5, 1 + cast(floor(5 * percent_rank() over (partition by as_of order by frequency_orders)) as integer)) as f_score,
        least(5, 1 + cast(floor(5 * percent_rank() over (partition by as_of order by monetary_total)) as integer)) as m_score
    from seen
)

select
    s.person_id,
    s.as_of,
    s.recency_days,
    s.days_since_last_order,
    s.frequency_orders,
    s.monetary_total,
    s.avg_order_value,
    s.refunded_orders,
    s.btyd_frequency,
    s.btyd_recency_days,
    s.btyd_age_days,
    s.r_score,
    s.f_score,
    s.m_score,
    {{ dbt.concat(["cast(s.r_score as " ~ dbt.type_string() ~ ")", "cast(s.f_score as " ~ dbt.type_string() ~ ")",
                   "cast(s.m_score as " ~ dbt.type_string() ~ ")"]) }} as rfm_code,
    s.sessions_total, s.sessions_7d, s.sessions_30d, s.sessions_90d, s.avg_session_duration_seconds,
    s.events_total, s.events_7d, s.events_30d, s.events_90d,
    s.page_views, s.product_views, s.add_to_cart_count, s.cart_abandonment_rate, s.searches,
    s.video_completion_share, s.deep_scroll_share, s.category_breadth,
    s.preferred_local_hour, s.preferred_local_weekday, s.preferred_daypart, s.weekend_share, s.business_hours_share,
    s.night_share, s.engagement_trend, s.decayed_engagement,
    s.primary_device_type, s.mobile_share, s.country, s.timezone, s.top_referrer_class,
    p.company_name, p.industry, p.employee_count, p.annual_revenue_usd,
    s.first_seen_at, s.last_seen_at, s.tenure_days,
    {{ dbt.concat(["s.person_id", "'|'", "cast(s.as_of as " ~ dbt.type_string() ~ ")"]) }} as person_as_of_key
from scored s
left join {{ ref('profiles') }} p on p.person_id = s.person_id
