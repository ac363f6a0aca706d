"""Issue 33's first done-line, as a user meets it: `duet demo` (the CLI in its own process,
LangSmith tracing on to a loopback capture, step screenshots on) logs in to the demo CRM
through its recipe (password, then TOTP code), updates records, and leaves no copy of any
secret under DUET_HOME or in what LangSmith received; the login's screenshot masks the
password field."""

from __future__ import annotations

import json
import os
import secrets
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import pyotp
import pytest
from PIL import Image

from demo_site.auth import DemoCredentials, make_credentials
from demo_site.credentials import SECRET_KEYS, write_credentials
from demo_site.server import serve
from tests.fixtures.loopback import host_of
from tools.auth import SecretValue
from tools.auth.leaks import find_leaks
from tools.chromium import Chromium
from tools.proxy import AllowlistProxy
from tools.sandbox import SandboxPolicy

pytestmark = pytest.mark.browser

ROOT = Path(__file__).resolve().parents[2]
MAGENTA = (255, 0, 255)  # Playwright's mask colour
KINDS = {"crm_password": "password", "crm_otp": "totp", "crm_api": "token"}


def _credentials_file(folder: Path) -> tuple[DemoCredentials, Path]:
    """Credentials the test knows, in a 0600 file outside DUET_HOME and the repository."""
    credentials = DemoCredentials(
        username=f"demo-{secrets.token_hex(3)}", password=secrets.token_urlsafe(18),
        totp_seed=pyotp.random_base32(), api_token=f"crm_{secrets.token_urlsafe(32)}")
    folder.mkdir(mode=0o700)
    return credentials, write_credentials(credentials, folder)


def _leak_forms(credentials: DemoCredentials, since: float, until: float
                ) -> dict[str, list[str]]:
    """Every form of each secret, the TOTP codes of the run's time included."""
    return {name: SecretValue(name, KINDS[name], ["127.0.0.1"],  # type: ignore[arg-type]
                              getattr(credentials, key)).leak_forms(since, until)
            for name, key in SECRET_KEYS.items()}


def _magenta_box(png: Path) -> tuple[int, tuple[int, int, int, int] | None]:
    """How many pixels are the mask colour, and their bounding box."""
    image = Image.open(png).convert("RGB")
    mask = Image.eval(image.split()[0], lambda _: 0)  # a blank L image of the same size
    pixels = [(x, y) for y in range(image.height) for x in range(image.width)
              if image.getpixel((x, y)) == MAGENTA]
    for point in pixels:
        mask.putpixel(point, 255)
    return len(pixels), mask.getbbox()


async def _password_field_box(tmp_path: Path) -> dict[str, float]:
    """The password field's box on the CRM's login page, in a page of the demo's size."""
    from playwright.async_api import async_playwright

    db = tmp_path / "layout.sqlite"
    make_credentials(db)
    with serve(db, auth=True) as url:
        proxy = AllowlistProxy(SandboxPolicy(allowed_hosts=(host_of(url),))).start()
        chromium = Chromium(proxy.url).start()
        try:
            async with async_playwright() as playwright:
                browser = await playwright.chromium.connect_over_cdp(chromium.cdp_url)
                context = await browser.new_context(viewport={"width": 1280, "height": 900})
                page = await context.new_page()
                await page.goto(f"{url}/login", timeout=20_000)
                box = await page.locator("#password").bounding_box()
                await browser.close()
        finally:
            chromium.close()
            proxy.close()
    assert box is not None
    return box


@pytest.mark.timeout(300)
async def test_the_demo_logs_in_with_totp_updates_records_and_leaves_no_secret(
        tmp_path, isolated_env, langsmith_capture):
    credentials, secrets_file = _credentials_file(tmp_path / "secrets")
    env = {**os.environ, "DUET_HOME": str(isolated_env), "LANGSMITH_TRACING": "true",
           "LANGSMITH_ENDPOINT": langsmith_capture.url,
           "LANGSMITH_API_KEY": "lsv2-key-do-not-leak-5555555555"}
    since = time.time()
    out = subprocess.run([sys.executable, "-m", "graph.app.cli", "demo", "--json",
                          "--credentials", str(secrets_file)],
                         capture_output=True, text=True, timeout=240, cwd=ROOT, env=env)
    until = time.time()
    assert out.returncode == 0, out.stderr[-3000:]
    final = json.loads(out.stdout)
    assert final["status"] == "completed"
    results = {r["step_id"]: r for r in final["results"]}
    assert all(r["status"] == "ok" for r in results.values()) and len(results) == 13
    assert results["add_note"]["tool"] == "browser_click"

    # The CRM's database: the records were updated, over the API and through the page form.
    with sqlite3.connect(isolated_env / "demo" / "crm.sqlite") as db:
        statuses = dict(db.execute("SELECT id, status FROM invoices WHERE id IN "
                                   "(1002, 1005, 1007)"))
        notes = sorted(db.execute("SELECT customer_id, text FROM notes"))
        attempts = list(db.execute("SELECT stage, outcome FROM login_attempts ORDER BY id"))
        users = db.execute("SELECT count(*) FROM users").fetchone()[0]
    assert statuses == {1002: "reminded", 1005: "reminded", 1007: "reminded"}
    assert (2, "Called about invoice 1002") in notes  # the browser's form
    assert len([n for n in notes if n[1].startswith("Payment reminder")]) == 3
    # The recipe's two stages, once each: the password, then the TOTP code.
    assert attempts == [("password", "ok"), ("mfa", "ok")]
    assert users == 0  # the demo's user is gone with the demo

    # No copy of any secret under DUET_HOME, in what LangSmith received, or in the output.
    assert langsmith_capture, "LangSmith received nothing: the search would find nothing"
    traced = {f"LangSmith payload {n}": body.decode("utf-8", errors="replace")
              for n, body in enumerate(langsmith_capture)}
    assert any('"browser_fill"' in text or "browser_fill" in text for text in traced.values())
    forms = _leak_forms(credentials, since, until)
    assert find_leaks(forms, [isolated_env], {**traced, "stdout": out.stdout,
                                              "stderr": out.stderr}) == []
    # The same search finds each of them where they are: it could have failed.
    assert {leak.secret for leak in find_leaks(forms, [secrets_file.parent])} == set(KINDS)

    # The login's screenshot: the password field's box is the mask colour, all of it.
    shot = isolated_env / "runs" / final["thread_id"] / "steps" / "v1-open_page-login.png"
    count, box = _magenta_box(shot)
    field = await _password_field_box(tmp_path)
    assert box is not None
    left, top, right, bottom = box
    assert abs(left - field["x"]) <= 2 and abs(top - field["y"]) <= 2
    assert abs(right - (field["x"] + field["width"])) <= 2
    assert abs(bottom - (field["y"] + field["height"])) <= 2
    assert count >= 0.95 * field["width"] * field["height"]
