"""The turn a request asks for: its prompt from the request's messages, its model, its
system prompt, within the request limits. Every front end builds its turns here
(``prepare_turn``), through ``app.http._pipeline``; nothing here does I/O.
"""

from __future__ import annotations

from collections.abc import Sequence

from actors import Prompt, SessionKey, Turn

from .._settings import Settings
from ..wire._codec import Message, TurnRequest
from ..wire._media import MediaPart
from ..wire._problems import RequestError

# -- Limits and prompts -----------------------------------------------------------


def check_size(messages: int, settings: Settings) -> None:
    """Raises ``RequestError`` (400) for more than ``max_messages`` messages."""
    if messages > settings.max_messages:
        raise RequestError(f"too many messages: {messages} (at most {settings.max_messages})")


def check_media(prompt: Prompt, parts: Sequence[MediaPart], settings: Settings) -> None:
    """Apply the media limits to the images and documents a turn's prompt sends (with a
    session, the new message's; without one, the history's too). Not a checkpoint.

    Args:
        prompt: the turn's prompt (``build_prompt``).
        parts: the request's ``TurnRequest.media_parts``; those whose block the prompt
            holds are checked.
        settings: ``max_media_blocks``, ``max_image_bytes``, ``max_document_bytes``.

    Raises:
        RequestError: more than ``max_media_blocks`` of them (400, ``param``
            ``messages``); an image over ``max_image_bytes`` or a document over
            ``max_document_bytes`` decoded (413 ``request_too_large``, naming its field).
    """
    sent = {id(block) for block in prompt} if isinstance(prompt, list) else set()
    parts = [part for part in parts if id(part.block) in sent]
    if len(parts) > settings.max_media_blocks:
        raise RequestError(
            f"too many images and documents: {len(parts)} (at most "
            f"{settings.max_media_blocks} in a turn, earlier messages' included when they "
            "come along)",
            param="messages",
        )
    for part in parts:
        limit = settings.max_image_bytes if part.kind == "image" else settings.max_document_bytes
        if part.size > limit:
            raise RequestError(
                f"{part.field}: the {part.kind} is {part.size} bytes, over the limit of "
                f"{limit} bytes (decoded)",
                413,
                param=part.field,
            )


def check_prompt(prompt: Prompt, settings: Settings) -> Prompt:
    """The prompt, if its text is within ``max_prompt_chars`` (images and documents do
    not count: ``check_media`` limits them); else ``RequestError`` (400)."""
    if isinstance(prompt, str):
        length = len(prompt)
    else:
        length = sum(len(block["text"]) for block in prompt if block["type"] == "text")
    if length > settings.max_prompt_chars:
        raise RequestError(
            f"the message is too long: {length} characters (at most {settings.max_prompt_chars})"
        )
    return prompt


def build_prompt(messages: Sequence[Message], *, in_session: bool) -> Prompt:
    """The prompt of the turn a request asks for. Not a checkpoint.

    The last message, which must be the user's with text or media, is the new message.
    Instructions are placed before it: all of them without a session; with one, those
    after the last assistant message (earlier ones went with an earlier turn). Without a
    session, earlier user and assistant messages come along as context too; with one,
    the session's CLI already holds them.

    Without images or documents the prompt is that text. With them it is a list of
    Anthropic content blocks: the text first (so a slash command in it is still seen,
    and neutralised, by ``actors._prompt.as_user_text``), then the media blocks in
    request order: the new message's, and without a session the earlier messages'
    before them. When the text has sections, each message's media are named where the
    message is (``[attached below: image 1, document 2]``, numbered in block order).

    Raises:
        RequestError: the last message is not a user message with text or media
            (``param`` ``messages``).
    """
    if not messages or messages[-1].role != "user" or not (messages[-1].text or messages[-1].media):
        raise RequestError(
            "the last message must be a user message with text (or an image or document)",
            param="messages",
        )
    *earlier, last = messages
    since = max((i for i, m in enumerate(earlier) if m.role == "assistant"), default=-1) + 1
    instructions = [
        m.text
        for i, m in enumerate(earlier)
        if m.role == "instructions" and m.text and (not in_session or i >= since)
    ]
    history = [] if in_session else [m for m in earlier if m.role != "instructions"]
    notes = _attachment_notes([*history, last])
    context = [
        f"{'User' if m.role == 'user' else 'Assistant'}: {_joined(m.text, note)}"
        for m, note in zip(history, notes, strict=False)
        if m.text or m.media
    ]
    sections = []
    if instructions:
        sections.append("Instructions:\n\n" + "\n\n".join(instructions))
    if context:
        sections.append("The conversation so far:\n\n" + "\n\n".join(context))
    if sections:
        new = _joined(last.text, notes[-1])
        text = "\n\n".join([*sections, f"The user's new message:\n\n{new}"])
    else:
        text = last.text
    media = [block for m in (*history, last) for block in m.media]
    if not media:
        return text
    return [*([{"type": "text", "text": text}] if text else []), *media]


def _attachment_notes(messages: Sequence[Message]) -> list[str]:
    """For each message, ``[attached below: image 1, document 2]`` naming its media by
    their place among all these messages' media (``""`` for a message without)."""
    notes, count = [], 0
    for m in messages:
        names = [f"{block['type']} {count + n}" for n, block in enumerate(m.media, 1)]
        count += len(names)
        notes.append(f"[attached below: {', '.join(names)}]" if names else "")
    return notes


def _joined(text: str, note: str) -> str:
    return "\n".join(part for part in (text, note) if part)


# -- Turns -------------------------------------------------------------------------


def client_system(messages: Sequence[Message], mode: str) -> tuple[Sequence[Message], str | None]:
    """What a request's instructions (its system prompt) become, by setting
    ``client_system``: the messages to build the prompt from, and the text to append to
    the session's system prompt (``Turn.system``). Not a checkpoint.

    ``instructions``: the messages as they are (``build_prompt`` places them); ``ignore``:
    without them; ``append``: without them, their texts (in order, blank lines between)
    as the system prompt's addition, which takes effect if the turn opens its session.
    """
    if mode == "instructions":
        return messages, None
    kept = [m for m in messages if m.role != "instructions"]
    texts = [m.text for m in messages if m.role == "instructions" and m.text]
    return kept, ("\n\n".join(texts) if mode == "append" and texts else None)


def prepare_turn(
    turn_request: TurnRequest,
    key: SessionKey | None,
    settings: Settings,
    *,
    context_from: int | None = None,
) -> Turn:
    """The turn a parsed request asks for, within the request limits (``check_size``,
    ``build_prompt``, ``check_media``, ``check_prompt``), on the model it names
    (``resolve_model``), with its system prompt as ``client_system`` says. Every front
    end builds its turns here. Not a checkpoint.

    ``context_from``: the session holds the conversation only up to this index of the
    request's messages; those from it on (but the last) go along as context. ``None``:
    with a key the session holds all of it, without one nothing.

    Raises:
        RequestError: over a limit (400, or 413 for an image or document too large),
            no user message with text or media last, or a model name that is malformed
            or refused (``param`` ``model``).
    """
    check_size(turn_request.size, settings)
    model = settings.resolve_model(turn_request.model)
    _, system = client_system(turn_request.messages, settings.client_system)
    if context_from is None:
        messages, in_session = turn_request.messages, key is not None
    else:
        messages, in_session = turn_request.messages[context_from:], False
    kept, _ = client_system(messages, settings.client_system)
    prompt = build_prompt(kept, in_session=in_session)
    check_media(prompt, turn_request.media_parts, settings)
    if system is not None and len(system) > settings.max_prompt_chars:
        raise RequestError(
            f"the system prompt is too long: {len(system)} characters "
            f"(at most {settings.max_prompt_chars})",
            param="system",
        )
    return Turn(check_prompt(prompt, settings), model=model, system=system)
