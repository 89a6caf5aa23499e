"""The environment every Claude Code CLI gets: an allow-list, never the server's own.

The SDK starts each CLI with the server process's environment plus the options' ``env``,
so whatever the server holds (``CCACTORS_API_KEYS``, an operator's unrelated secrets)
would sit in every agent's ``/proc/<pid>/environ``, readable by the agent as soon as a
read or shell tool is allowed. ``ccactors serve`` therefore reduces its own environment
to ``cli_environment(...)`` at start-up, after its settings are read: what the CLI needs
to run and to reach its model, and nothing of ccactors'.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Iterable, Mapping, MutableMapping

log = logging.getLogger(__name__)

# What Claude Code (a Node/Bun program that runs tools) needs from its environment.
ALLOWED_NAMES = frozenset(
    {
        "PATH",
        "HOME",
        "USER",
        "LOGNAME",
        "SHELL",
        "TERM",
        "TMPDIR",
        "TZ",
        "LANG",
        "LANGUAGE",
        # Outbound proxies and TLS trust, both spellings where tools differ.
        "HTTP_PROXY",
        "HTTPS_PROXY",
        "NO_PROXY",
        "ALL_PROXY",
        "http_proxy",
        "https_proxy",
        "no_proxy",
        "all_proxy",
        "SSL_CERT_FILE",
        "SSL_CERT_DIR",
        "NODE_EXTRA_CA_CERTS",
        "REQUESTS_CA_BUNDLE",
        "CURL_CA_BUNDLE",
        # Vertex AI's region (the rest of the cloud credentials match a prefix below).
        "CLOUD_ML_REGION",
    }
)
# Locale, Claude Code's own settings and credentials, and the cloud providers it can use
# (Amazon Bedrock, Google Vertex AI, Microsoft Foundry).
ALLOWED_PREFIXES = ("LC_", "ANTHROPIC_", "CLAUDE_", "AWS_", "GOOGLE_", "CLOUDSDK_", "AZURE_")


def is_allowed(name: str) -> bool:
    """Whether a variable of this name may reach a CLI. ``CCACTORS_*`` never does.

    Not a checkpoint.
    """
    if name.startswith("CCACTORS_"):
        return False
    return name in ALLOWED_NAMES or name.startswith(ALLOWED_PREFIXES)


def cli_environment(environ: Mapping[str, str], secrets: Iterable[str] = ()) -> dict[str, str]:
    """The allow-listed part of ``environ``.

    Args:
        environ: an environment, e.g. ``os.environ``.
        secrets: values that must never reach a CLI whatever their variable's name
            (ccactors' own API keys): a variable holding one of them is dropped.

    Returns:
        The variables whose names pass ``is_allowed`` and whose values are not secrets.

    Not a checkpoint.
    """
    hidden = {secret for secret in secrets if secret}
    return {
        name: value for name, value in environ.items() if is_allowed(name) and value not in hidden
    }


def confine_environment(
    secrets: Iterable[str] = (), environ: MutableMapping[str, str] = os.environ
) -> list[str]:
    """Reduce this process's environment to ``cli_environment(environ, secrets)``, so
    every child (each CLI the SDK starts) inherits only that. Call after settings are read.

    Returns:
        The names removed, sorted (for a log line; never their values).

    Not a checkpoint.
    """
    kept = cli_environment(environ, secrets)
    removed = sorted(name for name in environ if name not in kept)
    for name in removed:
        del environ[name]
    if removed:
        log.info("kept %d environment variables for Claude Code; removed: %s", len(kept), removed)
    return removed
