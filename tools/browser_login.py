"""Logins the executor does, never the planner: when a browser step's page is a site's login
page, the site's `LoginRecipe` (`tools.auth.logins`) is followed on that page, then the
step carries on.

A login types its fields (secrets at the last moment, for the page's host only), keeps a
picture of the filled-in form (`StepFiles.login_screenshot`, secrets masked), submits,
types a TOTP code when the code page shows (or, when the recipe has no TOTP secret, hands
the page to a person for it: `tools.people`), and checks that it worked. A login whose check
does not hold is `LoginFailed`, naming the check, and is not tried again in that run (nor
retried by the step runtime): accounts lock after a few wrong passwords. Every wait is one
of Playwright's bounded waits, inside the step's own bound.
"""

from __future__ import annotations

from typing import Any

from tools.auth.errors import LoginFailed
from tools.auth.logins import LoginRecipe, PageMatch
from tools.pages import (
    ELEMENT_TIMEOUT_MS,
    NAVIGATION_TIMEOUT_MS,
    save_screenshot,
    type_into,
    where,
)
from tools.people import HandOff, PersonNeeded
from tools.step import StepContext


class Logins:
    """The logins of one browser pool, per run: a run whose login failed is never sent to
    that login again (a `duet retry` of it, in a new process, tries once more)."""

    def __init__(self) -> None:
        self._failed: dict[tuple[str, str], str] = {}  # (run, login): why it failed

    async def log_in_if_asked(self, page: Any, step: StepContext) -> bool:
        """Log in when `page` is the login page of a site the run has a recipe for; True
        when it did (the page is then where the site leads after its login). `LoginFailed`
        when the recipe's check does not hold, or when this login failed before in the run."""
        recipe = step.auth.login_for(page.url)
        if recipe is None or not await _shows(page, recipe.page):
            return False
        key = (step.scope, recipe.name)
        if key in self._failed:
            raise LoginFailed(recipe.name, f"{self._failed[key]} (earlier in this run)")
        try:
            await _follow(page, recipe, step)
        except LoginFailed as exc:
            self._failed[key] = exc.reason
            raise
        return True

    def forget(self, scope: str) -> None:
        """Run `scope` ended: its failed logins are forgotten."""
        for key in [key for key in self._failed if key[0] == scope]:
            del self._failed[key]


async def _follow(page: Any, recipe: LoginRecipe, step: StepContext) -> None:
    """Type the recipe's fields, submit, type the code, check; back to the page that asked
    for the login when its form was elsewhere (`login_url`)."""
    asked_from = page.url
    detour = not await _present(page, next(iter(recipe.fields)))
    if detour:
        await page.goto(recipe.login_url, timeout=NAVIGATION_TIMEOUT_MS)
    for selector, text in recipe.fields.items():
        await type_into(await _field(page, recipe, selector), text, step.auth, page)
    if step.files is not None:  # the run's record of the login: its secrets masked
        await save_screenshot(page, step.files.save_login_screenshot)
    await _submit(page, recipe, recipe.submit)
    if recipe.totp is not None and not await _shows(page, recipe.check):
        totp = recipe.totp
        on_code_page = (await _shows(page, totp.page) if totp.page
                        else await _present(page, totp.field))
        if not on_code_page:
            raise LoginFailed(recipe.name, f"its check {_said(recipe.check)} does not hold "
                                           f"on {where(page.url)} after the password, and "
                                           "the code page did not show")
        code = await _field(page, recipe, totp.field)
        if totp.secret is None:  # no recipe covers it: a person types the code
            raise PersonNeeded(HandOff(
                kind="mfa", asked=f"the sign-in code (MFA) for {recipe.name}",
                answers=("value", "refuse"), field=totp.field, submit=totp.submit))
        await type_into(code, f"${{secret.{totp.secret}}}", step.auth, page)
        if totp.submit:
            await _submit(page, recipe, totp.submit)
        else:
            await code.press("Enter", timeout=ELEMENT_TIMEOUT_MS)
            await page.wait_for_load_state()
    if not await _shows(page, recipe.check, wait=True):
        raise LoginFailed(recipe.name, f"its check {_said(recipe.check)} does not hold on "
                                       f"{where(page.url)}")
    if detour and page.url != asked_from:
        await page.goto(asked_from, timeout=NAVIGATION_TIMEOUT_MS)


async def _field(page: Any, recipe: LoginRecipe, selector: str) -> Any:
    """The recipe's field `selector` on the page; `LoginFailed` when it is not there."""
    locator = page.locator(selector).first
    try:
        await locator.wait_for(state="attached", timeout=ELEMENT_TIMEOUT_MS)
    except Exception as exc:
        if type(exc).__name__ != "TimeoutError":
            raise
        raise LoginFailed(recipe.name, f"its field {selector!r} is not on "
                                       f"{where(page.url)}") from None
    return locator


async def _submit(page: Any, recipe: LoginRecipe, selector: str) -> None:
    """Click the submit button and wait for the page it leads to (a click waits for the
    navigation it starts to commit; then the page's load)."""
    await (await _field(page, recipe, selector)).click(timeout=ELEMENT_TIMEOUT_MS)
    await page.wait_for_load_state()


async def _shows(page: Any, match: PageMatch, wait: bool = False) -> bool:
    """Whether `page` is what `match` says: its URL, and its selector present (looked for
    at once, or with `wait` for as long as an element is waited for)."""
    if not match.matches_url(page.url):
        return False
    if match.selector is None:
        return True
    if not wait:
        return await _present(page, match.selector)
    try:
        await page.locator(match.selector).first.wait_for(state="attached",
                                                           timeout=ELEMENT_TIMEOUT_MS)
    except Exception as exc:
        if type(exc).__name__ != "TimeoutError":
            raise
        return False
    return True


async def _present(page: Any, selector: str) -> bool:
    """Whether an element matches `selector` now (no wait: asked on every step's page)."""
    return await page.locator(selector).count() > 0


def _said(match: PageMatch) -> str:
    """A check as the config says it: `{not_url: '/login*'}`."""
    return "{" + ", ".join(f"{key}: {value!r}" for key, value in
                           match.model_dump(exclude_none=True).items()) + "}"
