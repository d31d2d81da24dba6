#!/usr/bin/env python
"""Serve MosMed Explorer as N replicas behind nginx on this machine: ``make serve-replicas N=2 PORT=8600``.

Starts N ``streamlit run app.py`` processes, each on its own port on 127.0.0.1, then Debian's nginx
(``/usr/sbin/nginx``, run as the current user) listening on ``127.0.0.1:PORT`` with a configuration generated
from ``deploy/nginx.conf.in`` into a temporary folder (pid, logs and temporary files there too). Ctrl-C stops
them all. A class's teacher and students may then land on different replicas: everything a class shares is
in the database (``MOSMED_DB``; the default SQLite file works for replicas on one machine).

Every replica gets the same environment: ``MOSMED_DATA`` / ``MOSMED_CACHE`` / ``MOSMED_DB`` as given,
``MOSMED_DATA_ROOTS`` (set, empty unless given: served through a proxy, browsers may open only the configured
dataset and the demo) and one ``server.cookieSecret`` (random per run unless ``STREAMLIT_SERVER_COOKIE_SECRET``
is set), so a cookie signed by one replica is valid on the others.

The tests and the benchmark use :class:`ReplicaSet` directly (tests/e2e/test_classroom.py, bench/sect_classroom.py).
"""

from __future__ import annotations

import argparse
import os
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
DEPLOY = REPO / "deploy"
TEMPLATE = DEPLOY / "nginx.conf.in"
NGINX = Path(os.environ.get("MOSMED_NGINX", "/usr/sbin/nginx"))
#: The header the test configuration adds to every response: which replica answered (never in deploy/).
UPSTREAM_HEADER = "X-Mosmed-Upstream"

__all__ = [
    "NGINX",
    "UPSTREAM_HEADER",
    "COOKIE",
    "ReplicaSet",
    "render_config",
    "render_routing",
    "free_port",
    "nginx_unavailable_reason",
    "main",
]
#: The sticky cookie nginx sets (its value names a replica: "r0", "r1" ...).
COOKIE = "mosmed_replica"


def free_port(host: str = "127.0.0.1") -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind((host, 0))
        return int(s.getsockname()[1])


def nginx_unavailable_reason() -> str | None:
    """Why nginx cannot run here, or ``None``."""
    if not NGINX.is_file() or not os.access(NGINX, os.X_OK):
        return f"nginx not found at {NGINX} (apt-get install nginx-light; .ci/run does it)"
    return None


def render_routing(ports: list[int], host: str = "127.0.0.1", indent: str = "    ") -> str:
    """The routing of ``deploy/mosmed-proxy.conf`` for replicas on ``host:ports``: the cookie -> replica map,
    the answering replica -> cookie map, and one upstream per replica with the others as its backups."""
    names = [f"r{i}" for i in range(len(ports))]
    addr = [f"{host}:{int(p)}" for p in ports]
    esc = [a.replace(".", r"\.") for a in addr]
    lines = [
        "# Which replica the browser's cookie names; no cookie (or an unknown one): any replica.",
        "map $cookie_mosmed_replica $mosmed_route {",
        "    default mosmed_any;",
    ]
    lines += [f"    {n} mosmed_{n};" for n in names]
    lines += [
        "}",
        "# The replica that answered (the last one tried), named for the cookie.",
        "map $upstream_addr $mosmed_served {",
        '    default "";',
    ]
    lines += [f'    "~{e}$" {n};' for e, n in zip(esc, names)]
    lines += ["}", "upstream mosmed_any {"]
    lines += [f"    server {a} max_fails=1 fail_timeout=5s;" for a in addr]
    lines += ["}"]
    for i, n in enumerate(names):
        lines += [f"upstream mosmed_{n} {{", f"    server {addr[i]} max_fails=1 fail_timeout=5s;"]
        # The others, starting with the next one, so a dead replica's browsers spread over the rest.
        lines += [f"    server {addr[(i + k) % len(addr)]} backup;" for k in range(1, len(addr))]
        lines += ["}"]
    return "\n".join(indent + ln if ln else ln for ln in lines)


def render_config(
    ports: list[int],
    listen_port: int,
    prefix: Path,
    *,
    listen_host: str = "127.0.0.1",
    debug_headers: bool = False,
    as_root: bool | None = None,
) -> str:
    """The nginx configuration for replicas on ``ports`` (127.0.0.1), from ``deploy/nginx.conf.in``.

    ``debug_headers`` adds :data:`UPSTREAM_HEADER` (the replicas tried, the one that answered last) to every
    response, for tests.
    """
    as_root = (os.geteuid() == 0) if as_root is None else as_root
    debug = f"            add_header {UPSTREAM_HEADER} $upstream_addr always;" if debug_headers else ""
    text = TEMPLATE.read_text(encoding="utf-8")
    for k, v in {
        "@@PREFIX@@": str(prefix),
        "@@DEPLOY@@": str(DEPLOY),
        "@@ROUTING@@": render_routing(ports),
        "@@LISTEN@@": f"{listen_host}:{int(listen_port)}",
        "@@DEBUG@@": debug,
        # As root the master would hand the workers to "nobody"; run them as the current user instead.
        "@@USER@@": "user root;" if as_root else "",
    }.items():
        text = text.replace(k, v)
    return text


def _healthy(url: str, timeout: float = 2.0) -> bool:
    try:
        with urllib.request.urlopen(f"{url}/_stcore/health", timeout=timeout) as r:
            return r.status == 200 and r.read().strip() == b"ok"
    except (urllib.error.URLError, OSError):
        return False


def _spawn(cmd: list[str], log: Path, **popen) -> subprocess.Popen:
    """Start ``cmd`` in a session of its own, its output appended to ``log`` (the child keeps its own
    descriptor; ours is closed at once)."""
    with log.open("ab") as fh:
        return subprocess.Popen(
            cmd, stdout=fh, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, start_new_session=True, **popen
        )


@dataclass
class ReplicaSet:
    """N Streamlit replicas and one nginx, all children of this process.

    Parameters
    ----------
    n : int
        Number of replicas.
    port : int
        The port nginx listens on (0: a free one).
    env : dict
        Extra environment for the replicas (``MOSMED_DATA``, ``MOSMED_CACHE``, ``MOSMED_DB`` ...).
    workdir : Path, optional
        Where nginx's configuration, pid, logs and temporary files and the replicas' logs go (default: a new
        temporary folder, deleted by :meth:`stop`).
    debug_headers : bool
        Add :data:`UPSTREAM_HEADER` to responses (tests).
    extra_args : tuple
        More ``streamlit run`` options for every replica.
    """

    n: int = 2
    port: int = 0
    env: dict = field(default_factory=dict)
    workdir: Path | None = None
    debug_headers: bool = False
    extra_args: tuple[str, ...] = ()
    listen_host: str = "127.0.0.1"
    ports: list[int] = field(default_factory=list)
    procs: list = field(default_factory=list)
    nginx: subprocess.Popen | None = None
    _own_dir: bool = False

    @property
    def url(self) -> str:
        return f"http://{self.listen_host}:{self.port}"

    def replica_url(self, i: int) -> str:
        return f"http://127.0.0.1:{self.ports[i]}"

    def log(self, i: int | str) -> Path:
        assert self.workdir is not None
        return self.workdir / (f"replica-{i}.log" if isinstance(i, int) else f"{i}.log")

    def _replica_env(self) -> dict:
        env = {k: v for k, v in os.environ.items()}
        env.update(self.env)
        env.setdefault("MOSMED_DATA_ROOTS", "")
        env.setdefault("STREAMLIT_SERVER_COOKIE_SECRET", secrets.token_hex(32))
        env.setdefault("PYTHONUNBUFFERED", "1")
        return env

    def _start_replica(self, i: int, env: dict) -> subprocess.Popen:
        cmd = [
            sys.executable,
            "-m",
            "streamlit",
            "run",
            str(REPO / "app.py"),
            "--server.headless",
            "true",
            "--server.port",
            str(self.ports[i]),
            "--server.address",
            "127.0.0.1",
            "--server.fileWatcherType",
            "none",
            "--browser.gatherUsageStats",
            "false",
            *self.extra_args,
        ]
        return _spawn(cmd, self.log(i), cwd=REPO, env=env)

    def start(self, timeout_s: float = 180.0) -> ReplicaSet:
        """Start the replicas, wait for their health checks, then start nginx and wait for it."""
        reason = nginx_unavailable_reason()
        if reason:
            raise RuntimeError(reason)
        if self.workdir is None:
            self.workdir = Path(tempfile.mkdtemp(prefix="mosmed-replicas-"))
            self._own_dir = True
        self.workdir.mkdir(parents=True, exist_ok=True)
        self.port = self.port or free_port(self.listen_host)
        self.ports = [free_port() for _ in range(self.n)]
        env = self._replica_env()
        self._env = env
        self.procs = [self._start_replica(i, env) for i in range(self.n)]
        deadline = time.monotonic() + timeout_s
        for i in range(self.n):
            self._wait(self.replica_url(i), deadline, lambda i=i: self.procs[i], f"replica {i}")
        conf = self.workdir / "nginx.conf"
        conf.write_text(
            render_config(
                self.ports, self.port, self.workdir, listen_host=self.listen_host, debug_headers=self.debug_headers
            ),
            encoding="utf-8",
        )
        self.nginx = _spawn(
            [str(NGINX), "-p", str(self.workdir), "-c", str(conf), "-e", str(self.workdir / "error.log")],
            self.log("nginx-stdout"),
        )
        self._wait(self.url, deadline, lambda: self.nginx, "nginx")
        return self

    def _wait(self, url: str, deadline: float, proc, what: str) -> None:
        while time.monotonic() < deadline:
            p = proc()
            if p is not None and p.poll() is not None:
                self.stop()
                raise RuntimeError(f"{what} exited with code {p.returncode} before it was ready\n{self.tail(what)}")
            if _healthy(url):
                return
            time.sleep(0.25)
        self.stop()
        raise RuntimeError(f"{what} did not answer {url}/_stcore/health in time\n{self.tail(what)}")

    def tail(self, what: str = "", n: int = 4000) -> str:
        out = []
        if self.workdir is None:
            return ""
        for p in sorted(self.workdir.glob("*.log")):
            try:
                out.append(f"--- {p.name} ---\n{p.read_text(errors='replace')[-n:]}")
            except OSError:
                pass
        return "\n".join(out)

    def alive(self, i: int) -> bool:
        return self.procs[i].poll() is None

    def kill(self, i: int, sig: int = signal.SIGKILL) -> None:
        """Send ``sig`` (default SIGKILL) to replica ``i``'s process group (the fault tests)."""
        p = self.procs[i]
        if p.poll() is None:
            try:
                os.killpg(p.pid, sig)
            except ProcessLookupError:
                pass
            p.wait(timeout=30)

    def restart(self, i: int, timeout_s: float = 120.0) -> None:
        """Start replica ``i`` again on its port (after :meth:`kill`)."""
        self.kill(i)
        self.procs[i] = self._start_replica(i, self._env)
        self._wait(self.replica_url(i), time.monotonic() + timeout_s, lambda: self.procs[i], f"replica {i}")

    def pids(self) -> list[int]:
        return [p.pid for p in self.procs]

    def stop(self) -> None:
        """Stop nginx and every replica (TERM, then KILL after 15 s), and delete a temporary workdir."""
        for p in ([self.nginx] if self.nginx is not None else []) + list(self.procs):
            if p.poll() is None:
                try:
                    os.killpg(p.pid, signal.SIGTERM)
                except ProcessLookupError:
                    continue
        for p in ([self.nginx] if self.nginx is not None else []) + list(self.procs):
            try:
                p.wait(timeout=15)
            except subprocess.TimeoutExpired:
                try:
                    os.killpg(p.pid, signal.SIGKILL)
                except ProcessLookupError:
                    pass
                p.wait(timeout=15)
        if self._own_dir and self.workdir is not None and not os.environ.get("MOSMED_KEEP_REPLICA_LOGS"):
            shutil.rmtree(self.workdir, ignore_errors=True)

    def __enter__(self) -> ReplicaSet:
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()


def _prepare_demo() -> None:
    """With no MOSMED_DATA, generate the demo and build its cache once, before N replicas start at once."""
    if os.environ.get("MOSMED_DATA", "").strip():
        return
    sys.path.insert(0, str(REPO))
    from mosmed.dataset import Dataset
    from mosmed.demo import ensure_demo

    def progress(done: int, total: int, label: str) -> None:
        print(f"\r  {done}/{total} {label[:60]:60s}", end="", flush=True)

    print("serve-replicas: preparing the demo dataset (once) ...", flush=True)
    root = ensure_demo(progress=progress)
    ds = Dataset(root)
    if not ds.status().complete:
        ds.build_cache(workers=2, progress=progress)
    print("", flush=True)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("-n", "--replicas", type=int, default=int(os.environ.get("N", 2)), help="number of replicas")
    ap.add_argument("--port", type=int, default=int(os.environ.get("PORT", 8600)), help="nginx's port")
    ap.add_argument(
        "--host",
        default="127.0.0.1",
        help="nginx's address (default 127.0.0.1: this machine only; see deploy/README.md first)",
    )
    ap.add_argument(
        "--print-routing",
        metavar="FIRST_PORT",
        type=int,
        default=None,
        help="print the routing block (maps and upstreams) for --replicas replicas on 127.0.0.1 from "
        "FIRST_PORT up, for a real site (deploy/nginx-site.conf), and exit",
    )
    args = ap.parse_args(argv)
    if args.print_routing is not None:
        print(render_routing([args.print_routing + i for i in range(max(1, args.replicas))], indent=""))
        return 0
    if not 1 <= args.replicas <= 16:
        print("serve-replicas: N must be between 1 and 16", file=sys.stderr)
        return 2
    reason = nginx_unavailable_reason()
    if reason:
        print(f"serve-replicas: {reason}", file=sys.stderr)
        return 2
    try:
        _prepare_demo()
    except Exception as e:  # noqa: BLE001 - the replicas would show the same problem; say it once here
        print(f"serve-replicas: the demo could not be prepared: {e}", file=sys.stderr)
        return 1
    rs = ReplicaSet(n=args.replicas, port=args.port, listen_host=args.host)
    stopping = {"now": False}

    def on_signal(signum, _frame) -> None:
        stopping["now"] = True

    signal.signal(signal.SIGINT, on_signal)
    signal.signal(signal.SIGTERM, on_signal)
    try:
        rs.start()
    except RuntimeError as e:
        print(f"serve-replicas: {e}", file=sys.stderr)
        return 1
    print(
        f"serve-replicas: {args.replicas} replicas on 127.0.0.1:{', '.join(map(str, rs.ports))} behind nginx\n"
        f"  open {rs.url}/  (the teaching page: {rs.url}/teaching)\n"
        f"  logs and nginx's files: {rs.workdir}\n"
        "  Ctrl-C stops them all.",
        flush=True,
    )
    warned: set[int] = set()
    try:
        while not stopping["now"]:
            time.sleep(0.5)
            for i in range(rs.n):
                if not rs.alive(i) and i not in warned:
                    warned.add(i)
                    print(
                        f"serve-replicas: replica {i} (port {rs.ports[i]}) exited; nginx sends its browsers "
                        "to the others",
                        file=sys.stderr,
                        flush=True,
                    )
            if rs.nginx is not None and rs.nginx.poll() is not None:
                print("serve-replicas: nginx exited; stopping", file=sys.stderr)
                break
    finally:
        print("serve-replicas: stopping ...", flush=True)
        rs.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
