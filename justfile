# ccactors tasks. Each recipe installs what it needs first (uv sync: Python packages and the
# Claude Code CLI, which the locked claude-agent-sdk wheel bundles).

set shell := ["bash", "-euo", "pipefail", "-c"]

# List the recipes.
default:
    @just --list

# Install the Python environment, with the pinned Claude Code CLI bundled in the SDK wheel.
# Compiled to bytecode once here: where PYTHONDONTWRITEBYTECODE is set, every process
# (each server a test starts) would otherwise compile its imports anew, ~1 s of CPU.
setup:
    uv sync --locked --quiet --compile-bytecode

# Start an offline server and hold streamed conversations with it through the real CLI.
demo: setup
    uv run ccactors demo

# Serve the API for real use (default http://127.0.0.1:8765); e.g. `just serve --offline`.
serve *ARGS: setup
    uv run ccactors serve {{ARGS}}

# A cluster on this machine: throw-away PostgreSQL, 3 offline nodes, HAProxy in front
# (http://127.0.0.1:8765); Ctrl-C stops it all. Needs Debian's postgresql and haproxy.
cluster *ARGS: setup
    uv run ccactors cluster {{ARGS}}

# Run the whole test suite (unit and end to end); extra arguments go to pytest.
test *ARGS: setup
    uv run pytest {{ARGS}}

# Lint and check formatting.
lint: setup
    uv run ruff check .
    uv run ruff format --check .

# ccactors side by side with the Claude Agent SDK alone (same CLI, same offline upstream):
# latency, relay, load, memory, with ratios and issue 12's targets; `--quick`, `--help`.
bench *ARGS: setup
    uv run python -m benchmarks {{ARGS}}

# N sessions x M streamed turns at once, through ccactors and through the SDK alone.
load *ARGS: setup
    uv run python -m benchmarks --scenario load {{ARGS}}

# A warm continued turn resending the whole conversation (lineage) vs with X-Session-ID.
bench-lineage *ARGS: setup
    uv run python benchmarks/lineage.py {{ARGS}}

# A local cluster: a warm turn through HAProxy vs straight to its node, and a hand-off.
bench-cluster *ARGS: setup
    uv run python -m benchmarks.cluster {{ARGS}}

# This tree's ccactors against another git revision's, served side by side (warm turns).
bench-compare REV *ARGS: setup
    uv run python -m benchmarks.compare {{REV}} {{ARGS}}
