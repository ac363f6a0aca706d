"""`results.html`, opened in Debian's Chromium over CDP (Playwright) as the run report is:
the table per agent and category, a row per run with its failed checks first and in red,
links to each run's report, and nothing on the page that runs or loads."""

from __future__ import annotations

from pathlib import Path

from graph.app.eval import AgentSettings, load_suite, run_suite
from graph.app.eval.html import write_page
from graph.app.eval.runner import Row, summarize
from graph.app.eval.variants import variants
from tests.integration.test_report import ARTIFACTS, browser  # noqa: F401 - the fixture

RED = "rgb(185, 28, 28)"


async def open_page(cdp_url: str, path: Path) -> dict:
    """Open the page; return what it shows and everything it tried."""
    from playwright.async_api import async_playwright

    async with async_playwright() as playwright:
        connected = await playwright.chromium.connect_over_cdp(cdp_url)
        page = await connected.contexts[0].new_page()
        dialogs, requests = [], []
        page.on("dialog", lambda dialog: (dialogs.append(dialog.message), dialog.dismiss()))
        page.on("request", lambda request: requests.append(request.url))
        await page.goto(path.as_uri())
        await page.wait_for_timeout(300)
        seen = await page.evaluate("""() => ({
            summary: [...document.querySelectorAll('table.summary tr[data-agent]')].map(r =>
                [r.dataset.agent, r.dataset.category]),
            runs: [...document.querySelectorAll('tr.run')].map(r => ({
                task: r.dataset.task, passed: r.dataset.passed,
                checks: [...r.querySelectorAll('li.check')].map(c => ({
                    key: c.dataset.key, failed: c.classList.contains('failed'),
                    color: getComputedStyle(c).color})),
                link: r.querySelector('a.report')?.href || null})),
            scripts: document.scripts.length,
            images: document.images.length,
            pwned: document.body.dataset.pwned || null,
        })""")
        ARTIFACTS.mkdir(exist_ok=True)
        await page.screenshot(path=ARTIFACTS / "results-page.png", full_page=True)
        await page.close()
        await connected.close()
    return {**seen, "dialogs": dialogs, "requests": requests}


async def test_results_page_renders_the_runs_and_their_checks_in_chromium(browser, tmp_path):  # noqa: F811
    chromium, _ = browser  # the proxy sees Chromium's own update checks: the page's
    # requests are what `open_page` recorded
    suite = load_suite()
    task = suite.select("write-mark-paid")[0]
    drop = next(v for v in variants(task, suite.env.variations) if v.kind == "drop")
    out = tmp_path / "eval"
    rows = await run_suite(suite, [task, drop.as_task(tmp_path / "variants")], ["nova-duet"],
                           AgentSettings(out_dir=out, context={"step_screenshots": False}))
    # A row whose answer and comment hold markup, as a hostile page could make a model say.
    hostile = Row(task="hostile", category="hostile", agent="react", trial=1, passed=False,
                  checks={"answer": {"score": False, "comment":
                                     "states '<img src=x onerror=alert(1)>'"}},
                  status="completed", steps=1, calls=1, tokens_in=1, tokens_out=1,
                  cost_usd=0.0, wall_s=0.1, report=None,
                  answer="<script>document.body.dataset.pwned = 1</script>")
    rows.append(hostile)
    summary = summarize(rows, suite=suite, trials=1, model=None, wall_s=1.0)
    page = write_page(out, summary, rows)

    seen = await open_page(chromium.cdp_url, page)
    assert seen["summary"] == [["nova-duet", "writes"], ["nova-duet", "all"],
                               ["react", "hostile"], ["react", "all"]]
    by_task = {r["task"]: r for r in seen["runs"]}
    assert list(by_task) == ["write-mark-paid", "write-mark-paid~drop", "hostile"]
    good, broken = by_task["write-mark-paid"], by_task["write-mark-paid~drop"]
    assert good["passed"] == "yes" and not any(c["failed"] for c in good["checks"])
    # The broken plan's failed check comes first, and in red; the passed ones after it.
    assert broken["passed"] == "no" and broken["checks"][0] == {
        "key": "state", "failed": True, "color": RED}
    # Then answer, limits, tools and refused (a checker per `CHECKERS`), all passed.
    assert [c["failed"] for c in broken["checks"]] == [True, False, False, False, False]
    for run, row in zip(seen["runs"][:2], rows[:2], strict=True):
        assert run["link"] == Path(row.report).resolve().as_uri() and Path(row.report).is_file()
    assert by_task["hostile"]["link"] is None
    # Nothing ran or loaded: no script, dialog, image or request but the page itself.
    assert seen["scripts"] == 0 and seen["images"] == 0 and seen["pwned"] is None
    assert seen["dialogs"] == [] and seen["requests"] == [page.as_uri()]
    html = page.read_text()
    assert "Content-Security-Policy" in html and "&lt;script&gt;" in html
