"""ccactors' actor runtime: one supervised Trio actor per Claude Code conversation.

Embeddable in any Trio program; knows nothing about HTTP. See ``open_supervisor``.
"""

from ._actor import SessionFailedError as SessionFailedError
from ._children import SessionDirectory as SessionDirectory
from ._client import ClaudeClient as ClaudeClient
from ._client import ClientError as ClientError
from ._client import ClientFactory as ClientFactory
from ._client import ModelRefusedError as ModelRefusedError
from ._client import Prompt as Prompt
from ._client import SessionSpec as SessionSpec
from ._config import SessionInfo as SessionInfo
from ._config import SupervisorConfig as SupervisorConfig
from ._policy import ActorPolicy as ActorPolicy
from ._sdk import BUNDLED_CLI as BUNDLED_CLI
from ._sdk import CliOptions as CliOptions
from ._sdk import open_sdk_client as open_sdk_client
from ._supervisor import SessionOwnership as SessionOwnership
from ._supervisor import Supervisor as Supervisor
from ._supervisor import open_supervisor as open_supervisor
from ._types import SESSION_ID_PATTERN as SESSION_ID_PATTERN
from ._types import CapacityError as CapacityError
from ._types import FailureReason as FailureReason
from ._types import ForkPoint as ForkPoint
from ._types import InvalidSessionIdError as InvalidSessionIdError
from ._types import Lagged as Lagged
from ._types import MailboxFullError as MailboxFullError
from ._types import Observer as Observer
from ._types import PermissionDecision as PermissionDecision
from ._types import PermissionRequest as PermissionRequest
from ._types import PrincipalLimitError as PrincipalLimitError
from ._types import RetryLaterError as RetryLaterError
from ._types import SessionError as SessionError
from ._types import SessionEvent as SessionEvent
from ._types import SessionKey as SessionKey
from ._types import SessionNotFoundError as SessionNotFoundError
from ._types import SessionRecord as SessionRecord
from ._types import SessionStartError as SessionStartError
from ._types import SupervisorClosedError as SupervisorClosedError
from ._types import TextDelta as TextDelta
from ._types import ThinkingDelta as ThinkingDelta
from ._types import ToolResult as ToolResult
from ._types import ToolUse as ToolUse
from ._types import Turn as Turn
from ._types import TurnCompleted as TurnCompleted
from ._types import TurnFailed as TurnFailed
from ._types import TurnRecord as TurnRecord
from ._types import TurnStarted as TurnStarted
from ._types import Usage as Usage
from ._workspaces import workspace_name as workspace_name
