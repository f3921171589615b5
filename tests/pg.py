"""A throwaway PostgreSQL server for the OMOP tests: the Debian binaries, a temporary cluster, a free port.

    server = PgServer.start()          # initdb + pg_ctl start (as the postgres user when run as root)
    server.load_duckdb(path, "cdm", tables)
    server.url("leader")               # postgresql://postgres@127.0.0.1:PORT/leader
    server.stop()                      # pg_ctl stop + the cluster folder removed

The binaries are looked up under /usr/lib/postgresql/*/bin (15 first) and on PATH; when absent and
this process is root with apt-get, `postgresql` is installed (what .ci/run does too). A server that
cannot be found or started raises RuntimeError: the tests that need it fail, they never skip.
"""

from __future__ import annotations

import os
import pwd
import shutil
import socket
import subprocess
import tempfile
from pathlib import Path

_APT = "apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq postgresql"
# the indexes the OHDSI CDM DDL creates on the columns the import joins on
_INDEXED = ("person_id", "visit_occurrence_id", "concept_id", "descendant_concept_id", "concept_id_1")
_TYPES = {"BIGINT": "bigint", "INTEGER": "integer", "VARCHAR": "text", "DATE": "date", "DOUBLE": "double precision"}


def find_bindir() -> Path | None:
    """The folder holding initdb and pg_ctl (PostgreSQL 15 preferred), or None."""
    candidates = sorted(Path("/usr/lib/postgresql").glob("*/bin"), key=lambda p: (p.parent.name != "15", p))
    on_path = shutil.which("initdb")
    if on_path:
        candidates.append(Path(on_path).parent)
    return next((c for c in candidates if (c / "initdb").is_file() and (c / "pg_ctl").is_file()), None)


def ensure_bindir() -> Path:
    """find_bindir(), installing the Debian package first when it is missing and we may."""
    found = find_bindir()
    if found is None and os.geteuid() == 0 and shutil.which("apt-get"):
        subprocess.run(["bash", "-c", _APT], check=False, capture_output=True, timeout=900)
        found = find_bindir()
    if found is None:
        raise RuntimeError(f"PostgreSQL binaries not found and not installable here; run: {_APT}")
    return found


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class PgServer:
    """One local cluster in a temporary folder, listening on 127.0.0.1 and a socket in that folder."""

    def __init__(self, bindir: Path, root: Path, port: int, as_user: list[str]) -> None:
        self.bindir, self.root, self.port, self._as_user = bindir, root, port, as_user
        self.data = root / "data"
        self.running = False

    @classmethod
    def start(cls) -> PgServer:
        bindir = ensure_bindir()
        root = Path(tempfile.mkdtemp(prefix="leader-pg-"))
        as_user: list[str] = []
        if os.geteuid() == 0:  # initdb refuses root: the cluster belongs to the postgres user
            account = pwd.getpwnam("postgres")
            os.chown(root, account.pw_uid, account.pw_gid)
            as_user = ["runuser", "-u", "postgres", "--"]
        server = cls(bindir, root, free_port(), as_user)
        try:
            server._run("initdb", "-D", str(server.data), "-U", "postgres", "--auth=trust", "-E", "UTF8", "--locale=C")
            options = f"-p {server.port} -k {root} -c listen_addresses=127.0.0.1 -c fsync=off"
            server._run("pg_ctl", "-D", str(server.data), "-l", str(root / "server.log"), "-o", options, "-w", "start")
            server.running = True
        except BaseException:
            server.stop()
            raise
        return server

    def _run(self, tool: str, *args: str) -> None:
        done = subprocess.run(
            [*self._as_user, str(self.bindir / tool), *args], capture_output=True, text=True, timeout=120
        )
        if done.returncode != 0:
            log = (self.root / "server.log").read_text() if (self.root / "server.log").is_file() else ""
            raise RuntimeError(f"{tool} failed ({done.returncode}): {done.stderr.strip()[-800:]} {log[-800:]}")

    def url(self, database: str = "postgres") -> str:
        return f"postgresql://postgres@127.0.0.1:{self.port}/{database}"

    def connect(self, database: str = "postgres"):
        import psycopg

        return psycopg.connect(self.url(database), autocommit=True)

    def create_database(self, name: str) -> None:
        with self.connect() as conn:
            conn.execute(f"CREATE DATABASE {name}")

    def load_duckdb(self, source: Path, database: str, schema: str, tables: tuple[str, ...]) -> dict[str, int]:
        """Copy `tables` (every column, lower-case names, CDM indexes) from a DuckDB file into database.schema."""
        import duckdb

        counts = {}
        duck = duckdb.connect(str(source), read_only=True)
        try:
            with self.connect(database) as conn, conn.cursor() as cur:
                cur.execute(f"CREATE SCHEMA {schema}")
                for table in tables:
                    columns = [(name.lower(), kind) for name, kind, *_ in duck.execute(f"DESCRIBE {table}").fetchall()]
                    ddl = ", ".join(f"{name} {_TYPES[kind]}" for name, kind in columns)
                    cur.execute(f"CREATE TABLE {schema}.{table} ({ddl})")
                    names = ", ".join(name for name, _ in columns)
                    rows = duck.execute(f"SELECT {names} FROM {table}").fetchall()
                    with cur.copy(f"COPY {schema}.{table} ({names}) FROM STDIN") as copy:
                        for row in rows:
                            copy.write_row(row)
                    counts[table] = len(rows)
                    for name in (n for n, _ in columns if n in _INDEXED):
                        cur.execute(f"CREATE INDEX ON {schema}.{table} ({name})")
                cur.execute("ANALYZE")
        finally:
            duck.close()
        return counts

    def stop(self) -> None:
        """Stop the server (fast shutdown) and remove the cluster folder; safe to call twice."""
        if self.running:
            try:
                self._run("pg_ctl", "-D", str(self.data), "-m", "fast", "-w", "stop")
            finally:
                self.running = False
        shutil.rmtree(self.root, ignore_errors=True)
