"""Every Nova Act SDK error class becomes a typed tool error with the right retry flag."""

from __future__ import annotations

import pytest
from nova_act.types import act_errors
from nova_act.types.errors import AuthError, StartFailed

from tools import BlockedError, ToolUnavailableError
from tools.nova_act import as_tool_error


@pytest.mark.parametrize(("error", "retryable"), [
    (act_errors.ActTimeoutError(), True),
    (act_errors.ActAgentFailed(message="no such button"), False),
    (act_errors.ActExceededMaxStepsError(message="30 steps"), False),
    (act_errors.ActInvalidModelGenerationError(message="bad"), False),
    (act_errors.ActGuardrailsError(message="unsafe"), False),
    (act_errors.ActRateLimitExceededError(message="slow down"), True),
    (act_errors.ActRequestThrottledError(message="throttled"), True),
    (act_errors.ActDailyQuotaExceededError(message="quota"), False),
    (act_errors.ActServerError(message="500"), True),
    (act_errors.ActServiceUnavailableError(message="503"), True),
    (act_errors.ActInternalServerError(message="500"), True),
    (act_errors.ActBadResponseError(message="garbled"), True),
    (act_errors.ActActuationError(message="click failed"), False),
    (act_errors.ActToolError(message="tool failed"), False),
    (StartFailed("no browser"), True),
])
def test_error_classes_map_to_typed_tool_errors(error, retryable):
    mapped = as_tool_error(error)
    assert mapped.type_name == type(error).__name__
    assert mapped.retryable is retryable
    assert mapped.status == "error"


def test_guardrail_error_is_blocked():
    mapped = as_tool_error(act_errors.ActStateGuardrailError())
    assert isinstance(mapped, BlockedError) and mapped.status == "blocked"


def test_auth_error_says_what_to_set():
    mapped = as_tool_error(AuthError("bad key"))
    assert isinstance(mapped, ToolUnavailableError) and "NOVA_ACT_API_KEY" in str(mapped)
