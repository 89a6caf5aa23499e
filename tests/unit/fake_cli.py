#!/usr/bin/env python3
"""A stand-in ``claude`` executable speaking just enough of the CLI's stream-json
protocol for the SDK adapter's unit tests (no Node, no network, fast start).

Behaviour by ``FAKE_CLI_MODE``: ``normal``; ``exit0`` (exits at once, silently, with
status 0); ``stubborn`` (ignores SIGTERM and the end of its input). Each user message is
answered with a ``system`` init, ``FAKE_CLI_EVENTS`` stream events
(``FAKE_CLI_EVENT_DELAY`` seconds apart), an assistant message echoing the user content as
JSON under the current model, and a result. ``set_model`` of a model named ``refused-...``
is answered with an error. Writes its pid to ``FAKE_CLI_PID_FILE``.
"""

import json
import os
import signal
import sys
import time

mode = os.environ.get("FAKE_CLI_MODE", "normal")
if mode == "exit0":
    sys.exit(0)
if pid_file := os.environ.get("FAKE_CLI_PID_FILE"):
    with open(pid_file, "w") as f:
        f.write(str(os.getpid()))
if mode == "stubborn":
    signal.signal(signal.SIGTERM, signal.SIG_IGN)

events = int(os.environ.get("FAKE_CLI_EVENTS", "3"))
delay = float(os.environ.get("FAKE_CLI_EVENT_DELAY", "0"))
model = "fake-default"
session = "fake-session"
turn = 0


def send(message):
    sys.stdout.write(json.dumps(message) + "\n")
    sys.stdout.flush()


for line in sys.stdin:
    message = json.loads(line)
    if message["type"] == "control_request":
        request = message["request"]
        response = {"subtype": "success", "request_id": message["request_id"], "response": {}}
        if request["subtype"] == "set_model":
            if (request["model"] or "").startswith("refused-"):
                error = f"model {request['model']} is not available"
                response = {"subtype": "error", "request_id": message["request_id"], "error": error}
            else:
                model = request["model"] or "fake-default"
        send({"type": "control_response", "response": response})
    elif message["type"] == "user":
        turn += 1
        send(
            {
                "type": "system",
                "subtype": "init",
                "session_id": session,
                "claude_code_version": "2.1.327",
            }
        )
        for n in range(events):
            event = {"type": "ping", "n": n}
            send({"type": "stream_event", "uuid": f"e{n}", "session_id": session, "event": event})
            time.sleep(delay)
        content = [{"type": "text", "text": json.dumps(message["message"]["content"])}]
        send(
            {
                "type": "assistant",
                "message": {"content": content, "model": model},
                "uuid": f"assistant-{turn}",
                "session_id": session,
                "parent_tool_use_id": None,
            }
        )
        send(
            {
                "type": "result",
                "subtype": "success",
                "duration_ms": 1,
                "duration_api_ms": 1,
                "is_error": False,
                "num_turns": turn,
                "session_id": session,
                "result": "done",
                "user_message_uuid": f"user-{turn}",
            }
        )
while mode == "stubborn":
    time.sleep(1)
