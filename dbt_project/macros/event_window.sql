{#
  The event days an incremental run rebuilds. Dagster passes its partition window as the vars
  partition_start and partition_end (ISO dates, end exclusive; '' leaves a side open: the first
  partition holds everything before it, the last everything after). The start moves back by
  lookback_days, so events that arrived late for the days before land on the next run. A plain
  `dbt build` without those vars rebuilds from the latest stored day minus the lookback.
#}
{% macro event_window(column) -%}
    {%- set start = var('partition_start', none) -%}
    {%- set end = var('partition_end', none) -%}
    {%- set lookback = var('lookback_days') | int -%}
    {%- if start is none and end is none -%}
        {{ column }} >= {{ dbt.dateadd('day', -lookback, "(select max(event_date) from " ~ this ~ ")") }}
    {%- else -%}
        1 = 1
        {%- if start %} and {{ column }} >= {{ dbt.dateadd('day', -lookback, "cast('" ~ start ~ "' as date)") }}{% endif %}
        {%- if end %} and {{ column }} < cast('{{ end }}' as date){% endif %}
    {%- endif -%}
{%- endmacro %}

{# Pre-hook of the models incremental by event day: empty the window first, so that events gone
   from it (reloaded away, erased) leave the model too, as they would in a full rebuild. #}
{% macro delete_event_window() -%}
    {%- if is_incremental() -%}
        delete from {{ this }} where {{ event_window('event_date') }}
    {%- endif -%}
{%- endmacro %}
