"""What a browser step does on a page (Playwright's async API): find an element, type text
into it (a secret's value at the last moment), and say what every screenshot masks.

Used by the Playwright executor (`tools.browser`) and by the logins the executor does
(`tools.browser_login`); Nova Act's screenshots mask the same elements (`MASKED`).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from typing import Any
from urllib.parse import urlsplit

from tools.auth.references import secret_names
from tools.auth.run import Auth
from tools.errors import ErrorKind, ToolError

ELEMENT_TIMEOUT_MS = 5_000
NAVIGATION_TIMEOUT_MS = 20_000

# An element a secret was typed into carries this attribute, so that every later screenshot
# of its page masks it, whatever kind of field it is (a TOTP code goes into a text field).
SECRET_MARK = "data-duet-secret"
# What every screenshot masks (Playwright's `mask`, a magenta box): fields that hold a
# secret, and password fields always.
MASKED = f"[{SECRET_MARK}], input[type=password]"
MARK_JS = f"element => element.setAttribute('{SECRET_MARK}', '')"

log = logging.getLogger("duet.browser")


async def find(page: Any, selector: str | None, role: str | None, name: str | None) -> Any:
    """The first element matching the target; `ElementNotFound` if none appears in time."""
    if selector:
        locator, target = page.locator(selector).first, f"selector {selector!r}"
    elif role:
        locator, target = page.get_by_role(role, name=name).first, f"role {role!r} {name!r}"
    else:
        raise ToolError("give a CSS `selector`, or an ARIA `role` (with `name`)",
                        type_name=ErrorKind.BAD_TARGET)
    try:
        await locator.wait_for(state="attached", timeout=ELEMENT_TIMEOUT_MS)
    except Exception as exc:
        if type(exc).__name__ != "TimeoutError":
            raise
        # Raised here, so Playwright's timeout is its context: the stall check reads it.
        raise ToolError(f"no element matches {target} on {page.url}",
                        type_name=ErrorKind.ELEMENT_NOT_FOUND) from None
    return locator


async def type_into(locator: Any, text: str, auth: Auth, page: Any) -> None:
    """Fill the element with `text`. Each `${secret.NAME}` in it is replaced by the secret's
    value only now, for the page's current URL: `SecretNotAllowed` (nothing typed) when
    the page is not on one of the secret's hosts. An element given a secret is marked, so
    screenshots mask it."""
    if not secret_names(text):
        await locator.fill(text, timeout=ELEMENT_TIMEOUT_MS)
        return
    value = await auth.fill_in(text, page.url)
    await locator.evaluate(MARK_JS)  # marked first: no picture ever shows it unmasked
    await locator.fill(value, timeout=ELEMENT_TIMEOUT_MS)


def masks(page: Any) -> list[Any]:
    """The locators a screenshot of `page` masks (`MASKED`)."""
    return [page.locator(MASKED)]


async def save_screenshot(page: Any, save: Callable[[bytes], None], *,
                          timeout_ms: float = ELEMENT_TIMEOUT_MS) -> None:
    """Take a PNG of `page` with every field that holds a secret masked (`MASKED`) and hand
    it to `save` (a `StepFiles` method) off the event loop, which a LangGraph server guards
    against blocking calls. A page that cannot be captured is a warning: what the step did
    matters, its picture less."""
    try:
        image = await page.screenshot(timeout=timeout_ms, mask=masks(page))
        await asyncio.to_thread(save, image)
    except Exception as exc:  # noqa: BLE001 - see the docstring
        log.warning("could not save a screenshot of %s: %s", page.url, first_line(exc))


def first_line(exc: BaseException) -> str:
    """An error as one line of a log: its message's first line, else its class's name."""
    return str(exc).splitlines()[0] if str(exc) else type(exc).__name__


def where(url: str) -> str:
    """A page's host and path, as messages say it (its query may hold what the site echoes
    back)."""
    parts = urlsplit(url)
    return f"{parts.netloc}{parts.path}" or url
