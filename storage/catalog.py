"""A normalised text description of the schema, compared with the declared schema in ``storage/schema/``.

``python -m storage.catalog URL`` prints it. The declared files are written by
hand review: when a migration changes the schema, the test shows the difference
and the declaration is updated in the same change.
"""

from __future__ import annotations

import json
import re
import sys
from pathlib import Path

import psycopg

_USING = re.compile(r" ON public\.\w+ USING btree")
DECLARED = Path(__file__).resolve().parent / "schema"

_RELATIONS = """
SELECT c.relname, c.relkind
FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
WHERE n.nspname = 'public' AND c.relkind IN ('r', 'p', 'v', 'm')
ORDER BY c.relname
"""

_COLUMNS = """
SELECT a.attname, format_type(a.atttypid, a.atttypmod), a.attnotnull,
       pg_get_expr(d.adbin, d.adrelid), a.attidentity
FROM pg_attribute a
LEFT JOIN pg_attrdef d ON d.adrelid = a.attrelid AND d.adnum = a.attnum
WHERE a.attrelid = %s::regclass AND a.attnum > 0 AND NOT a.attisdropped
ORDER BY a.attnum
"""

_CONSTRAINTS = """
SELECT conname, pg_get_constraintdef(oid) FROM pg_constraint
WHERE conrelid = %s::regclass ORDER BY conname
"""

_INDEXES = """
SELECT indexname, indexdef FROM pg_indexes WHERE schemaname = 'public' AND tablename = %s ORDER BY indexname
"""

_HYPERTABLES = """
SELECT hypertable_name, column_name, time_interval, (SELECT compression_enabled
       FROM timescaledb_information.hypertables h WHERE h.hypertable_name = d.hypertable_name
       AND h.hypertable_schema = d.hypertable_schema)
FROM timescaledb_information.dimensions d WHERE hypertable_schema = 'public'
"""

_CAGGS = "SELECT view_name, materialized_only FROM timescaledb_information.continuous_aggregates"

_JOBS = """
SELECT proc_name, hypertable_name, config FROM timescaledb_information.jobs
WHERE hypertable_name IS NOT NULL ORDER BY proc_name, hypertable_name
"""


def describe(conn: psycopg.Connection) -> str:
    hypertables = {r[0]: r[1:] for r in conn.execute(_HYPERTABLES).fetchall()}
    caggs = {r[0]: r[1] for r in conn.execute(_CAGGS).fetchall()}
    out: list[str] = []
    for name, kind in conn.execute(_RELATIONS).fetchall():
        label = {"r": "table", "p": "table", "v": "view", "m": "materialized view"}[kind]
        if name in caggs:
            label = f"continuous aggregate (materialized_only={str(caggs[name]).lower()})"
        out.append(f"{label} {name}")
        for col, typ, notnull, default, identity in conn.execute(_COLUMNS, (name,)).fetchall():
            extra = " not null" if notnull else ""
            if identity:
                extra += " identity " + {"a": "always", "d": "by default"}[identity]
            if default:
                extra += f" default {default}"
            out.append(f"  column {col} {typ}{extra}")
        for con, definition in conn.execute(_CONSTRAINTS, (name,)).fetchall():
            out.append(f"  constraint {con} {definition}")
        for idx, definition in conn.execute(_INDEXES, (name,)).fetchall():
            out.append(f"  index {idx} {_USING.sub('', definition)}")
        if name in hypertables:
            column, interval, compressed = hypertables[name]
            out.append(f"  hypertable by {column} every {interval}, compression {'on' if compressed else 'off'}")
    for proc, table, config in conn.execute(_JOBS).fetchall():
        clean = {k: v for k, v in (config or {}).items() if not k.endswith("_id")}
        out.append(f"job {proc} on {table} {json.dumps(clean, sort_keys=True)}")
    return "\n".join(out) + "\n"


def declared(path: str) -> str:
    return (DECLARED / f"{path}.txt").read_text(encoding="utf-8")


if __name__ == "__main__":
    with psycopg.connect(sys.argv[1]) as connection:
        sys.stdout.write(describe(connection))
