"""The fenced blocks of the tutorial and how-to guides, as the docs tests run them.

A block a test runs (or checks) is marked by an HTML comment on the line before it,
invisible on the rendered page::

    <!-- doc-test: run -->
    ```sh
    ccactors settings
    ```

Kinds (the first word of the mark; the rest is its argument):

* ``run``: shell commands, run with bash; they must succeed.
* ``serve``: a command that keeps running (a server); started in the background.
* ``chat``: an interactive command: what its ``output`` block shows after ``you> ``
  is typed into it, line by line.
* ``file NAME``: the block is saved as ``NAME`` (a script, a settings file, a config).
* ``output``: what the ``run``, ``serve`` or ``chat`` block before it prints: each line
  must appear, in this order (other lines may come between); ``...`` in a line matches
  anything.
* ``check NAME``: checked by the guide's own test, which looks it up by ``NAME``.
* ``skip REASON``: not run, and why (e.g. it needs a product too large to install in
  a test); the test nearest to it is named in the guide's test.

``tests/unit/test_docs_blocks.py`` makes sure every block of those pages has a mark.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

from app._settings import PROJECT_ROOT

KINDS = {"run", "serve", "chat", "file", "output", "check", "skip"}
NEEDS_ARGUMENT = {"file", "check", "skip"}
MARK = re.compile(r"<!--\s*doc-test:\s*(?P<kind>[a-z]+)\s*(?P<argument>.*?)\s*-->\s*$")
FENCE = re.compile(r"^(?P<fence>```+|~~~+)(?P<info>.*)$")


def guide_pages() -> list[Path]:
    """The pages whose every block must be marked: the tutorial and the how-to guides."""
    docs = PROJECT_ROOT / "docs"
    return [docs / "tutorial.md", *sorted((docs / "how-to").glob("*.md"))]


@dataclass(frozen=True)
class Block:
    """One fenced block of a page."""

    page: Path
    line: int  # 1-based line of the opening fence
    info: str  # the fence's info string, e.g. "sh"
    text: str
    kind: str | None  # None: unmarked
    argument: str

    def where(self) -> str:
        return f"{self.page.relative_to(PROJECT_ROOT)}:{self.line}"


def blocks(page: Path) -> list[Block]:
    """Every fenced block of ``page``, in order, with its mark (if any).

    Raises:
        ValueError: a fence is never closed.
    """
    lines = page.read_text().splitlines()
    found: list[Block] = []
    previous = ""
    number = 0
    while number < len(lines):
        line = lines[number]
        opening = FENCE.match(line.strip())
        if not opening:
            if line.strip():
                previous = line
            number += 1
            continue
        fence = opening.group("fence")
        body = []
        end = number + 1
        while end < len(lines) and not lines[end].strip().startswith(fence):
            body.append(lines[end])
            end += 1
        if end == len(lines):
            raise ValueError(f"{page}:{number + 1}: fence never closed")
        indent = len(line) - len(line.lstrip())
        text = "\n".join(row[indent:] if row[:indent].isspace() else row for row in body)
        mark = MARK.match(previous.strip())
        found.append(
            Block(
                page=page,
                line=number + 1,
                info=opening.group("info").strip(),
                text=text + "\n",
                kind=mark.group("kind") if mark else None,
                argument=mark.group("argument") if mark else "",
            )
        )
        previous = ""
        number = end + 1
    return found


def block(page: Path, kind: str, argument: str) -> Block:
    """The one block of ``page`` marked ``kind argument``.

    Raises:
        LookupError: there is none, or more than one.
    """
    matches = [b for b in blocks(page) if b.kind == kind and b.argument == argument]
    if len(matches) != 1:
        raise LookupError(f"{page}: {len(matches)} blocks marked {kind} {argument}")
    return matches[0]


def output_matches(expected: str, actual: str) -> bool:
    """Whether each line of ``expected`` appears in ``actual``, in order, ``...``
    matching anything within a line (blank lines, leading and trailing spaces ignored)."""
    wanted = [line.strip() for line in expected.splitlines() if line.strip()]
    got = [line.strip() for line in actual.splitlines()]
    position = 0
    for line in wanted:
        pattern = re.compile(".*".join(re.escape(part) for part in line.split("...")))
        while position < len(got) and not pattern.fullmatch(got[position]):
            position += 1
        if position == len(got):
            return False
        position += 1
    return True


def typed_lines(expected: str) -> str:
    """What a ``chat`` block's output shows typed after ``you> ``, as its standard input."""
    return "".join(
        line.split("you> ", 1)[1] + "\n"
        for line in expected.splitlines()
        if line.startswith("you> ") and line.split("you> ", 1)[1].strip()
    )
