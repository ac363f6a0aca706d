"""Figure 13: a logged-in browser task, on a fresh profile and on a warm one, against bare
Playwright doing the same login and task, in the same run.

The task: open a customer's page of the demo CRM, behind its login (password, then a TOTP
code), and read its first invoice's status. The CRM runs in its own process on 127.0.0.1.
Three arms, each repeated, interleaved (their order rotates from one repetition to the
next), each task timed from start to finish:

- **nova-duet, fresh profile**: a run through `build_graph` + `ainvoke` (the model simulated
  at zero latency: the only part simulated) whose plan is `browser_goto` then `browser_read`
  in the named session `crm`, kept as a profile (`profiles: [crm]` in the run's auth
  config). Its profile is deleted first, so the executor logs in through the recipe (the
  password and the TOTP code as secrets, by name), then carries on; the run saves the
  session as the profile.
- **nova-duet, warm profile**: the same run, the session starting from the profile an
  earlier run saved: it must send no login request.
- **bare Playwright**: a fresh context of a Chromium of its own (the same binary), which
  opens the page, is sent to the login, fills the username and password, types the code
  it computes with pyotp, lands back on the page and reads the status.

Both browsers are started before timing; screenshots are off (bare Playwright takes none).
Each task's login requests are counted in the CRM's login log (a POST of the password form
or the code form) and checked: two for a fresh login, none for the warm profile.
"""

from __future__ import annotations

import asyncio
import json
import os
import statistics
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pyotp

from benchmarks import sim
from benchmarks.browser import demo_crm, launch_bare, percentile
from demo_site.auth import AuthStore, DemoCredentials, make_credentials
from graph import Context, Plan, Step, build_graph
from tools import ToolRegistry, default_registry
from tools.auth.profiles import Profiles

ARMS = ("fresh", "warm", "bare")
LABELS = {"fresh": "nova-duet, fresh profile", "warm": "nova-duet, warm profile",
          "bare": "bare Playwright (fresh login)"}
CUSTOMER, STATUS = 3, "#invoices tbody tr td:nth-child(4)"  # Initech's invoice 1003
EXPECTED = "open"
SESSION = "crm"
GOALS = {"warm": "logged-in browser task: a warm profile faster than bare Playwright's fresh "
                 "login (median), with 0 login requests",
         "fresh": "logged-in browser task: a fresh profile (the executor logs in) within 1.5x "
                  "of bare Playwright doing the same login (median)"}


def task_plan(site: str) -> Plan:
    """Open the customer's page in the kept session, then read its first invoice's status."""
    return Plan(goal=f"read the status of customer {CUSTOMER}'s first invoice", steps=[
        Step(id="open", tool="browser_goto",
             args={"url": f"{site}/customers/{CUSTOMER}", "session": SESSION}),
        Step(id="read", tool="browser_read", depends_on=["open"],
             args={"selector": STATUS, "session": SESSION})])


def auth_config(site: str, secrets_file: Path, username: str) -> dict[str, Any]:
    """The run's auth config: the password and the TOTP seed read from `secrets_file` (mode
    0600), each for the CRM's host only; the CRM's login recipe; the session kept."""
    host = site.removeprefix("http://")
    return {
        "secrets": {
            "crm_password": {"source": f"file:{secrets_file}#password", "kind": "password",
                             "hosts": [host]},
            "crm_otp": {"source": f"file:{secrets_file}#totp_seed", "kind": "totp",
                        "hosts": [host]}},
        "logins": {"crm": {
            "hosts": [host], "login_url": f"{site}/login", "page": {"url": "/login*"},
            "fields": {"#username": username, "#password": "${secret.crm_password}"},
            "submit": "button[type=submit]",
            "totp": {"field": "#code", "secret": "crm_otp", "submit": "button[type=submit]",
                     "page": {"url": "/login/mfa*"}},
            "check": {"not_url": "/login*"}}},
        "profiles": [SESSION]}


def _secrets_file(folder: Path, credentials: DemoCredentials) -> Path:
    """The password and the TOTP seed in a file of mode 0600 (a `file:` source refuses any
    other), outside the repository."""
    path = folder / "crm-secrets.json"
    path.touch()
    path.chmod(0o600)  # before a value is written: whatever the umask
    path.write_text(json.dumps({"password": credentials.password,
                                "totp_seed": credentials.totp_seed}))
    return path


@contextmanager
def _duet_home(folder: Path) -> Iterator[None]:
    """`DUET_HOME` set to `folder` for the block: a run finds its kept profiles there
    (`graph.checkpoints.profiles_folder`), and the figure must not touch the user's own."""
    before = os.environ.get("DUET_HOME")
    os.environ["DUET_HOME"] = str(folder)
    try:
        yield
    finally:
        if before is None:
            del os.environ["DUET_HOME"]
        else:
            os.environ["DUET_HOME"] = before


async def _ours(registry: ToolRegistry, site: str, context: Context) -> tuple[float, str]:
    """One run of the task through the graph: its wall time and what it read."""
    plan = task_plan(site)
    model = sim.SimulatedChatModel(responses=[sim.graph_responder(plan)] * 4, scale=0.0)
    graph = build_graph(model=model, tools=registry)
    start = time.perf_counter()
    out = await asyncio.wait_for(graph.ainvoke({"task": plan.goal}, context=context), 120)
    wall = time.perf_counter() - start
    read = next(r for r in out["results"] if r.step_id == "read")
    if out["status"].value != "completed" or read.output is None:
        errors = [f"{r.step_id}: {r.error.type}: {r.error.message[:160]}"
                  for r in out["results"] if r.error]
        raise RuntimeError(f"the logged-in run ended {out['status'].value}: {errors}")
    return wall, read.output["text"]


async def _bare(browser: Any, site: str, credentials: DemoCredentials) -> tuple[float, str]:
    """The same login and task in a fresh context of bare Playwright: its wall time and
    what it read."""
    start = time.perf_counter()
    context = await browser.new_context()
    try:
        page = await context.new_page()
        await page.goto(f"{site}/customers/{CUSTOMER}")  # the site sends it to the login
        await page.fill("#username", credentials.username)
        await page.fill("#password", credentials.password)
        await page.click("button[type=submit]")
        await page.wait_for_url("**/login/mfa")
        await page.fill("#code", pyotp.TOTP(credentials.totp_seed).now())
        await page.click("button[type=submit]")
        await page.wait_for_url(f"{site}/customers/{CUSTOMER}")  # back where it asked
        text = (await page.locator(STATUS).first.inner_text()).strip()
    finally:
        await context.close()
    return time.perf_counter() - start, text


async def browser_logins(repeats: int, folder: Path) -> dict[str, Any]:
    """Figure 13 (see the module's docstring): `repeats` tasks of each arm, after one
    untimed task of each; per arm the median and p90 wall time, the ratio of medians to
    bare Playwright's, and every task's wall time and login requests (checked: 2 for a
    fresh login, 0 for the warm profile). Raises `RuntimeError` when a task reads the wrong
    value or sends other login requests than its arm should."""
    from playwright.async_api import async_playwright

    folder.mkdir(parents=True, exist_ok=True)
    db = folder / "crm.sqlite"
    credentials = make_credentials(db)
    log = AuthStore(db)
    load_before = os.getloadavg()[0]
    with _duet_home(folder / "home"), demo_crm(db, auth=True) as site:
        config = auth_config(site, _secrets_file(folder, credentials), credentials.username)
        context = Context(allowed_hosts=[site.removeprefix("http://")],
                          auth_config=json.dumps(config), step_screenshots=False)
        profiles = Profiles(folder / "home" / "profiles")
        registry = default_registry()  # one pool, so one shared Chromium, for every run
        async with async_playwright() as pw:
            browser = await launch_bare(pw)

            async def task(arm: str) -> tuple[float, str]:
                if arm == "bare":
                    return await _bare(browser, site, credentials)
                if arm == "fresh" and SESSION in profiles.names():
                    profiles.delete(SESSION)
                return await _ours(registry, site, context)

            async def measured(arm: str) -> tuple[float, int]:
                before = len(log.login_attempts())
                wall, text = await task(arm)
                sent = log.login_attempts()[before:]
                expected = [] if arm == "warm" else [("password", "ok"), ("mfa", "ok")]
                if [(a["stage"], a["outcome"]) for a in sent] != expected or text != EXPECTED:
                    raise RuntimeError(f"{LABELS[arm]}: read {text!r}, login requests "
                                       f"{[(a['stage'], a['outcome']) for a in sent]}")
                return wall, len(sent)

            try:
                for arm in ARMS:  # untimed: starts both browsers; the warm run's profile
                    await measured(arm)
                walls: dict[str, list[float]] = {arm: [] for arm in ARMS}
                logins: dict[str, list[int]] = {arm: [] for arm in ARMS}
                for repeat in range(repeats):
                    for arm in ARMS[repeat % 3:] + ARMS[:repeat % 3]:
                        wall, sent = await measured(arm)
                        walls[arm].append(wall)
                        logins[arm].append(sent)
            finally:
                await browser.close()
                await registry.aclose()
    bare = statistics.median(walls["bare"])
    rows = [{"arm": arm, "label": LABELS[arm], "median_s": statistics.median(walls[arm]),
             "p90_s": percentile(walls[arm], 0.9),
             "over_bare": statistics.median(walls[arm]) / bare,
             "login_requests": logins[arm], "walls_s": walls[arm]} for arm in ARMS]
    # The machine's 1-minute load average before and after: both sides meet the same load,
    # but on a shared machine a ratio is only as steady as that load.
    return {"repeats": repeats, "read": EXPECTED, "rows": rows,
            "load_average": [load_before, os.getloadavg()[0]]}


def markdown(figure: dict[str, Any]) -> list[str]:
    """Figure 13 as a Markdown table."""
    out = ["", "**13. Logged-in browser task** (open a customer's page of the demo CRM behind "
           "its login, password then TOTP code, and read its first invoice's status; the CRM "
           "in its own process, real Chromium, the model simulated at zero latency; "
           f"{figure['repeats']} tasks an arm, interleaved; load average "
           f"{figure['load_average'][0]:.1f} before, {figure['load_average'][1]:.1f} after; "
           "seconds a task)", "",
           "| arm | median | p90 | median / bare Playwright | login requests a task |",
           "|---|---|---|---|---|"]
    for r in figure["rows"]:
        counts = sorted(set(r["login_requests"]))
        out.append(f"| {r['label']} | {r['median_s']:.2f} | {r['p90_s']:.2f} | "
                   f"{r['over_bare']:.2f}x | {', '.join(map(str, counts))} |")
    return out


def verdicts(figure: dict[str, Any]) -> list[tuple[bool, str, str]]:
    """(met, goal, what was measured) for the report's verdict lines."""
    rows = {r["arm"]: r for r in figure["rows"]}
    warm, fresh, bare = rows["warm"], rows["fresh"], rows["bare"]
    return [(warm["over_bare"] < 1 and set(warm["login_requests"]) == {0}, GOALS["warm"],
             f"figure 13: {warm['median_s']:.2f} s against {bare['median_s']:.2f} s, "
             f"{warm['over_bare']:.2f}x; login requests {sum(warm['login_requests'])}"),
            (fresh["over_bare"] <= 1.5, GOALS["fresh"],
             f"figure 13: {fresh['median_s']:.2f} s against {bare['median_s']:.2f} s, "
             f"{fresh['over_bare']:.2f}x")]
