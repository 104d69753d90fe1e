-- One row per behavioural message, with the Segment context and the properties the product
-- uses as typed columns. The loader flattened them in the same pass that checked each line
-- (orchestration/defs/ingest/loaders/events.py, FLAT_FIELDS): nothing here parses JSON.
-- `behaviour` maps event names through the taxonomy vars. No joins: a query that needs a few
-- columns (int_segment__events asks for each day's message ids) reads only those.
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
        ip,
        user_agent,
        locale,
        timezone,
        country,
        device_type_reported,
        library_name,
        page_path,
        page_url,
        page_referrer,
        campaign_source,
        campaign_medium,
        campaign_name,
        order_id,
        revenue,
        product_id,
        category,
        search_query,
        video_percent_watched,
        scroll_percent,
        traits_email,
        lower(traits_email) as traits_email_normalised,
        traits_phone,
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
        when message_type in ('identify', 'alias') then 'identify'  -- alias: previousId joined to userId
        else 'other'
    end as behaviour
from flattened f
