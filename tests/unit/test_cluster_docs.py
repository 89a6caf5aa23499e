"""The cluster's routing configuration as documented is the one that runs."""

from __future__ import annotations

import re
import shutil
import subprocess

import pytest

from app._settings import PROJECT_ROOT
from app.cluster._haproxy import haproxy_config

HOW_TO = PROJECT_ROOT / "docs" / "how-to" / "cluster.md"
NODES = [("node1", "10.0.0.11:8765"), ("node2", "10.0.0.12:8765"), ("node3", "10.0.0.13:8765")]


def documented_block(language: str) -> str:
    """The how-to's block in ``language`` (marked ``<!-- doc-test: check <language> -->``
    for tests/docs_blocks.py)."""
    match = re.search(rf"```{language}\n(.*?)```", HOW_TO.read_text(), re.S)
    assert match, f"docs/how-to/cluster.md has no {language} block"
    return match.group(1)


def test_the_documented_haproxy_configuration_is_the_generated_one(tmp_path):
    """The how-to shows exactly what ``haproxy_config`` makes (regenerate the block when
    the template changes), and HAProxy itself accepts it (``haproxy -c``)."""
    config = haproxy_config("0.0.0.0:8765", NODES)
    assert documented_block("haproxy") == config
    haproxy = shutil.which("haproxy", path="/usr/sbin:/usr/bin")
    if haproxy is None:
        pytest.fail("haproxy is not installed (Debian: apt-get install haproxy)")
    path = tmp_path / "haproxy.cfg"
    path.write_text(config)
    result = subprocess.run([haproxy, "-c", "-f", str(path)], capture_output=True, text=True)
    assert result.returncode == 0, result.stdout + result.stderr


def test_the_nginx_snippet_is_valid_and_routes_on_the_same_headers_in_the_same_order(tmp_path):
    """nginx accepts the snippet (``nginx -t``, inside a minimal ``http`` block), and it
    routes on the same headers as the HAProxy configuration, most specific first."""
    nginx = documented_block("nginx")
    order = [nginx.index(f"$http_{name}") for name in ("x_session_id", "x_claude_code_session_id")]
    assert order == sorted(order, reverse=True)  # a map's fallback is defined before it
    assert "hash $ccactors_conversation consistent" in nginx
    binary = shutil.which("nginx", path="/usr/sbin:/usr/bin")
    if binary is None:
        pytest.fail("nginx is not installed (Debian: apt-get install nginx)")
    (tmp_path / "logs").mkdir()
    config = tmp_path / "nginx.conf"
    config.write_text(
        f"error_log {tmp_path}/logs/error.log;\npid {tmp_path}/nginx.pid;\nevents {{}}\n"
        f"http {{\naccess_log off;\n{nginx}}}\n"
    )
    result = subprocess.run(
        [binary, "-t", "-p", str(tmp_path), "-c", str(config)], capture_output=True, text=True
    )
    assert result.returncode == 0, result.stdout + result.stderr
