-- One row per behavioural message, with the Segment context and the properties the product
-- uses flattened into typed columns. `behaviour` maps event names through the taxonomy vars.
-- No joins: a query that needs a few columns (int_segment__events asks for each day's message
-- ids) reads only those, without parsing the JSON.
with source as (
    select * from {{ source('segment', 'events') }}
),

flattened as (
    select
        message_id,
        type as message_type,
        event as event_name,
        name as screen_or_page_name,
        user_id,
        anonymous_id,
        occurred_at,
        sent_at,
        received_at,
        {{ clean_text(json_text('context', '$.ip')) }} as ip,
        {{ clean_text(json_text('context', '$.userAgent')) }} as user_agent,
        {{ clean_text(json_text('context', '$.locale')) }} as locale,
        {{ clean_text(json_text('context', '$.timezone')) }} as timezone,
        upper({{ clean_text(json_text('context', '$.location.country')) }}) as country,
        lower({{ clean_text(json_text('context', '$.device.type')) }}) as device_type_reported,
        {{ clean_text(json_text('context', '$.library.name')) }} as library_name,
        {{ clean_text(json_text('context', '$.page.path')) }} as page_path,
        {{ clean_text(json_text('context', '$.page.url')) }} as page_url,
        {{ clean_text(json_text('context', '$.page.referrer')) }} as page_referrer,
        {{ clean_text(json_text('context', '$.campaign.source')) }} as campaign_source,
        {{ clean_text(json_text('context', '$.campaign.medium')) }} as campaign_medium,
        {{ clean_text(json_text('context', '$.campaign.name')) }} as campaign_name,
        {{ clean_text(json_text('properties', '$.order_id')) }} as order_id,
        {{ dbt.safe_cast(json_text('properties', '$.revenue'), 'decimal(18, 2)') }} as revenue,
        {{ clean_text(json_text('properties', '$.product_id')) }} as product_id,
        lower({{ clean_text(json_text('properties', '$.category')) }}) as category,
        {{ clean_text(json_text('properties', '$.query')) }} as search_query,
        {{ dbt.safe_cast(json_text('properties', '$.percent_watched'), 'double') }} as video_percent_watched,
        {{ dbt.safe_cast(json_text('properties', '$.percent'), 'double') }} as scroll_percent,
        {{ clean_text(json_text('traits', '$.email')) }} as traits_email,
        lower({{ clean_text(json_text('traits', '$.email')) }}) as traits_email_normalised,
        {{ clean_text(json_text('traits', '$.phone')) }} as traits_phone,
        traits_phone_e164,
        source_file,
        loaded_at
    from source
)

select
    f.*,
    case
        when message_type in ('page', 'screen') then 'page_view'
        when event_name in ({{ event_names("tessera__event_product_viewed") }}) then 'product_view'
        when event_name in ({{ event_names("tessera__event_product_added") }}) then 'add_to_cart'
        when event_name in ({{ event_names("tessera__event_order_completed") }}) then 'purchase'
        when event_name in ({{ event_names("tessera__event_products_searched") }}) then 'search'
        when event_name in ({{ event_names("tessera__event_video_watched") }}) then 'video'
        when event_name in ({{ event_names("tessera__event_scroll_depth") }}) then 'scroll'
        when message_type = 'identify' then 'identify'
        else 'other'
    end as behaviour
from flattened f
