"""The run report, opened in Debian's Chromium over CDP (Playwright): the demo run's, and a
run with a failed step, a replan and hostile pages in its outputs."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from graph import Context, Decision, Plan, Step
from graph.app.report import report_data, write_report
from graph.app.runner import run_thread
from graph.testing import ScriptedChatModel
from tests.fixtures.loopback import host_of
from tools.chromium import Chromium
from tools.proxy import AllowlistProxy
from tools.sandbox import SandboxPolicy

ROOT = Path(__file__).resolve().parents[2]
ARTIFACTS = ROOT / "tests" / "artifacts"
# Hostile pages whose HTML would run script, load remote content or submit a form.
HOSTILE = ["js-fetch", "auto-form", "image-beacon", "iframe", "meta-refresh", "js-redirect"]


@pytest.fixture
def browser():
    """Chromium behind an allowlist proxy that allows nothing: a network request from the
    report page would be refused and recorded (`proxy.blocked`)."""
    proxy = AllowlistProxy(SandboxPolicy()).start()
    chromium = Chromium(proxy.url).start()
    yield chromium, proxy
    chromium.close()
    proxy.close()


async def open_report(cdp_url: str, path: Path, artifact: str) -> dict:
    """Open the report; return what the page shows and everything it tried."""
    from playwright.async_api import async_playwright

    async with async_playwright() as playwright:
        connected = await playwright.chromium.connect_over_cdp(cdp_url)
        page = await connected.contexts[0].new_page()
        dialogs, requests, popups = [], [], []
        page.on("dialog", lambda dialog: (dialogs.append(dialog.message),
                                          dialog.dismiss()))
        page.on("request", lambda request: requests.append(request.url))
        page.on("popup", lambda popup: popups.append(popup.url))
        await page.goto(path.as_uri())
        await page.wait_for_timeout(500)  # room for a timer or a refresh to fire
        seen = await page.evaluate("""() => ({
            url: location.href,
            steps: [...document.querySelectorAll('section.step')].map(s => ({
                id: s.dataset.step, version: +s.dataset.planVersion, status: s.dataset.status})),
            bars: [...document.querySelectorAll('svg.gantt g.row')].map(g => ({
                start: +g.dataset.start, x: +g.querySelector('rect').getAttribute('x'),
                kind: g.dataset.kind})),
            images: [...document.querySelectorAll('img.screenshot')].map(i => ({
                loaded: i.complete && i.naturalWidth > 0, width: i.naturalWidth})),
            scripts: document.scripts.length,
            active: document.querySelectorAll(
                'iframe, form, object, embed, meta[http-equiv="refresh"]').length,
            nodes: [...document.querySelectorAll('svg.dag g.node')].map(n => n.dataset.status),
            pwned: document.body.dataset.pwned || null,
        })""")
        ARTIFACTS.mkdir(exist_ok=True)
        await page.screenshot(path=ARTIFACTS / artifact, full_page=True)
        await page.close()
        await connected.close()
    return {**seen, "dialogs": dialogs, "requests": requests, "popups": popups}


def check_page(seen: dict, data: dict) -> None:
    """What every report must show, and what none may do."""
    assert [(s["id"], s["version"], s["status"]) for s in seen["steps"]] == [
        (s["step_id"], s["plan_version"], s["status"]) for s in data["steps"]]
    starts = [b["start"] for b in seen["bars"]]
    assert starts == sorted(starts)  # the timeline lists bars in recorded start order
    xs = [b["x"] for b in seen["bars"]]
    assert xs == sorted(xs)  # and places them by recorded time
    assert all(image["loaded"] for image in seen["images"])
    # Nothing from a tool or a page ran: no script, dialog, request, navigation or form.
    assert seen["scripts"] == 0 and seen["active"] == 0 and seen["pwned"] is None
    assert seen["dialogs"] == [] and seen["popups"] == []
    assert all(url.startswith(("file://", "data:")) for url in seen["requests"])
    assert seen["url"].startswith("file://")


async def test_the_demo_ends_with_its_report_and_the_page_shows_the_run(browser, isolated_env):
    chromium, proxy = browser
    out = subprocess.run([sys.executable, "-m", "graph.app.cli", "demo"], capture_output=True,
                         text=True, timeout=300, cwd=ROOT, env=os.environ.copy())
    assert out.returncode == 0, out.stderr[-2000:]
    printed = " ".join(out.stdout.split())  # the terminal may wrap the path
    report = next(Path(word) for word in printed.split() if word.endswith("report.html"))
    assert report.is_file() and report.is_relative_to(isolated_env)
    thread = report.parent.name
    data = json.loads(subprocess.run(
        [sys.executable, "-m", "graph.app.cli", "report", thread, "--json"], capture_output=True,
        text=True, timeout=120, cwd=ROOT, env=os.environ.copy(), check=True).stdout)
    assert data["status"] == "completed" and data["citations"]
    unknown = subprocess.run([sys.executable, "-m", "graph.app.cli", "report", "no-such-thread"],
                             capture_output=True, text=True, cwd=ROOT, env=os.environ.copy())
    assert unknown.returncode == 2 and "no saved run" in unknown.stderr
    assert len(data["steps"]) == 13 and data["plans"][0]["steps"][1]["depends_on"] == ["s1"]
    browser_steps = [s for s in data["steps"] if s["tool"].startswith("browser_")]
    assert browser_steps and all(s["screenshot"] for s in browser_steps)
    # The critical path runs through the chain s1 -> note -> mark -> the last step.
    assert data["steps"][0]["critical"] and sum(s["critical"] for s in data["steps"]) >= 4

    seen = await open_report(chromium.cdp_url, report, "report-demo.png")
    check_page(seen, data)
    assert len(seen["images"]) == len(browser_steps)
    assert seen["nodes"].count("ok") == 13


async def test_a_replanned_run_with_hostile_outputs_renders_inert(browser, site, isolated_env):
    chromium, proxy = browser
    attacker = "http://127.0.0.1:9"  # nothing listens; a request would show in the proxy
    reads = [Step(id=f"h{n}", tool="http_request",
                  args={"url": f"{site}/hostile/{name}?exfil={attacker}"})
             for n, name in enumerate(HOSTILE)]
    model = ScriptedChatModel(responses=[
        Plan(goal="read the invoices", steps=[
            Step(id="s1", tool="http_request", args={"url": f"{site}/api/no-such-thing"}),
            Step(id="s2", tool="http_request", args={"url": f"{site}/api/invoices"},
                 depends_on=["s1"])]),
        Decision(action="replan", reason="s1 failed: try the pages instead"),
        Plan(goal="read the pages", steps=reads),
        Decision(action="finish", reason="read", answer="Read the pages [h0] and [h1]; "
                 "s1 failed [s1]. <script>document.body.dataset.pwned = 1</script>"),
    ])
    thread, final = await run_thread(
        "read the invoices <img src=x onerror=alert(1)>", model=model,
        context=Context(allowed_hosts=[host_of(site)]))
    assert final.status == "completed"
    data = await report_data(thread)
    assert [p["version"] for p in data["plans"]] == [1, 2]
    statuses = {(s["plan_version"], s["step_id"]): s["status"] for s in data["steps"]}
    assert statuses[(1, "s1")] == "error" and (1, "s2") not in statuses
    assert [r["kind"] for r in data["reasoning"]] == ["plan", "decision", "plan", "decision"]
    assert data["citations"] == {"h0": "step-v2-h0", "h1": "step-v2-h1", "s1": "step-v1-s1"}
    assert any("<script>" in s["output"] for s in data["steps"])  # the payload is there
    path = await write_report(thread)
    page = path.read_text()
    assert "<script" not in page.lower() and "<iframe" not in page.lower()
    assert "Content-Security-Policy" in page and "default-src 'none'" in page

    seen = await open_report(chromium.cdp_url, path, "report-replan.png")
    check_page(seen, data)
    # Chromium's own background requests meet the proxy too; none went to the attacker.
    assert not [url for url in proxy.blocked if "127.0.0.1" in url]
    assert "not run" in seen["nodes"]  # s2 of the first plan never ran
    assert seen["nodes"].count("error") == 1
