"""End to end: conversation lineage with the official ``anthropic`` and ``openai`` clients,
the real Claude Code CLI and the offline upstream, whose ``[[count]]`` answers how many
user messages with ``[[count]]`` the conversation the CLI sent holds. So ``count=N``
shows which conversation the session's CLI had, forks included.

Each conversation costs a CLI start (a fork one more): few conversations, each checking
several things.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import anthropic
import httpx
import openai
import pytest

from .conftest import MODEL, SHORT_TIMEOUTS, Server, start_server, stop_server

pytestmark = pytest.mark.e2e

C = "[[count]]"


class Chat:
    """A chat front end: resends the whole conversation each turn, through ``anthropic``
    (replies resent as the content blocks received) or ``openai`` (as the string)."""

    def __init__(self, client: anthropic.Anthropic | openai.OpenAI, headers=None) -> None:
        self.client = client
        self.headers = headers or {}
        self.session_id: str | None = None

    def send(self, messages: list[dict[str, Any]], *, stream: bool = False) -> dict[str, Any]:
        """One request; the assistant message to resend, and ``self.session_id`` set."""
        if isinstance(self.client, anthropic.Anthropic):
            raw = self.client.messages.with_raw_response.create(
                model=MODEL, max_tokens=64, messages=messages, extra_headers=self.headers
            )
            message = raw.parse()
            content = [block.model_dump(exclude_none=True) for block in message.content]
            reply = {"role": "assistant", "content": content}
            text = "".join(block.text for block in message.content if block.type == "text")
        elif stream:
            raw = self.client.chat.completions.with_raw_response.create(
                model=MODEL, messages=messages, stream=True, extra_headers=self.headers
            )
            with raw.parse() as chunks:
                text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
            reply = {"role": "assistant", "content": text}
        else:
            raw = self.client.chat.completions.with_raw_response.create(
                model=MODEL, messages=messages, extra_headers=self.headers
            )
            text = raw.parse().choices[0].message.content
            reply = {"role": "assistant", "content": text}
        self.session_id = raw.headers["X-Session-ID"]
        reply["text"] = text
        return reply

    def turns(self, *prompts: str, history=(), stream: bool = False) -> tuple[list, list[str]]:
        """Send ``prompts`` one by one, each with the history so far; (the history after
        them, the answers)."""
        history = list(history)
        answers = []
        for prompt in prompts:
            history.append({"role": "user", "content": prompt})
            reply = self.send(history, stream=stream)
            answers.append(reply.pop("text"))
            history.append(reply)
        return history, answers


def sessions(server: Server, api_key: str | None = None) -> dict[str, dict]:
    headers = {} if api_key is None else {"x-api-key": api_key}
    data = httpx.get(f"{server.url}/v1/sessions", headers=headers, timeout=10).json()["data"]
    return {s["id"]: s for s in data}


@pytest.fixture
def oai(server: Server) -> Iterator[openai.OpenAI]:
    with openai.OpenAI(
        base_url=f"{server.url}/v1", api_key="test", max_retries=0, timeout=60
    ) as client:
        yield client


def test_a_resent_conversation_is_one_session_and_regenerate_and_edit_fork_it(server, client):
    """Without a session id, through ``anthropic``: three turns resending the history
    are one session on one CLI (count=1,2,3); regenerating the third answer does not
    see the first answer to it (count=3 again); editing turn 2 forks (count=2) and the
    fork goes on (count=3) while the original goes on too (count=4)."""
    before = set(sessions(server))
    chat = Chat(client)
    history, answers = chat.turns(f"one {C}", f"two {C}", f"three {C}")
    assert answers == ["count=1", "count=2", "count=3"]
    original = chat.session_id
    [new] = set(sessions(server)) - before
    assert new == original
    info = server.session(original)
    assert info["turns"] == 3 and info["lineage_head"]["turn"] == 3
    pid = info["cli_pid"]

    regenerated = chat.send(history[:5])  # the third request again
    assert regenerated["text"] == "count=3"
    assert chat.session_id != original
    twin = chat.session_id  # its conversation reads the same as the original's

    _, answers = chat.turns(f"TWO {C}", f"after the edit {C}", history=history[:2])
    assert answers == ["count=2", "count=3"]
    fork = server.session(chat.session_id)
    assert fork["parent"] == {"id": original, "turn": 1}
    assert fork["claude_session_id"] != info["claude_session_id"]

    _, answers = chat.turns(f"four {C}", history=history)
    assert answers == ["count=4"]
    assert chat.session_id in (original, twin)  # identical content: either is right
    assert server.session(original)["cli_pid"] == pid  # the original's CLI all along
    stats = httpx.get(f"{server.url}/v1/stats", timeout=10).json()
    assert stats["forks"] >= 2
    server.wait_until_every_cli_is_accounted_for()


def test_the_same_through_openai_streaming_and_not(server, oai):
    """Through ``openai``, streamed turns and a plain one continue one session on one
    CLI; a regenerate forks."""
    chat = Chat(oai)
    history, answers = chat.turns(f"one {C}", f"two {C}", stream=True)
    history, more = chat.turns(f"three {C}", history=history)
    assert answers + more == ["count=1", "count=2", "count=3"]
    info = server.session(chat.session_id)
    assert info["turns"] == 3 and info["parent"] is None
    first = chat.session_id
    assert chat.send(history[:3])["text"] == "count=2"  # regenerate the second answer
    assert chat.session_id != first


def test_with_a_session_id_the_id_follows_the_newest_branch(server, client):
    """With ``X-Session-ID``: an edit of turn 2 answers on a fork that takes the id
    (count=2, then 3); the original branch, moved to a server-minted id, still goes on
    from its own history (count=4); a request with only the new message continues the
    branch the id points at."""
    chat = Chat(client, {"X-Session-ID": "e2e-lineage-chat"})
    history, answers = chat.turns(f"one {C}", f"two {C}", f"three {C}")
    assert answers == ["count=1", "count=2", "count=3"]
    pid = server.session("e2e-lineage-chat")["cli_pid"]
    _, answers = chat.turns(f"TWO {C}", f"go on {C}", history=history[:2])
    assert answers == ["count=2", "count=3"] and chat.session_id == "e2e-lineage-chat"
    moved = server.session("e2e-lineage-chat")["parent"]["id"]
    assert moved != "e2e-lineage-chat" and server.session(moved)["cli_pid"] == pid
    _, answers = chat.turns(f"four {C}", history=history)
    assert answers == ["count=4"] and chat.session_id == moved
    _, answers = chat.turns(f"only this {C}")
    assert answers == ["count=4"] and chat.session_id == "e2e-lineage-chat"


def test_lineage_survives_a_restart_and_never_crosses_keys(tmp_path):
    """Two keys sending identical conversations get sessions of their own; after a
    server restart a resent conversation continues its session (resuming its CLI
    conversation) and an edit still forks from the recorded turn."""
    env = {**SHORT_TIMEOUTS, "CCACTORS_API_KEYS": '["key-a", "key-b"]'}
    env["CCACTORS_WARM_POOL_SIZE"] = "0"  # fewer CLI starts
    state, log = tmp_path / "state", tmp_path / "server.log"
    server = start_server(state, log, env=env)
    try:
        with (
            anthropic.Anthropic(base_url=server.url, api_key="key-a", max_retries=0) as a,
            anthropic.Anthropic(base_url=server.url, api_key="key-b", max_retries=0) as b,
        ):
            alice = Chat(a)
            history, answers = alice.turns(f"one {C}", f"two {C}")
            assert answers == ["count=1", "count=2"]
            bob = Chat(b)
            reply = bob.send(history[:3])  # alice's second request, word for word
            assert reply["text"] == "count=1"  # a new session, the history as context
            assert bob.session_id != alice.session_id
            assert set(sessions(server, "key-b")) == {bob.session_id}
            assert alice.session_id not in sessions(server, "key-b")
    finally:
        assert stop_server(server) == 0, server.log()
    server = start_server(state, log, env=env)
    try:
        with anthropic.Anthropic(base_url=server.url, api_key="key-a", max_retries=0) as a:
            again = Chat(a)
            _, answers = again.turns(f"three {C}", history=history)
            assert answers == ["count=3"] and again.session_id == alice.session_id
            _, answers = again.turns(f"TWO {C}", history=history[:2])
            assert answers == ["count=2"] and again.session_id != alice.session_id
    finally:
        assert stop_server(server) == 0, server.log()
