"""deploy/ and ``make serve-replicas``: the generated nginx configuration and the site example pass ``nginx -t``
and say what the classroom needs (sticky sessions, the WebSocket upgrade, long read timeouts, the client
address for the attempt limits); the Makefile target and .ci/run's package are there."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "scripts"))

import serve_replicas  # noqa: E402


def _need_nginx() -> None:
    reason = serve_replicas.nginx_unavailable_reason()
    if reason:
        if os.environ.get("CI"):
            pytest.fail(reason)
        pytest.skip(reason)


def _nginx_t(conf: Path, prefix: Path) -> subprocess.CompletedProcess:
    return subprocess.run(
        [str(serve_replicas.NGINX), "-t", "-p", str(prefix), "-c", str(conf), "-e", str(prefix / "error.log")],
        capture_output=True,
        text=True,
        timeout=60,
    )


def test_the_generated_configuration_is_valid_and_complete(tmp_path: Path) -> None:
    _need_nginx()
    text = serve_replicas.render_config([8601, 8602, 8603], 8600, tmp_path, debug_headers=True)
    conf = tmp_path / "nginx.conf"
    conf.write_text(text)
    res = _nginx_t(conf, tmp_path)
    assert res.returncode == 0, res.stderr
    assert "@@" not in text and "listen 127.0.0.1:8600;" in text
    # One upstream per replica, the others its backups; the cookie names replicas, never addresses.
    for i, port in enumerate((8601, 8602, 8603)):
        block = re.search(rf"upstream mosmed_r{i} \{{([^}}]*)\}}", text).group(1)
        assert f"server 127.0.0.1:{port} max_fails=1" in block and block.count(" backup;") == 2
        assert re.search(rf"\br{i} mosmed_r{i};", text)
    assert re.search(r"location /_stcore/stream \{[^}]*proxy_read_timeout 1d;", text)
    assert f"pid {tmp_path}/nginx.pid;" in text and "daemon off;" in text
    assert serve_replicas.UPSTREAM_HEADER in text
    assert serve_replicas.UPSTREAM_HEADER not in serve_replicas.render_config([1], 2, tmp_path)
    http = (REPO / "deploy" / "mosmed-http.conf").read_text()
    proxy = (REPO / "deploy" / "mosmed-proxy.conf").read_text()
    assert "map $http_upgrade $connection_upgrade" in http
    for line in (
        "proxy_set_header Upgrade $http_upgrade;",
        "proxy_set_header Connection $connection_upgrade;",
        "proxy_set_header Host $http_host;",
        "proxy_set_header X-Real-IP $remote_addr;",
        "proxy_http_version 1.1;",
        "proxy_next_upstream error timeout",
        "proxy_pass http://$mosmed_route;",
        'add_header Set-Cookie "mosmed_replica=$mosmed_served;',
    ):
        assert line in proxy, line


def test_the_site_example_is_valid_with_tls_and_a_login(tmp_path: Path) -> None:
    _need_nginx()
    if shutil.which("openssl") is None:
        pytest.skip("openssl not found (a self-signed certificate is made for nginx -t)")
    key, crt = tmp_path / "key.pem", tmp_path / "crt.pem"
    subprocess.run(
        [
            "openssl",
            "req",
            "-x509",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-keyout",
            str(key),
            "-out",
            str(crt),
            "-days",
            "1",
            "-subj",
            "/CN=mosmed.example.org",
        ],
        check=True,
        capture_output=True,
        timeout=60,
    )
    site = (REPO / "deploy" / "nginx-site.conf").read_text()
    assert "ssl_certificate " in site and "auth_basic " in site and "return 301 https://" in site
    assert serve_replicas.render_routing([8601, 8602], indent="") in site  # the routing the script prints
    site = (
        site.replace("/etc/nginx/mosmed/mosmed-", f"{REPO / 'deploy'}/mosmed-")
        .replace("/etc/letsencrypt/live/mosmed.example.org/fullchain.pem", str(crt))
        .replace("/etc/letsencrypt/live/mosmed.example.org/privkey.pem", str(key))
        .replace("listen 80;", "listen 127.0.0.1:18080;")
        .replace("listen [::]:80;", "")
        .replace("listen 443 ssl http2;", "listen 127.0.0.1:18443 ssl http2;")
        .replace("listen [::]:443 ssl http2;", "")
    )
    conf = tmp_path / "nginx.conf"
    user = "user root;\n" if os.geteuid() == 0 else ""
    conf.write_text(f"{user}pid {tmp_path}/nginx.pid;\nevents {{}}\nhttp {{\n{site}\n}}\n")
    res = _nginx_t(conf, tmp_path)
    assert res.returncode == 0, res.stderr


def test_make_and_ci_know_the_replicas() -> None:
    make = (REPO / "Makefile").read_text()
    target = r"^serve-replicas: .*\n\t\$\(BIN\)/python scripts/serve_replicas.py --replicas \$\(N\) --port \$\(PORT\)"
    assert re.search(target, make, re.M)
    assert "nginx-light" in (REPO / ".ci" / "run").read_text()
    assert serve_replicas.main(["--replicas", "0"]) == 2
