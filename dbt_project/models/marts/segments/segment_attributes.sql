-- Everything a segment rule may read, one row per person at the scoring date: features, profile
-- attributes, the champion cluster, propensity scores and lifetime value. The contract in _segments__models.yml
-- is the rule language's schema (orchestration/defs/segments/rules.py type-checks against it).
-- Numeric columns are cast to their contract types: Spark keeps DECIMAL through ratios and gives
-- INT for day counts and ntile, where DuckDB gives DOUBLE and BIGINT.
with scoring as (
    select as_of from {{ ref('int_feature_dates') }} where purpose = 'scoring'
),

features as (
    select f.*
    from {{ ref('user_features') }} f
    join scoring s on s.as_of = f.as_of
),

carts as (
    select e.person_id, max(e.occurred_at) as last_add_to_cart_at
    from {{ ref('int_person_events') }} e
    join scoring s on e.event_date <= s.as_of
    where e.behaviour = 'add_to_cart'
    group by e.person_id
),

-- The later of the order record and its Order Completed event: the stream, which sees only the
-- event, then keeps the same value live (docs/realtime.md).
orders as (
    select person_id, max(completed_at) as last_order_at
    from (
        select o.person_id, o.ordered_at as completed_at
        from {{ ref('int_orders') }} o
        join scoring s on cast(o.ordered_at as date) <= s.as_of
        where o.status = 'completed'
        union all
        select e.person_id, e.occurred_at
        from {{ ref('int_person_events') }} e
        join scoring s on e.event_date <= s.as_of
        where e.behaviour = 'purchase'
    ) completions
    group by person_id
),

purchase_30d as (
    select
        person_id,
        score,
        ntile(10) over (order by score desc, person_id) as decile
    from {{ ref('stg_ml__propensity_scores') }}
    where model_name = 'purchase_30d'
)

select
    f.person_id,
    f.as_of,
    {{ dbt.dateadd('day', 1, 'f.as_of') }} as evaluated_at,
    cast(f.recency_days as bigint) as recency_days,
    cast(f.days_since_last_order as bigint) as days_since_last_order,
    f.frequency_orders,
    f.monetary_total,
    cast(f.avg_order_value as double) as avg_order_value,
    f.refunded_orders,
    cast(f.frequency_orders as double) * 30 / greatest(f.tenure_days, 30) as orders_per_month,
    f.r_score,
    f.f_score,
    f.m_score,
    f.rfm_code,
    f.sessions_total,
    f.sessions_7d,
    f.sessions_30d,
    f.sessions_90d,
    f.avg_session_duration_seconds,
    f.events_total,
    f.events_7d,
    f.events_30d,
    f.events_90d,
    f.product_views,
    f.add_to_cart_count,
    cast(f.cart_abandonment_rate as double) as cart_abandonment_rate,
    c.last_add_to_cart_at,
    o.last_order_at,
    f.searches,
    cast(f.video_completion_share as double) as video_completion_share,
    cast(f.deep_scroll_share as double) as deep_scroll_share,
    f.category_breadth,
    cast(f.preferred_local_hour as bigint) as preferred_local_hour,
    f.preferred_daypart,
    cast(f.weekend_share as double) as weekend_share,
    cast(f.business_hours_share as double) as business_hours_share,
    cast(f.engagement_trend as double) as engagement_trend,
    f.decayed_engagement,
    f.primary_device_type,
    cast(f.mobile_share as double) as mobile_share,
    f.country,
    tz.time_zone as timezone,
    f.top_referrer_class,
    f.company_name,
    f.industry,
    f.employee_count,
    f.annual_revenue_usd,
    f.first_seen_at,
    f.last_seen_at,
    cast(f.tenure_days as bigint) as tenure_days,
    p.is_customer,
    p.personalization_opt_in,
    p.marketing_opt_in,
    p.email_domain,
    p.devices,
    p.identifiers,
    ca.cluster_id,
    ca.cluster_name,
    ca.distance_to_centroid,
    pr.score as purchase_30d_score,
    cast(pr.decile as bigint) as purchase_30d_decile,
    lv.p_alive,
    lv.expected_purchases_30d,
    lv.expected_purchases_12m,
    lv.expected_value_12m
from features f
left join {{ ref('profiles') }} p on p.person_id = f.person_id
left join carts c on c.person_id = f.person_id
left join orders o on o.person_id = f.person_id
left join {{ ref('stg_ml__cluster_assignments') }} ca on ca.person_id = f.person_id
left join purchase_30d pr on pr.person_id = f.person_id
left join {{ ref('stg_ml__customer_lifetime_values') }} lv on lv.person_id = f.person_id
left join {{ ref('time_zones') }} tz on tz.time_zone = f.timezone
