"""Every relative link in the README and docs/ leads to a file that exists, and every
``#anchor`` to a heading of that file (as GitHub makes heading anchors)."""

from __future__ import annotations

import re
from pathlib import Path

from app._settings import PROJECT_ROOT

LINK = re.compile(r"\[[^\]]*\]\(([^)\s]+)\)")
FENCE = re.compile(r"^(```|~~~).*?^\1", re.M | re.S)
CODE = re.compile(r"`[^`\n]*`")
# Pages other work is writing at the same time, linked to already. Once one exists, the
# test below asks for it to be taken off this list.
PENDING: set[str] = set()


def pages() -> list[Path]:
    return [PROJECT_ROOT / "README.md", *sorted((PROJECT_ROOT / "docs").rglob("*.md"))]


def anchors(page: Path) -> set[str]:
    """GitHub's anchors for ``page``'s headings: lower case, punctuation but ``-`` and
    ``_`` dropped, spaces as ``-``, repeats numbered."""
    seen: dict[str, int] = {}
    found = set()
    for line in FENCE.sub("", page.read_text()).splitlines():
        if match := re.match(r"#{1,6}\s+(.*?)\s*#*$", line):
            slug = re.sub(r"[^\w\- ]", "", match.group(1).lower()).replace(" ", "-")
            count = seen.get(slug, 0)
            seen[slug] = count + 1
            found.add(slug if count == 0 else f"{slug}-{count}")
    return found


def broken_links(page: Path) -> list[str]:
    text = CODE.sub("", FENCE.sub("", page.read_text()))
    broken = []
    for target in LINK.findall(text):
        if re.match(r"[a-z][a-z0-9+.-]*:", target):  # https:, mailto:
            continue
        path, _, anchor = target.partition("#")
        linked = (page.parent / path).resolve() if path else page
        if not linked.exists() and str(linked.relative_to(PROJECT_ROOT)) in PENDING:
            continue
        if not linked.exists():
            broken.append(f"{target}: no such file")
        elif anchor and linked.suffix == ".md" and anchor not in anchors(linked):
            broken.append(f"{target}: no heading #{anchor} in {linked.name}")
    return broken


def test_every_relative_link_in_the_docs_resolves():
    broken = {
        str(page.relative_to(PROJECT_ROOT)): links
        for page in pages()
        if (links := broken_links(page))
    }
    assert not broken, broken


def test_pending_pages_are_still_pending():
    written = [page for page in PENDING if (PROJECT_ROOT / page).exists()]
    assert not written, f"{written} exist now: take them off PENDING"
