"""What a login looks like, per site: recipes the executor follows (the planner never plans a
login), and the HTTP auth an API gets per host. Models only: the browser executors follow a
recipe, `http_request` applies an `HttpAuth`."""

from __future__ import annotations

from fnmatch import fnmatchcase
from urllib.parse import urlsplit

from pydantic import BaseModel, ConfigDict, model_validator


class PageMatch(BaseModel):
    """How to recognise a page: its URL's path (a glob, `/login*`), an element on it (a CSS
    selector), or both. `not_url` matches any page whose path is not that glob (a login that
    worked has left the login page)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    url: str | None = None
    not_url: str | None = None
    selector: str | None = None

    @model_validator(mode="after")
    def _something(self) -> PageMatch:
        if not (self.url or self.not_url or self.selector):
            raise ValueError("give url, not_url or selector")
        return self

    def matches_url(self, url: str) -> bool:
        """Whether `url` fits what this match says of URLs (True when it says nothing)."""
        path = urlsplit(url).path or "/"
        if self.url and not fnmatchcase(path, self.url):
            return False
        return not (self.not_url and fnmatchcase(path, self.not_url))


class TotpStep(BaseModel):
    """The second factor after the password: the code of a `totp` secret typed into
    `field`, then `submit` clicked (or Enter pressed); `page` recognises the code page.
    Without a `secret`, a person is asked for the code (a hand-off, `tools.people`)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    field: str
    secret: str | None = None
    submit: str | None = None
    page: PageMatch | None = None


class LoginRecipe(BaseModel):
    """How the executor logs in to one site. `hosts`: the sites it is for (as the
    allowlist's entries). `page`: how to recognise its login page, wherever a step lands.
    `login_url`: where to log in when no page shows the form. `fields`: selector to the
    text typed there, literal or `${secret.NAME}`. `submit`: the button. `totp`: an optional
    second factor. `check`: what shows once the login worked (a failed check is
    `LoginFailed`, never retried: accounts lock). `captcha`: the selectors of the site's
    CAPTCHA, instead of the common widgets (`tools.people.CAPTCHA_SELECTORS`)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    name: str
    hosts: list[str]
    login_url: str
    page: PageMatch
    fields: dict[str, str]
    submit: str
    totp: TotpStep | None = None
    check: PageMatch
    captcha: tuple[str, ...] | None = None


class BasicAuth(BaseModel):
    """HTTP Basic: a user name (text or `${secret.NAME}`) and a password secret's name."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    username: str
    password: str


class HeaderAuth(BaseModel):
    """A header (an API key's) whose value is a secret's."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    name: str
    secret: str


class HttpAuth(BaseModel):
    """How `http_request` authenticates to one host (the key, an allowlist entry): a bearer
    token (a secret's name), HTTP Basic, or a header. Applied by the executor to requests
    to that host only, redirects included; the planner never sees it."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    host: str
    bearer: str | None = None
    basic: BasicAuth | None = None
    header: HeaderAuth | None = None

    @model_validator(mode="after")
    def _one(self) -> HttpAuth:
        if sum(x is not None for x in (self.bearer, self.basic, self.header)) != 1:
            raise ValueError("give exactly one of bearer, basic or header")
        return self

    def secrets(self) -> set[str]:
        """The names of the secrets it uses."""
        if self.bearer:
            return {self.bearer}
        if self.basic:
            return {self.basic.password}
        assert self.header is not None
        return {self.header.secret}
