"""Every block of the tutorial and the how-to guides is run or checked by a test: each
carries a ``doc-test`` mark of a known kind (``tests/docs_blocks.py``)."""

from __future__ import annotations

from tests.docs_blocks import KINDS, NEEDS_ARGUMENT, blocks, guide_pages, output_matches


def test_every_block_of_the_guides_is_marked_for_a_test():
    problems = []
    for page in guide_pages():
        previous = None
        for block in blocks(page):
            if block.kind is None:
                problems.append(f"{block.where()}: no <!-- doc-test: ... --> mark")
            elif block.kind not in KINDS:
                problems.append(f"{block.where()}: unknown kind {block.kind!r}")
            elif block.kind in NEEDS_ARGUMENT and not block.argument:
                problems.append(f"{block.where()}: {block.kind} needs an argument")
            elif block.kind == "output" and (
                previous is None or previous.kind not in {"run", "serve", "chat"}
            ):
                problems.append(f"{block.where()}: output of no run, serve or chat block")
            previous = block
    assert not problems, "\n".join(problems)


def test_output_lines_match_in_order_with_ellipses():
    actual = "first\nnoise\nclaude> count=3\n(12 in, 2 out, $0.01)\n"
    assert output_matches("first\nclaude> count=3\n(... in, ... out, $...)", actual)
    assert not output_matches("claude> count=3\nfirst", actual)
    assert not output_matches("claude> count=4", actual)
