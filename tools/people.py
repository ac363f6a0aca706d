"""What only a person can do on a page: a step hands the browser to one (`PersonNeeded`).

A browser step meets a CAPTCHA (`CAPTCHA_SELECTORS`, or a site's own in its login recipe),
an MFA page its login recipe has no TOTP secret for, a check the step declares
(`ask_person`), or Nova Act asks for a human (its `approve` and `ui_takeover` callbacks).
The tool raises `PersonNeeded` carrying a `HandOff`: what is asked, the page's URL, the
session, a masked screenshot, a loopback DevTools link to the page, and which answers fit.
The run pauses (`graph.answers`, kind `handoff`) and the step runs again with the
person's `PersonAnswer` in its `StepContext`: a value (an MFA code) the executor types,
or `done` once the person has finished on the page (the step goes on from it as they
left it).

A value is a secret: `PersonAnswer` dumps it as `MASK`, so a checkpoint, a trace or a
report that serializes the answer holds only the mask, while the object handed in memory
to the step holds the value. A step given only the mask (its run resumed from a
checkpoint in another process) asks again.
"""

from __future__ import annotations

from typing import Literal
from urllib.parse import urlsplit

from pydantic import BaseModel, ConfigDict, Field, field_serializer, model_validator

from tools.errors import ErrorKind, ToolError

HandOffKind = Literal["captcha", "mfa", "check", "nova_act_approve", "nova_act_takeover"]
AnswerAction = Literal["value", "done", "refuse"]
MASK = "[person's value]"

# The common CAPTCHA widgets (reCAPTCHA, hCaptcha, Cloudflare Turnstile) and a page's own
# `[data-captcha]`; a site's login recipe may name its own instead (`LoginRecipe.captcha`).
CAPTCHA_SELECTORS = (
    "iframe[src*='recaptcha/']", ".g-recaptcha", "iframe[src*='hcaptcha.com']", ".h-captcha",
    "iframe[src*='challenges.cloudflare.com']", ".cf-turnstile", "[data-captcha]")


class HandOff(BaseModel):
    """What a step hands to a person: `kind`, what is `asked`, the page's `url`, its browser
    `session`, the masked `screenshot` (a path in the run's folder), `devtools` (a loopback
    DevTools link to that page) and `cdp_url` (its browser's loopback CDP endpoint, for a
    person's own tools), the `answers` that fit, and, for a value, the `field` it is typed
    into and the `submit` button (else Enter). `acted`: the step had already done its
    action when it met the person (it is not done again: the person finished it)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    kind: HandOffKind
    asked: str
    answers: tuple[AnswerAction, ...] = ("done", "refuse")
    url: str = ""
    session: str | None = None
    screenshot: str | None = None
    devtools: str | None = None
    cdp_url: str | None = None
    field: str | None = None
    submit: str | None = None
    acted: bool = False


class PersonNeeded(ToolError):
    """The step met what only a person can do: the run pauses with `hand_off` (never
    retried: another attempt would meet the same)."""

    kind = ErrorKind.PERSON_NEEDED

    def __init__(self, hand_off: HandOff):
        super().__init__(f"a person is needed ({hand_off.kind}): {hand_off.asked}")
        self.hand_off = hand_off


class PersonAnswer(BaseModel):
    """A person's answer to a hand-off: `value` (typed by the executor into the page: a
    secret, dumped only as `MASK`), `done` (they finished on the page: the step goes on
    from it as they left it) or `refuse` (the step fails, `PersonNeeded`, with `reason`).
    `by` names who answered."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    action: AnswerAction
    value: str = Field(default="", repr=False, description="With 'value': what to type.")
    reason: str = Field(default="", description="With 'refuse': why.")
    by: str = Field(default="", description="Who answered.")

    @field_serializer("value")
    def _masked(self, value: str) -> str:
        # Every dump (checkpoints, traces, LangSmith, the report) holds the mask only.
        return MASK if value else ""

    @model_validator(mode="after")
    def _fits_its_action(self) -> PersonAnswer:
        if self.action == "value" and not self.value.strip():
            raise ValueError("a value answer gives the value: {'action': 'value', "
                             "'value': '...'}")
        if self.action != "value" and self.value:
            raise ValueError(f"only a value answer gives a value, not {self.action!r}")
        return self

    @property
    def lost(self) -> bool:
        """True for a value answer read back from a checkpoint: only its mask is left."""
        return self.action == "value" and self.value == MASK


def devtools_links(cdp_url: str, page_id: str) -> tuple[str | None, str | None]:
    """The loopback DevTools link to page `page_id` of the browser at `cdp_url` and that
    endpoint, or (None, None) for a browser not on this machine (its own
    `devtoolsFrontendUrl` points at a frontend on the internet: this one is the browser's
    own, served on its loopback port)."""
    host = urlsplit(cdp_url).netloc
    if urlsplit(cdp_url).hostname not in ("127.0.0.1", "localhost", "::1"):
        return None, None
    return (f"http://{host}/devtools/inspector.html?ws={host}/devtools/page/{page_id}",
            cdp_url)
