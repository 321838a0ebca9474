"""Grafana's PostgreSQL data source, as far as lykta's panels use it: template variables and SQL macros
expanded the way Grafana does before a query reaches the database (TimescaleDB mode on).

Used by the tests and the query benchmark to run every panel's SQL against the real database; Grafana itself
is not needed. Follows Grafana's ``sqleng`` and the PostgreSQL data source's macro engine:

* ``$var``/``${var}``: a variable with several values (multi-value or "include all") becomes its values
  quoted (``'a','b'``, quotes doubled); one value of a single-value variable is inserted as it is.
  ``${var:sqlstring}`` always quotes; ``${var:csv}`` joins without quotes; ``${var:raw}`` inserts as is;
  ``${var:percentencode}`` percent-encodes (several values as ``{a,b}``).
* ``$__interval`` (``5m``), ``$__interval_ms`` (``300000``).
* ``$__time(c)``, ``$__timeEpoch(c)``, ``$__timeFilter(c)``, ``$__timeFrom()``, ``$__timeTo()``,
  ``$__timeGroup(c, interval)`` and ``$__timeGroupAlias(c, interval)`` (``time_bucket``),
  ``$__unixEpochFilter(c)``.
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from urllib.parse import quote

import psycopg

from storage.panels import VARIABLES


class MacroError(ValueError):
    """A macro Grafana would refuse, or one this module does not know."""


@dataclass(frozen=True)
class Variable:
    values: tuple[str, ...]
    multi: bool = True
    """multi-value or "include all": Grafana quotes the values"""


_UNITS = [("d", 86400.0), ("h", 3600.0), ("m", 60.0), ("s", 1.0)]


def interval_text(seconds: float) -> str:
    """An interval as Grafana writes ``$__interval``: 1d, 2h, 5m, 30s, 500ms."""
    if seconds < 1:
        return f"{round(seconds * 1000)}ms"
    for unit, size in _UNITS:
        if seconds >= size and math.isclose(seconds % size, 0, abs_tol=1e-9):
            return f"{round(seconds / size)}{unit}"
    return f"{round(seconds)}s"


def parse_interval(text: str) -> float:
    match = re.fullmatch(r"\s*['\"]?(\d+(?:\.\d+)?)(ms|s|m|h|d|w)['\"]?\s*", text)
    if not match:
        raise MacroError(f"cannot parse interval {text!r}")
    number, unit = float(match.group(1)), match.group(2)
    return number * {"ms": 0.001, "s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800}[unit]


def _quote(value: str) -> str:
    return "'" + value.replace("'", "''") + "'"


def percentencode(value: str) -> str:
    """Grafana's encodeURIComponentStrict: UTF-8, every byte but letters, digits and -_.~ as %XX."""
    return quote(value, safe="-_.~")


def _format(var: Variable, fmt: str | None) -> str:
    if fmt == "percentencode":
        # a multi-value (or "include all") variable as {a,b}, even with one value chosen; then encoded whole
        joined = "{" + ",".join(var.values) + "}" if var.multi else ",".join(var.values)
        return percentencode(joined)
    if fmt == "sqlstring" or (fmt is None and var.multi):
        return ",".join(_quote(v) for v in var.values)
    if fmt == "csv":
        return ",".join(var.values)
    if fmt in (None, "raw"):
        return ",".join(var.values)
    raise MacroError(f"variable format {fmt!r} is not supported")


def interpolate(sql: str, variables: dict[str, Variable]) -> str:
    def braced(m: re.Match[str]) -> str:
        name, fmt = m.group(1), m.group(2)
        if name not in variables:
            raise MacroError(f"unknown variable ${{{name}}}")
        return _format(variables[name], fmt)

    sql = re.sub(r"\$\{(\w+)(?::(\w+))?\}", braced, sql)

    def plain(m: re.Match[str]) -> str:
        name = m.group(1)
        if name.startswith("__"):
            return m.group(0)
        if name not in variables:
            raise MacroError(f"unknown variable ${name}")
        return _format(variables[name], None)

    return re.sub(r"\$(\w+)", plain, sql)


def _args(sql: str, start: int) -> tuple[list[str], int]:
    """The comma-separated arguments of the call whose '(' is at ``start``; and the index after ')'."""
    depth, args, current, i = 0, [], "", start
    while i < len(sql):
        ch = sql[i]
        if ch == "(":
            depth += 1
            if depth > 1:
                current += ch
        elif ch == ")":
            depth -= 1
            if depth == 0:
                args.append(current.strip())
                return [a for a in args if a != ""], i + 1
            current += ch
        elif ch == "," and depth == 1:
            args.append(current.strip())
            current = ""
        else:
            current += ch
        i += 1
    raise MacroError("unbalanced parentheses in a macro")


def expand(
    sql: str, *, time_from: datetime, time_to: datetime, interval_s: float, variables: dict[str, Variable]
) -> str:
    """The SQL Grafana would send for a panel with this time range, interval and variable values."""
    sql = interpolate(sql, variables)
    sql = sql.replace("$__interval_ms", str(round(interval_s * 1000)))
    sql = sql.replace("$__interval", interval_text(interval_s))
    start = _rfc3339(time_from)
    end = _rfc3339(time_to)

    def group(args: list[str]) -> str:
        if len(args) < 2:
            raise MacroError("$__timeGroup needs a column and an interval")
        seconds = parse_interval(args[1])
        return f"time_bucket('{seconds:.0f}s',{args[0]})"

    macros: dict[str, Callable[[list[str]], str]] = {
        "time": lambda a: f'{a[0]} AS "time"',
        "timeEpoch": lambda a: f'extract(epoch from {a[0]}) as "time"',
        "timeFilter": lambda a: f"{a[0]} BETWEEN '{start}' AND '{end}'",
        "timeFrom": lambda a: f"'{start}'",
        "timeTo": lambda a: f"'{end}'",
        "timeGroup": group,
        "timeGroupAlias": lambda a: group(a) + ' AS "time"',
        "unixEpochFilter": lambda a: f"{a[0]} >= {int(time_from.timestamp())} AND {a[0]} <= {int(time_to.timestamp())}",
    }
    out = ""
    i = 0
    pattern = re.compile(r"\$__(\w+)\(")
    while True:
        m = pattern.search(sql, i)
        if m is None:
            out += sql[i:]
            break
        name = m.group(1)
        if name not in macros:
            raise MacroError(f"unknown macro $__{name}")
        args, after = _args(sql, m.end() - 1)
        if name not in ("timeFrom", "timeTo") and not args:
            raise MacroError(f"$__{name} needs arguments")
        out += sql[i : m.start()] + macros[name](args)
        i = after
    if "$__" in out:
        raise MacroError(f"macro left unexpanded in: {out[out.index('$__') :][:40]}")
    return out


def _rfc3339(t: datetime) -> str:
    return t.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def everything(conn: psycopg.Connection, tenant_id: str, asset_id: str) -> dict[str, Variable]:
    """The variables as a person sets them for a whole municipality: every district and asset kind that the
    variables' own queries list ("All"), and one streetlight for the asset detail."""
    now = datetime.now(UTC)
    out = {"tenant": Variable((tenant_id,))}
    for name in ("district", "kind"):
        sql = expand(VARIABLES[name], time_from=now, time_to=now, interval_s=60, variables=out)
        out[name] = Variable(tuple(str(r[0]) for r in conn.execute(sql).fetchall()))
    out["asset"] = Variable((asset_id,), multi=False)
    return out
