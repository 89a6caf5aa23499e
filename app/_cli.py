"""The ``ccactors`` command line: ``serve``, ``settings``, ``chat``, ``offline-upstream``
and ``demo``."""

from __future__ import annotations

import gc
import signal
import time
from pathlib import Path
from typing import Annotated

import trio
import typer
from pydantic import ValidationError

from ._logging import configure_logging
from ._settings import CliNotFoundError, InsecureBindError, Settings
from ._settings_file import SettingsFileError, load_settings, setting_sources
from .offline._upstream import serve_upstream
from .security._auth import KeyFileError

cli = typer.Typer(add_completion=False, no_args_is_help=True, help=__doc__)

HostOption = Annotated[str | None, typer.Option(help="Address to bind (default 127.0.0.1).")]
PortOption = Annotated[int | None, typer.Option(help="Port to bind; 0 picks a free one.")]
ConfigOption = Annotated[
    Path | None,
    typer.Option(
        "--config",
        help="A TOML settings file (keys: docs/reference/settings.md); CCACTORS_* variables "
        "and flags override it.",
    ),
]


def _settings(config: Path | None, **overrides: object) -> Settings:
    """The effective settings, or exit with status 2 and the reason."""
    try:
        return load_settings(config, **overrides)
    except SettingsFileError as exc:
        typer.echo(f"ccactors: {exc}", err=True)
    except ValidationError as exc:
        typer.echo(f"ccactors: invalid settings: {exc}", err=True)
    raise typer.Exit(2)


@cli.command()
def serve(
    host: HostOption = None,
    port: PortOption = None,
    offline: Annotated[
        bool, typer.Option("--offline", help="Answer from the built-in offline upstream.")
    ] = False,
    state_dir: Annotated[Path | None, typer.Option(help="Sessions' state directory.")] = None,
    log_format: Annotated[
        str | None, typer.Option(help="text (default) or json: one JSON object per line.")
    ] = None,
    insecure_no_auth: Annotated[
        bool,
        typer.Option(
            "--insecure-no-auth", help="Allow listening beyond loopback without API keys."
        ),
    ] = False,
    config: ConfigOption = None,
) -> None:
    """Serve the Anthropic-compatible API (default http://127.0.0.1:8765)."""
    from ._server import serve as run_server

    settings = _settings(
        config,
        host=host,
        port=port,
        offline=offline or None,
        state_dir=state_dir,
        log_format=log_format,
        insecure_no_auth=insecure_no_auth or None,
    )
    configure_logging(settings.log_level, settings.log_format)
    _require_cli(settings)
    try:
        settings.check_exposure()
    except (InsecureBindError, KeyFileError) as exc:
        typer.echo(f"ccactors: {exc}", err=True)
        raise typer.Exit(2) from None
    _require_database(settings)

    async def main() -> None:
        async with trio.open_nursery() as nursery:
            url = await nursery.start(run_server, settings)
            print(f"ccactors: serving on {url}", flush=True)

    _freeze_startup_objects()
    trio.run(main)


def _freeze_startup_objects() -> None:
    """Move every object the process holds before it serves (modules, classes,
    functions: ~145,000 of them) out of the cyclic garbage collector's reach
    (``gc.freeze``); reference counting still frees them.

    A full collection otherwise walks all of them and runs only once a quarter as many
    objects again have survived younger collections: it stalled the event loop for
    40-160 ms, and between two of them the cycles that closed connections leave behind
    in hypercorn (~40 objects each) piled up, ~3 KiB a session over a load of 16 x 10
    (docs/reference/benchmarks.md). Frozen, a full collection walks only what serving
    made, and comes as often as that grows."""
    gc.collect()  # what is garbage now would never be collected once frozen
    gc.freeze()
    gc.collect()  # counts the objects left to collect from zero, not from ~145,000


@cli.command("settings")
def show_settings(
    config: ConfigOption = None,
    reference: Annotated[
        bool,
        typer.Option(
            "--reference",
            help="Print instead the settings reference page (Markdown, every setting with "
            "its default and description): docs/reference/settings.md.",
        ),
    ] = False,
) -> None:
    """Print the effective settings and where each comes from (secrets masked)."""
    from rich.console import Console
    from rich.markup import escape
    from rich.table import Table

    if reference:
        from ._settings_reference import render_reference

        typer.echo(render_reference(), nl=False)
        return
    settings = _settings(config)
    table = Table("setting", "value", "source", box=None)
    for name, value, source in setting_sources(settings, config):
        table.add_row(name, escape(value), source)  # "[a, b]" is text, not markup
    Console(width=200).print(table)


def _require_cli(settings: Settings) -> None:
    """Exit with status 2 and a clear message if there is no Claude Code CLI."""
    try:
        settings.resolve_cli_path()
    except CliNotFoundError as exc:
        typer.echo(f"ccactors: {exc}", err=True)
        raise typer.Exit(2) from None


def _require_database(settings: Settings) -> None:
    """Exit with status 2 and the reason if ``database_url`` is set but unreachable."""
    if settings.database_url is None:
        return
    from .sessions._backends import DatabaseUnreachableError, check_database

    try:
        check_database(settings.database_url.get_secret_value())
    except DatabaseUnreachableError as exc:
        typer.echo(f"ccactors: {exc}", err=True)
        raise typer.Exit(2) from None


@cli.command()
def chat(
    url: Annotated[str, typer.Option(help="The ccactors server.")] = "http://127.0.0.1:8765",
    session: Annotated[
        str | None, typer.Option(help="Session id to join or start (default: a new one).")
    ] = None,
    api_key: Annotated[
        str | None, typer.Option(envvar="CCACTORS_API_KEY", help="Key, if the server needs one.")
    ] = None,
) -> None:
    """Chat with a session in the terminal over WebSocket; Ctrl-C interrupts a reply."""
    from .client._chat import run_chat

    run_chat(url, session, api_key)


@cli.command("offline-upstream")
def offline_upstream(host: HostOption = None, port: PortOption = None) -> None:
    """Serve only the offline Anthropic-compatible upstream (for ANTHROPIC_BASE_URL)."""
    configure_logging("INFO", "text")

    async def main() -> None:
        async with trio.open_nursery() as nursery:
            url = await nursery.start(serve_upstream, host or "127.0.0.1", port or 0)
            print(f"ccactors offline upstream: serving on {url}", flush=True)

    trio.run(main)


@cli.command()
def cluster(
    nodes: Annotated[int, typer.Option(min=1, max=16, help="How many nodes.")] = 3,
    port: Annotated[int, typer.Option(help="HAProxy's port on 127.0.0.1.")] = 8765,
) -> None:
    """Run a whole cluster on this machine until Ctrl-C: a throw-away PostgreSQL, NODES
    offline ccactors nodes on loopback ports, and HAProxy in front of them."""
    from .cluster._local import MissingToolError, open_local_cluster

    configure_logging("WARNING", "text")

    async def main() -> None:
        with trio.open_signal_receiver(signal.SIGINT, signal.SIGTERM) as signals:
            async with open_local_cluster(nodes, port=port) as running:
                for node in running.nodes:
                    print(f"  {node.id}: {node.url} (log: {node.log_path})")
                print(f"ccactors cluster of {nodes} nodes: {running.url}", flush=True)
                print("Ctrl-C stops every node, HAProxy and PostgreSQL.", flush=True)
                async for _ in signals:
                    print("stopping...", flush=True)
                    break
        print("stopped", flush=True)

    try:
        trio.run(main)
    except MissingToolError as exc:
        typer.echo(f"ccactors: {exc}", err=True)
        raise typer.Exit(2) from None


DEMO_TURNS = [
    ("demo-a", "Hello! How many of my messages ask you to count? [[count]]"),
    ("demo-a", "Now stream this sentence back to me, slowly. [[chunks=12]] [[chunk_delay=0.08]]"),
    ("demo-a", "And how many ask you to count now? [[count]]"),
    ("demo-b", "I am a different conversation. How many? [[count]]"),
]
DEMO_INTRO = """\
Each turn below goes: anthropic client -> ccactors -> the session's own Claude Code CLI
-> offline upstream, and streams back. The upstream answers count=N with N counted over
the whole conversation the CLI sends it, so demo-a remembering its earlier turns (and
demo-b starting afresh) shows each session is one live conversation.
"""


@cli.command()
def demo() -> None:
    """Start an offline server and hold streamed conversations with it through the real
    Claude Code CLI, using the official ``anthropic`` client."""
    import tempfile

    from ._server import serve as run_server

    configure_logging("WARNING", "text")
    with tempfile.TemporaryDirectory(prefix="ccactors-demo-") as state:
        settings = Settings(port=0, offline=True, state_dir=Path(state))
        _require_cli(settings)

        async def main() -> None:
            async with trio.open_nursery() as nursery:
                url = await nursery.start(run_server, settings)
                print(f"ccactors serving on {url} (offline upstream)\n\n{DEMO_INTRO}", flush=True)
                await trio.to_thread.run_sync(_converse, url)
                nursery.cancel_scope.cancel()

        trio.run(main)


def _converse(url: str) -> None:
    import anthropic

    client = anthropic.Anthropic(base_url=url, api_key="demo", max_retries=0)
    for session, prompt in DEMO_TURNS:
        print(f"[{session}] you> {prompt}")
        print(f"[{session}] claude> ", end="", flush=True)
        started = time.monotonic()
        first: float | None = None
        with client.messages.stream(
            model="claude-sonnet-4-6",
            max_tokens=1024,
            messages=[{"role": "user", "content": prompt}],
            extra_headers={"X-Session-ID": session},
        ) as stream:
            for text in stream.text_stream:
                first = first or time.monotonic()
                print(text, end="", flush=True)
            usage = stream.get_final_message().usage
        took = time.monotonic() - started
        to_first = (first or time.monotonic()) - started
        print(
            f"\n    ({took:.2f} s, first text after {to_first:.2f} s, "
            f"{usage.input_tokens} in / {usage.output_tokens} out tokens)\n"
        )


def main() -> None:
    """Console script entry point."""
    cli()
