"""The one package that imports the Claude Agent SDK (``claude-agent-sdk``).

Adapts ``claude_agent_sdk.ClaudeSDKClient`` to the ``ClaudeClient`` protocol, through the
SDK's public API only: ``ClaudeAgentOptions``, ``connect``, ``query``,
``receive_messages``, ``interrupt``, ``set_model``, ``disconnect``, and ``can_use_tool``
for permission questions. Everything the CLI is allowed to do (executable, tools,
permission mode, environment) comes from a ``CliOptions`` built from server settings;
per session only the working directory and the conversation to resume (or fork) vary.

``_options``: what every CLI is started with (``CliOptions``, ``BUNDLED_CLI``);
``_client``: a connected CLI driven as a ``ClaudeClient`` (``open_sdk_client``);
``_messages``: the SDK's messages as ``ClientMessage``s, and a prompt as its input.

Private SDK details still relied on, each in one place and each guarded by a test in
``tests/unit/test_sdk_adapter.py`` that fails loudly when a new SDK release moves it:

* ``ClaudeSDKClient._transport._process`` (the CLI's ``anyio.abc.Process``), read only in
  ``_client._cli_process``: the SDK exposes no pid, no exit status and no kill. Guard:
  ``test_the_sdk_still_exposes_the_cli_process``.
* ``claude_agent_sdk/_bundled/claude``, the CLI shipped inside the SDK's wheel
  (``BUNDLED_CLI``). Guard: ``test_the_sdk_wheel_still_bundles_its_cli``.
"""

from ._client import open_sdk_client as open_sdk_client
from ._options import BUNDLED_CLI as BUNDLED_CLI
from ._options import CliOptions as CliOptions
