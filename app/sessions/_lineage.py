"""Lineage hashes: where a request's conversation stands, as its client sees it.

A conversation as a client sends it, ``[u1, a1, ..., u_{n-1}, a_{n-1}, u_n]``, is a
sequence of *turns*: a turn is the user's messages and the assistant's messages that
answered them (``u_k``, ``a_k``); the last user messages ``u_n`` are the new turn.
Instructions (a ``system`` field, ``system`` or ``developer`` messages) are not part of
the lineage: a conversation whose system prompt changed is still the same conversation.

The lineage of turn ``k`` is a running hash::

    h_0 = ""
    h_k = sha256(canonical JSON of [h_{k-1}, parts(u_k), parts(a_k)]) as hex

where ``parts`` of one side of a turn is the list of ``message_parts`` of its messages
(empty ones left out). Two requests share the lineage up to turn ``k`` exactly when
their first ``k`` turns normalise to the same content.

Normalisation (``normalise_text``, ``message_parts``), so that a client's resent
history hashes as what ccactors saw and returned:

* a message is its text: text blocks (Anthropic) or text parts (OpenAI) joined, or the
  string content, as the codecs give it (``Message.text``); anything else of a block,
  ``cache_control`` included, plays no part;
* Claude Code's ``<system-reminder>`` sections and ``[Request interrupted by user]``
  markers are removed (``app.wire._text``);
* every run of whitespace is one space, and the text is trimmed: so the same reply
  returned as two content blocks (Anthropic) or as one string with a blank line between
  them (OpenAI) is the same, and so is a client that trims or re-wraps whitespace.

The assistant side of a turn ccactors served is recorded from the reply *as returned*:
the text of the turn's text deltas (``reply_text``), which is what both APIs return,
streaming or not (thinking is not part of it: the OpenAI API does not return it, and an
Anthropic client's resent thinking blocks are not text). Tool activity is Claude Code's
own and never returned.
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

from actors import SessionEvent, TextDelta

from ..wire._codec import Message
from ..wire._media import canonical_json
from ..wire._text import without_client_additions

_WHITESPACE = re.compile(r"\s+")


def normalise_text(text: str) -> str:
    """``text`` as lineage compares it: client additions removed, each run of whitespace
    one space, trimmed. Not a checkpoint."""
    return _WHITESPACE.sub(" ", without_client_additions(text)).strip()


def message_parts(message: Message) -> list[dict[str, Any]]:
    """The parts of one message that lineage compares, as JSON values: its normalised
    text, if any, then the SHA-256 of each image or document in its canonical form
    (``app.wire._media.canonical_json``: documented fields only, so ``cache_control``
    and the like never change it). Not a checkpoint.
    """
    parts: list[dict[str, Any]] = []
    if text := normalise_text(message.text):
        parts.append({"text": text})
    parts.extend(
        {"media": hashlib.sha256(canonical_json(block)).hexdigest()} for block in message.media
    )
    return parts


def turn_hash(previous: str, user: Iterable[Message], assistant: Iterable[Message]) -> str:
    """The lineage hash of a turn: ``previous`` (the hash before it, ``""`` for the
    first) extended by the turn's user and assistant messages. Not a checkpoint."""
    sides = [[p for m in side for p in message_parts(m)] for side in (user, assistant)]
    canonical = json.dumps(
        [previous, *sides], ensure_ascii=False, separators=(",", ":"), sort_keys=True
    )
    return hashlib.sha256(canonical.encode()).hexdigest()


@dataclass(frozen=True, slots=True)
class Lineage:
    """A request's conversation as turns.

    Attributes:
        hashes: ``h_1 .. h_m`` for the ``m`` complete turns (each with an assistant
            reply) before the new one.
        starts: for each ``k`` in ``0 .. m``, the index in the request's messages where
            what follows turn ``k`` begins (``starts[0] == 0``): ``messages[starts[k]:]``
            is the conversation after turn ``k``, instructions between turns included.
        new: the user messages of the new turn.
    """

    hashes: tuple[str, ...]
    starts: tuple[int, ...]
    new: tuple[Message, ...]

    @property
    def turns(self) -> int:
        """``m``: complete turns before the new one."""
        return len(self.hashes)

    @property
    def prefix(self) -> str:
        """``h_m``: the hash of everything before the new turn (``""`` if nothing)."""
        return self.hashes[-1] if self.hashes else ""

    def head_after(self, reply: str) -> str:
        """The hash of the conversation once ``reply`` (the text returned) answered the
        new turn: what the client's next request will carry as its prefix."""
        return turn_hash(self.prefix, self.new, [Message("assistant", reply)])


def lineage_of(messages: Sequence[Message]) -> Lineage:
    """The turns of a request's messages (see the module docstring). Not a checkpoint.

    A turn begins with the first user message after an assistant message (or with the
    first message); an assistant message with no user message before it (a greeting) is
    a turn with an empty user side.
    """
    hashes: list[str] = []
    starts = [0]
    user: list[Message] = []
    assistant: list[Message] = []
    after_reply = 0  # the index after the latest assistant message
    for index, message in enumerate(messages):
        if message.role == "user" and assistant:
            hashes.append(turn_hash(hashes[-1] if hashes else "", user, assistant))
            starts.append(after_reply)
            user, assistant = [], []
        if message.role == "user":
            user.append(message)
        elif message.role == "assistant":
            assistant.append(message)
            after_reply = index + 1
    if assistant:  # ends with an assistant message: no new turn (the codecs refuse it)
        hashes.append(turn_hash(hashes[-1] if hashes else "", user, assistant))
        starts.append(after_reply)
        user = []
    return Lineage(tuple(hashes), tuple(starts), tuple(user))


def reply_text(events: Iterable[SessionEvent]) -> str:
    """The text a turn returned: its text deltas, blocks apart by a blank line (as the
    OpenAI API joins them; the Anthropic API returns them as blocks, which lineage
    normalises to the same). Not a checkpoint."""
    blocks: dict[int, list[str]] = {}
    for event in events:
        if isinstance(event, TextDelta):
            blocks.setdefault(event.block_index, []).append(event.text)
    return "\n\n".join("".join(blocks[i]) for i in sorted(blocks))
