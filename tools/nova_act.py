"""The Nova Act executor: `browser_act` and `browser_extract` over the real `nova_act` SDK.

Each step drives a browser session over CDP: a Chromium process of its own behind its
allowlist proxy, from the `BrowserPool` (the SDK drives the first context of the browser it
connects to, so it cannot share the pool's Chromium; see docs/browser.md). The SDK's own
`state_guardrail` enforces the same allowlist, file access is closed (`SecurityOptions`),
and every SDK error becomes a typed `ToolError`.

Secrets never reach Nova Act's model (the SDK's README, "Entering sensitive information"):
`browser_act` takes `secret: "${secret.NAME}"`, and once its instruction has focused a
field the executor types the value there with Playwright's keyboard (`submit` then presses
Enter), on the session's own thread, only on one of the secret's hosts. The SDK sends each
observation's input values to the model with the page, so no act starts while a field
still holds a secret. A step whose page is a site's login page logs in first with the
site's recipe (`tools.browser_login`), over the pool's own connection to the same page.

Auth: `NOVA_ACT_API_KEY`, or AWS credentials plus `NOVA_ACT_WORKFLOW` (the name of a Nova
Act workflow definition, for the IAM backend). Without either, both tools are listed to the
planner as unavailable, with what to set.
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import os
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import jsonschema
from langchain_core.tools import StructuredTool
from pydantic import BaseModel, ConfigDict, Field

from tools.auth.references import REFERENCE
from tools.auth.secrets import SecretValue
from tools.browser import SESSION_HELP, BrowserPool, BrowserSession, browser_dependency
from tools.errors import BlockedError, ErrorKind, ToolError, ToolUnavailableError
from tools.pages import MASKED, SECRET_MARK
from tools.people import HandOff, HandOffKind, PersonNeeded
from tools.registry import Dependency
from tools.sandbox import SandboxPolicy
from tools.step import InjectedStep, StepContext, StepFiles

log = logging.getLogger("duet")

# We always drive Debian's Chromium over CDP: the SDK must never download a browser.
os.environ.setdefault("NOVA_ACT_SKIP_PLAYWRIGHT_INSTALL", "1")

NOVA_ACT_MODEL = "nova-act-latest"
STOP_SECONDS = 10.0  # how long closing a session waits for the SDK's stop
MISSING_AUTH = ("Nova Act needs credentials: set NOVA_ACT_API_KEY (a Nova Act API key), or "
                "AWS credentials (AWS_PROFILE or AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY) plus "
                "NOVA_ACT_WORKFLOW (the name of a Nova Act workflow definition)")


def nova_act_unavailable() -> str | None:
    """Why the Nova Act tools cannot run here, or None when credentials are set."""
    if os.environ.get("NOVA_ACT_API_KEY"):
        return None
    if os.environ.get("NOVA_ACT_WORKFLOW"):
        import boto3

        if boto3.Session().get_credentials() is not None:
            return None
    return MISSING_AUTH


class StartArgs(BaseModel):
    """What every Nova Act step is given."""

    model_config = ConfigDict(extra="forbid")

    instruction: str = Field(description="What to do on the page, in plain words.")
    start_url: str = Field(description="Where to start (an allowed host).")
    session: str | None = Field(default=None, description=SESSION_HELP)
    step: InjectedStep


class ActArgs(StartArgs):
    """Arguments of `browser_act`."""

    secret: str | None = Field(
        default=None, pattern=r"^\$\{secret\.[A-Za-z_][A-Za-z0-9_-]*\}$",
        description="`${secret.NAME}`: typed into the field the instruction left focused, "
                    "after it; Nova Act never sees it. Say in the instruction which field to "
                    "click, never the value.")
    submit: bool = Field(default=False,
                         description="Press Enter after typing `secret` (sends its form).")


class ExtractArgs(StartArgs):
    """Arguments of `browser_extract`."""

    json_schema: dict[str, Any] = Field(
        alias="schema", description="JSON Schema the extracted data must match.")


def nova_act_dependency(tool: str) -> Dependency:
    """What a Nova Act tool's calls wait on (its browser), and that Nova Act bills them by
    the agent-hour: the time of each `act` / `act_get` call goes to the step's
    `agent_time`, and one call's is bounded by the SDK's own limit, `browser_timeout_seconds`."""
    return dataclasses.replace(browser_dependency(tool),
                               agent_time_bound_by="browser_timeout_seconds")


class NovaActExecutor:
    """Nova Act in pooled browser sessions; one SDK instance (and one thread) per session.
    The wall time of each Nova Act call is recorded in the step's `agent_time`."""

    def __init__(self, pool: BrowserPool, model_id: str = NOVA_ACT_MODEL):
        self.pool = pool
        self.model_id = model_id

    async def act(self, instruction: str, start_url: str, step: StepContext,
                  session: str | None = None, secret: str | None = None,
                  submit: bool = False) -> dict[str, Any]:
        """Carry out `instruction` in the browser; returns what the agent reported. With
        `secret`, then type that secret's value into the field the instruction focused
        (`SecretNotAllowed` off the secret's hosts, nothing typed), and with `submit` press
        Enter; the result names the secret, never its value."""
        value = await _secret_of(secret, step) if secret is not None else None

        def run(nova: Any, policy: SandboxPolicy) -> dict[str, Any]:
            with step.agent_time.measure():
                result = nova.act(instruction, max_steps=policy.browser_max_steps,
                                  timeout=policy.browser_timeout_seconds)
            out = {"response": getattr(result, "response", None),
                   "steps": result.metadata.num_steps_executed}
            if value is not None:
                _type_secret(nova.page, value, submit)
                out |= {"typed": secret, "submitted": submit}
            return out

        return await self._in_session(step, session, start_url, run)

    async def extract(self, instruction: str, start_url: str, json_schema: dict[str, Any],
                      step: StepContext, session: str | None = None) -> dict[str, Any]:
        """Read data from the page; the result must validate against `json_schema`."""
        def run(nova: Any, policy: SandboxPolicy) -> dict[str, Any]:
            with step.agent_time.measure():
                result = nova.act_get(instruction, schema=json_schema,
                                      max_steps=policy.browser_max_steps,
                                      timeout=policy.browser_timeout_seconds)
            try:
                jsonschema.validate(result.parsed_response, json_schema)
            except jsonschema.ValidationError as exc:
                raise ToolError(f"the extracted data does not match the schema: {exc.message}",
                                type_name=ErrorKind.SCHEMA_MISMATCH) from None
            return {"data": result.parsed_response,
                    "steps": result.metadata.num_steps_executed}

        return await self._in_session(step, session, start_url, run)

    async def _in_session(self, step: StepContext, name: str | None, start_url: str,
                          run: Callable[[Any, SandboxPolicy], dict[str, Any]]) -> dict[str, Any]:
        if reason := nova_act_unavailable():
            raise ToolUnavailableError(reason)
        step.policy.check(start_url)
        async with self.pool.session(step, name, kind="process") as session:
            return await self.pool.stall_checked(
                self._steps(session, name, step, start_url, run), session)

    async def _steps(self, session: BrowserSession, name: str | None, step: StepContext,
                     start_url: str, run: Callable[[Any, SandboxPolicy], dict[str, Any]]
                     ) -> dict[str, Any]:
        """Open `start_url` with the SDK, log in there if the site asks (back to
        `start_url` after), then `run`; the SDK's calls on the session's own thread. When
        the agent asks for a human (`approve`, `ui_takeover`), the page is handed to a
        person (`PersonNeeded`), and the step's next run, with their answer, says yes."""
        loop, worker = asyncio.get_running_loop(), _worker_of(session)
        # After a person took the page over, the step goes on from where they left it.
        stay = step.person is not None and step.person.action == "done"
        nova = await loop.run_in_executor(worker, self._open, session, step.policy, start_url,
                                          step.files, stay)
        if step.auth.logins:
            page = await self.pool.playwright_page(session)  # the page the SDK drives
            if await self.pool.logins.log_in_if_asked(page, step) and page.url != start_url:
                await loop.run_in_executor(worker, _sdk, nova.go_to_url, start_url)
        person = session.extras["person"]
        person.expect(step)
        try:
            return await loop.run_in_executor(worker, _run, nova, step.policy, run, step.files)
        finally:
            if person.asked is not None:  # the agent asked for a human: hand the page over
                page = await self.pool.playwright_page(session)
                raise await self.pool.handed(person.asked, page, session, step, name)

    def _open(self, session: BrowserSession, policy: SandboxPolicy, start_url: str,
              files: StepFiles | None, stay: bool = False) -> Any:
        """In the session's own thread: start the SDK at `start_url`, or take the running
        one there (or, with `stay`, where it is); refuse to go on while a field of the page
        holds a secret."""
        session.extras.setdefault("person", _person_callbacks())
        nova = session.extras.get("nova")
        if nova is None:  # on the browser's first page, as it is: not at `start_url` yet
            nova = _sdk(self._start, session, policy, start_url, files)
        if nova.page.url != start_url and not stay:
            _sdk(nova.go_to_url, start_url)
        if nova.page.evaluate(_HOLDS_SECRET_JS):
            raise BlockedError(
                "a field of this page still holds a secret typed into it, which Nova Act "
                "would send to its model with the page: submit it in the step that types it "
                "(submit: true), or go on with browser_click",
                type_name=ErrorKind.SECRET_NOT_ALLOWED)
        return nova

    def _start(self, session: BrowserSession, policy: SandboxPolicy, start_url: str,
               files: StepFiles | None) -> Any:
        from nova_act import NovaAct, SecurityOptions, Workflow
        from nova_act.types.guardrail import GuardrailDecision

        def guardrail(state: Any) -> Any:
            allowed = policy.allows(state.browser_url) or state.browser_url == "about:blank"
            return GuardrailDecision.PASS if allowed else GuardrailDecision.BLOCK

        auth: dict[str, Any] = {}
        if key := os.environ.get("NOVA_ACT_API_KEY"):
            auth["nova_act_api_key"] = key
        else:
            workflow = Workflow(
                model_id=self.model_id,
                boto_session_kwargs={"region_name": os.environ.get("AWS_REGION", "us-east-1")},
                workflow_definition_name=os.environ["NOVA_ACT_WORKFLOW"])
            workflow.__enter__()
            session.on_close.append(lambda: workflow.__exit__(None, None, None))
            auth["workflow"] = workflow
        if files:
            files.nova_act_logs.mkdir(parents=True, exist_ok=True)  # the SDK wants it to exist
        nova = NovaAct(
            starting_page=start_url, cdp_endpoint_url=session.cdp_url,
            cdp_headers=session.cdp_headers or None, tty=False,
            # The browser's first page, which the pool's Playwright steps and logins see too
            # (without this the SDK opens a page of its own, at `starting_page`).
            cdp_use_existing_page=True,
            # A plain-http page has no certificate to check (the SDK would probe port 443).
            ignore_https_errors=start_url.startswith("http://"),
            state_guardrail=guardrail,
            # Its own HTML run logs go to the run's folder, where the run report links them.
            logs_directory=str(files.nova_act_logs) if files else None,
            security_options=SecurityOptions(allowed_file_open_paths=[],
                                             allowed_file_upload_paths=[]),
            human_input_callbacks=session.extras["person"],
            **auth)
        nova.start()
        session.extras["nova"] = nova  # stopped by the worker's closer, on this thread
        return nova

    def tools(self) -> list[StructuredTool]:
        """`browser_act` and `browser_extract`, for a `ToolRegistry`."""
        return [
            StructuredTool.from_function(
                coroutine=self.act, name="browser_act", args_schema=ActArgs,
                description="Nova Act: carry out an instruction in a real browser, starting at "
                            "start_url (clicks, typing, navigation). Use for pages without an "
                            "API."),
            StructuredTool.from_function(
                coroutine=self.extract, name="browser_extract", args_schema=ExtractArgs,
                description="Nova Act: read data from a page as JSON matching `schema`."),
        ]


def _person_callbacks() -> Any:
    """Nova Act's human-input callbacks (its `HumanInputCallbacksBase`), answered by the
    run's person: a call in a step records what the agent asks and cancels it (the step
    then hands its page over, `PersonNeeded`); in the step's next run, with the person's
    `done`, the same kind of call says yes (approved, or taken over and complete)."""
    from nova_act.tools.human.interface.human_input_callback import (
        ApprovalResponse,
        HumanInputCallbacksBase,
        UiTakeoverResponse,
    )

    class PersonCallbacks(HumanInputCallbacksBase):
        def __init__(self) -> None:
            super().__init__()
            self.answered: str | None = None  # the hand-off kind the person said done to
            self.asked: PersonNeeded | None = None

        def expect(self, step: StepContext) -> None:
            """A step starts: what its person answered, if it met one before."""
            done = step.person is not None and step.person.action == "done"
            self.answered = step.hand_off.kind if done and step.hand_off else None
            self.asked = None

        def _yes(self, kind: HandOffKind, message: str) -> bool:
            if self.answered == kind:
                return True
            self.asked = self.asked or PersonNeeded(HandOff(kind=kind, asked=message))
            return False

        def approve(self, message: str) -> Any:
            return (ApprovalResponse.YES if self._yes("nova_act_approve", message)
                    else ApprovalResponse.CANCEL)

        def ui_takeover(self, message: str) -> Any:
            return (UiTakeoverResponse.COMPLETE if self._yes("nova_act_takeover", message)
                    else UiTakeoverResponse.CANCEL)

    return PersonCallbacks()


async def _secret_of(reference: str, step: StepContext) -> SecretValue:
    """The secret `reference` (`${secret.NAME}`) names, read now (checked for a host only
    where it is typed)."""
    match = REFERENCE.fullmatch(reference)
    if match is None:
        raise ToolError("`secret` is one reference, `${secret.NAME}`",
                        type_name=ErrorKind.INVALID_ARGUMENTS)
    return await step.auth.secrets.resolve(match[1])


def _run(nova: Any, policy: SandboxPolicy, run: Callable[[Any, SandboxPolicy], dict[str, Any]],
         files: StepFiles | None) -> dict[str, Any]:
    """In the session's own thread: `run`, then save the page as the step ends (when the
    step keeps files), whether it worked or not."""
    try:
        return _sdk(run, nova, policy)
    finally:
        if files is not None:
            _screenshot(nova, files)


def _sdk(call: Callable[..., Any], *args: Any) -> Any:
    """`call(*args)` on the session's thread, an SDK error raised as a typed `ToolError`."""
    from nova_act.types.errors import NovaActError

    try:
        return call(*args)
    except NovaActError as exc:
        raise as_tool_error(exc) from None


# Marks the focused field as holding a secret (so screenshots mask it); false when no field
# has the focus (the instruction did not leave one focused: nothing may be typed).
_MARK_FOCUSED_JS = f"""() => {{
  const field = document.activeElement;
  if (!field || !(field.matches('input, textarea') || field.isContentEditable)) return false;
  field.setAttribute('{SECRET_MARK}', '');
  return true;
}}"""
_HOLDS_SECRET_JS = f"""() => [...document.querySelectorAll('[{SECRET_MARK}]')]
  .some(field => field.value || field.textContent)"""


def _type_secret(page: Any, value: SecretValue, submit: bool) -> None:
    """Type a secret into the focused field with Playwright's keyboard (never through the
    SDK's model), checked against the page's URL now; Enter after it with `submit`."""
    value.check(page.url)  # SecretNotAllowed: nothing typed
    if not page.evaluate(_MARK_FOCUSED_JS):
        raise ToolError(f"the instruction left no field focused: secret {value.name!r} was "
                        "not typed (say which field to click in the instruction)",
                        type_name=ErrorKind.BAD_TARGET)
    page.keyboard.type(value.reveal())
    if submit:
        page.keyboard.press("Enter")
        page.wait_for_load_state()


def _screenshot(nova: Any, files: StepFiles) -> None:
    """Save the page at the end of a step, fields that hold a secret masked; a page that
    cannot be captured does not fail it."""
    try:
        files.save_screenshot(nova.page.screenshot(mask=[nova.page.locator(MASKED)]))
    except Exception:  # noqa: BLE001 - the step's result matters, its picture less
        log.warning("could not save a screenshot of step %s", files.name)


def _worker_of(session: BrowserSession) -> ThreadPoolExecutor:
    """The session's single thread: a NovaAct instance must stay on the thread that made it."""
    worker = session.extras.get("worker")
    if worker is None:
        worker = ThreadPoolExecutor(max_workers=1, thread_name_prefix="nova-act")
        session.extras["worker"] = worker
        session.on_close.append(lambda: _end_worker(session, worker))
    return worker


def _end_worker(session: BrowserSession, worker: ThreadPoolExecutor) -> None:
    """Stop the SDK on the session's thread, then let the thread end. Playwright's sync API
    works only on its own thread: `stop` called from another fails, and the SDK's Playwright
    driver would live as long as this process. A step still running there (its timeout
    gave up on it, not the SDK) delays the stop: it is waited for `STOP_SECONDS`, then left
    queued to run once the step fails, as it will when the session's Chromium is stopped."""
    nova = session.extras.pop("nova", None)
    stopping = worker.submit(nova.stop) if nova is not None else None
    worker.shutdown(wait=False)
    if stopping is not None:
        try:
            stopping.result(timeout=STOP_SECONDS)
        except TimeoutError:
            log.warning("Nova Act is still busy on a closing session; it stops after its step")


RETRYABLE = ("ActTimeoutError", "ActRateLimitExceededError", "ActRequestThrottledError",
             "ActServerError", "ActServiceUnavailableError", "ActInternalServerError",
             "ActBadResponseError", "StartFailed")
# A spent daily quota is a rate limit that no retry within a run can outwait.
NOT_RETRYABLE = ("ActDailyQuotaExceededError",)
# Refused before the agent acted on the page: a retry cannot repeat an effect. (A timeout or
# a server error may come after the agent clicked: those are not retried for an act.)
REFUSED_BEFORE_ACTING = ("ActRateLimitExceededError", "ActRequestThrottledError",
                         "ActDailyQuotaExceededError", "StartFailed")


def as_tool_error(exc: Exception) -> ToolError:
    """A Nova Act SDK error as a typed `ToolError` (the type name is the SDK's class)."""
    from nova_act.types.act_errors import ActStateGuardrailError
    from nova_act.types.errors import AuthError, IAMAuthError

    message = str(getattr(exc, "message", "") or exc).strip().splitlines()
    text = message[0] if message else type(exc).__name__
    names = {cls.__name__ for cls in type(exc).__mro__}
    if isinstance(exc, ActStateGuardrailError):
        return BlockedError(f"Nova Act's guardrail blocked the page: {text}",
                            type_name=type(exc).__name__)
    if isinstance(exc, (AuthError, IAMAuthError)):
        return ToolUnavailableError(f"{MISSING_AUTH} ({text})", type_name=type(exc).__name__)
    retryable = bool(names & set(RETRYABLE)) and type(exc).__name__ not in NOT_RETRYABLE
    return ToolError(text, retryable=retryable, type_name=type(exc).__name__,
                     not_sent=bool(names & set(REFUSED_BEFORE_ACTING)))
