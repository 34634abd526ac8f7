"""Rows read and written by statements written out once per model, for the statements every reply makes:
the send's on Daphne (its conversation, its tree, the two inserts, the conversation's update, the owner's
group policies) and the worker's claim and final save.

A send runs on the one database thread of its Daphne process, so every send waiting behind it waits for
its CPU too. There, building a query with the ORM (filters, compiler, per-field preparation of all of a
Message's forty columns) costs several times what the database then spends running it: about 470 µs
to read one conversation by id against 60 µs here, 240 µs to insert one message against about 100 µs
(SQLite, `bench/send_path.py`). These helpers keep the ORM's own conversions (each field's
`get_db_prep_save` on the way in, the backend's and the field's converters on the way out), so the
values stored and the instances returned are exactly the ORM's; what they skip is composing the
statement again for every row, and `save()`'s machinery: no `pre_save`/`post_save` signal is sent
(chat/apps.py connects none for these models; tests/test_rows.py checks it stays so). Conditions are
written by their callers, beside the ORM filter each replaces, in the SQL both databases share.
"""

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from functools import cache
from typing import Any, TypeVar

from django.db import DEFAULT_DB_ALIAS, connection, connections, models
from django.db.backends.base.base import BaseDatabaseWrapper
from django.db.models.sql import Query
from django.utils import timezone

M = TypeVar("M", bound=models.Model)


def _connection() -> BaseDatabaseWrapper:
    """This thread's connection, looked up once per statement: each use of `django.db.connection` (a
    proxy) is a lookup of its own, and preparing forty fields would make eighty. The statements
    themselves are cached per vendor, built with the proxy."""
    return connections[DEFAULT_DB_ALIAS]


@dataclass(frozen=True)
class _Columns:
    """Some fields of a model as a statement selects them, in the model's order."""

    names: frozenset[str]  # the fields' attribute names
    sql: str  # the columns, qualified by the table
    converters: dict[int, Any]  # by column index, as the ORM's compiler applies them
    compiler: Any


@cache
def _columns(model: type[models.Model], names: tuple[str, ...], vendor: str) -> _Columns:
    order = [field.name for field in model._meta.concrete_fields]
    if [order.index(name) for name in names] != sorted(order.index(name) for name in names):
        raise ValueError(
            f"fields {names} are not in the order of {model.__name__}'s fields: from_db would misread them"
        )
    quote, table = connection.ops.quote_name, model._meta.db_table
    fields = [model._meta.get_field(name) for name in names]
    compiler = Query(model).get_compiler(connection=connection)
    converters = compiler.get_converters([field.get_col(table) for field in fields])
    sql = ", ".join(f"{quote(table)}.{quote(field.column)}" for field in fields)
    return _Columns(frozenset(field.attname for field in fields), sql, converters, compiler)


def _every_column(model: type[models.Model], vendor: str) -> _Columns:
    return _columns(model, tuple(field.name for field in model._meta.concrete_fields), vendor)


def _instances(
    model: type[M], found: list[tuple], columns: _Columns, db: BaseDatabaseWrapper, extra: Sequence[str] = ()
) -> list[M]:
    """The rows as instances, each value converted as the ORM converts it; the fields not in `columns`
    deferred, and each column after theirs set as the attribute its `extra` name says."""
    if columns.converters:
        found = columns.compiler.apply_converters(found, columns.converters)
    count, instances = len(columns.names), []
    for row in found:
        instance = model.from_db(db.alias, columns.names, row[:count])
        for name, value in zip(extra, row[count:], strict=True):
            setattr(instance, name, value)
        instances.append(instance)
    return instances


def storable_id(model: type[models.Model], value: int) -> bool:
    """Whether `value` fits the model's id column. The ORM answers "no such row" for one that does not
    (SQLite's driver would raise OverflowError), and so must a written read given an id from a client."""
    low, high = connection.ops.integer_field_range(model._meta.pk.get_internal_type())
    return (low is None or value >= low) and (high is None or value <= high)


def lookup_value(model: type[models.Model], name: str, value: Any) -> Any:
    """`value` as a parameter compared with the field `name` of `model` in a written condition, prepared
    as the ORM prepares a lookup's (a datetime as SQLite stores it, say)."""
    return model._meta.get_field(name).get_db_prep_value(value, _connection(), prepared=False)


def read(model: type[M], rest: str, params: Sequence[Any]) -> list[M]:
    """The rows of `model` the SQL `rest` selects (all that follows `FROM <its table>`: joins, WHERE,
    ORDER BY, with `%s` for each of `params`), as the ORM would have returned them."""
    db = _connection()
    columns = _every_column(model, db.vendor)
    table = db.ops.quote_name(model._meta.db_table)
    with db.cursor() as cursor:
        cursor.execute(f"SELECT {columns.sql} FROM {table} {rest}", params)  # noqa: S608 (names only)
        found = cursor.fetchall()
    return _instances(model, found, columns, db)


def read_sql(
    model: type[M], sql: str, params: Sequence[Any], *, fields: Sequence[str], extra: Sequence[str] = ()
) -> list[M]:
    """The instances of `model` a whole written `sql` selects (a recursive walk, say), as the ORM's
    `raw()` returns them but without its analysis of the columns at every query: the statement's
    columns are the fields named in `fields` (in the model's order; the others deferred), then one for
    each name of `extra`, set on each instance as an attribute of that name."""
    db = _connection()
    columns = _columns(model, tuple(fields), db.vendor)
    with db.cursor() as cursor:
        cursor.execute(sql, params)
        found = cursor.fetchall()
    return _instances(model, found, columns, db, extra)


def read_one(model: type[M], where: str, params: Sequence[Any]) -> M | None:
    """The first row of `model` matching the SQL condition `where` (its columns named bare, `%s` for
    each of `params`), as the ORM would have returned it; None if there is none."""
    found = read(model, f"WHERE {where} LIMIT 1", params)
    return found[0] if found else None


def read_one_with(model: type[M], relation: str, where: str, params: Sequence[Any]) -> M | None:
    """`read_one` with the row its foreign key `relation` points to, in one statement (as the ORM's
    `select_related(relation)`). Both tables are in the statement: `where` qualifies its columns."""
    db = _connection()
    field = model._meta.get_field(relation)
    outer, inner = _every_column(model, db.vendor), _every_column(field.related_model, db.vendor)
    quote = db.ops.quote_name
    table, related = quote(model._meta.db_table), quote(field.related_model._meta.db_table)
    on = f"{related}.{quote(field.target_field.column)} = {table}.{quote(field.column)}"
    with db.cursor() as cursor:
        cursor.execute(
            f"SELECT {outer.sql}, {inner.sql} FROM {table} JOIN {related} ON {on} WHERE {where} LIMIT 1",
            params,
        )
        row = cursor.fetchone()
    if row is None:
        return None
    split = len(outer.names)
    (instance,) = _instances(model, [row[:split]], outer, db)
    (target,) = _instances(field.related_model, [row[split:]], inner, db)
    setattr(instance, relation, target)
    return instance


Computed = Mapping[str, tuple[str, Sequence[Any]]]  # column name: an SQL expression and its parameters


def _split(computed: Computed | None) -> tuple[tuple[tuple[str, str], ...], list[Any]]:
    """`computed` as the statement's part (each name with its expression: a key of the cached statement)
    and the parameters of its expressions, in that order."""
    computed = computed or {}
    expressions = tuple((name, expression) for name, (expression, _) in computed.items())
    return expressions, [value for _, arguments in computed.values() for value in arguments]


@dataclass(frozen=True)
class _Writer:
    insert: str
    fields: tuple[models.Field, ...]
    stamped: frozenset[str]  # auto_now / auto_now_add fields (attribute names): the time of the insert
    defaults: tuple[tuple[Any, Any], ...]  # each field's default, and as stored (prepared once), by position


@cache
def _writer(model: type[models.Model], computed: tuple[tuple[str, str], ...], vendor: str) -> _Writer:
    quote = connection.ops.quote_name
    by_expression = dict(computed)
    fields = tuple(f for f in model._meta.concrete_fields if not f.primary_key and f.name not in by_expression)
    columns = [quote(field.column) for field in fields]
    columns += [quote(model._meta.get_field(name).column) for name in by_expression]
    values = ", ".join(["%s"] * len(fields) + list(by_expression.values()))
    table, pk = quote(model._meta.db_table), quote(model._meta.pk.column)
    sql = f"INSERT INTO {table} ({', '.join(columns)}) VALUES ({values}) RETURNING {pk}"  # noqa: S608
    stamped = frozenset(f.attname for f in fields if getattr(f, "auto_now", False) or getattr(f, "auto_now_add", False))
    defaults = []
    for field in fields:
        default = field.get_default()
        defaults.append((default, field.get_db_prep_save(default, connection)))
    return _Writer(sql, fields, stamped, tuple(defaults))


def insert(instance: M, *, computed: Computed | None = None) -> M:
    """INSERT a new, unsaved `instance` and return it saved (its pk set, auto_now(_add) fields the time
    now), as `save()` would. A field still at its default is stored as prepared once per process;
    `computed` columns (name to an SQL expression and its parameters) are stored from their expression."""
    db = _connection()
    expressions, computed_params = _split(computed)
    writer = _writer(type(instance), expressions, db.vendor)
    now = timezone.now()
    for name in writer.stamped:
        setattr(instance, name, now)
    params = []
    for field, (default, stored) in zip(writer.fields, writer.defaults, strict=True):
        value = getattr(instance, field.attname)
        if field.attname in writer.stamped or value != default or type(value) is not type(default):
            stored = field.get_db_prep_save(value, db)
        params.append(stored)
    params += computed_params
    with db.cursor() as cursor:
        cursor.execute(writer.insert, params)
        (instance.pk,) = cursor.fetchone()
    instance._state.adding = False
    instance._state.db = db.alias
    return instance


@dataclass(frozen=True)
class _Updater:
    sql: str
    fields: tuple[models.Field, ...]


@cache
def _updater(
    model: type[models.Model], names: tuple[str, ...], computed: tuple[tuple[str, str], ...], where: str, vendor: str
) -> _Updater:
    quote = connection.ops.quote_name
    fields = tuple(model._meta.get_field(name) for name in names)
    assignments = [f"{quote(field.column)} = %s" for field in fields]
    assignments += [f"{quote(model._meta.get_field(name).column)} = {expression}" for name, expression in computed]
    condition = f"{quote(model._meta.pk.column)} = %s" + (f" AND ({where})" if where else "")
    sql = f"UPDATE {quote(model._meta.db_table)} SET {', '.join(assignments)} WHERE {condition}"  # noqa: S608
    return _Updater(sql, fields)


def _update_params(updater: _Updater, changes: Mapping[str, Any], db: BaseDatabaseWrapper) -> list[Any]:
    return [field.get_db_prep_save(value, db) for field, value in zip(updater.fields, changes.values(), strict=True)]


def update(
    model: type[models.Model],
    pk: int,
    changes: Mapping[str, Any],
    *,
    computed: Computed | None = None,
    where: str = "",
    params: Sequence[Any] = (),
) -> int:
    """UPDATE the row `pk` of `model` with `changes` (field names to values, prepared by each field as
    `QuerySet.update` would) and `computed` columns (name to an SQL expression and its parameters), if
    it also matches the SQL condition `where` (with `params`); how many rows changed (0 or 1)."""
    db = _connection()
    expressions, computed_params = _split(computed)
    updater = _updater(model, tuple(changes), expressions, where, db.vendor)
    values = [*_update_params(updater, changes, db), *computed_params]
    with db.cursor() as cursor:
        cursor.execute(updater.sql, [*values, pk, *params])
        return cursor.rowcount


def update_returning(
    model: type[M], pk: int, changes: Mapping[str, Any], *, where: str = "", params: Sequence[Any] = ()
) -> M | None:
    """`update`, answering the row as it is after it (as `read` would), or None if it did not match."""
    db = _connection()
    updater = _updater(model, tuple(changes), (), where, db.vendor)
    columns = _every_column(model, db.vendor)
    with db.cursor() as cursor:
        cursor.execute(f"{updater.sql} RETURNING {columns.sql}", [*_update_params(updater, changes, db), pk, *params])
        found = cursor.fetchall()
    return _instances(model, found, columns, db)[0] if found else None
