"""The CRM's login on the web: the sign-in pages, CSRF checks, and the gate on every page and
the JSON API (`create_app(..., auth=True)`)."""

from __future__ import annotations

import hmac
from collections.abc import Awaitable, Callable
from typing import Literal
from urllib.parse import urlencode, urlsplit

from fastapi import FastAPI, Form, HTTPException, Request
from fastapi.responses import HTMLResponse, JSONResponse, RedirectResponse, Response
from starlette.concurrency import run_in_threadpool

from demo_site.auth import AuthStore, Stage

COOKIE = "crm_session"
# Open with auth on: the health check, the sign-in pages, and the fault and hostile fixtures
# of the tests (a hostile page is reached signed out, as a phishing page would be). The
# favicon (a 404) too: sent to /login, a browser's automatic request for it would start a new
# sign-in under the one on screen.
OPEN_PATHS = ("/health", "/login", "/login/mfa", "/slow", "/redirect", "/favicon.ico")
OPEN_PREFIXES = ("/hostile/",)

Page = Callable[..., HTMLResponse]


def safe_next(target: str | None) -> str:
    """`target` when it is a path on this site, else "/": sign-in never leads elsewhere."""
    if (not target or not target.startswith("/") or target.startswith("//") or "\\" in target
            or any(ord(c) < 0x21 or ord(c) == 0x7F for c in target)):
        return "/"  # a browser reads "/\\host" and "/\t/host" as "//host": another site
    parts = urlsplit(target)
    return target if not parts.scheme and not parts.netloc else "/"


def csrf_checked(session: dict | None, stage: Stage, token: str) -> dict:
    """`session` when it is at `stage` and `token` is its CSRF token; else 403."""
    if (session is None or session["stage"] != stage
            or not hmac.compare_digest(token.encode(), session["csrf"].encode())):
        raise HTTPException(403, "the form's CSRF token is missing or wrong")
    return session


def _with_cookie(response: Response, session_id: str, seconds: int) -> Response:
    # A lifetime on the cookie lets a browser profile keep it across restarts.
    response.set_cookie(COOKIE, session_id, max_age=seconds, httponly=True,
                        samesite="lax", path="/")
    return response


def add_login(app: FastAPI, store: AuthStore, seconds: int, page: Page) -> None:
    """Put every page and the API of `app` behind the login, and serve the sign-in pages;
    sessions last `seconds`."""

    @app.middleware("http")
    async def gate(request: Request,
                   call_next: Callable[[Request], Awaitable[Response]]) -> Response:
        path = request.url.path
        if path in OPEN_PATHS or path.startswith(OPEN_PREFIXES):
            return await call_next(request)
        session = await run_in_threadpool(store.session, request.cookies.get(COOKIE))
        signed_in = session is not None and session["stage"] == "in"
        if path.startswith("/api/"):
            scheme, _, token = request.headers.get("authorization", "").partition(" ")
            if signed_in or (scheme.lower() == "bearer"
                             and await run_in_threadpool(store.token_ok, token.strip())):
                return await call_next(request)
            return JSONResponse({"detail": "sign in, or send Authorization: Bearer <token>"},
                                status_code=401, headers={"WWW-Authenticate": "Bearer"})
        if not signed_in:
            target = path + (f"?{request.url.query}" if request.url.query else "")
            return RedirectResponse(f"/login?{urlencode({'next': target})}", status_code=302)
        request.state.session = session
        return await call_next(request)

    def form_session(request: Request, stage: Literal["password", "mfa"],
                     token: str) -> tuple[str, dict]:
        """The id and session of a sign-in POST; a refused one is logged, then 403."""
        session_id = request.cookies.get(COOKIE, "")
        try:
            return session_id, csrf_checked(store.session(session_id), stage, token)
        except HTTPException:
            store.log_attempt(stage, "csrf_refused")
            raise

    def login_form(csrf: str, next_path: str, error: str | None = None) -> HTMLResponse:
        response = page("login.html", csrf_token=csrf, next=next_path, error=error)
        response.status_code = 401 if error else 200
        return response

    def code_form(csrf: str, error: str | None = None) -> HTMLResponse:
        response = page("mfa.html", csrf_token=csrf, error=error)
        response.status_code = 401 if error else 200
        return response

    @app.get("/login", response_class=HTMLResponse)
    def login_page(request: Request, next: str = "/") -> Response:
        session = store.session(request.cookies.get(COOKIE))
        if session is not None and session["stage"] == "in":
            return RedirectResponse(safe_next(next), status_code=303)
        if session is not None and session["stage"] == "password":
            # The same form again: opening it in a second tab must not make the token of
            # the form in the first stale.
            return login_form(session["csrf"], safe_next(next))
        session_id, csrf = store.open_session("password", seconds)
        return _with_cookie(login_form(csrf, safe_next(next)), session_id, seconds)

    @app.post("/login", response_class=HTMLResponse)
    def login(request: Request, username: str = Form(""), password: str = Form(""),
              csrf_token: str = Form(""), next: str = Form("/")) -> Response:
        session_id, session = form_session(request, "password", csrf_token)
        if not store.password_ok(username, password):
            store.log_attempt("password", "bad_password")
            return login_form(session["csrf"], safe_next(next), "Wrong username or password.")
        store.log_attempt("password", "ok")
        store.close_session(session_id)
        session_id, _ = store.open_session("mfa", seconds, safe_next(next))
        return _with_cookie(RedirectResponse("/login/mfa", status_code=303), session_id,
                            seconds)

    @app.get("/login/mfa", response_class=HTMLResponse)
    def code_page(request: Request) -> Response:
        session = store.session(request.cookies.get(COOKIE))
        if session is None or session["stage"] != "mfa":
            return RedirectResponse("/login", status_code=303)
        return code_form(session["csrf"])

    @app.post("/login/mfa", response_class=HTMLResponse)
    def verify_code(request: Request, code: str = Form(""),
                    csrf_token: str = Form("")) -> Response:
        session_id, session = form_session(request, "mfa", csrf_token)
        if not store.code_ok(code):
            store.log_attempt("mfa", "bad_code")
            return code_form(session["csrf"], "Wrong code.")
        store.log_attempt("mfa", "ok")
        store.close_session(session_id)
        session_id, _ = store.open_session("in", seconds)
        return _with_cookie(RedirectResponse(safe_next(session["next"]), status_code=303),
                            session_id, seconds)
