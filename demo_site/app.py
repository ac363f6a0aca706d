"""The CRM web application: HTML pages for people and browsers, a JSON API for tools."""

from __future__ import annotations

import asyncio
from importlib.resources import files
from pathlib import Path
from typing import Literal

from fastapi import FastAPI, Form, Header, HTTPException, Request
from fastapi.responses import (
    HTMLResponse,
    JSONResponse,
    PlainTextResponse,
    RedirectResponse,
    Response,
)
from jinja2 import Environment, FileSystemLoader, select_autoescape
from pydantic import BaseModel
from starlette.concurrency import run_in_threadpool

from demo_site.auth import SESSION_SECONDS, AuthStore
from demo_site.db import Store
from demo_site.hostile import BY_NAME
from demo_site.login import add_login, csrf_checked

_templates = Environment(
    loader=FileSystemLoader(str(files("demo_site").joinpath("templates"))),
    autoescape=select_autoescape(["html"]),
)


class NoteIn(BaseModel):
    """A new note."""

    customer_id: int
    text: str


class InvoicePatch(BaseModel):
    """A change of invoice status."""

    status: Literal["open", "paid", "overdue", "reminded"]


def create_app(db_path: str | Path, *, auth: bool = False,
               session_seconds: int = SESSION_SECONDS) -> FastAPI:
    """The CRM app over the SQLite file `db_path` (created and seeded if new).

    With `auth`, every page and the API need a login (`demo_site.login`) whose sessions last
    `session_seconds`; `demo_site.auth.make_credentials(db_path)` must have made the user.
    """
    store = Store(db_path)
    auth_store = AuthStore(db_path)
    if auth and not auth_store.has_user():
        raise ValueError(f"{db_path} has no user: call demo_site.auth.make_credentials first")
    app = FastAPI(title="Demo CRM")
    app.state.store, app.state.auth = store, auth_store

    def page(name: str, **values: object) -> HTMLResponse:
        return HTMLResponse(_templates.get_template(name).render(**values))

    if auth:
        add_login(app, auth_store, session_seconds, page)

    @app.get("/health")
    def health() -> dict[str, str]:
        return {"status": "ok"}

    @app.get("/", response_class=HTMLResponse)
    def home() -> HTMLResponse:
        return page("home.html", customers=store.customers(),
                    overdue=store.invoices(status="overdue"))

    @app.get("/customers", response_class=HTMLResponse)
    def customers_page() -> HTMLResponse:
        return page("customers.html", customers=store.customers())

    @app.get("/customers/{customer_id}", response_class=HTMLResponse)
    def customer_page(customer_id: int, request: Request) -> HTMLResponse:
        customer = store.customer(customer_id)
        if customer is None:
            raise HTTPException(404, "no such customer")
        session = getattr(request.state, "session", None)  # set by the login's gate
        return page("customer.html", customer=customer, orders=store.orders(customer_id),
                    invoices=store.invoices(customer_id=customer_id),
                    notes=store.notes(customer_id), profile=store.profile(customer_id),
                    csrf_token=session and session["csrf"])

    @app.post("/customers/{customer_id}/notes")
    def add_note_form(customer_id: int, request: Request, text: str = Form(...),
                      csrf_token: str = Form("")) -> RedirectResponse:
        if auth:
            csrf_checked(request.state.session, "in", csrf_token)
        store.add_note(customer_id, text, None)
        return RedirectResponse(f"/customers/{customer_id}", status_code=303)

    @app.get("/invoices", response_class=HTMLResponse)
    def invoices_page(status: str | None = None) -> HTMLResponse:
        return page("invoices.html", invoices=store.invoices(status=status),
                    names={c["id"]: c["name"] for c in store.customers()})

    @app.get("/api/customers")
    def api_customers() -> list[dict]:
        return store.customers()

    @app.get("/api/customers/{customer_id}")
    def api_customer(customer_id: int) -> dict:
        customer = store.customer(customer_id)
        if customer is None:
            raise HTTPException(404, "no such customer")
        return customer

    @app.get("/api/orders")
    def api_orders(customer_id: int | None = None) -> list[dict]:
        return store.orders(customer_id)

    @app.get("/api/invoices")
    def api_invoices(status: str | None = None, customer_id: int | None = None) -> list[dict]:
        return store.invoices(status=status, customer_id=customer_id)

    @app.patch("/api/invoices/{invoice_id}")
    def api_patch_invoice(invoice_id: int, change: InvoicePatch) -> dict:
        invoice = store.set_invoice_status(invoice_id, change.status)
        if invoice is None:
            raise HTTPException(404, "no such invoice")
        return invoice

    @app.get("/api/notes")
    def api_notes(customer_id: int | None = None) -> list[dict]:
        return store.notes(customer_id)

    @app.post("/api/notes", status_code=201)
    def api_add_note(
        note: NoteIn, idempotency_key: str | None = Header(default=None)
    ) -> dict:
        if store.customer(note.customer_id) is None:
            raise HTTPException(404, "no such customer")
        created, _ = store.add_note(note.customer_id, note.text, idempotency_key)
        return created

    @app.get("/slow")
    async def slow(seconds: float = 1.0, status: int = 200) -> Response:
        """Answers after `seconds`, with `status` (tests of timeouts, kills, and of an
        overloaded target's slow 503s)."""
        await asyncio.sleep(min(seconds, 120.0))
        return JSONResponse({"slept": seconds}, status_code=status)

    @app.get("/redirect")
    def redirect(to: str, request: Request) -> RedirectResponse:
        """Redirects anywhere (tests of the allowlist on redirects)."""
        return RedirectResponse(to, status_code=302)

    @app.get("/hostile/{name}")
    def hostile(name: str, exfil: str = "http://attacker.invalid") -> Response:
        """A case of the prompt-injection corpus (`demo_site.hostile`), aimed at `exfil`."""
        case = BY_NAME.get(name)
        if case is None:
            raise HTTPException(404, "no such case")
        body = case.body.replace("{exfil}", exfil)
        if case.kind in ("page", "lure"):
            return HTMLResponse(body)
        if case.kind == "api":
            return Response(body, media_type="application/json")
        return PlainTextResponse(body, status_code=401 if "auth" in name else 500)

    @app.post("/hostile/{name}")
    async def lure_post(name: str, request: Request) -> RedirectResponse:
        """Records what is posted to a lure (`demo_site.hostile.LURES`), then sends the
        browser home, as a phishing page would."""
        case = BY_NAME.get(name)
        if case is None or case.kind != "lure":
            raise HTTPException(404, "no such lure")
        fields = [(key, str(value)) for key, value in (await request.form()).multi_items()]
        await run_in_threadpool(auth_store.record_lure_post, name, fields)
        return RedirectResponse("/", status_code=303)

    return app
