"""A throwaway PostgreSQL cluster for the tests: initdb in a temporary directory, a server on a
free loopback port with durability off (tests need speed, not crash safety), trust auth.

PostgreSQL refuses to run as root: as root, the server runs as the `postgres` system user
(Debian's package makes it). The cluster is deleted when it stops.
"""

from __future__ import annotations

import glob
import os
import pwd
import shutil
import socket
import subprocess
import tempfile
import time
from pathlib import Path

import psycopg

from capgo_stats.store import postgres_migrations


def find_bin(name: str) -> str | None:
    """A PostgreSQL program: on PATH, else in Debian's versioned directory (newest first)."""
    found = shutil.which(name)
    if found:
        return found
    for directory in sorted(glob.glob("/usr/lib/postgresql/*/bin"), reverse=True):
        if os.access(os.path.join(directory, name), os.X_OK):
            return os.path.join(directory, name)
    return None


def free_port() -> int:
    """A TCP port nothing listens on now, on loopback."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Cluster:
    """One PostgreSQL server of our own; `url(name)` names a database in it."""

    def __init__(self, durable: bool = False) -> None:
        self.initdb, self.pg_ctl = find_bin("initdb"), find_bin("pg_ctl")
        if not (self.initdb and self.pg_ctl):
            raise FileNotFoundError("initdb and pg_ctl not found (apt-get install postgresql)")
        self.user = None
        if os.geteuid() == 0:
            self.user = pwd.getpwnam("postgres")  # KeyError: no postgres user to run it as
        self.dir = Path(tempfile.mkdtemp(prefix="capgo-stats-pg-"))
        if self.user:
            os.chown(self.dir, self.user.pw_uid, self.user.pw_gid)
        self.port = free_port()
        # Tests want speed; the benchmark wants what a server would run with (fsync on).
        self.durability = "-c synchronous_commit=off" + (
            "" if durable else " -c fsync=off -c full_page_writes=off"
        )
        self._run(
            self.initdb, "-D", str(self.dir / "data"), "-A", "trust", "-U", "postgres",
            "--no-sync", "-E", "UTF8", "--locale=C.UTF-8",
        )  # fmt: skip
        self.start_server()

    def start_server(self) -> None:
        """Start the server (again) on the cluster's port, and wait until it takes connections."""
        options = (
            f"-p {self.port} -k {self.dir} -c listen_addresses=127.0.0.1 -c max_connections=300"
            f" {self.durability}"
        )
        self._run(
            self.pg_ctl, "-D", str(self.dir / "data"), "-o", options, "-l",
            str(self.dir / "log"), "-w", "-t", "60", "start",
        )  # fmt: skip

    def stop_server(self) -> None:
        """Stop the server, cutting every connection (the cluster stays, to start again)."""
        self._run(self.pg_ctl, "-D", str(self.dir / "data"), "-m", "fast", "-w", "stop")

    def _run(self, *command: str) -> None:
        """Run a PostgreSQL program, as the postgres user when we are root."""
        if self.user:
            command = ("runuser", "-u", "postgres", "--", *command)
        subprocess.run(command, check=True, capture_output=True, timeout=120)

    def url(self, database: str = "postgres") -> str:
        """The URL of a database of this cluster."""
        return f"postgresql://postgres@127.0.0.1:{self.port}/{database}"

    def create_database(self, name: str) -> str:
        """Create an empty database; return its URL."""
        with psycopg.connect(self.url(), autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
            conn.execute(f'CREATE DATABASE "{name}"')
        return self.url(name)

    def stop(self) -> None:
        """Stop the server at once and delete the cluster."""
        try:
            self._run(self.pg_ctl, "-D", str(self.dir / "data"), "-m", "immediate", "stop")
        finally:
            shutil.rmtree(self.dir, ignore_errors=True)


def empty(url: str) -> None:
    """Delete every row of our tables and restart the event ids: a fresh database, quicker than
    making one (about 5 ms against 50)."""
    with psycopg.connect(url, autocommit=True) as conn, conn.transaction():
        for table in postgres_migrations.tables():
            conn.execute(f"DELETE FROM {table}")
        conn.execute("ALTER TABLE event ALTER COLUMN id RESTART")
        conn.execute(
            "INSERT INTO meta (key, value) VALUES ('pruned_before', 0), ('schema_version', %s)",
            (postgres_migrations.SCHEMA_VERSION,),
        )


def wait_until_ready(url: str, timeout_s: float = 30) -> None:
    """Wait until the server takes connections (after a restart)."""
    deadline = time.monotonic() + timeout_s
    while True:
        try:
            psycopg.connect(url, connect_timeout=2).close()
            return
        except psycopg.OperationalError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.1)
