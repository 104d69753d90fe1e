{#
  The event days an incremental run rebuilds. Dagster passes its partition window as the vars
  partition_start and partition_end (ISO dates, end exclusive; '' leaves a side open: the first
  partition holds everything before it, the last everything after). The start moves back by
  lookback_days, so events that arrived late for the days before land on the next run. A plain
  `dbt build` without those vars rebuilds from the latest day in staging minus the lookback.
#}
{% macro event_window(column) -%}
    {%- set start = var('partition_start', none) -%}
    {%- set end = var('partition_end', none) -%}
    {%- set lookback = var('lookback_days') | int -%}
    {%- if start is none and end is none -%}
        {{ column }} >= {{ dbt.dateadd('day', -lookback,
            "(select cast(max(occurred_at) as date) from " ~ ref('stg_segment__events') ~ ")") }}
    {%- else -%}
        1 = 1
        {%- if start %} and {{ column }} >= {{ dbt.dateadd('day', -lookback, "cast('" ~ start ~ "' as date)") }}{% endif %}
        {%- if end %} and {{ column }} < cast('{{ end }}' as date){% endif %}
    {%- endif -%}
{%- endmacro %}

{#
  Days outside the window whose messages differ between staging and the model, by count and a sum
  of message-id hashes: ingestion replaced them because a file was re-sent, withdrawn or arrived
  with events older than the lookback. Reads two columns of each side, no JSON.
#}
{% macro changed_event_days() -%}
    select coalesce(s.event_date, m.event_date) as event_date
    from (
        select cast(occurred_at as date) as event_date, count(*) as messages, sum(hash(message_id)) as digest
        from {{ ref('stg_segment__events') }}
        group by 1
    ) s
    full outer join (
        select event_date, count(*) as messages, sum(hash(message_id)) as digest
        from {{ this }}
        group by 1
    ) m on m.event_date = s.event_date
    where s.event_date is null or m.event_date is null or s.messages <> m.messages or s.digest <> m.digest
{%- endmacro %}

{% macro event_days_to_rebuild(timestamp_column) -%}
    ({{ event_window(timestamp_column) }}
     or cast({{ timestamp_column }} as date) in ({{ changed_event_days() }}))
{%- endmacro %}

{# Pre-hook of the models incremental by event day: empty the days to rebuild first, so that events
   gone from them (reloaded away, erased) leave the model too, as they would in a full rebuild. #}
{% macro delete_event_days_to_rebuild() -%}
    {%- if is_incremental() -%}
        delete from {{ this }} where {{ event_window('event_date') }}
            or event_date in ({{ changed_event_days() }})
    {%- endif -%}
{%- endmacro %}
