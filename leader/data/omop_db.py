"""A read-only database connection for `leader data omop`: DuckDB files directly, the rest through SQLAlchemy.

Every failure a user can cause (no such file, a file that is not DuckDB, a bad URL, a missing
driver, a server that does not answer, wrong credentials, a schema without the CDM tables, a
query the database refuses) becomes one LeaderError line; the URL's password never appears in it.
"""

from __future__ import annotations

from pathlib import Path

from leader.data.omop_sql import tables_in_schema
from leader.errors import LeaderError

_DUCKDB = "duckdb:///"
_HINT = "give a DuckDB file or a SQLAlchemy URL such as postgresql://user@host:5432/database"


def _first_line(err: Exception) -> str:
    text = str(getattr(err, "orig", None) or err).strip()
    return (text.splitlines() or [type(err).__name__])[0][:300]


class Database:
    """`rows(sql)` on a DuckDB file (read-only) or on a SQLAlchemy engine (inside a rolled-back transaction)."""

    def __init__(self, url: str) -> None:
        self.url = str(url)
        self.shown = self.redact(self.url)
        path = self.local_path(self.url)
        self._duck = self._conn = None
        if path is not None:
            self.engine = "duckdb"
            self._open_duckdb(path)
        else:
            self._open_sqlalchemy()

    @staticmethod
    def local_path(url: str) -> Path | None:
        """The DuckDB file a --db value names, or None for a server URL."""
        url = str(url)
        if url.startswith(_DUCKDB):
            return Path(url[len(_DUCKDB) :])
        return None if "://" in url else Path(url)

    @staticmethod
    def redact(url: str) -> str:
        """The URL as it may be logged and stored: password replaced by ***."""
        if Database.local_path(url) is not None:
            return str(url)
        try:
            from sqlalchemy.engine import make_url

            return make_url(url).render_as_string(hide_password=True)
        except Exception:  # an unparsable URL is refused later; never echo what might hold a password
            return url.split("://", 1)[0] + "://..."

    def _open_duckdb(self, path: Path) -> None:
        import duckdb

        if not path.is_file():
            raise LeaderError(f"--db {path}: no such DuckDB file; {_HINT}")
        try:
            self._duck = duckdb.connect(str(path), read_only=True)
        except duckdb.Error as err:
            raise LeaderError(f"--db {path} is not a readable DuckDB database ({_first_line(err)}); {_HINT}") from None

    def _open_sqlalchemy(self) -> None:
        try:
            import sqlalchemy
        except ImportError:
            raise LeaderError(
                "--db is a server URL but SQLAlchemy is not installed: pip install 'leader[omop]'"
            ) from None
        try:
            url = sqlalchemy.engine.make_url(self.url)
            args = {"connect_timeout": 10} if url.get_backend_name() == "postgresql" else {}
            engine = sqlalchemy.create_engine(url, connect_args=args, poolclass=sqlalchemy.pool.NullPool)
        except sqlalchemy.exc.NoSuchModuleError:
            raise LeaderError(f"--db {self.shown}: no SQLAlchemy dialect for this URL; install its driver") from None
        except (sqlalchemy.exc.ArgumentError, ValueError) as err:
            raise LeaderError(f"--db {self.shown} is not a database URL ({_first_line(err)}); {_HINT}") from None
        except ImportError as err:
            raise LeaderError(f"--db {self.shown}: the database driver is missing ({err.name}); install it") from None
        self.engine = url.get_backend_name()
        try:
            self._conn = engine.connect()
            self._tx = self._conn.begin()
        except sqlalchemy.exc.SQLAlchemyError as err:
            raise LeaderError(
                f"--db {self.shown}: cannot connect ({_first_line(err)}); check the URL and server"
            ) from None

    def rows(self, query: str) -> list[tuple]:
        """All rows of a query, as tuples."""
        if self._duck is not None:
            import duckdb

            errors, run = duckdb.Error, lambda: self._duck.execute(query).fetchall()
        else:
            import sqlalchemy

            errors, run = sqlalchemy.exc.SQLAlchemyError, lambda: self._conn.execute(sqlalchemy.text(query)).fetchall()
        try:
            return [tuple(row) for row in run()]
        except errors as err:
            raise LeaderError(
                f"--db {self.shown}: the database refused a query ({_first_line(err)}); "
                "check that --schema names an OMOP CDM v5.3/v5.4 schema"
            ) from None

    def cdm_schema(self, schema: str | None, tables: tuple[str, ...]) -> str:
        """The schema to read (given, else the current one), checked to hold every table in `tables`."""
        found: dict[str, set[str]] = {}
        for owner, table in self.rows(tables_in_schema()):
            found.setdefault(str(owner).lower(), set()).add(str(table).lower())
        if schema is None:
            schema = str(self.rows("SELECT current_schema()")[0][0])
        missing = [t for t in tables if t not in found.get(schema.lower(), set())]
        if missing:
            others = sorted(s for s, names in found.items() if set(tables) <= names)
            where = (
                f"the CDM tables are in schema {', '.join(others)}: pass --schema"
                if others
                else "point --db at an OMOP CDM"
            )
            raise LeaderError(
                f"--db {self.shown}: schema '{schema}' lacks the OMOP CDM table(s) {', '.join(missing)}; {where}"
            )
        return schema

    def close(self) -> None:
        if self._duck is not None:
            self._duck.close()
        if self._conn is not None:
            self._tx.rollback()
            self._conn.close()

    def __enter__(self) -> Database:
        return self

    def __exit__(self, *exc) -> None:
        self.close()
