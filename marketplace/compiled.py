"""ORM statements compiled once, with marks where each call's values go (the dispatch hot path, issue 17).

Django compiles a queryset to SQL on every run; for the statements an agent call runs per frame that compile
cost more Python than Postgres took to run them (bench_dispatch). So a caller builds its queryset once per
database and shape with marks in place of the per-call values (ids below -10**9, a time in 1970: values no
statement of the market holds otherwise), keeps the compiled SQL, and swaps its values in per call. The
queryset stays the one statement of the rule; only its compile is cached.
"""

from __future__ import annotations

import functools
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import TypeVar

from django.db import connection, connections
from django.db.models import Model, QuerySet
from django.db.models.query import get_related_populators

M = TypeVar("M", bound=Model)

MARK_NOW = datetime(1970, 1, 2, 3, 4, 5, 678901, tzinfo=UTC)


def id_marks(count: int) -> list[int]:
    """`count` distinct marks for ids."""
    return [-(10**9) - i for i in range(count)]


def text_marks(count: int) -> list[str]:
    """`count` distinct marks for text (a NUL byte: no text Postgres stores holds one)."""
    return [f"\x00mark{i}" for i in range(count)]


def read_in(
    build: Callable[[list], QuerySet[M]], values: Sequence, *, marks: Callable[[int], list] = id_marks
) -> list[M]:
    """The objects `build(values)` returns, a queryset that filters on a list (`field__in=values`), read with its
    statement compiled once per database and count of values. `build` is a function of the module's (the cache
    holds it); `marks` makes the marks of the values' type."""
    if not values:
        return []
    statement, reader = _compiled_in(build, marks, connection.alias, len(values))
    with connection.cursor() as cur:
        cur.execute(statement.sql, statement.params_with(values))
        return [reader.read(row) for row in cur.fetchall()]


@functools.lru_cache(maxsize=1024)
def _compiled_in(build: Callable, marks: Callable[[int], list], alias: str, count: int) -> tuple[Compiled, RowReader]:
    values = marks(count)
    sql, params, reader = RowReader.compile(build(values).using(alias), alias=alias)
    return Compiled.of(sql, params, values, alias=alias), reader


@dataclass(frozen=True)
class Compiled:
    """A compiled statement and the marks in its parameters (a mark may occur more than once)."""

    sql: str
    params: tuple
    marks: tuple

    @classmethod
    def of(cls, sql: str, params: Sequence, marks: Sequence, *, alias: str) -> Compiled:
        """The statement `sql` of database `alias`. On Postgres its constants (every parameter but the marks) are
        written into its text: Postgres runs a prepared statement with a generic plan after a few calls, which
        knows only what the text says, and `state = 'active'` lets that plan read a partial index where
        `state = $1` does not."""
        missing = [m for m in marks if not any(_same(p, m) for p in params)]
        assert not missing, f"marks {missing} are not in the compiled statement"
        if connections[alias].vendor == "postgresql":
            sql, params = _constants_inlined(alias, sql, params, marks)
        return cls(sql, tuple(params), tuple(marks))

    def params_with(self, values: Sequence) -> list:
        """The parameters with `values` (one per mark, in order) in place of the marks."""
        swap = dict(zip(self.marks, values, strict=True))
        return [swap.get(p, p) if isinstance(p, int | datetime | str) else p for p in self.params]


_PLACEHOLDER = re.compile(r"%%|%s")
_END = object()


def _constants_inlined(alias: str, sql: str, params: Sequence, marks: Sequence) -> tuple[str, list]:
    """`sql` with each parameter that is not a mark replaced by its literal (quoted by psycopg), and the marks
    left, in order."""
    connection = connections[alias]
    values, left = iter(params), []

    def swap(placeholder: re.Match) -> str:
        if placeholder.group() == "%%":
            return "%%"
        value = next(values)
        if any(_same(value, mark) for mark in marks):
            left.append(value)
            return "%s"
        return connection.ops.compose_sql("%s", [value]).replace("%", "%%")  # the text is still a template

    inlined = _PLACEHOLDER.sub(swap, sql)
    assert next(values, _END) is _END, "more parameters than placeholders"
    return inlined, left


def state_literal(state: str) -> str:
    """A state as an SQL literal, for a statement that names its states in its text rather than as parameters: a
    prepared statement's generic plan (which Postgres picks for it after a few calls) then still knows
    `state = 'queued'`, and can read a partial index whose condition names that state."""
    assert state.isidentifier(), state  # the states are code's constants, never a caller's text
    return f"'{state}'"


def placeholders(count: int) -> str:
    """`count` parameter placeholders, comma-separated: the list of a written-out `IN (...)`."""
    return ", ".join(["%s"] * count)


def rows_query(rows: Sequence[Sequence], names: Sequence[str]) -> tuple[str, list]:
    """A query yielding these rows under these column names, and its parameters, for a statement written out that
    joins a batch's values. (Not `VALUES … AS v(a, b)`: SQLite, `make run`'s database, names no VALUES columns.)"""
    first = "SELECT " + ", ".join(f"%s AS {name}" for name in names)
    rest = " UNION ALL SELECT " + placeholders(len(names))
    return first + rest * (len(rows) - 1), [x for row in rows for x in row]


def _same(param, mark) -> bool:
    return isinstance(param, int | datetime | str) and type(param) is type(mark) and param == mark


def instance(model: type[M], values: Sequence, *, using: str, only: tuple[str, ...] | None = None) -> M:
    """A `model` instance as the ORM loads one from a row of its concrete fields' columns, in field order (or of
    the fields named in `only`, in that order; the others are deferred, loaded on first access): the same
    converters run (JSON decoded, SQLite's dates parsed), so it equals what a queryset returns."""
    names, converters = _converters(using, model, only)
    connection = connections[using]
    row = [
        functools.reduce(lambda value, convert: convert(value, col, connection), convert_all, value)
        if convert_all
        else value
        for value, (col, convert_all) in zip(values, converters, strict=True)
    ]
    if only is None:
        return model.from_db(using, names, row)
    loaded = dict(zip(names, row, strict=True))  # from_db wants the loaded fields in model order
    order = [f.attname for f in model._meta.concrete_fields if f.attname in loaded]
    return model.from_db(using, order, [loaded[name] for name in order])


@functools.cache
def _converters(using: str, model: type[Model], only: tuple[str, ...] | None) -> tuple[list[str], list[tuple]]:
    connection = connections[using]
    by_name = {f.attname: f for f in model._meta.concrete_fields}
    fields = list(model._meta.concrete_fields) if only is None else [by_name[name] for name in only]
    out = []
    for field in fields:
        col = field.get_col(model._meta.db_table)
        out.append((col, connection.ops.get_db_converters(col) + field.get_db_converters(connection)))
    return [f.attname for f in fields], out


@dataclass(frozen=True)
class RowReader:
    """Builds the instance a queryset's row holds (its select_related objects and annotations too, with the same
    converters), from the first `width` columns of a row of the queryset's compiled statement: for a statement
    run by hand whose rows carry more columns after the queryset's."""

    model: type[Model]
    width: int
    using: str
    compiler: object
    converters: dict
    init_list: tuple[str, ...]
    cols: tuple[int, int]
    populators: tuple
    annotations: tuple[tuple[str, int], ...]

    @classmethod
    def compile(cls, queryset, *, alias: str) -> tuple[str, tuple, RowReader]:
        """`queryset`'s SQL and parameters on database `alias`, and the reader of its rows."""
        compiler = queryset.query.get_compiler(using=alias)
        sql, params = compiler.as_sql()  # fills compiler.select, klass_info and annotation_col_map
        select, info = compiler.select, compiler.klass_info
        start, end = info["select_fields"][0], info["select_fields"][-1] + 1
        reader = cls(
            model=info["model"],
            width=len(select),
            using=alias,
            compiler=compiler,
            converters=compiler.get_converters([column[0] for column in select]),
            init_list=tuple(column[0].target.attname for column in select[start:end]),
            cols=(start, end),
            populators=tuple(get_related_populators(info, select, alias)),
            annotations=tuple((compiler.annotation_col_map or {}).items()),
        )
        return sql, tuple(params), reader

    def read(self, row: Sequence) -> Model:
        """The instance of `row` (its first `width` columns), as the queryset builds it."""
        (values,) = self.compiler.apply_converters([row[: self.width]], self.converters)
        obj = self.model.from_db(self.using, list(self.init_list), values[self.cols[0] : self.cols[1]])
        for populator in self.populators:
            populator.populate(values, obj)
        for name, at in self.annotations:
            setattr(obj, name, values[at])
        return obj
