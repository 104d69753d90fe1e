{#
  Per event day of int_segment__events: its events' count and a sum of their version hashes
  (message_id, source_file, loaded_at). Equal digests mean the same events, whatever their order.
#}
{% macro event_day_digests() -%}
    select event_date, count(*) as day_events,
           {{ version_hash_sum(['message_id', 'source_file', 'loaded_at']) }} as day_digest
    from {{ ref('int_segment__events') }}
    group by event_date
{%- endmacro %}

{#
  Pre-hook of int_segment__event_days: delete the days whose events no longer match the digest
  their rows were summed from; the run sums every day without rows.
#}
{% macro delete_changed_event_days() -%}
    {%- if is_incremental() -%}
    delete from {{ this }} t
    where not exists (
        select 1 from ({{ event_day_digests() }}) d
        where d.event_date = t.event_date and d.day_events = t.day_events and d.day_digest = t.day_digest
    )
    {%- endif -%}
{%- endmacro %}
