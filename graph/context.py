"""Run configuration: a typed LangGraph context schema, so LangGraph Studio renders it."""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Literal

if TYPE_CHECKING:
    from tools.sandbox import SandboxPolicy

DEFAULT_MODEL = "us.amazon.nova-2-lite-v1:0"


@dataclass(kw_only=True)
class Context:
    """Settings of one run. Every field has a default; pass only what you change."""

    model: str = field(
        default=DEFAULT_MODEL,
        metadata={
            "description": (
                "Reasoning model: a Bedrock model id (Nova 2 Lite by default) or an "
                "init_chat_model string such as 'bedrock_converse:us.amazon.nova-2-lite-v1:0'."
            )
        },
    )
    region: str = field(
        default_factory=lambda: os.environ.get("AWS_REGION", "us-east-1"),
        metadata={"description": "AWS region of the Bedrock endpoint ($AWS_REGION)."},
    )
    reasoning_effort: str | None = field(
        default=None,
        metadata={"description": "Nova 2 extended thinking: 'low', 'medium', 'high' or none."},
    )
    bedrock_endpoint_url: str | None = field(
        default=None,
        metadata={"description": "Override the Bedrock runtime endpoint (VPC endpoint, tests)."},
    )
    model_timeout_seconds: float = field(
        default=180.0,
        metadata={"description": "Time limit of one reasoning call (retries included)."},
    )
    plan_file: str | None = field(
        default=None,
        metadata={
            "description": (
                "Offline planner mode: run the plan in this JSON or YAML file instead of "
                "asking the model, and write a templated answer."
            )
        },
    )
    plan_variables: dict[str, str] = field(
        default_factory=dict,
        metadata={"description": "Values for `{{ name }}` placeholders in the plan file."},
    )
    approval: Literal["ask", "auto", "deny"] = field(
        default="ask",
        metadata={
            "description": (
                "Steps that change things: 'ask' pauses for a human (LangGraph interrupt), "
                "'auto' runs them, 'deny' rejects them."
            )
        },
    )
    max_plan_attempts: int = field(
        default=3,
        metadata={"description": "Model outputs tried per plan before the run fails."},
    )
    max_replans: int = field(default=3, metadata={"description": "Replans allowed per run."})
    max_steps: int = field(default=50, metadata={"description": "Steps executed per run."})
    max_tool_calls: int = field(
        default=100, metadata={"description": "Tool calls per run, retries included."}
    )
    deadline_seconds: float = field(
        default=600.0, metadata={"description": "Wall-clock limit of a run, in seconds."}
    )
    token_budget: int = field(
        default=200_000,
        metadata={"description": "Reasoning-model tokens (input + output) per run."},
    )
    max_stalled_replans: int = field(
        default=2,
        metadata={"description": "Replans in a row without a new successful step: a loop."},
    )
    summarize_threshold_tokens: int = field(
        default=6_000,
        metadata={
            "description": "Fold older results into the summary when a prompt would pass this."
        },
    )
    keep_recent_results: int = field(
        default=8, metadata={"description": "Results kept verbatim when folding."}
    )
    step_timeout_seconds: float = field(
        default=300.0, metadata={"description": "Time limit of one tool call."}
    )
    max_retries: int = field(
        default=2, metadata={"description": "Retries of a step whose error is retryable."}
    )
    allowed_hosts: list[str] = field(
        default_factory=list,
        metadata={
            "description": (
                "Hosts executors may reach: 'host' (any port) or 'host:port'; this machine "
                "(localhost, 127.0.0.1) only as 'host:port'. All else is blocked; none by "
                "default."
            )
        },
    )
    max_response_bytes: int = field(
        default=256_000, metadata={"description": "Largest tool response read, in bytes."}
    )
    browser_max_steps: int = field(
        default=30, metadata={"description": "Nova Act observe-act cycles per browser step."}
    )
    browser_timeout_seconds: int = field(
        default=240, metadata={"description": "Time limit of one Nova Act browser step."}
    )
    max_browser_sessions: int = field(
        default=4,
        metadata={"description": "Browser steps of a run that run at once; the others wait "
                                 "for a slot (a `step_waiting` event says so). A named session "
                                 "holds a slot only while one of its steps runs."},
    )
    executor_url: str | None = field(
        default_factory=lambda: os.environ.get("DUET_EXECUTOR_URL") or None,
        metadata={"description": "Run steps on executor deployments (LangGraph servers "
                                 "serving nova-duet-executor) instead of in-process; several "
                                 "URLs separated by commas. Auth headers: the "
                                 "DUET_EXECUTOR_HEADERS environment variable (JSON)."},
    )
    step_screenshots: bool = field(
        default=True,
        metadata={"description": "Save the page at the end of each browser step, for the run "
                                 "report (in the run's folder)."},
    )
    browser_cdp_url: str | None = field(
        default=None,
        metadata={"description": "Use this remote browser over CDP instead of a local Chromium."},
    )
    browser_cdp_headers: dict[str, str] = field(
        default_factory=lambda: json.loads(os.environ.get("DUET_BROWSER_CDP_HEADERS") or "{}"),
        metadata={
            "description": (
                "Headers for the remote browser's CDP connection (auth); default from "
                "$DUET_BROWSER_CDP_HEADERS (JSON). Never saved with a run."
            )
        },
    )

    def sandbox_policy(self) -> SandboxPolicy:
        """The sandbox executors run under for this run."""
        from tools.sandbox import SandboxPolicy  # the executors' package: loaded for runs only

        return SandboxPolicy(
            allowed_hosts=tuple(self.allowed_hosts), max_response_bytes=self.max_response_bytes,
            browser_max_steps=self.browser_max_steps,
            browser_timeout_seconds=self.browser_timeout_seconds,
            cdp_endpoint_url=self.browser_cdp_url,
            cdp_headers=tuple(self.browser_cdp_headers.items()),
            max_browser_sessions=self.max_browser_sessions,
        )
