"""Opening database connections with errors that say what to do."""

from __future__ import annotations

import re

import psycopg

from floor.errors import first_line
from storage.errors import DatabaseUnavailable


def redact(url: str) -> str:
    """The URL without its password, for messages and logs."""
    return re.sub(r"(://[^:/@]+):[^@]*@", r"\1:***@", url)


def connect(url: str, *, autocommit: bool = False, connect_timeout: int = 10) -> psycopg.Connection:
    try:
        return psycopg.connect(url, autocommit=autocommit, connect_timeout=connect_timeout)
    except psycopg.OperationalError as exc:
        message = redact(first_line(exc))
        raise DatabaseUnavailable(f"cannot connect to {redact(url)}: {message}") from exc
