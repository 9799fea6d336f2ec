"""Where an index lives, decided in one place: a folder (the local backend) or a postgresql:// URL (PostgreSQL).

Every face passes `--index` through `index_location`, and `Index` asks `backend_for` which backend class serves a
location; nothing else looks at the string.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl, urlsplit, urlunsplit

DATABASE_SCHEMES = ("postgresql://", "postgres://")
IndexLocation = str | Path


def is_database_url(location: IndexLocation) -> bool:
    """Whether `location` names a PostgreSQL index (postgresql://user@host:port/db?schema=NAME)."""
    return isinstance(location, str) and location.startswith(DATABASE_SCHEMES)


def index_location(text: str) -> IndexLocation:
    """An --index value: a URL stays a string (Path would fold its '//'), anything else is a folder."""
    return text if is_database_url(text) else Path(text)


def backend_for(location: IndexLocation) -> Any:
    """The backend class that stores an index at `location` (PostgreSQL's is imported only when asked for)."""
    if is_database_url(location):
        from rag_app.index.pg_backend import PostgresBackend

        return PostgresBackend
    from rag_app.index.local import LocalBackend

    return LocalBackend


def shown(location: IndexLocation) -> str:
    """The location as it may be printed or shown: a URL without its password."""
    parts = urlsplit(str(location))
    if not is_database_url(location) or parts.password is None:
        return str(location)
    return urlunsplit(parts._replace(netloc=parts.netloc.replace(f":{parts.password}@", ":***@")))


def display_name(location: IndexLocation) -> str:
    """A short name for an index: its folder's name, or for a URL its schema (else its database)."""
    if not is_database_url(location):
        return Path(location).name
    parts = urlsplit(str(location))
    schema = dict(parse_qsl(parts.query)).get("schema")
    return schema or parts.path.strip("/") or "postgres"
