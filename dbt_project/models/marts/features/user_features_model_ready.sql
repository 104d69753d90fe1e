-- A view on DuckDB. On Spark a table: the Python steps read Spark's tables as their Parquet files.
{{ config(materialized='table' if target.type == 'spark' else 'view') }}
-- Model-ready features: skewed counts and amounts capped at their 95th percentile within each
-- as_of, then log1p; shares, scores and BTYD summaries pass through. marts.user_features stays untouched.
{% set skewed = ['recency_days', 'frequency_orders', 'monetary_total', 'avg_order_value', 'sessions_total',
                 'sessions_30d', 'sessions_90d', 'avg_session_duration_seconds', 'events_total', 'events_30d',
                 'events_90d', 'page_views', 'product_views', 'add_to_cart_count', 'searches', 'category_breadth',
                 'decayed_engagement', 'tenure_days'] %}
{% set passthrough = ['r_score', 'f_score', 'm_score', 'cart_abandonment_rate', 'video_completion_share',
                      'deep_scroll_share', 'mobile_share', 'weekend_share', 'business_hours_share', 'night_share',
                      'engagement_trend'] %}
{# Raw, in days: the propensity model's BG/NBD step reads them (ml/features.py BTYD_COLUMNS). #}
{% set btyd = ['btyd_frequency', 'btyd_recency_days', 'btyd_age_days'] %}
with features as (
    select * from {{ ref('user_features') }}
),

caps as (
    select
        as_of,
        {% for col in skewed %}
        percentile_cont(0.95) within group (order by {{ col }}) as {{ col }}_p95{% if not loop.last %},{% endif %}
        {% endfor %}
    from features
    group by as_of
)

select
    f.person_id,
    f.as_of,
    {% for col in skewed %}
    ln(1 + least(coalesce(f.{{ col }}, 0), c.{{ col }}_p95)) as {{ col }}_log1p_capped,
    {% endfor %}
    {% for col in passthrough + btyd %}
    coalesce(f.{{ col }}, 0) as {{ col }},
    {% endfor %}
    f.primary_device_type,
    f.country,
    f.preferred_daypart
from features f
join caps c on c.as_of = f.as_of
