"""A throwaway PostgreSQL cluster for the tests, from Debian's ``postgresql`` package (``.ci/run`` installs it).

``initdb`` into a fresh temporary folder, ``pg_ctl start`` on a free port with its unix socket in that folder,
stopped and deleted at the end of the session. PostgreSQL refuses to run as root (and CI runs as root), so as
root the cluster runs as the system user ``mosmedtest`` (created here when missing, no home, no login shell);
as any other user it runs as that user.

Use the fixtures (import them into a test module: ``from pg import pg_cluster, pg_url``)::

    def test_something(pg_url):           # a new, empty database per test on the session's cluster
        db = open_database(pg_url) ...

Outside CI a machine without the PostgreSQL binaries skips these tests with the reason; under CI (``CI`` set)
they fail instead, and a cluster that does not start fails everywhere.
"""

from __future__ import annotations

import glob
import os
import pwd
import shutil
import socket
import subprocess
import tempfile
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

__all__ = ["PG_USER", "find_pg_bin", "PgCluster", "start_cluster", "pg_cluster", "pg_url", "in_ci"]

#: The OS user a cluster runs as when the tests run as root.
PG_USER = "mosmedtest"
#: The database superuser of the throwaway cluster (trust authentication, 127.0.0.1 and the socket only).
DB_USER = "mosmed"


def in_ci() -> bool:
    return os.environ.get("CI", "").strip().lower() not in ("", "0", "false", "no")


def find_pg_bin() -> Path | None:
    """The folder with ``initdb`` and ``pg_ctl``: ``MOSMED_PG_BIN``, Debian's newest version, else ``PATH``."""
    env = os.environ.get("MOSMED_PG_BIN")
    if env and (Path(env) / "initdb").is_file():
        return Path(env)
    versions = sorted(
        glob.glob("/usr/lib/postgresql/*/bin/initdb"),
        key=lambda p: int(Path(p).parent.parent.name) if Path(p).parent.parent.name.isdigit() else 0,
    )
    if versions:
        return Path(versions[-1]).parent
    which = shutil.which("initdb")
    return Path(which).parent if which else None


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _ensure_user() -> pwd.struct_passwd:
    try:
        return pwd.getpwnam(PG_USER)
    except KeyError:
        pass
    useradd = shutil.which("useradd") or "/usr/sbin/useradd"
    subprocess.run(
        [
            useradd,
            "--system",
            "--no-create-home",
            "--home-dir",
            "/nonexistent",
            "--shell",
            "/usr/sbin/nologin",
            "--user-group",
            PG_USER,
        ],
        check=True,
        capture_output=True,
        text=True,
    )
    return pwd.getpwnam(PG_USER)


@dataclass
class PgCluster:
    """A running throwaway cluster."""

    bin_dir: Path
    base: Path
    port: int
    run_as: pwd.struct_passwd | None

    @property
    def data(self) -> Path:
        return self.base / "data"

    @property
    def log(self) -> Path:
        return self.base / "server.log"

    def url(self, dbname: str = "postgres") -> str:
        return f"postgresql+psycopg://{DB_USER}@127.0.0.1:{self.port}/{dbname}"

    def _run(self, *cmd: str, check: bool = True, timeout: float = 120) -> subprocess.CompletedProcess:
        kw = {}
        if self.run_as is not None:
            kw = {"user": self.run_as.pw_uid, "group": self.run_as.pw_gid, "extra_groups": []}
        env = {"PATH": f"{self.bin_dir}:/usr/bin:/bin", "LC_ALL": "C.UTF-8", "LANG": "C.UTF-8", "HOME": str(self.base)}
        return subprocess.run(
            [str(self.bin_dir / cmd[0]), *cmd[1:]],
            cwd=self.base,
            env=env,
            check=check,
            capture_output=True,
            text=True,
            timeout=timeout,
            **kw,
        )

    def log_tail(self, n: int = 3000) -> str:
        try:
            return self.log.read_text(errors="replace")[-n:]
        except OSError:
            return ""

    def create_database(self, name: str | None = None) -> str:
        """A new empty database; returns its SQLAlchemy URL."""
        import psycopg

        name = name or f"t_{uuid.uuid4().hex[:12]}"
        with psycopg.connect(
            host="127.0.0.1", port=self.port, user=DB_USER, dbname="postgres", autocommit=True, connect_timeout=10
        ) as conn:
            conn.execute(f'CREATE DATABASE "{name}"')
        return self.url(name)

    def drop_database(self, url: str) -> None:
        import psycopg

        name = url.rsplit("/", 1)[-1]
        with psycopg.connect(
            host="127.0.0.1", port=self.port, user=DB_USER, dbname="postgres", autocommit=True, connect_timeout=10
        ) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')

    def stop(self) -> None:
        if self.data.exists():
            self._run("pg_ctl", "-D", str(self.data), "-m", "fast", "-w", "stop", check=False, timeout=60)
        shutil.rmtree(self.base, ignore_errors=True)


def start_cluster() -> PgCluster:
    """initdb + pg_ctl start; raises RuntimeError with the server log when it does not come up."""
    bin_dir = find_pg_bin()
    if bin_dir is None:
        raise FileNotFoundError("PostgreSQL binaries (initdb, pg_ctl) not found: apt-get install postgresql")
    run_as = _ensure_user() if os.geteuid() == 0 else None
    # /tmp, not pytest's tmp_path: its parents are 0700 and owned by root, where the cluster's user cannot go.
    base = Path(tempfile.mkdtemp(prefix="mosmed-pg-"))
    if run_as is not None:
        os.chown(base, run_as.pw_uid, run_as.pw_gid)
    os.chmod(base, 0o700)
    cluster = PgCluster(bin_dir=bin_dir, base=base, port=_free_port(), run_as=run_as)
    try:
        cluster._run(
            "initdb", "-D", str(cluster.data), "-U", DB_USER, "--auth=trust", "-E", "UTF8", "--no-locale", "--no-sync"
        )
        opts = (
            f"-p {cluster.port} -k {base} -c listen_addresses=127.0.0.1 -c fsync=off "
            "-c full_page_writes=off -c max_connections=100 -c shared_buffers=32MB"
        )
        cluster._run(
            "pg_ctl", "-D", str(cluster.data), "-l", str(cluster.log), "-o", opts, "-w", "-t", "60", "start", timeout=90
        )
    except (subprocess.CalledProcessError, subprocess.TimeoutExpired, OSError) as e:
        out = getattr(e, "stderr", "") or ""
        tail = cluster.log_tail()
        cluster.stop()
        raise RuntimeError(f"PostgreSQL did not start ({e}): {out.strip()[-1500:]}\n{tail}") from None
    return cluster


@pytest.fixture(scope="session")
def pg_cluster() -> Iterator[PgCluster]:
    """The session's throwaway PostgreSQL cluster (see the module docstring for skip / fail rules)."""
    if find_pg_bin() is None:
        msg = "PostgreSQL binaries not found (apt-get install postgresql; .ci/run installs it)"
        if in_ci():
            pytest.fail(msg)
        pytest.skip(msg)
    try:
        cluster = start_cluster()
    except Exception as e:  # noqa: BLE001 - any failure to start is a failure, in CI and out of it
        pytest.fail(f"the throwaway PostgreSQL cluster did not start: {e}", pytrace=False)
    try:
        yield cluster
    finally:
        cluster.stop()


@pytest.fixture
def pg_url(pg_cluster: PgCluster) -> Iterator[str]:
    """A new, empty database on the session's cluster (dropped after the test)."""
    url = pg_cluster.create_database()
    try:
        yield url
    finally:
        try:
            pg_cluster.drop_database(url)
        except Exception:  # noqa: BLE001 - the cluster is deleted at the session's end anyway
            pass


@pytest.fixture(params=["sqlite", "postgresql"])
def db_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """The same test on both backends: a SQLite file in the test's folder, then a fresh PostgreSQL database."""
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'test.db'}"
    return request.getfixturevalue("pg_url")
