"""Chat models from a name: Nova 2 Lite on Bedrock (the default), any `init_chat_model`
provider, or a scripted model for offline tests. Bedrock needs AWS credentials: without
them this says what to set, and never falls back to another model."""

from __future__ import annotations

import re
import sys
from functools import lru_cache

from langchain_core.language_models import BaseChatModel

from graph.context import Context, ReasoningEffort
from graph.reasoning.protocol import ConfigurationError

MISSING_CREDENTIALS = (
    "No AWS credentials found for Amazon Bedrock (model {model!r}). Set AWS_PROFILE, or "
    "AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY (plus AWS_SESSION_TOKEN for temporary "
    "credentials), and AWS_REGION; or run offline with a plan file (`duet run --plan-file "
    "FILE`, or `plan_file` in the run context)."
)


def require_aws_credentials(model_id: str) -> None:
    """Raise `ConfigurationError` saying what to set when boto3 finds no credentials."""
    import boto3

    if boto3.Session().get_credentials() is None:
        raise ConfigurationError(MISSING_CREDENTIALS.format(model=model_id))


_PROVIDER_PREFIX = re.compile(r"[a-z_-]+")


BEDROCK_MAX_ATTEMPTS = 4


def endpoint_unreachable(exc: BaseException) -> bool:
    """Whether `exc` says the model's endpoint could not be reached (refused, reset, gone):
    botocore's connection errors, which its own retries gave up on. A read that timed out is
    a stall, not an outage (the model timeout bounds it)."""
    botocore = sys.modules.get("botocore.exceptions")  # loaded if a Bedrock model is used
    return botocore is not None and isinstance(
        exc, botocore.EndpointConnectionError | botocore.ConnectionClosedError)

# Bedrock prompt caching for Amazon Nova: a cache point takes effect after at least 1,000
# tokens (counted since the previous one), at most 4 a request, in `system` and `messages`
# only (Nova does not cache `toolConfig`); a cached prefix lives 5 minutes after its last use.
NOVA_CACHE_MIN_TOKENS = 1_000


def cache_point_minimum(model: BaseChatModel) -> int | None:
    """The minimum prefix a cache point of `model` needs, or None when the model takes none:
    Nova models over Bedrock Converse (`ChatBedrockConverse`) take them."""
    langchain_aws = sys.modules.get("langchain_aws")  # loaded if the model is one of its own
    if langchain_aws is None or not isinstance(model, langchain_aws.ChatBedrockConverse):
        return None
    model_id = (model.base_model_id or model.model_id or "").lower()
    return NOVA_CACHE_MIN_TOKENS if "amazon.nova" in model_id else None


# The most tokens one Nova 2 Lite call may write (its Bedrock maxTokens limit).
NOVA_2_LITE_MAX_OUTPUT_TOKENS = 65_535


def output_bound(model: BaseChatModel, context: Context) -> int:
    """The most tokens one call of `model` may write, as a cost budget reserves them: the
    model's own `max_tokens` (a Bedrock model is made with `max_output_tokens`), else
    `max_output_tokens`, else Nova 2 Lite's limit."""
    own = getattr(model, "max_tokens", None)
    return (own if isinstance(own, int) and own > 0 else None) or (
        context.max_output_tokens or NOVA_2_LITE_MAX_OUTPUT_TOKENS)


@lru_cache(maxsize=16)
def _bedrock_model(
    model_id: str, region: str, endpoint_url: str | None,
    reasoning_effort: ReasoningEffort | None,
    call_seconds: float = 180, max_tokens: int | None = None,
) -> BaseChatModel:
    from botocore.config import Config
    from langchain_aws import ChatBedrockConverse

    # Throttling, 5xx and read timeouts are retried a bounded number of times, with
    # exponential backoff and jitter (botocore's "standard" mode); the model call timeout
    # bounds the total. The call runs in a thread that its timeout cannot stop, and the
    # process waits for that thread before it exits: so every attempt's read together waits
    # no longer than that bound either (a stalled endpoint ends the thread with the call).
    retries = Config(retries={"mode": "standard", "total_max_attempts": BEDROCK_MAX_ATTEMPTS},
                     connect_timeout=min(10, call_seconds / BEDROCK_MAX_ATTEMPTS),
                     read_timeout=call_seconds / BEDROCK_MAX_ATTEMPTS)
    return ChatBedrockConverse(
        model=model_id, region_name=region, base_url=endpoint_url,
        reasoning_effort=reasoning_effort, temperature=0, config=retries,
        max_tokens=max_tokens,
    )


@lru_cache(maxsize=16)
def _scripted_model(path: str) -> BaseChatModel:
    from graph.testing import load_script

    return load_script(path)


def chat_model_from_spec(spec: str, context: Context) -> BaseChatModel:
    """A chat model from a Bedrock model id, an `init_chat_model` string ('provider:model'),
    or 'scripted:/path/script.json' (a `ScriptedChatModel`, one per file and process: for
    offline tests of a served graph, named as such)."""
    provider, sep, rest = spec.partition(":")
    if provider == "scripted":
        return _scripted_model(rest)
    if sep and _PROVIDER_PREFIX.fullmatch(provider) and provider not in ("bedrock_converse",):
        from langchain.chat_models import init_chat_model

        return init_chat_model(spec)
    model_id = rest if provider == "bedrock_converse" else spec
    require_aws_credentials(model_id)
    return _bedrock_model(
        model_id, context.region, context.bedrock_endpoint_url, context.reasoning_effort,
        context.model_timeout_seconds, context.max_output_tokens,
    )
