"""Lineage: normalisation and hashes, how a request resolves against recorded turns, and
the lineage's life in the session store (round trip, rename, migration of an old
database). Plain functions and SQLite; the HTTP behaviour is ``test_lineage_http``."""

from __future__ import annotations

import sqlite3

import pytest

from actors import SessionKey, TextDelta
from app.sessions._lineage import lineage_of, message_parts, normalise_text, reply_text
from app.sessions._lineage_index import LineageIndex, Mark, Parent, Route
from app.sessions._store import open_session_store
from app.wire._anthropic import AnthropicCodec
from app.wire._codec import Message
from app.wire._openai import OpenAICodec
from tests.media import PNG, data_url, image_block, png

# -- Normalisation and hashes ---------------------------------------------------------


@pytest.mark.parametrize(
    ("a", "b", "same"),
    [
        ("Hello there", "  Hello\n\tthere \n", True),
        ("one\n\ntwo", "one two", True),
        ("<system-reminder>ctx</system-reminder>hi", "hi", True),
        ("hi [Request interrupted by user]", "hi", True),
        ("Hello", "hello", False),
        ("a b", "ab", False),
    ],
)
def test_normalised_text_ignores_whitespace_and_client_additions_only(a, b, same):
    """Whitespace runs, Claude Code's reminders and interruption markers do not count;
    every other difference does."""
    assert (normalise_text(a) == normalise_text(b)) is same


def anthropic_messages(*contents, system=None) -> list[Message]:
    body = {"model": "m", "max_tokens": 1, "messages": []}
    if system is not None:
        body["system"] = system
    roles = ["user", "assistant"]
    body["messages"] = [{"role": roles[i % 2], "content": c} for i, c in enumerate(contents)]
    return AnthropicCodec().parse(body, {}).messages


def openai_messages(*contents, system=None) -> list[Message]:
    roles = ["user", "assistant"]
    messages = [{"role": roles[i % 2], "content": c} for i, c in enumerate(contents)]
    if system is not None:
        messages.insert(0, {"role": "system", "content": system})
    return OpenAICodec().parse({"model": "m", "messages": messages}, {}).messages


def test_the_same_conversation_has_the_same_lineage_through_both_apis():
    """An assistant reply of two text blocks (Anthropic, with ``cache_control`` and a
    thinking block beside them) and the same reply as one string with a blank line
    (OpenAI), a user message as blocks or parts: the same hashes. Instructions are not
    part of the lineage."""
    reply_blocks = [
        {"type": "thinking", "thinking": "hmm", "signature": "x"},
        {"type": "text", "text": "First part."},
        {"type": "text", "text": "Second part.", "cache_control": {"type": "ephemeral"}},
    ]
    anthropic = anthropic_messages(
        [{"type": "text", "text": "Hi", "cache_control": {"type": "ephemeral"}}],
        reply_blocks,
        "next",
        system="Be brief.",
    )
    openai = openai_messages(
        [{"type": "text", "text": "Hi"}], "First part.\n\nSecond part.", "next"
    )
    assert lineage_of(anthropic).hashes == lineage_of(openai).hashes
    assert lineage_of(anthropic).turns == 1
    assert (
        lineage_of(anthropic_messages("Hi", "Other.", "next")).hashes
        != lineage_of(anthropic).hashes
    )


def test_attachments_are_part_of_the_lineage_whichever_api_sent_them():
    """The same image (an Anthropic block with ``cache_control``, an OpenAI data URL)
    gives the same hashes; another image, or none, does not."""
    question = {"type": "text", "text": "what is it?"}
    cached = {**image_block(PNG), "cache_control": {"type": "ephemeral"}}
    anthropic = anthropic_messages([cached, question], "A dot.", "x")
    openai = openai_messages(
        [
            {"type": "image_url", "image_url": {"url": data_url(PNG)}},
            {"type": "text", "text": "what is it?"},
        ],
        "A dot.",
        "x",
    )
    assert lineage_of(anthropic).hashes == lineage_of(openai).hashes
    other = anthropic_messages([image_block(png(2, 2)), question], "A dot.", "x")
    bare = anthropic_messages("what is it?", "A dot.", "x")
    hashes = {lineage_of(m).hashes for m in (anthropic, other, bare)}
    assert len(hashes) == 3


def test_a_reply_as_streamed_hashes_as_the_client_resends_it():
    """The head recorded from a turn's text deltas (two blocks) is the prefix of the next
    request that carries the reply as either API returned it."""
    deltas = [TextDelta("t", "First ", 0), TextDelta("t", "part.", 0), TextDelta("t", "Second", 2)]
    head = lineage_of(anthropic_messages("Hi")).head_after(reply_text(deltas))
    resent_anthropic = anthropic_messages(
        "Hi", [{"type": "text", "text": "First part."}, {"type": "text", "text": "Second"}], "x"
    )
    resent_openai = openai_messages("Hi", "First part.\n\nSecond", "x")
    assert lineage_of(resent_anthropic).prefix == lineage_of(resent_openai).prefix == head


def test_turns_start_after_each_reply_with_the_instructions_that_follow_it():
    """``starts[k]`` is where what follows turn ``k`` begins; the new turn is the user
    messages after the last reply; an empty message has no parts."""
    messages = [
        Message("instructions", "sys"),
        Message("user", "u1"),
        Message("assistant", "a1"),
        Message("instructions", "later"),
        Message("user", "u2"),
        Message("assistant", "a2"),
        Message("user", "u3"),
    ]
    lineage = lineage_of(messages)
    assert lineage.turns == 2
    assert lineage.starts == (0, 3, 6)
    assert [m.text for m in lineage.new] == ["u3"]
    assert message_parts(Message("assistant", "  ")) == []


# -- Resolution -----------------------------------------------------------------------

U = [f"u{n} [[count]]" for n in range(1, 6)]


def conversation(*texts: str) -> list[Message]:
    """Alternating user and assistant messages; ``texts`` ends with the new user one."""
    roles = ["user", "assistant"]
    return [Message(roles[i % 2], t) for i, t in enumerate(texts)]


def served(index: LineageIndex, principal: str, session_id: str, *texts: str) -> list[Mark]:
    """Record that ``session_id`` served the turns of ``texts`` (user, reply, ...);
    returns the marks recorded."""
    marks = []
    for k in range(1, len(texts) // 2 + 1):
        lineage = lineage_of(conversation(*texts[: 2 * k - 1]))
        head = lineage.head_after(texts[2 * k - 1])
        marks.append(Mark.of(session_id, k, head, f"msg-{session_id}-{k}", f"c-{session_id}"))
        index.record(principal, marks[-1])
    return marks


THREE = ("u1", "a1", "u2", "a2", "u3", "a3")


def resolve(index, session_id, *texts, principal="alice", exists=False) -> Route:
    return index.resolve(principal, session_id, lineage_of(conversation(*texts)), exists=exists)


def test_a_request_resolves_as_the_rules_say():
    """The resolution table: continue a head, fork after an earlier turn (regenerate,
    edit), new for the unknown, the caller's session id continued when the history is
    unknown (compaction), the caller's session preferred, never another principal's."""
    index = LineageIndex()
    fork_at = dict(enumerate(served(index, "alice", "s", *THREE), 1))

    assert resolve(index, None, *THREE, "u4") == Route("continue", "s", 3)
    assert resolve(index, None, *THREE[:4], "u3") == Route("fork", None, 2, fork_at[2])
    assert resolve(index, None, "u1", "a1", "u2 edited") == Route("fork", None, 1, fork_at[1])
    edited_then_more = ("u1", "a1", "u2 edited", "a2 other", "u3")
    assert resolve(index, None, *edited_then_more) == Route("fork", None, 1, fork_at[1])
    assert resolve(index, None, "other", "reply", "u2") == Route("new", None, 0)
    assert resolve(index, None, "u1") == Route("new", None, 0)
    # With the caller's session id.
    regenerate = resolve(index, "s", *THREE[:4], "u3", exists=True)
    assert regenerate == Route("fork", "s", 2, fork_at[2], displace=True)
    compacted = resolve(index, "s", "summary", "ok", "u4", exists=True)
    assert compacted == Route("continue", "s", 1)
    assert resolve(index, "s", "u4", exists=True) == Route("continue", "s", 0)
    assert resolve(index, "t", "x", "y", "u2") == Route("new", "t", 0)
    # Another principal sees none of it.
    assert resolve(index, None, *THREE, "u4", principal="bob") == Route("new", None, 0)
    # The caller's own session is preferred among identical ones.
    served(index, "alice", "twin", *THREE)
    assert resolve(index, "s", *THREE, "u4", exists=True).session_id == "s"
    assert resolve(index, "twin", *THREE, "u4", exists=True).session_id == "twin"


def test_a_head_whose_turn_is_under_way_is_forked_not_queued_behind():
    """Two identical requests at once: the first continues the head; while its turn is
    under way the second forks after the same turn instead of waiting to reuse it."""
    index = LineageIndex()
    served(index, "alice", "s", "u1", "a1")
    request = ("u1", "a1", "u2")
    with index.taking("alice", "s"):
        route = resolve(index, None, *request)
        assert (route.kind, route.known, route.fork_from.session_id) == ("fork", 1, "s")
    assert resolve(index, None, *request) == Route("continue", "s", 1)


def test_renaming_and_forgetting_move_and_drop_a_sessions_lineage():
    """A renamed session keeps its head and parent under its new id (its forks name the
    new id as parent); a forgotten one is no longer found."""
    index = LineageIndex()
    served(index, "alice", "s", "u1", "a1")
    index.record("alice", Mark.of("f", 2, "h-f", "m", "c"), parent=Parent("s", 1))
    index.rename("alice", "s", "old")
    assert resolve(index, None, "u1", "a1", "u2") == Route("continue", "old", 1)
    assert index.parent("alice", "f") == Parent("old", 1)
    assert not index.knows("alice", "s")
    index.forget("alice", "old")
    assert resolve(index, None, "u1", "a1", "u2") == Route("new", None, 0)


def test_identical_sessions_share_their_hashes_until_renamed_or_forgotten():
    """Two sessions of one conversation hold the same hashes: renaming one leaves both
    found under their ids, forgetting one leaves the other, forgetting both leaves
    nothing to continue or fork."""
    index = LineageIndex()
    served(index, "alice", "s", *THREE)
    served(index, "alice", "twin", *THREE)
    index.rename("alice", "s", "renamed")
    assert resolve(index, "renamed", *THREE, "u4", exists=True) == Route("continue", "renamed", 3)
    assert resolve(index, "twin", *THREE, "u4", exists=True) == Route("continue", "twin", 3)
    index.forget("alice", "twin")
    assert resolve(index, None, *THREE, "u4") == Route("continue", "renamed", 3)
    regenerate = resolve(index, None, *THREE[:4], "u3")
    assert (regenerate.kind, regenerate.fork_from.session_id) == ("fork", "renamed")
    index.forget("alice", "renamed")
    assert resolve(index, None, *THREE, "u4") == Route("new", None, 0)
    assert resolve(index, None, *THREE[:4], "u3") == Route("new", None, 0)


def test_a_sessions_marks_share_one_copy_of_its_ids():
    """Each turn's mark arrives with new (equal) strings for its session ids, from the
    request and the CLI's JSON; the index keeps one copy per session, not one per turn."""
    index = LineageIndex()

    def fresh(text: str) -> str:
        return "".join(list(text))  # equal, but another object

    heads = []
    for turn, claude_session_id in enumerate(("c-1", "c-1", "c-2"), 1):  # c-2: resumed anew
        mark = Mark.of(fresh("s-1"), turn, f"h{turn}", f"m{turn}", fresh(claude_session_id))
        index.record("alice", mark)
        heads.append(index.head("alice", "s-1"))
    first, second, third = heads
    assert second.session_id is first.session_id and third.session_id is first.session_id
    assert second.claude_session_id is first.claude_session_id
    assert third.claude_session_id == "c-2"


REAL_HASH = lineage_of([Message("user", "hi"), Message("assistant", "hello")]).prefix
REAL_UUID = "0b6f1a3e-9c2d-4e5f-8a7b-1c2d3e4f5a6b"


@pytest.mark.parametrize(
    ("hash_", "assistant_uuid"),
    [(REAL_HASH, REAL_UUID), ("h-1", "msg-1"), (REAL_HASH.upper(), REAL_UUID.upper()), ("", None)],
)
def test_a_mark_gives_back_the_ids_it_was_given(hash_, assistant_uuid):
    """A mark keeps a lineage hash and a transcript uuid as bytes where it can (a
    hibernated session keeps one a turn), and reads them back as the text it was given,
    whatever that was; marks are equal by value and immutable."""
    mark = Mark.of("s", 3, hash_, assistant_uuid, "c-1")
    assert (mark.hash, mark.assistant_uuid) == (hash_, assistant_uuid)
    assert mark == Mark.of("s", 3, hash_, assistant_uuid, "c-1")
    assert mark != Mark.of("s", 3, hash_ + "0", assistant_uuid, "c-1")
    assert hash(mark) == hash(Mark.of("s", 3, hash_, assistant_uuid, "c-1"))
    assert repr(mark).startswith(f"Mark(session_id='s', turn=3, hash={hash_!r}")
    with pytest.raises(AttributeError):
        mark.turn = 4
    fork = mark.fork_point
    assert (fork.assistant_uuid if fork else None) == assistant_uuid


def test_a_real_hash_and_uuid_are_kept_as_bytes():
    mark = Mark.of("s", 1, REAL_HASH, REAL_UUID, "c-1")
    assert mark.key == bytes.fromhex(REAL_HASH)
    assert isinstance(mark.packed_uuid, bytes) and len(mark.packed_uuid) == 16


# -- The store ------------------------------------------------------------------------


async def test_the_lineage_survives_in_the_store_renamed_and_deleted_with_its_session(
    open_store,
):
    """Marks and parents written through the store come back in a new index (a restarted
    server) in order; a rename moves them; deleting a session deletes them."""
    async with open_store() as store:
        index = LineageIndex(store)
        served(index, "alice", "s", *THREE)
        index.record("alice", Mark.of("f", 2, "h-f", "m", "c"), parent=Parent("s", 1))
        index.rename("alice", "s", "old")
    async with open_store() as store:
        again = LineageIndex(store)
        again.load(*await store.lineage())
        assert resolve(again, None, *THREE, "u4") == Route("continue", "old", 3)
        assert again.parent("alice", "f") == Parent("old", 1)
        assert again.head("alice", "old").turn == 3
        await store.delete(SessionKey("old", "alice"))
        marks, parents = await store.lineage()
        assert [(p, m.session_id) for p, m in marks] == [("alice", "f")]
        assert parents == [("alice", "f", Parent("old", 1))]


async def test_a_database_from_before_lineage_gains_its_tables_and_keeps_its_sessions(
    tmp_path,
):
    """An existing database with only the sessions table (an older ccactors) is opened
    as it is, with the lineage tables added: its session is still known."""
    path = tmp_path / "old.sqlite3"
    connection = sqlite3.connect(path)
    connection.execute(
        "CREATE TABLE sessions (principal TEXT NOT NULL, session_id TEXT NOT NULL, "
        "claude_session_id TEXT, workspace TEXT NOT NULL, model TEXT, created_at REAL NOT "
        "NULL, last_active_at REAL NOT NULL, turns INTEGER NOT NULL, input_tokens INTEGER "
        "NOT NULL DEFAULT 0, output_tokens INTEGER NOT NULL DEFAULT 0, cost_usd REAL NOT "
        "NULL DEFAULT 0, PRIMARY KEY (principal, session_id))"
    )
    connection.execute(
        "INSERT INTO sessions VALUES ('', 'kept', 'c-1', '/w/kept', NULL, 1, 2, 4, 0, 0, 0)"
    )
    connection.commit()
    connection.close()
    async with open_session_store(path) as store:
        record = await store.load(SessionKey("kept"))
        assert (record.claude_session_id, record.turns) == ("c-1", 4)
        assert await store.lineage() == ([], [])
        LineageIndex(store).record("", Mark.of("kept", 5, "h", "m", "c-1"))
    async with open_session_store(path) as store:
        LineageIndex(store).record("", Mark.of("kept", 6, REAL_HASH, REAL_UUID, "c-1"))
    async with open_session_store(path) as store:
        marks, _ = await store.lineage()
        assert marks == [
            ("", Mark.of("kept", 5, "h", "m", "c-1")),
            ("", Mark.of("kept", 6, REAL_HASH, REAL_UUID, "c-1")),
        ]
        assert marks[1][1].hash == REAL_HASH and marks[1][1].assistant_uuid == REAL_UUID
