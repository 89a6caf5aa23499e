"""Lineage through both HTTP APIs, over the scripted fake client: clients that resend the
whole conversation get one session per conversation, regenerate and edit fork it, the
session id follows the newest branch, and nothing is shared between API keys.

The fake answers ``echo: <prompt> #<n>``, ``n`` being the prompts its conversation
holds, so an answer shows what conversation the session's CLI had.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import trio

from actors import open_supervisor
from actors.testing import ScriptedClientFactory, text_reply
from app._settings import Settings
from app.http._app import create_app

ANTHROPIC, OPENAI = "/v1/messages", "/v1/chat/completions"


@asynccontextmanager
async def open_client(tmp_path, factory=None, **settings) -> AsyncIterator:
    """A quart test client over a supervisor with the fake client; yields (client,
    factory)."""
    factory = factory or ScriptedClientFactory()
    config = Settings(state_dir=tmp_path, warm_pool_size=0, **settings)
    async with open_supervisor(config.supervisor_config(), factory) as supervisor:
        yield create_app(supervisor, config).test_client(), factory


def body(path: str, messages: list[dict], **fields) -> dict:
    if path == ANTHROPIC:
        return {"model": "m", "max_tokens": 10, "messages": messages, **fields}
    return {"model": "m", "messages": messages, **fields}


async def say(client, path, messages, headers=None, **fields) -> tuple[str, str]:
    """One turn; (the reply's text as the API returned it, the X-Session-ID)."""
    response = await client.post(path, json=body(path, messages, **fields), headers=headers)
    assert response.status_code == 200, await response.get_data()
    data = await response.get_json()
    if path == ANTHROPIC:
        text = "".join(b["text"] for b in data["content"] if b["type"] == "text")
    else:
        text = data["choices"][0]["message"]["content"]
    return text, response.headers["X-Session-ID"]


def user(text):
    return {"role": "user", "content": text}


def assistant(text):
    return {"role": "assistant", "content": text}


async def test_a_client_resending_the_whole_conversation_gets_one_session(tmp_path):
    """Without a session id, each request resending the history continues the same
    server-minted session: one CLI, only the new message sent to it, the same
    ``X-Session-ID`` on every answer. Through either API."""
    for path in (ANTHROPIC, OPENAI):
        async with open_client(tmp_path / path.strip("/").replace("/", "-")) as (client, fake):
            history: list[dict] = []
            ids = set()
            for n, text in enumerate(["one", "two", "three"], 1):
                history.append(user(text))
                answer, session_id = await say(client, path, history)
                assert answer == f"echo: {text} #{n}"
                history.append(assistant(answer))
                ids.add(session_id)
            assert len(ids) == 1 and ids.pop().startswith("conv_")
            assert len(fake.clients) == 1
            assert fake.clients[0].sent == ["one", "two", "three"]
            sessions = (await (await client.get("/v1/sessions")).get_json())["data"]
            assert [(s["turns"], s["lineage_head"]["turn"]) for s in sessions] == [(3, 3)]


async def test_regenerate_and_edit_fork_and_leave_the_original_continuable(tmp_path):
    """Regenerating an answer (the same request again) and editing an earlier message
    each answer on a new branch that does not hold what came after the fork point;
    every branch goes on from where it is, and ``GET /v1/sessions/{id}`` shows each
    fork's parent."""
    async with open_client(tmp_path) as (client, fake):
        one = [user("one")]
        a1, original = await say(client, ANTHROPIC, one)
        two = [*one, assistant(a1), user("two")]
        a2, same = await say(client, ANTHROPIC, two)
        assert same == original and a2 == "echo: two #2"

        again, regenerated = await say(client, ANTHROPIC, two)  # regenerate
        assert again == "echo: two #2" and regenerated != original
        edited, edit = await say(client, OPENAI, [*one, assistant(a1), user("TWO")])
        assert edited == "echo: TWO #2" and edit not in (original, regenerated)

        three = [*two, assistant(a2), user("three")]
        assert await say(client, ANTHROPIC, three) in {
            ("echo: three #3", original),
            ("echo: three #3", regenerated),  # identical content: either is right
        }
        more = [*one, assistant(a1), user("TWO"), assistant(edited), user("more")]
        assert await say(client, OPENAI, more) == ("echo: more #3", edit)

        info = await (await client.get(f"/v1/sessions/{edit}")).get_json()
        assert info["parent"] == {"id": original, "turn": 1}
        assert info["lineage_head"]["turn"] == 3
        assert (await (await client.get(f"/v1/sessions/{original}")).get_json())["parent"] is None
        stats = await (await client.get("/v1/stats")).get_json()
        assert stats["forks"] == 2
        assert b"ccactors_forks_total 2.0" in await (await client.get("/metrics")).get_data()
    forks = [spec for spec in fake.specs if spec.fork]
    assert len(forks) == 2


async def test_a_fork_given_history_it_never_saw_gets_it_once_as_context(tmp_path):
    """An edit followed by turns the server never served (another front end wrote them)
    forks at the edit point and gets the rest as context, once."""
    async with open_client(tmp_path) as (client, fake):
        a1, _ = await say(client, OPENAI, [user("one")])
        await say(client, OPENAI, [user("one"), assistant(a1), user("two")])
        foreign = [user("one"), assistant(a1), user("2"), assistant("elsewhere"), user("x")]
        answer, _ = await say(client, OPENAI, foreign)
    assert answer.endswith("#2")  # the fork holds turn 1, and this one
    assert fake.clients[-1].sent == [
        "The conversation so far:\n\nUser: 2\n\nAssistant: elsewhere\n\n"
        "The user's new message:\n\nx"
    ]


async def test_with_a_session_id_a_fork_takes_the_id_and_the_old_branch_moves(tmp_path):
    """With ``X-Session-ID``, an edit forks under that id (the id follows the newest
    branch); the old branch moves to a server-minted id, keeps its CLI and is still
    reached by its history. A history the session does not know, or none, continues
    the session (Claude Code's compaction; clients that send only the new message)."""
    headers = {"X-Session-ID": "chat-1"}
    async with open_client(tmp_path) as (client, fake):
        a1, _ = await say(client, ANTHROPIC, [user("one")], headers)
        a2, _ = await say(client, ANTHROPIC, [user("one"), assistant(a1), user("two")], headers)
        edited, where = await say(
            client, ANTHROPIC, [user("one"), assistant(a1), user("TWO")], headers
        )
        assert (edited, where) == ("echo: TWO #2", "chat-1")
        info = await (await client.get("/v1/sessions/chat-1")).get_json()
        old = info["parent"]["id"]
        assert old.startswith("conv_") and info["parent"]["turn"] == 1
        original = [user("one"), assistant(a1), user("two"), assistant(a2), user("three")]
        assert await say(client, ANTHROPIC, original, headers) == ("echo: three #3", old)
        assert await say(client, ANTHROPIC, [user("latest only")], headers) == (
            "echo: latest only #3",
            "chat-1",
        )
        compacted = [user("summary"), assistant("ok"), user("go on")]
        assert await say(client, ANTHROPIC, compacted, headers) == ("echo: go on #4", "chat-1")
    assert len(fake.clients) == 2  # the original and the fork: the move kept the CLI


async def test_identical_requests_at_once_do_not_queue_behind_each_other(tmp_path, autojump_clock):
    """Two identical requests at once (a double click, a regenerate while the answer is
    still coming): the second forks after the same turn and runs beside the first,
    instead of waiting in the first's session and answering after it."""
    factory = ScriptedClientFactory(
        script=lambda prompt, history: text_reply(f"{prompt} #{len(history)}", first_delay=5)
    )
    finished = []
    async with open_client(tmp_path, factory, first_chunk_timeout_s=60) as (client, _):
        a1, first = await say(client, OPENAI, [user("one")])
        request = [user("one"), assistant(a1), user("two")]
        t0 = trio.current_time()

        async def one() -> None:
            answer = await say(client, OPENAI, request)
            finished.append((answer, trio.current_time() - t0))

        async with trio.open_nursery() as nursery:
            nursery.start_soon(one)
            await trio.testing.wait_all_tasks_blocked()
            nursery.start_soon(one)
    assert [(text, seconds) for (text, _), seconds in finished] == [("two #2", 5)] * 2
    sessions = {session for (_, session), _ in finished}
    assert len(sessions) == 2 and first in sessions


async def test_identical_conversations_of_two_keys_never_share_a_session(tmp_path):
    """Lineage is per API key: the same history from another key is a new session."""
    alice, bob = {"x-api-key": "alice-key"}, {"x-api-key": "bob-key"}
    async with open_client(tmp_path, api_keys=["alice-key", "bob-key"]) as (client, fake):
        a1, mine = await say(client, ANTHROPIC, [user("one")], alice)
        history = [user("one"), assistant(a1), user("two")]
        assert await say(client, ANTHROPIC, history, alice) == ("echo: two #2", mine)
        answer, theirs = await say(client, ANTHROPIC, history, bob)
        assert theirs != mine and answer.endswith("#1")  # history given as context
        listed = await (await client.get("/v1/sessions", headers=bob)).get_json()
        assert [s["id"] for s in listed["data"]] == [theirs]
    assert len(fake.clients) == 2


async def test_a_streamed_reply_is_recorded_as_the_client_received_it(tmp_path):
    """The lineage of a streamed turn is what the stream carried: resending it (as the
    other API returns it, too) continues the session."""
    async with open_client(tmp_path) as (client, fake):
        response = await client.post(
            OPENAI, json=body(OPENAI, [user("one")], stream=True), headers=None
        )
        assert response.status_code == 200
        await response.get_data()
        first = response.headers["X-Session-ID"]
        history = [user("one"), assistant("echo: one #1"), user("two")]
        assert await say(client, ANTHROPIC, history) == ("echo: two #2", first)
    assert len(fake.clients) == 1


async def test_a_new_session_whose_first_turn_fails_is_not_kept(tmp_path, autojump_clock):
    """A request that starts a session and fails leaves no session behind, so retries of
    a failing request do not pile sessions up."""
    factory = ScriptedClientFactory(script=lambda p, h: text_reply("x", first_delay=100))
    async with open_client(tmp_path, factory, first_chunk_timeout_s=5) as (client, _):
        response = await client.post(OPENAI, json=body(OPENAI, [user("one")]))
        assert response.status_code == 504
        assert (await (await client.get("/v1/sessions")).get_json())["data"] == []


async def test_a_fork_whose_conversation_is_gone_gets_the_history_as_context(tmp_path):
    """When the conversation to fork cannot be resumed (its transcript is gone), the edit
    is answered by a new session given the history as context: an answer, not an error
    on every edit before that point."""
    async with open_client(tmp_path) as (client, fake):
        a1, first = await say(client, OPENAI, [user("one")])
        await say(client, OPENAI, [user("one"), assistant(a1), user("two")])
        fake.transcripts.clear()  # every CLI conversation on disk is lost
        answer, where = await say(client, OPENAI, [user("one"), assistant(a1), user("TWO")])
        assert answer.endswith("#1") and where != first
        info = await (await client.get(f"/v1/sessions/{where}")).get_json()
        assert info["parent"] is None and info["lineage_head"]["turn"] == 2
    assert fake.clients[-1].sent == [
        "The conversation so far:\n\nUser: one\n\nAssistant: echo: one #1\n\n"
        "The user's new message:\n\nTWO"
    ]
