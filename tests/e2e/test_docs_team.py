"""docs/how-to/team.md, followed for real: keys made by its commands, its settings file,
its server, and its nginx and Caddy configurations running in front of that server.

What the test changes, and why: ``/etc/ccactors`` and ``/var/lib/ccactors`` are
temporary directories; the server listens on a free port (``port = 0``) and answers
from the offline upstream (``CCACTORS_OFFLINE=true``) with no warm pool; nginx and Caddy
listen on free loopback ports over plain HTTP (no certificate), and ``curl`` reaches
``ccactors.example.com`` there with ``--resolve`` (so ``Host`` is still that name).
"""

from __future__ import annotations

import os
import re
import shutil
import socket
import subprocess
import tomllib
from pathlib import Path

import httpx
import pytest

from app._settings import PROJECT_ROOT, Settings
from app.cluster._local import free_port

from ..docs_blocks import block, blocks
from .conftest import claude_cli, wait_until
from .docs_runner import Runner, reader_env

pytestmark = pytest.mark.e2e

GUIDE = PROJECT_ROOT / "docs" / "how-to" / "team.md"
NAME = "ccactors.example.com"


def listening(port: int) -> bool:
    try:
        socket.create_connection(("127.0.0.1", port), timeout=1).close()
    except OSError:
        return False
    return True


def nginx_config(text: str, port: int, tmp: Path) -> str:
    """The guide's server block on ``port`` without TLS, in a whole nginx configuration
    that keeps every file in ``tmp``."""
    text = text.replace("listen 443 ssl;", f"listen 127.0.0.1:{port};")
    text = "\n".join(line for line in text.splitlines() if "ssl_certificate" not in line)
    temp = " ".join(
        f"{kind}_temp_path {tmp}/{kind};"
        for kind in ("client_body", "proxy", "fastcgi", "uwsgi", "scgi")
    )
    user = "user root;" if os.geteuid() == 0 else ""  # workers must reach tmp
    return (
        f"{user} daemon off; pid {tmp}/nginx.pid; error_log {tmp}/error.log;\n"
        f"events {{}}\nhttp {{\naccess_log {tmp}/access.log; {temp}\n{text}\n}}\n"
    )


def caddy_config(text: str, port: int, tmp: Path) -> str:
    """The guide's Caddyfile on ``http://NAME:port``: no TLS, no admin endpoint."""
    site = text.replace(f"{NAME} {{", f"http://{NAME}:{port} {{")
    return f"{{\n\tadmin off\n\tauto_https off\n\tstorage file_system {tmp}/data\n}}\n{site}"


def test_team_guide_keys_settings_server_and_both_proxies(tmp_path):
    """The guide's keys are accepted and scoped (an ordinary key is refused the operator
    routes, the monitoring key is not); its settings file is valid; through its nginx
    configuration a streamed answer arrives as SSE, a WebSocket chat holds a turn, the
    proxied Host passes ``allowed_hosts`` while another is refused (421), and its allowed
    origin gets CORS; through its Caddy configuration a streamed answer arrives too."""
    claude_cli()
    for tool in ("nginx", "caddy", "curl", "sha256sum"):
        if shutil.which(tool, path=os.environ["PATH"] + ":/usr/sbin") is None:
            pytest.skip(f"{tool} is not installed (.ci/run installs it)")
    nginx_bin = shutil.which("nginx", path=os.environ["PATH"] + ":/usr/sbin")
    nginx_port, caddy_port = free_port(), free_port()
    etc, state = tmp_path / "etc", tmp_path / "state"
    runner = Runner(
        cwd=tmp_path,
        env=reader_env(CCACTORS_OFFLINE="true", CCACTORS_WARM_POOL_SIZE="0"),
        substitutions={
            "/etc/ccactors": str(etc),
            "/var/lib/ccactors": str(state),
            "port = 8765": "port = 0",
            "--url https://ccactors.example.com": f"--url http://127.0.0.1:{nginx_port}",
            "at https://ccactors.example.com": f"at http://127.0.0.1:{nginx_port}",
            f"https://{NAME}": f"http://{NAME}:{nginx_port}",
            "curl -s": f"curl --resolve {NAME}:{nginx_port}:127.0.0.1 -s",
        },
    )
    guide = blocks(GUIDE)
    processes: list[subprocess.Popen] = []
    try:
        # Steps 1 to 3: keys, settings file, settings shown, server.
        keys: dict[str, str] = {}
        output = ""
        for step in guide:
            if step.kind == "check":
                break
            if step.kind == "run":
                output = runner.run(step)
                keys.update(re.findall(r"^(\w+): (\S+)$", output, re.M))
            elif step.kind == "file":
                runner.write(step)
            elif step.kind == "serve":
                output = runner.serve(step).output
            elif step.kind == "output":
                runner.expect(output, step)
        assert set(keys) == {"alice", "bob", "monitoring"}
        assert len((etc / "keys.sha256").read_text().split()) == 2
        runner.env["ALICE_KEY"], runner.env["MONITORING_KEY"] = keys["alice"], keys["monitoring"]
        settings = tomllib.loads((etc / "ccactors.toml").read_text())

        # Step 4: nginx, as the guide configures it, checked against the settings.
        nginx_text = runner.text(block(GUIDE, "check", "nginx"))
        assert f"server_name {NAME};" in nginx_text and NAME in settings["allowed_hosts"]
        assert "client_max_body_size 32m;" in nginx_text
        assert Settings.model_fields["max_body_bytes"].default == 32 * 1024 * 1024
        assert f"proxy_pass {runner.substitutions['http://127.0.0.1:8765']};" in nginx_text
        conf = tmp_path / "nginx.conf"
        conf.write_text(nginx_config(nginx_text, nginx_port, tmp_path))
        check = subprocess.run(
            [nginx_bin, "-t", "-p", str(tmp_path), "-c", str(conf)], capture_output=True, text=True
        )
        assert check.returncode == 0, check.stderr
        processes.append(subprocess.Popen([nginx_bin, "-p", str(tmp_path), "-c", str(conf)]))
        wait_until(lambda: listening(nginx_port), 20, "nginx to listen")

        # Step 4: Caddy, its own text parsed as is, then run without TLS.
        caddy_text = runner.text(block(GUIDE, "check", "caddy"))
        assert "max_size 32MiB" in caddy_text
        original = tmp_path / "Caddyfile.guide"
        original.write_text(caddy_text)
        caddy_env = {**runner.env, "HOME": str(tmp_path), "XDG_DATA_HOME": str(tmp_path)}
        adapted = subprocess.run(
            ["caddy", "adapt", "--config", str(original), "--adapter", "caddyfile"],
            capture_output=True,
            text=True,
            env=caddy_env,
        )
        assert adapted.returncode == 0, adapted.stderr
        caddyfile = tmp_path / "Caddyfile"
        caddyfile.write_text(caddy_config(caddy_text, caddy_port, tmp_path))
        with (tmp_path / "caddy.log").open("w") as log:
            processes.append(
                subprocess.Popen(
                    ["caddy", "run", "--config", str(caddyfile), "--adapter", "caddyfile"],
                    env=caddy_env,
                    stdout=subprocess.DEVNULL,
                    stderr=log,
                )
            )
        wait_until(lambda: listening(caddy_port), 20, "Caddy to listen")

        # Step 5 through nginx: every block as the guide has it.
        rest = guide[guide.index(block(GUIDE, "check", "caddy")) + 1 :]
        for index, step in enumerate(rest):
            if step.kind == "run":
                output = runner.run(step)
            elif step.kind == "chat":
                output = runner.chat(step, rest[index + 1])
            elif step.kind == "output":
                runner.expect(output, step)
        streamed = rest[0]
        assert streamed.kind == "run" and "/v1/messages" in streamed.text

        # The same streamed answer through Caddy.
        runner.substitutions["curl -s"] = f"curl --resolve {NAME}:{caddy_port}:127.0.0.1 -s"
        runner.substitutions[f"https://{NAME}"] = f"http://{NAME}:{caddy_port}"
        runner.expect(runner.run(streamed), rest[1])

        # What the proxies pass on: Host (checked), Origin (CORS for the allowed one).
        proxy = f"http://127.0.0.1:{nginx_port}"
        alice = {"x-api-key": keys["alice"]}
        assert httpx.get(f"{proxy}/v1/sessions", headers=alice).status_code == 200
        elsewhere = httpx.get(f"{proxy}/v1/sessions", headers={**alice, "Host": "evil.example"})
        assert elsewhere.status_code == 421
        preflight = httpx.options(
            f"{proxy}/v1/messages",
            headers={
                "Host": NAME,
                "Origin": settings["allowed_origins"][0],
                "Access-Control-Request-Method": "POST",
                "Access-Control-Request-Headers": "content-type, x-api-key",
            },
        )
        assert preflight.status_code in (200, 204), preflight.text
        allowed = preflight.headers["access-control-allow-origin"]
        assert allowed == settings["allowed_origins"][0]
    finally:
        for process in processes:
            process.terminate()
            process.wait(10)
        runner.stop_all()
