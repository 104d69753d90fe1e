{#
  The event days an incremental run rebuilds. Dagster passes its partition window as the vars
  tessera__partition_start and tessera__partition_end (ISO dates, end exclusive; '' leaves a side
  open: the first partition holds everything before it, the last everything after). The start moves
  back by tessera__lookback_days, so events that arrived late for the days before land on the next
  run. A plain `dbt build` without those vars rebuilds from the latest day in staging minus the
  lookback.

  The days are looked up once and written into the SQL as literal dates: a filter of constants
  reaches the raw.events scan under the staging view, where a subquery would make DuckDB flatten
  the JSON of every event before filtering.
#}
{% macro event_window_bounds() -%}
    {%- set start = var('tessera__partition_start', none) -%}
    {%- set end = var('tessera__partition_end', none) -%}
    {%- set lookback = var('tessera__lookback_days') | int -%}
    {%- if start is none and end is none -%}
        {%- set latest = run_query("select cast(max(occurred_at) as date) from " ~ ref('stg_segment__events')).columns[0].values()[0] -%}
        {%- set start = (latest | string) if latest is not none else '' -%}
    {%- endif -%}
    {%- set start = (modules.datetime.date.fromisoformat(start) - modules.datetime.timedelta(days=lookback)).isoformat() if start else '' -%}
    {{- return((start, end or '')) -}}
{%- endmacro %}

{#
  Days outside the window whose messages differ between staging and the model, by count and a sum
  of message-id hashes: ingestion replaced them because a file was re-sent, withdrawn or arrived
  with events older than the lookback. Reads two columns of each side, no JSON.
#}
{% macro changed_event_days(start, end) -%}
    {%- set query -%}
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
        order by 1
    {%- endset -%}
    {%- set outside = [] -%}
    {%- for day in run_query(query).columns[0].values() | map('string') -%}
        {%- if (start and day < start) or (end and day >= end) -%}{%- do outside.append(day) -%}{%- endif -%}
    {%- endfor -%}
    {{- return(outside) -}}
{%- endmacro %}

{# The days to rebuild: the window (start, end; '' is open) and the changed days outside it. #}
{% macro event_rebuild_plan() -%}
    {%- set start, end = event_window_bounds() -%}
    {{- return({'start': start, 'end': end, 'changed': changed_event_days(start, end)}) -}}
{%- endmacro %}

{#
  SQL: `timestamp_column` falls on a day to rebuild (the window, or a changed day outside it). It
  never starts with "(": Spark, outside ANSI mode, reads `from t where (true)` as the alias `where`
  with a column list.
#}
{% macro event_days_to_rebuild(timestamp_column) -%}
    {%- if not execute -%}
        false
    {%- else -%}
        {%- set plan = event_rebuild_plan() -%}
        {%- set window -%}
            true{% if plan.start %} and {{ timestamp_column }} >= date '{{ plan.start }}'{% endif %}
            {%- if plan.end %} and {{ timestamp_column }} < date '{{ plan.end }}'{% endif %}
        {%- endset -%}
        true and ({{ window }}
        {%- for day in plan.changed %}
            or ({{ timestamp_column }} >= date '{{ day }}' and {{ timestamp_column }} < date '{{ day }}' + interval 1 day)
        {%- endfor %})
    {%- endif -%}
{%- endmacro %}

{#
  Pre-hook of the models incremental by event day, whose strategy is `append` (the one both engines
  run): empty the days to rebuild first, so that the append replaces them whole, and events gone
  from them (reloaded away, erased) leave the model too, as they would in a full rebuild.
  DuckDB deletes the rows; Spark's Parquet tables cannot delete, so the model is partitioned by
  event_date there and the days' partitions are dropped.
#}
{% macro delete_event_days_to_rebuild() -%}
    {%- if is_incremental() -%}
        {{ return(adapter.dispatch('delete_event_days_to_rebuild', 'tessera')()) }}
    {%- endif -%}
{%- endmacro %}

{% macro default__delete_event_days_to_rebuild() -%}
    delete from {{ this }} where {{ event_days_to_rebuild('event_date') }}
{%- endmacro %}

{% macro spark__delete_event_days_to_rebuild() -%}
    {%- set plan = event_rebuild_plan() -%}
    {%- set days = [] -%}
    {%- for row in run_query("show partitions " ~ this) -%}
        {%- set day = row[0].split('=')[1] -%}
        {%- if ((not plan.start or day >= plan.start) and (not plan.end or day < plan.end)) or day in plan.changed -%}
            {%- do days.append(day) -%}
        {%- endif -%}
    {%- endfor -%}
    {%- if days -%}
        alter table {{ this }} drop if exists
        {%- for day in days %} partition (event_date = date '{{ day }}'){{ "," if not loop.last }}{% endfor %}
    {%- else -%}
        select 1 {# nothing stored for these days yet #}
    {%- endif -%}
{%- endmacro %}
