-- Each distinct user agent seen in events, parsed at ingestion with the `user-agents` library.
select
    user_agent,
    device_type,
    browser_family,
    os_family,
    is_bot
from {{ source('segment', 'user_agents') }}
