{#
  Per value of `keys` in `events`: the events' count (<name>_events) and a sum of their version
  hashes (<name>_digest, over message_id, source_file and loaded_at). Equal digests mean the same
  events, whatever their order. The incremental models that rebuild whole devices or days keep
  their key's digest on each row.
#}
{% macro event_digests(events, keys, name) -%}
    select {{ keys | join(', ') }}, count(*) as {{ name }}_events,
           {{ version_hash_sum(['message_id', 'source_file', 'loaded_at']) }} as {{ name }}_digest
    from {{ events }}
    group by {{ keys | join(', ') }}
{%- endmacro %}

{#
  Pre-hook of a model whose rows keep event_digests(events, keys, name): delete the rows whose key's
  events no longer match the digest they were built from; the run then rebuilds every key without
  rows (int_session_days by person and device, int_segment__event_days by day).
#}
{% macro delete_changed_digests(events, keys, name) -%}
    {%- if is_incremental() -%}
    delete from {{ this }} t
    where not exists (
        select 1 from ({{ event_digests(events, keys, name) }}) d
        where {% for key in keys %}d.{{ key }} = t.{{ key }} and {% endfor -%}
              d.{{ name }}_events = t.{{ name }}_events and d.{{ name }}_digest = t.{{ name }}_digest
    )
    {%- endif -%}
{%- endmacro %}

{% macro version_hash_sum(columns) -%}
    {{ return(adapter.dispatch('version_hash_sum', 'tessera')(columns)) }}
{%- endmacro %}

{% macro default__version_hash_sum(columns) -%}
    sum(cast(xxhash64({{ columns | join(', ') }}) as decimal(38, 0)))
{%- endmacro %}

{% macro duckdb__version_hash_sum(columns) -%}
    sum(hash({{ columns | join(', ') }}))
{%- endmacro %}
