"""The segment rule language: parse, type-check against the attribute schema, compile to SQL.

A rule is one boolean expression over the columns of `marts.segment_attributes`:

    recency_days <= 7 and events_7d > 10
    country in ('GB', 'DE') and local_hour() between 9 and 17
    not in_segment('vip') and days_since(first_seen_at) <= 7

Literals never reach the SQL text: they become `?` parameters. Column names are checked
against the schema and functions against a fixed table, so a rule cannot inject SQL.
Plain Python (no Dagster), so the CLI, the API and tests use it directly.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass, field

from lark import Lark, Token, Tree
from lark.exceptions import UnexpectedCharacters, UnexpectedEOF, UnexpectedInput, UnexpectedToken

from orchestration.lib.config_errors import suggest as _suggest

GRAMMAR = r"""
?start: or_expr
?or_expr: and_expr | or_expr OR and_expr -> or_
?and_expr: not_expr | and_expr AND not_expr -> and_
?not_expr: predicate | NOT not_expr -> not_
?predicate: sum
    | sum COMP_OP sum -> compare
    | sum IN "(" literal ("," literal)* ")" -> in_
    | sum NOT IN "(" literal ("," literal)* ")" -> not_in
    | sum BETWEEN sum AND sum -> between
    | sum NOT BETWEEN sum AND sum -> not_between
    | sum IS NULL -> is_null
    | sum IS NOT NULL -> is_not_null
?sum: product | sum ADD_OP product -> arith
?product: unary | product MUL_OP unary -> arith
?unary: atom | "-" unary -> neg
?atom: literal
    | NAME "(" [or_expr ("," or_expr)*] ")" -> call
    | NAME -> column
    | "(" or_expr ")"
?literal: NUMBER -> number
    | STRING -> string
    | TRUE -> true
    | FALSE -> false
    | NULL -> null

OR: "or"i
AND: "and"i
NOT: "not"i
IN: "in"i
BETWEEN: "between"i
IS: "is"i
NULL: "null"i
TRUE: "true"i
FALSE: "false"i
COMP_OP: "<=" | ">=" | "<>" | "!=" | "==" | "=" | "<" | ">"
ADD_OP: "+" | "-"
MUL_OP: "*" | "/"
NAME: /[A-Za-z_][A-Za-z0-9_]*/
NUMBER: /[0-9]+(\.[0-9]+)?/
STRING: /'(?:[^']|'')*'/

%import common.WS
%ignore WS
"""

SQL_STATEMENTS = {
    "select",
    "with",
    "insert",
    "update",
    "delete",
    "drop",
    "create",
    "alter",
    "attach",
    "copy",
    "pragma",
    "call",
    "set",
    "install",
    "load",
    "export",
    "import",
}
_PARSER = Lark(GRAMMAR, parser="lalr", propagate_positions=True, maybe_placeholders=False)

NUMBER, TEXT, BOOLEAN, TIMESTAMP, NULLTYPE = "number", "text", "boolean", "timestamp", "null"

# DuckDB column types -> rule types.
SQL_TYPES = {
    "BIGINT": NUMBER,
    "INTEGER": NUMBER,
    "SMALLINT": NUMBER,
    "TINYINT": NUMBER,
    "HUGEINT": NUMBER,
    "UBIGINT": NUMBER,
    "UINTEGER": NUMBER,
    "DOUBLE": NUMBER,
    "FLOAT": NUMBER,
    "REAL": NUMBER,
    "DECIMAL": NUMBER,
    "NUMERIC": NUMBER,
    "VARCHAR": TEXT,
    "TEXT": TEXT,
    "STRING": TEXT,
    "BOOLEAN": BOOLEAN,
    "TIMESTAMP": TIMESTAMP,
    "DATE": TIMESTAMP,
    "TIMESTAMPTZ": TIMESTAMP,
}


def rule_type(sql_type: str) -> str | None:
    """The rule type of a SQL column type, or None when rules cannot use the column."""
    return SQL_TYPES.get(sql_type.upper().split("(")[0].strip())


class RuleError(ValueError):
    """A rule that cannot be used; the message names the segment, the position and a fix."""

    def __init__(self, segment: str, rule: str, position: int | None, problem: str, suggestion: str = ""):
        self.segment, self.rule, self.position, self.problem, self.suggestion = (
            segment,
            rule,
            position,
            problem,
            suggestion,
        )
        where = ""
        if position is not None:
            line = rule.count("\n", 0, position) + 1
            column = position - (rule.rfind("\n", 0, position) + 1) + 1
            where = f" at line {line}, column {column}"
            text_line = rule.splitlines()[line - 1] if rule.strip() else ""
            pointer = f"\n    {text_line}\n    {' ' * (column - 1)}^"
        else:
            pointer = ""
        hint = f"\n  {suggestion}" if suggestion else ""
        super().__init__(f"Segment '{segment}': {problem}{where}.{pointer}{hint}")


@dataclass(frozen=True)
class Sql:
    """A SQL fragment with its `?` parameters in order of appearance."""

    text: str
    params: tuple = ()
    type: str = BOOLEAN


@dataclass
class Function:
    args: tuple[tuple[str, ...], ...]  # accepted types per argument
    returns: str | Callable[[list[str]], str]
    render: Callable[[list[str]], str]
    optional_args: int = 0  # trailing arguments that may be left out
    help: str = ""
    reads: tuple[str, ...] = ()  # attribute columns the SQL reads besides its arguments


LAST_SEEN = '"last_seen_at"'
LOCAL_TIME_READS = ("as_of", "timezone", "last_seen_at")


def _local(ts: str) -> str:
    # Timestamps are UTC; the person's IANA zone comes from the attributes (UTC when unknown).
    return f"timezone(coalesce(\"timezone\", 'UTC'), timezone('UTC', CAST({ts} AS TIMESTAMP)))"


FUNCTIONS: dict[str, Function] = {
    "days_since": Function(
        ((TIMESTAMP,),),
        NUMBER,
        lambda a: f"date_diff('day', CAST({a[0]} AS DATE), CAST(\"as_of\" AS DATE))",
        help="days_since(timestamp): calendar days from the timestamp's date to as_of",
        reads=("as_of",),
    ),
    "hours_since": Function(
        ((TIMESTAMP,),),
        NUMBER,
        lambda a: f"date_diff('hour', CAST({a[0]} AS TIMESTAMP), \"evaluated_at\")",
        help="hours_since(timestamp): whole hours from the timestamp to evaluated_at (in a daily run the end "
        "of the as_of day; in the stream, the moment of evaluation)",
        reads=("evaluated_at",),
    ),
    "local_hour": Function(
        ((TIMESTAMP,),),
        NUMBER,
        lambda a: f"hour({_local(a[0] if a else LAST_SEEN)})",
        optional_args=1,
        reads=LOCAL_TIME_READS,
        help="local_hour([timestamp]): hour 0-23 in the person's time zone, of their latest "
        "activity when no timestamp is given",
    ),
    "local_weekday": Function(
        ((TIMESTAMP,),),
        NUMBER,
        lambda a: f"isodow({_local(a[0] if a else LAST_SEEN)})",
        optional_args=1,
        reads=LOCAL_TIME_READS,
        help="local_weekday([timestamp]): 1 (Monday) to 7 (Sunday) in the person's time zone",
    ),
    "greatest": Function(
        ((NUMBER,), (NUMBER,)), NUMBER, lambda a: f"greatest({a[0]}, {a[1]})", help="greatest(number, number)"
    ),
    "least": Function(((NUMBER,), (NUMBER,)), NUMBER, lambda a: f"least({a[0]}, {a[1]})", help="least(number, number)"),
    "coalesce": Function(
        ((NUMBER, TEXT, BOOLEAN, TIMESTAMP), (NUMBER, TEXT, BOOLEAN, TIMESTAMP)),
        lambda types: types[0],
        lambda a: f"coalesce({a[0]}, {a[1]})",
        help="coalesce(value, fallback): the fallback where the value is null",
    ),
    "lower": Function(((TEXT,),), TEXT, lambda a: f"lower({a[0]})", help="lower(text)"),
    "starts_with": Function(
        ((TEXT,), (TEXT,)), BOOLEAN, lambda a: f"starts_with({a[0]}, {a[1]})", help="starts_with(text, prefix)"
    ),
    "in_segment": Function(((TEXT,),), BOOLEAN, lambda a: a[0], help="in_segment('name'): the rule of another segment"),
}


@dataclass
class Clause:
    """A boolean leaf of a rule (a comparison, a membership test...) for explanations."""

    text: str
    sql: Sql
    columns: list[str] = field(default_factory=list)


@dataclass
class CompiledRule:
    segment: str
    rule: str
    sql: Sql
    columns: list[str]
    references: list[str]
    clauses: list[Clause]


# Each and/or nests the tree one level deeper; the compiler walks it recursively. 200 clauses is
# far beyond a readable rule and far below Python's recursion limit.
MAX_CLAUSES = 200
_CONNECTIVE = re.compile(r"\b(?:and|or)\b", re.IGNORECASE)
_STRINGS = re.compile(r"'(?:[^']|'')*'")
# A number a rule may compare with: BIGINT's range (and DOUBLE's precision) holds 18 digits.
MAX_NUMBER_DIGITS = 18


def parse(segment: str, rule: str) -> Tree:
    if not isinstance(rule, str) or not rule.strip():
        raise RuleError(
            segment,
            str(rule or ""),
            None,
            "the rule is empty",
            "Write one boolean expression, for example: recency_days <= 7 and events_7d > 10",
        )
    first = rule.split(None, 1)[0].lower()
    if first in SQL_STATEMENTS:
        raise RuleError(
            segment,
            rule,
            len(rule) - len(rule.lstrip()),
            "the rule is an SQL statement, not an expression",
            "Write one condition over the attribute columns, for example: country = 'GB'; raw SQL is never run.",
        )
    clauses = len(_CONNECTIVE.findall(_STRINGS.sub("''", rule))) + 1
    if clauses > MAX_CLAUSES:
        raise RuleError(
            segment,
            rule,
            None,
            f"the rule has {clauses} clauses; the limit is {MAX_CLAUSES}",
            "Use `column in (...)` for a list of values, or split the rule into segments combined with in_segment().",
        )
    try:
        return _PARSER.parse(rule)
    except UnexpectedCharacters as exc:
        char = rule[exc.pos_in_stream]
        if char.isdigit():  # a digit of another script (Arabic-Indic, full-width...)
            hint = "Write numbers with the digits 0-9."
        elif char == '"':
            hint = "Strings use single quotes: 'text'."
        elif char in ";#":
            hint = "Rules are one expression: no ';', no SQL statements, no comments."
        else:
            hint = (
                "Use column names, numbers, 'strings', comparisons, and/or/not, in (...), between ... and ..., "
                "and the functions " + ", ".join(sorted(FUNCTIONS)) + "."
            )
        raise RuleError(segment, rule, exc.pos_in_stream, f"unexpected character {char!r}", hint) from None
    except UnexpectedEOF:
        raise RuleError(
            segment,
            rule,
            len(rule.rstrip()),
            "the rule ends too early",
            "Complete the expression; check for an unclosed '(' or a trailing and/or.",
        ) from None
    except UnexpectedToken as exc:
        token = exc.token
        if token.type == "$END":
            raise RuleError(
                segment,
                rule,
                len(rule.rstrip()),
                "the rule ends too early",
                "Complete the expression; check for an unclosed '(' or a trailing and/or.",
            ) from None
        expected = sorted(exc.expected)
        raise RuleError(
            segment, rule, token.start_pos, f"unexpected {token.value!r}", _expected_hint(expected, token)
        ) from None
    except UnexpectedInput as exc:  # pragma: no cover - the subclasses above cover lark's errors
        raise RuleError(segment, rule, getattr(exc, "pos_in_stream", None), "the rule is not an expression") from None


def _expected_hint(expected: list[str], token: Token) -> str:
    words = {
        "AND": "and",
        "OR": "or",
        "COMP_OP": "a comparison (=, <>, <, <=, >, >=)",
        "RPAR": "')'",
        "NAME": "a column or function",
        "NUMBER": "a number",
        "STRING": "a 'string'",
        "IN": "in",
        "BETWEEN": "between",
        "IS": "is",
        "LPAR": "'('",
        "COMMA": "','",
    }
    readable = [words[e] for e in expected if e in words]
    if token.type == "NAME" and "AND" in expected:
        return f"Rules are one expression; did you mean to combine with 'and' / 'or' before '{token.value}'?"
    return f"Expected {', '.join(dict.fromkeys(readable))}." if readable else ""


class Compiler:
    """Type-checks rule trees against a schema and turns them into parameterised SQL."""

    def __init__(self, schema: dict[str, str], segments: dict[str, str] | None = None):
        self.schema = schema  # column -> rule type
        self.sources = segments or {}  # segment name -> rule text, for in_segment()
        self._compiled: dict[str, CompiledRule] = {}
        self._stack: list[str] = []

    def compile(self, segment: str, rule: str | None = None) -> CompiledRule:
        if segment in self._compiled:
            return self._compiled[segment]
        rule = self.sources[segment] if rule is None else rule
        if segment in self._stack:
            cycle = " -> ".join(self._stack[self._stack.index(segment) :] + [segment])
            raise RuleError(
                self._stack[-1],
                self.sources.get(self._stack[-1], rule),
                None,
                f"segment references form a cycle ({cycle})",
                "Remove one of the in_segment() references.",
            )
        self._stack.append(segment)
        try:
            state = _State(segment, rule)
            tree = parse(segment, rule)
            try:
                sql = self._node(tree, state)
            except RecursionError:
                raise RuleError(
                    segment,
                    rule,
                    None,
                    "the rule is nested too deeply",
                    "Remove redundant parentheses, or split the rule into segments combined with in_segment().",
                ) from None
            if sql.type != BOOLEAN:
                raise RuleError(
                    segment,
                    rule,
                    0,
                    f"the rule is a {sql.type}, not a condition",
                    "Compare it with something, for example: monetary_total > 500",
                )
            compiled = CompiledRule(segment, rule, sql, sorted(state.columns), sorted(state.references), state.clauses)
        finally:
            self._stack.pop()
        self._compiled[segment] = compiled
        return compiled

    # -- tree walking ------------------------------------------------------------------------

    def _node(self, node, state: _State, leaf: bool = True) -> Sql:
        if isinstance(node, Token):  # pragma: no cover - the grammar wraps every token
            raise RuleError(state.segment, state.rule, node.start_pos, f"unexpected {node.value!r}")
        kind = node.data
        out = getattr(self, f"_{kind.rstrip('_')}")(node, state)
        if leaf and out.type == BOOLEAN and kind not in ("or_", "and_", "not_"):
            text = state.rule[node.meta.start_pos : node.meta.end_pos]
            state.clauses.append(Clause(text, out, self._columns_in(node)))
        return out

    def _columns_in(self, node: Tree) -> list[str]:
        names = {c.children[0].value for c in node.find_data("column")}
        for call in node.find_data("call"):
            name = call.children[0].value.lower()
            names.update(FUNCTIONS[name].reads)
            if name == "in_segment":
                target = call.children[1].children[0].value[1:-1]
                names.update(self.compile(target).columns)
        return sorted(n for n in names if n in self.schema)

    def _sub(self, node, state: _State) -> Sql:
        return self._node(node, state, leaf=False)

    def _logic(self, node, state, op: str) -> Sql:
        left, right = self._node(node.children[0], state), self._node(node.children[2], state)
        for side, child in ((left, node.children[0]), (right, node.children[2])):
            self._expect(side, (BOOLEAN,), child, state, f"'{op.lower()}' needs a condition on each side")
        return Sql(f"({left.text} {op} {right.text})", left.params + right.params)

    def _or(self, node, state):
        return self._logic(node, state, "OR")

    def _and(self, node, state):
        return self._logic(node, state, "AND")

    def _not(self, node, state):
        inner = self._node(node.children[1], state)
        self._expect(inner, (BOOLEAN,), node.children[1], state, "'not' needs a condition")
        return Sql(f"(NOT {inner.text})", inner.params)

    def _compare(self, node, state):
        left, op, right = self._sub(node.children[0], state), node.children[1].value, self._sub(node.children[2], state)
        op = {"==": "=", "!=": "<>"}.get(op, op)
        self._same_type(left, right, node, state, f"'{op}'")
        if op not in ("=", "<>") and BOOLEAN in (left.type, right.type):
            raise RuleError(
                state.segment,
                state.rule,
                node.meta.start_pos,
                f"'{op}' cannot order booleans",
                "Use = or <> with true/false.",
            )
        return Sql(f"({left.text} {op} {right.text})", left.params + right.params)

    def _in_list(self, node, state, negate: bool) -> Sql:
        value = self._sub(node.children[0], state)
        items = [self._sub(c, state) for c in node.children[1:] if isinstance(c, Tree)]
        for item, child in zip(items, [c for c in node.children[1:] if isinstance(c, Tree)], strict=True):
            self._same_type(value, item, child, state, "'in'")
        placeholders = ", ".join(i.text for i in items)
        params = value.params + tuple(p for i in items for p in i.params)
        return Sql(f"({value.text} {'NOT IN' if negate else 'IN'} ({placeholders}))", params)

    def _in(self, node, state):
        return self._in_list(node, state, negate=False)

    def _not_in(self, node, state):
        return self._in_list(node, state, negate=True)

    def _range(self, node, state, negate: bool) -> Sql:
        parts = [c for c in node.children if isinstance(c, Tree)]
        value, low, high = (self._sub(p, state) for p in parts)
        for bound, child in ((low, parts[1]), (high, parts[2])):
            self._same_type(value, bound, child, state, "'between'")
        if value.type not in (NUMBER, TIMESTAMP, NULLTYPE):
            raise RuleError(
                state.segment,
                state.rule,
                node.meta.start_pos,
                f"'between' needs numbers or timestamps, not {value.type}",
                "Use in (...) for text.",
            )
        word = "NOT BETWEEN" if negate else "BETWEEN"
        return Sql(f"({value.text} {word} {low.text} AND {high.text})", value.params + low.params + high.params)

    def _between(self, node, state):
        return self._range(node, state, negate=False)

    def _not_between(self, node, state):
        return self._range(node, state, negate=True)

    def _is_null(self, node, state):
        value = self._sub(node.children[0], state)
        return Sql(f"({value.text} IS NULL)", value.params)

    def _is_not_null(self, node, state):
        value = self._sub(node.children[0], state)
        return Sql(f"({value.text} IS NOT NULL)", value.params)

    def _arith(self, node, state):
        left, op, right = self._sub(node.children[0], state), node.children[1].value, self._sub(node.children[2], state)
        for side, child in ((left, node.children[0]), (right, node.children[2])):
            self._expect(side, (NUMBER,), child, state, f"'{op}' needs numbers")
        if op == "/":  # never a division-by-zero error: x / 0 is null
            return Sql(f"(CAST({left.text} AS DOUBLE) / nullif({right.text}, 0))", left.params + right.params, NUMBER)
        return Sql(f"({left.text} {op} {right.text})", left.params + right.params, NUMBER)

    def _neg(self, node, state):
        inner = self._sub(node.children[0], state)
        self._expect(inner, (NUMBER,), node.children[0], state, "'-' needs a number")
        return Sql(f"(-{inner.text})", inner.params, NUMBER)

    def _number(self, node, state):
        token = node.children[0]
        text = token.value
        if len(text.split(".")[0].lstrip("0")) > MAX_NUMBER_DIGITS:
            raise RuleError(
                state.segment,
                state.rule,
                token.start_pos,
                f"the number {text[:24]}{'...' if len(text) > 24 else ''} is out of range",
                f"Numbers may have at most {MAX_NUMBER_DIGITS} digits before the decimal point.",
            )
        return Sql("?", (float(text) if "." in text else int(text),), NUMBER)

    def _string(self, node, state):
        return Sql("?", (node.children[0].value[1:-1].replace("''", "'"),), TEXT)

    def _true(self, node, state):
        return Sql("?", (True,), BOOLEAN)

    def _false(self, node, state):
        return Sql("?", (False,), BOOLEAN)

    def _null(self, node, state):
        return Sql("NULL", (), NULLTYPE)

    def _column(self, node, state):
        name = node.children[0].value
        if name not in self.schema:
            if name.lower() in FUNCTIONS:
                hint = f"{name.lower()} is a function: write {name.lower()}(...)."
            else:
                hint = _suggest(name, self.schema, "column") or "See the columns of marts.segment_attributes."
            raise RuleError(state.segment, state.rule, node.meta.start_pos, f"unknown column '{name}'", hint)
        state.columns.add(name)
        return Sql(f'"{name}"', (), self.schema[name])

    def _call(self, node, state):
        name_token = node.children[0]
        name = name_token.value.lower()
        fn = FUNCTIONS.get(name)
        if fn is None:
            raise RuleError(
                state.segment,
                state.rule,
                name_token.start_pos,
                f"unknown function '{name_token.value}'",
                _suggest(name, FUNCTIONS, "function") or f"Functions: {', '.join(sorted(FUNCTIONS))}.",
            )
        arg_nodes = [c for c in node.children[1:] if isinstance(c, Tree)]
        lo, hi = len(fn.args) - fn.optional_args, len(fn.args)
        if not lo <= len(arg_nodes) <= hi:
            count = str(hi) if lo == hi else f"{lo} or {hi}"
            raise RuleError(
                state.segment,
                state.rule,
                node.meta.start_pos,
                f"{name}() takes {count} argument{'s' if hi != 1 else ''}, not {len(arg_nodes)}",
                fn.help,
            )
        if name == "in_segment":
            return self._reference(node, arg_nodes, state)
        args = [self._sub(a, state) for a in arg_nodes]
        for i, (arg, child) in enumerate(zip(args, arg_nodes, strict=True)):
            self._expect(
                arg, fn.args[i], child, state, f"argument {i + 1} of {name}() must be {' or '.join(fn.args[i])}"
            )
        state.columns.update(c for c in fn.reads if c in self.schema)
        returns = fn.returns([a.type for a in args]) if callable(fn.returns) else fn.returns
        if name == "coalesce":
            self._same_type(args[0], args[1], node, state, "coalesce()")
        return Sql(fn.render([a.text for a in args]), tuple(p for a in args for p in a.params), returns)

    def _reference(self, node, arg_nodes, state) -> Sql:
        arg = arg_nodes[0]
        if arg.data != "string":
            raise RuleError(
                state.segment,
                state.rule,
                arg.meta.start_pos,
                "in_segment() takes a segment name in quotes",
                "For example: in_segment('vip')",
            )
        target = arg.children[0].value[1:-1]
        if target not in self.sources:
            raise RuleError(
                state.segment,
                state.rule,
                arg.meta.start_pos,
                f"unknown segment '{target}'",
                _suggest(target, self.sources, "segment") or "Reference a segment defined in segments/.",
            )
        referenced = self.compile(target)
        state.references.add(target)
        state.columns.update(referenced.columns)
        return Sql(referenced.sql.text, referenced.sql.params, BOOLEAN)

    # -- type checks -------------------------------------------------------------------------

    def _expect(self, sql: Sql, types: tuple[str, ...], node, state, problem: str) -> None:
        if sql.type not in types and sql.type != NULLTYPE:
            raise RuleError(
                state.segment,
                state.rule,
                node.meta.start_pos,
                f"{problem}; found {sql.type}",
                _type_hint(sql.type, types[0]),
            )

    def _same_type(self, left: Sql, right: Sql, node, state, what: str) -> None:
        if NULLTYPE in (left.type, right.type) or left.type == right.type:
            return
        raise RuleError(
            state.segment,
            state.rule,
            node.meta.start_pos,
            f"{what} compares a {left.type} with a {right.type}",
            _type_hint(right.type, left.type),
        )


def _type_hint(found: str, wanted: str) -> str:
    if wanted == TIMESTAMP and found == NUMBER:
        return "Use days_since(column) to turn a timestamp into days, for example days_since(last_seen_at) <= 7."
    if found == TIMESTAMP and wanted == NUMBER:
        return "Use days_since(column) or hours_since(column) to compare a timestamp with a number."
    if wanted == TEXT:
        return "Text values go in single quotes, for example country = 'GB'."
    if wanted == BOOLEAN:
        return "Combine conditions with and/or, and compare values with =, <, >, in or between."
    return f"Use a {wanted} here."


@dataclass
class _State:
    segment: str
    rule: str
    columns: set = field(default_factory=set)
    references: set = field(default_factory=set)
    clauses: list = field(default_factory=list)
