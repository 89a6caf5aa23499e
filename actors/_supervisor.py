"""Supervisor: where turns are admitted to session actors, and sessions are answered for.

The actors themselves (started, supervised, revived, ended) are its ``Children``
(``actors._children``).
"""

from __future__ import annotations

import collections
import logging
import uuid
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager, contextmanager
from typing import Any, Protocol

import trio

from ._children import Children, SessionDirectory
from ._client import ClientFactory
from ._config import SessionInfo, SupervisorConfig, session_info
from ._fanout import Notice
from ._slots import BUSY_RETRY_AFTER_S
from ._turn import Envelope
from ._types import (
    ForkPoint,
    MailboxFullError,
    Observer,
    PrincipalLimitError,
    SessionEvent,
    SessionKey,
    SupervisorClosedError,
    Turn,
)

log = logging.getLogger(__name__)


class Supervisor:
    """Owns the session actors: starts them, finds them, limits them, stops them.

    Create one with ``open_supervisor``. Every session is one ``SessionActor`` task in
    the supervisor's nursery. Turns reach an actor only through its bounded mailbox;
    there is no lock shared between sessions.

    Policy (after Erlang/OTP):

    * One-for-one: each session's CLI is supervised on its own. If it exits, crashes,
      is wedged (no first message within ``first_chunk_timeout_s``: it is killed) or
      does not end an interrupted turn in time, the running turn fails
      (``TurnFailed`` with reason ``cli_error`` or ``timeout``) and is never re-run (at
      most once); a turn whose prompt never reached the CLI runs on the new one. The
      session's actor immediately starts a new CLI that resumes the conversation
      (``resume=<claude session id>``).
    * Restart intensity: more than ``max_restarts`` restarts of one session within
      ``restart_window_s`` close that session; its waiting turns fail with the reason,
      and it is forgotten (its next turn starts a new conversation).
    * Start: an actor is registered only once its CLI is connected (``nursery.start``),
      or at once when it adopts a warm-pool actor. Concurrent first turns share a start.
      A session started as a fork (``open_turn(..., fork=...)``) never adopts a warm
      actor: its CLI must start resuming the conversation it branches off.
    * Hibernation: a session idle for ``idle_ttl_s`` closes its CLI but keeps its
      Claude session id and workspace; its next turn resumes it. With no turn queued
      its actor's task ends (``SessionActor.dormant``): the session is the actor object
      alone until its next turn runs the actor again. After ``retention_s`` without a
      turn it is forgotten (one timer for all of them: ``RetentionTimer``).
    * Capacity: at most ``max_live_sessions`` CLI processes. Needing one when all are
      taken hibernates the least recently used idle session (warm-pool actors go
      first); if none is idle, the session waits up to ``live_slot_wait_s`` for one to
      become free or idle, then is refused (``CapacityError``, HTTP 503). A waiter looks
      again on every change and never depends on an idle TTL (the rule in full:
      ``LiveSlots``). The warm pool is not refilled while a session waits. At most
      ``max_sessions`` sessions in all, live or hibernated.
    * Tenants: a principal (API key) holds at most ``max_live_sessions_per_principal``
      live CLIs. One that holds its share and needs another (a new session, adopting a
      warm actor, or waking a hibernated one) hibernates its *own* least recently used
      idle session; if none of its sessions is idle it is refused
      (``PrincipalLimitError``, HTTP 429), while other principals are still served.
      Warm-pool actors belong to no principal until adopted.
    * Models and system prompts: a turn naming a model its session's CLI does not run
      switches that CLI first (``set_model``, no restart; a resumed CLI is switched to
      the session's model), and the session stays on it. A warm actor is adopted
      whatever the model; a new session whose opening turn adds to the system prompt
      (``Turn.system``) is not: its own CLI starts, reading the text from a file in its
      workspace. Later turns' ``system`` changes nothing.
    * Warm pool: a warm actor's CLI is switched, before it is offered, to the model the
      latest adopting session asked for, and (``policy.warm_up``) computes its context
      once (``SessionActor._warm_up``): both are a fresh CLI's first-turn costs. The
      CLI that replaces an adopted one starts when the adopting session's first turn
      is over, or ``REFILL_HOLD_OFF_S`` after the adoption (``WarmPool``).
    * Start-ups: at most ``max_concurrent_starts`` CLIs start at once (``limit_starts``;
      unset, ``actors._children.STARTS_PER_CPU`` per CPU); the others wait their turn,
      holding their live slot.
    * Ownership (a cluster of nodes): with an ``ownership`` (``SessionOwnership``),
      every turn of a session first claims it (``claim``: at once if this node drives
      it already, else possibly after another node hands it over); a session this node
      must give up is handed off (``hand_off``): its running and queued turns finish,
      its CLI is closed and its actor unregistered, but it is not forgotten (its record
      and workspace stay for whichever node resumes it next).
    * Shutdown: ``close()`` refuses new turns; ``wait_idle()`` waits for running ones;
      leaving ``open_supervisor`` cancels every actor, failing running turns with
      ``session_closed`` and closing every CLI process before it returns.
    """

    def __init__(
        self,
        config: SupervisorConfig,
        client_factory: ClientFactory,
        nursery: trio.Nursery,
        directory: SessionDirectory | None = None,
        ownership: SessionOwnership | None = None,
    ) -> None:
        self.config = config
        self._ownership = ownership
        self._children = Children(config, client_factory, nursery, directory)
        self._turns_by_principal: collections.Counter[str] = collections.Counter()
        self._closed = False

    # -- Turns ----------------------------------------------------------------------------

    @asynccontextmanager
    async def open_turn(
        self,
        key: SessionKey | None,
        turn: Turn,
        *,
        principal: str = "",
        fork: ForkPoint | None = None,
    ) -> AsyncIterator[trio.MemoryReceiveChannel[SessionEvent]]:
        """Queue a turn for a session and yield the channel its events arrive on.

        The events are ``TurnStarted``, deltas and tool events, then exactly one
        ``TurnCompleted`` or ``TurnFailed``; then the channel ends. With ``key=None`` the
        turn runs on a new one-turn session (owned by ``principal``) that is closed
        afterwards.

        With ``fork``, a session that this turn starts (``key`` not registered, not being
        started) begins as a branch of that conversation: its CLI resumes it up to the
        fork point as a new Claude session, in the new session's own working directory;
        the conversation forked from is untouched. For a session that exists, ``fork``
        is ignored.

        Raises:
            CapacityError: no room for a new session, or no live slot to be had.
            MailboxFullError: ``mailbox_size`` turns already wait for this session.
            PrincipalLimitError: the principal already has ``max_turns_per_principal``
                turns under way, or ``max_sessions_per_principal`` sessions, or holds its
                share of live CLIs with none of its sessions idle.
            SessionStartError: the session's CLI could not be started.
            SupervisorClosedError: the supervisor is shutting down.

        Leaving the block before the turn ends (including by cancellation, e.g. the HTTP
        client went away) cancels the turn: if it has not started it is skipped; if it
        is running the CLI is interrupted and the turn drained, so the session is ready
        for its next turn. With ``policy.finish_on_disconnect`` a started turn runs on.
        """
        owner = principal if key is None else key.principal
        if self._turns_by_principal[owner] >= self.config.max_turns_per_principal:
            raise PrincipalLimitError(
                f"{self.config.max_turns_per_principal} turns of this key are already under way",
                retry_after_s=BUSY_RETRY_AFTER_S,
            )
        send, receive = trio.open_memory_channel[SessionEvent](self.config.event_buffer_size)
        envelope = Envelope(turn, send)
        self._turns_by_principal[owner] += 1
        try:
            await self._submit(
                key or SessionKey(f"one-turn-{uuid.uuid4().hex}", owner),
                envelope,
                one_turn=key is None,
                fork=fork,
            )
            with receive:
                yield receive
        finally:
            self._turns_by_principal[owner] -= 1
            if not (envelope.started and self.config.policy.finish_on_disconnect):
                envelope.cancel_scope.cancel()
            send.close()
            receive.close()

    async def _submit(
        self, key: SessionKey, envelope: Envelope, *, one_turn: bool, fork: ForkPoint | None
    ) -> None:
        if self._ownership is not None and not one_turn and not self._closed:
            await self._ownership.claim(key)
        while True:
            if self._closed:
                raise SupervisorClosedError("the server is shutting down")
            actor = self._children.registered.get(key)
            if actor is None:
                await self._children.start(
                    key,
                    one_turn=one_turn,
                    fork=fork,
                    system=envelope.turn.system,
                    model=envelope.turn.model,
                )
                fork = None  # started (as a fork or not): from now on it exists
                continue
            if not actor.live:
                # Hibernated: its key must be within its share of live CLIs (else 429
                # now), and with no free slot it waits (bounded) for room while a
                # refusal can still be a status code.
                self._children.slots.check_share(key.principal, actor)
                if len(self._children.slots) >= self.config.max_live_sessions:
                    await self._children.slots.wait_for_room(actor)
                    if self._children.registered.get(key) is not actor:
                        continue  # it retired meanwhile: look again
            if actor.dormant:
                self._children.revive(actor)
            try:
                actor.submit_nowait(envelope)
                return
            except trio.WouldBlock:
                raise MailboxFullError(
                    f"session {key.session_id} already has {self.config.mailbox_size} "
                    "turns waiting",
                    retry_after_s=1,
                ) from None
            except trio.BrokenResourceError:
                self._children.registered.pop(key, None)  # retired: start another

    # -- Sessions by key ------------------------------------------------------------------

    def rename_session(self, old: SessionKey, new: SessionKey) -> bool:
        """Give session ``old`` the key ``new``: its actor, CLI (live or hibernated),
        conversation, workspace and listeners go with it, and ``old`` is free for a new
        session. Observers see the session's later turns under ``new``; keeping records
        made under ``old`` in step (e.g. a store's) is the caller's.

        Returns:
            Whether it was renamed: ``False`` (nothing changed) while ``old`` is being
            started, has a turn running, in hand or queued, or if ``new`` is taken.

        Raises:
            SessionNotFoundError: ``old`` is not registered (it may still be known to the
                session directory, which the caller renames).
            ValueError: ``new`` has another principal.

        Not a checkpoint.
        """
        if new.principal != old.principal:
            raise ValueError("a session keeps its principal when renamed")
        return self._children.rename(old, new)

    def interrupt(self, key: SessionKey) -> bool:
        """Interrupt the session's running turn. Returns whether one was running.

        Raises:
            SessionNotFoundError: no such session.

        Not a checkpoint. The turn's caller gets ``TurnFailed(reason="interrupted")``.
        """
        return self._children.actor(key).interrupt()

    @contextmanager
    def listen(self, key: SessionKey) -> Iterator[trio.MemoryReceiveChannel[Notice]]:
        """Yield a channel with every event of the session's turns from now on.

        A listener that reads too slowly loses events and then gets ``Lagged(dropped)``;
        it never slows the session. Pending ``PermissionRequest``s come first. The channel
        ends when the session is forgotten.

        Raises:
            SessionNotFoundError: no such session.
        """
        actor = self._children.actor(key)
        with actor.fanout.listen(replay=actor.pending_permissions()) as events:
            yield events

    async def wait_for_session(self, key: SessionKey) -> None:
        """Wait until session ``key`` exists (is registered), instead of polling for it.

        Returns at once (after a checkpoint) if it exists already. Otherwise returns
        when its actor is registered: started by a turn from any route (a WebSocket, an
        HTTP request, an embedding program) or adopted from the warm pool. On return
        the session exists, and it stays registered until the caller's next checkpoint,
        so a ``listen(key)`` right after this returns cannot raise
        ``SessionNotFoundError``.

        Waiters are woken in the very step that registers the session, and that step
        comes before the session's first turn is handed to its actor: the caller whose
        turn starts a session submits it only once the start is done. An actor reports a
        turn's first event (``TurnStarted``) only after receiving the turn and sending
        its prompt to the CLI, both checkpoints. So a caller that calls ``listen(key)``
        right after this returns, with no checkpoint in between, hears the session's
        first turn from its ``TurnStarted`` on.

        Args:
            key: the session (principal and session id) to wait for.

        After ``close()`` turns no longer start sessions, so a wait for a session that
        does not exist (and is not being started) lasts until cancelled. Takes no
        timeout: wrap it in ``trio.move_on_after``. If cancelled, it leaves nothing
        behind.
        """
        await self._children.wait_for(key)

    async def close_session(self, key: SessionKey) -> SessionInfo:
        """Close a session for good: its running turn fails (``session_closed``), waiting
        turns too, its CLI is closed, its workspace removed, and it is forgotten at once
        (a new turn with the same id starts a new conversation).

        Returns the session's last snapshot (e.g. its ``claude_session_id``).

        Raises:
            SessionNotFoundError: no such session.

        Waits until the CLI process is gone. If cancelled, the closing goes on anyway.
        """
        actor = self._children.actor(key)
        info = session_info(actor)
        self.close_session_nowait(key)
        await actor.done.wait()
        return info

    async def hand_off(self, key: SessionKey) -> bool:
        """Stop driving session ``key`` here so that another node can: once it has no
        turn running or waiting, its CLI is closed and its actor unregistered. Unlike
        ``close_session`` it is not forgotten: observers are not told, and its workspace
        stays. Returns whether there was such a session.

        Waits for the session's turns to end and its CLI to be gone; the hand-off goes on
        if this is cancelled.
        """
        actor = self._children.registered.get(key)
        if actor is None:
            return False
        actor.hand_off()
        if actor.dormant:
            self._children.end_dormant(actor)
        await actor.done.wait()
        return True

    def close_session_nowait(
        self, key: SessionKey, reason: str = "the session was deleted"
    ) -> None:
        """``close_session`` without waiting for the CLI to be gone. Not a checkpoint.

        Raises:
            SessionNotFoundError: no such session.
        """
        actor = self._children.actor(key)
        actor.close(reason)
        if actor.dormant:
            self._children.end_dormant(actor)
        self._children.forget(actor)

    def answer_permission(
        self, key: SessionKey, request_id: str, allow: bool, message: str = ""
    ) -> bool:
        """Answer a session's pending ``PermissionRequest``; False if there is no such
        pending request. Not a checkpoint.

        Raises:
            SessionNotFoundError: no such session.
        """
        return self._children.actor(key).answer_permission(request_id, allow, message)

    # -- Background tasks and observers ---------------------------------------------------

    async def forget_past_retention(self) -> None:
        """Forget each dormant session once its retention has passed (exactly
        ``retention_s`` after its last turn), until cancelled (``open_supervisor`` runs
        it)."""
        await self._children.forget_past_retention()

    async def keep_pool_warm(self) -> None:
        """Keep the warm pool filled until cancelled (``open_supervisor`` runs it)."""
        await self._children.keep_pool_warm(lambda: self._closed)

    def add_observer(self, observer: Observer) -> None:
        """Have ``observer`` notified of every turn's end and every CLI start from now on.
        Not a checkpoint."""
        self._children.observers.members.append(observer)

    # -- Shutdown and listings ------------------------------------------------------------

    def close(self) -> None:
        """Refuse new turns from now on. Not a checkpoint; running turns go on."""
        self._closed = True

    @property
    def closing(self) -> bool:
        """Whether ``close`` was called (the server drains). Not a checkpoint."""
        return self._closed

    async def wait_idle(self) -> None:
        """Wait until no session is running or has waiting turns."""
        actors = self._children.registered
        while any(a.state == "busy" or a.mailbox_depth for a in actors.values()):
            await self._children.changed.park()

    def sessions(self) -> list[SessionInfo]:
        """Snapshots of every session, oldest first (ties by id). Not a checkpoint."""
        infos = [session_info(actor) for actor in self._children.registered.values()]
        return sorted(infos, key=lambda info: (info.created_at, info.session_id))

    def session(self, key: SessionKey) -> SessionInfo | None:
        """A snapshot of one session, or ``None`` if there is none. Not a checkpoint."""
        actor = self._children.registered.get(key)
        return None if actor is None else session_info(actor)

    def stats(self) -> dict[str, Any]:
        """Counters for operators: sessions, pool, mailboxes, restarts, dead letters,
        timeouts by kind. Not a checkpoint."""
        children = self._children
        actors = list(children.registered.values())
        timeouts = children.totals.copy()
        for actor in actors:
            timeouts.update(actor.timeouts)
        return {
            "sessions": len(actors),
            "live_sessions": sum(a.live for a in actors),
            "hibernated_sessions": sum(not a.live for a in actors),
            "busy_sessions": sum(a.state == "busy" for a in actors),
            "live_processes": len(children.slots),
            "warm_pool_size": len(children.pool),
            "warm_pids": children.pool.pids,
            "waiting_turns": sum(a.mailbox_depth for a in actors),
            "max_mailbox_depth": max((a.mailbox_depth for a in actors), default=0),
            "restarts": children.totals["restarts"] + sum(a.restarts for a in actors),
            "sessions_failed": children.sessions_failed,
            "forks": children.forks,
            "dead_letters": children.dead_letters + sum(a.dead_letters for a in actors),
            "listener_drops": sum(a.fanout.dropped_total for a in actors),
            "timeouts": {kind: timeouts[kind] for kind in ("first_chunk", "stream_idle")},
        }


class SessionOwnership(Protocol):
    """Which node drives which session, in a cluster of nodes (``app.cluster``)."""

    async def claim(self, key: SessionKey) -> None:
        """Return once this node may drive ``key`` (at once if it already does).

        Raises:
            RetryLaterError: another node still drives it and did not hand it over in
                time.
        """
        ...


@asynccontextmanager
async def open_supervisor(
    config: SupervisorConfig,
    client_factory: ClientFactory,
    *,
    directory: SessionDirectory | None = None,
    ownership: SessionOwnership | None = None,
) -> AsyncIterator[Supervisor]:
    """Run a supervisor (and its warm pool) for the duration of the block.

    Args:
        config: limits, the workspace root and the actors' policy.
        directory: where to look up sessions not running now (e.g. from before a
            restart): a turn for one of them resumes its conversation in its workspace.
        ownership: in a cluster, claims each session for this node before its turns.
        client_factory: opens a connected ``ClaudeClient`` per CLI lifetime
            (``functools.partial(open_sdk_client, cli_options)`` for the real CLI;
            ``actors.testing.ScriptedClientFactory`` in tests).

    Leaving the block (normally, by an exception, or by cancellation) stops every actor:
    running turns fail with ``session_closed`` and every CLI process is closed before the
    block exits.
    """
    async with trio.open_nursery() as nursery:
        supervisor = Supervisor(config, client_factory, nursery, directory, ownership)
        nursery.start_soon(supervisor.keep_pool_warm)
        nursery.start_soon(supervisor.forget_past_retention)
        try:
            yield supervisor
        finally:
            supervisor.close()
            nursery.cancel_scope.cancel()
            supervisor._children.retire_all_dormant()
