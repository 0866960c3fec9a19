"""A tiny, safe language of predicates over customers' columns (``rules.eligibility.require``).

Grammar (keywords in any case)::

    expr       := and_expr ("or" and_expr)*
    and_expr   := not_expr ("and" not_expr)*
    not_expr   := "not" not_expr | "(" expr ")" | comparison
    comparison := COLUMN OP literal | COLUMN ["not"] "in" "[" literal ("," literal)* "]"
    OP         := "==" | "!=" | "<" | "<=" | ">" | ">="
    literal    := number | 'text' | "text"
    COLUMN     := a customers column name (letters, digits, "_"; not starting with a digit)

The text is tokenised and parsed by hand into a :class:`Node` tree, then turned into a polars
expression; nothing is ever evaluated as Python (no ``eval``). A customer whose column is empty
does not meet a comparison on it (the expression is null there, and :func:`to_polars` returns
``fill_null(False)`` of it).
"""
from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Union

import polars as pl

Literal = Union[float, str]
_TOKEN = re.compile(r"""\s*(?:
    (?P<number>-?\d+(?:\.\d*)?(?:[eE][-+]?\d+)?)
  | (?P<text>'[^']*'|"[^"]*")
  | (?P<op>==|!=|<=|>=|<|>)
  | (?P<punct>[()\[\],])
  | (?P<word>[A-Za-z_][A-Za-z0-9_]*)
)""", re.VERBOSE)
_KEYWORDS = {"and", "or", "not", "in"}


class PredicateError(ValueError):
    """The text is not a predicate of the grammar (the message says where)."""


@dataclass(frozen=True)
class Compare:
    column: str
    op: str  # one of ==, !=, <, <=, >, >=, in, not in
    values: tuple[Literal, ...]


@dataclass(frozen=True)
class Logic:
    op: str  # and, or, not
    args: tuple["Node", ...]


Node = Union[Compare, Logic]


def _tokens(text: str) -> list[tuple[str, str]]:
    out, pos = [], 0
    text = text.rstrip()
    while pos < len(text):
        match = _TOKEN.match(text, pos)
        if match is None or match.end() == pos:
            raise PredicateError(f"cannot read {text[pos:].strip()[:20]!r} (at character {pos})")
        kind = match.lastgroup or ""
        value = match.group(kind)
        if kind == "word" and value.lower() in _KEYWORDS:
            kind, value = "keyword", value.lower()
        out.append((kind, value))
        pos = match.end()
    return out


class _Parser:
    def __init__(self, text: str) -> None:
        self.text = text
        self.tokens = _tokens(text)
        self.at = 0

    def peek(self) -> tuple[str, str]:
        return self.tokens[self.at] if self.at < len(self.tokens) else ("end", "")

    def take(self, kind: str, value: str | None = None) -> str:
        got = self.peek()
        if got[0] != kind or (value is not None and got[1] != value):
            want = value or kind
            raise PredicateError(f"expected {want!r} but found {got[1] or 'the end'!r}")
        self.at += 1
        return got[1]

    def expr(self) -> Node:
        args = [self.and_expr()]
        while self.peek() == ("keyword", "or"):
            self.at += 1
            args.append(self.and_expr())
        return args[0] if len(args) == 1 else Logic("or", tuple(args))

    def and_expr(self) -> Node:
        args = [self.not_expr()]
        while self.peek() == ("keyword", "and"):
            self.at += 1
            args.append(self.not_expr())
        return args[0] if len(args) == 1 else Logic("and", tuple(args))

    def not_expr(self) -> Node:
        if self.peek() == ("keyword", "not"):
            self.at += 1
            return Logic("not", (self.not_expr(),))
        if self.peek() == ("punct", "("):
            self.at += 1
            inner = self.expr()
            self.take("punct", ")")
            return inner
        return self.comparison()

    def literal(self) -> Literal:
        kind, value = self.peek()
        if kind == "number":
            self.at += 1
            return float(value)
        if kind == "text":
            self.at += 1
            return value[1:-1]
        raise PredicateError(f"expected a number or a quoted text but found {value or 'the end'!r}")

    def comparison(self) -> Compare:
        column = self.take("word")
        kind, value = self.peek()
        if kind == "op":
            self.at += 1
            return Compare(column, value, (self.literal(),))
        negated = value == "not" and kind == "keyword"
        if negated:
            self.at += 1
        self.take("keyword", "in")
        self.take("punct", "[")
        values = [self.literal()]
        while self.peek() == ("punct", ","):
            self.at += 1
            values.append(self.literal())
        self.take("punct", "]")
        return Compare(column, "not in" if negated else "in", tuple(values))


def parse(text: str) -> Node:
    """The predicate ``text`` as a tree; raises :class:`PredicateError` when it does not parse."""
    parser = _Parser(text)
    if not parser.tokens:
        raise PredicateError("the predicate is empty")
    node = parser.expr()
    if parser.at != len(parser.tokens):
        raise PredicateError(f"unexpected {parser.peek()[1]!r} after a complete predicate")
    both = numeric_columns(node) & _text_columns(node)
    if both:
        raise PredicateError(f"column {sorted(both)[0]!r} is compared with numbers and texts")
    return node


def columns(node: Node) -> list[str]:
    """The customers columns ``node`` reads, in order of first use."""
    if isinstance(node, Compare):
        return [node.column]
    seen: list[str] = []
    for arg in node.args:
        seen += [c for c in columns(arg) if c not in seen]
    return seen


def numeric_columns(node: Node) -> set[str]:
    """The columns ``node`` compares with numbers (they must hold numbers)."""
    if isinstance(node, Compare):
        return {node.column} if any(isinstance(v, float) for v in node.values) else set()
    return set().union(*(numeric_columns(a) for a in node.args))


def _expr(node: Node) -> pl.Expr:
    if isinstance(node, Logic):
        parts = [_expr(a) for a in node.args]
        if node.op == "not":
            return ~parts[0]
        out = parts[0]
        for part in parts[1:]:
            out = (out & part) if node.op == "and" else (out | part)
        return out
    col = pl.col(node.column)
    value = node.values[0]
    if node.op in ("in", "not in"):
        inside = col.is_in(list(node.values))
        return ~inside if node.op == "not in" else inside
    return {"==": col == value, "!=": col != value, "<": col < value, "<=": col <= value,
            ">": col > value, ">=": col >= value}[node.op]


def to_polars(node: Node) -> pl.Expr:
    """A boolean polars expression of ``node`` over a frame holding its columns (numeric columns
    as numbers, the others as text); empty cells never meet the predicate."""
    # a null inside `not` or `or` must not turn into "met": evaluate, then nulls are False
    return _expr(node).fill_null(False)


def prepared(frame: pl.DataFrame, node: Node, table: str = "customers") -> pl.DataFrame:
    """``frame``'s columns that ``node`` reads, typed for :func:`to_polars`: those compared with
    numbers as Float64, the others as trimmed text. Raises :class:`InputError` naming ``table``,
    the column and sample rows when a column is missing or holds a value that is not a number
    where the predicate compares it with one, and :class:`PredicateError` when one column is
    compared with both numbers and texts."""
    from optimizer.core.errors import InputError  # local: errors is the lower module
    from optimizer.core.typed import typed_values

    numeric = numeric_columns(node)
    out = {}
    for name in columns(node):
        if name not in frame.columns:
            raise InputError(table, name, f"column {name} missing: a rules.eligibility "
                             f"requirement reads it (the table has: {', '.join(frame.columns)})")
        series = frame.get_column(name)
        if isinstance(series.dtype, (pl.Categorical, pl.Enum)):
            series = series.cast(pl.Utf8)  # dictionary-encoded text (pandas' category) is text
        if name in numeric:
            why = ": a rules.eligibility requirement compares this column with a number"
            typed = typed_values(frame, series, table, name, pl.Float64, why)
            # NaN compares as the largest number in polars: an age of NaN met "age >= 21"
            bad = ~typed.is_finite().fill_null(True)
            if bad.any():
                raise InputError(table, name, "values must be finite numbers (NaN and infinity "
                                 f"are not allowed){why}",
                                 sample=frame.filter(bad).head(5).rows(named=True),
                                 count=int(bad.sum()))
            out[name] = typed
        else:
            out[name] = series.cast(pl.Utf8).str.strip_chars()
    return pl.DataFrame(out) if out else pl.DataFrame({"__none": [None] * frame.height})


def _text_columns(node: Node) -> set[str]:
    if isinstance(node, Compare):
        return {node.column} if any(isinstance(v, str) for v in node.values) else set()
    return set().union(*(_text_columns(a) for a in node.args))


def read_columns(requires: "list[str] | tuple[str, ...]") -> tuple[str, ...]:
    """The customers columns a list of predicates read, in order of first use (what
    ``load_inputs(customer_columns=...)`` must read for ``rules.eligibility``)."""
    names: list[str] = []
    for text in requires:
        names += [c for c in columns(parse(text)) if c not in names]
    return tuple(names)
