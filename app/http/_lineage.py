"""The pipeline's lineage step: which session an HTTP request's turn runs on, what of its
history that session needs as context, and what the turn leaves on record.

The rules are ``LineageIndex.resolve``'s (continue, fork or new); this module applies
them to the runtime: it finds out whether the caller's session exists, moves an old
branch out of the way of a fork that takes its id, mints ids, holds the session's head
as taken while the turn is under way, and records the turn's mark once it completes.
``docs/explanation/lineage.md`` explains the whole.
"""

from __future__ import annotations

from collections.abc import Iterable
from contextlib import ExitStack

from actors import (
    ForkPoint,
    SessionEvent,
    SessionKey,
    SessionNotFoundError,
    Supervisor,
    TurnCompleted,
)

from ..sessions._lineage import Lineage, lineage_of, reply_text
from ..sessions._lineage_index import LineageIndex, Mark, Parent, Route, mint_session_id
from ..wire._codec import Message


class Placement:
    """Where one request's turn runs, decided; holds its session's head as taken until
    ``release``.

    Attributes:
        key: the session the turn runs on (the response's ``X-Session-ID``).
        route: the rule that placed it (``Route.kind``: continue, fork, new).
        fork: where a new branch resumes, for a fork.
        parent: the session and turn a fork branches off.
        context_from: ``None`` if the session holds the whole conversation before the new
            turn; else the index in the request's messages from which they are given to
            it as context (what it never saw).
        created: the turn creates its session (new or fork).
        minted: the session's id was chosen by the server for this turn.
    """

    def __init__(
        self,
        index: LineageIndex,
        key: SessionKey,
        route: Route,
        lineage: Lineage,
        *,
        parent: Parent | None,
    ) -> None:
        self.key = key
        self.route = route
        self.fork: ForkPoint | None = route.fork_from.fork_point if route.fork_from else None
        self.parent = parent
        self.created = route.kind != "continue"
        self.minted = route.session_id is None
        self.context_from = None if route.kind == "continue" else lineage.starts[route.known]
        self._index = index
        self._lineage = lineage
        self._held = ExitStack()
        self._held.enter_context(index.taking(key.principal, key.session_id))

    def completed(self, events: Iterable[SessionEvent], done: TurnCompleted) -> None:
        """Record the completed turn: the session's head is now the request's history
        extended by its new messages and ``events``' reply text, as returned. Not a
        checkpoint."""
        mark = Mark.of(
            self.key.session_id,
            self._lineage.turns + 1,
            self._lineage.head_after(reply_text(events)),
            done.assistant_uuid,
            done.claude_session_id,
        )
        self._index.record(self.key.principal, mark, parent=self.parent)

    @property
    def disposable(self) -> bool:
        """The turn created a session under a server-minted id and did not complete: no
        client can name that session and it holds nothing worth keeping (the pipeline
        closes it, so the retries of a failing request do not pile sessions up; a
        session the client named stays, as any named session does). Not a
        checkpoint."""
        return (
            self.created
            and self.minted
            and not self._index.knows(self.key.principal, self.key.session_id)
        )

    def drop_fork(self) -> None:
        """Run as a new conversation given the whole history as context instead (the
        conversation to fork could not be resumed); holds the session's head as taken
        again if it was released. Not a checkpoint."""
        self.fork, self.parent, self.context_from = None, None, 0
        self._held.close()
        self._held.enter_context(self._index.taking(self.key.principal, self.key.session_id))

    def release(self) -> None:
        """The turn is over: its session's head may be continued again. Idempotent."""
        self._held.close()


async def place_turn(
    index: LineageIndex,
    supervisor: Supervisor,
    principal: str,
    session_id: str | None,
    messages: list[Message],
) -> Placement:
    """Place a request's turn (see ``LineageIndex.resolve`` for the rules).

    A fork that takes the caller's session id moves the session holding it to a new,
    server-minted id first (its CLI, conversation and lineage go with it); if that
    session is busy, the fork gets a minted id instead and the caller's id keeps
    pointing at it. New sessions and forks without a session id get minted ids.

    Args:
        index: the lineage index.
        supervisor: runs the sessions (is the caller's session running? renames).
        principal: the caller.
        session_id: the caller's session id, validated, if it gave one.
        messages: the request's messages.

    Returns:
        The placement, holding its session's head as taken: call ``release`` when the
        turn is over.

    Cancellation: a checkpoint only while reading the store (in a cluster, the caller's
    lineage as every node recorded it; the caller's session), before anything is
    decided.
    """
    lineage = lineage_of(messages)
    await index.refresh(principal)  # a cluster: what other nodes recorded since
    exists = session_id is not None and await _exists(
        index, supervisor, SessionKey(session_id, principal)
    )
    route = index.resolve(principal, session_id, lineage, exists=exists)
    parent = None
    if route.kind == "fork":
        assert route.fork_from is not None
        parent = Parent(route.fork_from.session_id, route.fork_from.turn)
        if route.displace and (moved := _displace(index, supervisor, principal, route)):
            if parent.session_id == route.session_id:
                parent = Parent(moved, parent.turn)
        elif route.displace:
            route = Route("fork", None, route.known, route.fork_from)
    key = SessionKey(route.session_id or mint_session_id(), principal)
    return Placement(index, key, route, lineage, parent=parent)


async def _exists(index: LineageIndex, supervisor: Supervisor, key: SessionKey) -> bool:
    """Whether session ``key`` exists: running, on record in the lineage, or stored."""
    if supervisor.session(key) is not None or index.knows(key.principal, key.session_id):
        return True
    return index.store is not None and await index.store.load(key) is not None


def _displace(
    index: LineageIndex, supervisor: Supervisor, principal: str, route: Route
) -> str | None:
    """Move the session holding ``route.session_id`` to a minted id; returns that id, or
    ``None`` if the session is busy (left as it is). Not a checkpoint."""
    assert route.session_id is not None
    if index.taken(principal, route.session_id):
        return None
    old = SessionKey(route.session_id, principal)
    moved = SessionKey(mint_session_id(), principal)
    try:
        if not supervisor.rename_session(old, moved):
            return None
    except SessionNotFoundError:
        pass  # not running: known from the store, renamed there (through the index)
    index.rename(principal, old.session_id, moved.session_id)
    return moved.session_id
