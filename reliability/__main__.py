"""`python -m reliability [--full]`: run every suite offline and print the figures.

The default sizes are the CI sizes; `--full` runs 100 crash trials, 100 threads and 20
rounds of 8 concurrent `duet run` processes. `--only NAME` runs one suite (repeatable).
Exits 1 when any check failed.
"""

from __future__ import annotations

import argparse
import asyncio
import io
import logging
import os
import tempfile
import time
from contextlib import ExitStack
from pathlib import Path

from demo_site import serve
from reliability import concurrency, crash, faults, injection, load, secrets
from tests.fixtures.converse import ConverseStub
from tests.fixtures.converse import start as start_converse
from tests.fixtures.postgres import postgres_bin, running_postgres

SIZES = {"ci": {"trials": 30, "threads": 50, "rounds": 3},
         "full": {"trials": 100, "threads": 100, "rounds": 20}}
SUITES = ("faults", "crash", "injection", "load", "concurrency")


def main() -> None:
    """Run, print, exit non-zero on any failed check."""
    parser = argparse.ArgumentParser(description="nova-duet reliability figures (offline).")
    parser.add_argument("--full", action="store_true", help="heavier trial and thread counts")
    parser.add_argument("--only", action="append", choices=SUITES,
                        help="run only this suite (repeatable); the secrets scan always runs")
    args = parser.parse_args()
    size, only = SIZES["full" if args.full else "ci"], set(args.only or SUITES)
    work = Path(tempfile.mkdtemp(prefix="duet-reliability-"))
    os.environ.update(DUET_HOME=str(work / "home"), AWS_ACCESS_KEY_ID="testing",
                      AWS_SECRET_ACCESS_KEY="testing-secret", AWS_REGION="us-east-1",
                      AWS_EC2_METADATA_DISABLED="true")
    logs = io.StringIO()
    logging.basicConfig(level=logging.WARNING, stream=logs, force=True)
    failed = 0
    with ExitStack() as stack:
        planted = stack.enter_context(secrets.planted())
        site = stack.enter_context(serve(work / "crm.sqlite"))
        stub = ConverseStub()
        stack.callback(start_converse(stub).shutdown)
        if "faults" in only:
            failed += _faults(site, stub)
        if "crash" in only:
            failed += _crash(size["trials"], site, work)
        if "injection" in only:
            failed += _injection(site)
        if "load" in only:
            failed += _load(size["threads"], work)
        if "concurrency" in only:
            failed += _concurrency(size["rounds"], site, work)
        leaks = secrets.scan([work], [logs.getvalue()], planted)
        print(f"\n## Secrets\n{len(planted)} planted credentials (environment and page), "
              f"{len(secrets.files_under([work]))} files and the logs scanned: "
              f"{len(leaks)} leak(s)")
        for leak in leaks:
            print(f"  LEAK {leak}")
        failed += len(leaks)
    print(f"\n{'all checks held' if not failed else f'{failed} check(s) failed'} "
          f"(work folder {work})")
    raise SystemExit(1 if failed else 0)


def _faults(site: str, stub: ConverseStub) -> int:
    outcomes = asyncio.run(faults.run_faults(faults.Env(site, stub)))
    print(f"## Faults: {sum(o.passed for o in outcomes)}/{len(outcomes)} cases held\n")
    print("| area | fault | status | s | checks |\n|---|---|---|---|---|")
    for o in outcomes:
        print(f"| {o.fault.area} | {o.fault.name} | {o.status} | {o.seconds:.1f} | "
              f"{'ok' if o.passed else '; '.join(o.problems)} |")
    return sum(not o.passed for o in outcomes)


def _crash(trials: int, site: str, work: Path) -> int:
    started = time.perf_counter()
    done = crash.run_trials(trials, site, work / "crm.sqlite", work / "crash")
    killed = sum(t.killed for t in done)
    reruns = sum(t.step_starts - len(crash.STEP_IDS) for t in done)
    print(f"\n## Crash and resume\n{len(done)} trials in {time.perf_counter() - started:.0f}s, "
          f"{killed} killed mid-run with SIGKILL (the rest finished first); "
          f"{sum(t.passed for t in done)} completed on resume with each of "
          f"{crash.NOTES} writes exactly once, journal and checkpoint chain consistent; "
          f"{reruns} step starts repeated after a kill (steps in flight at the kill; finished "
          "ones were replayed from the step ledger)")
    for trial in done:
        if not trial.passed:
            print(f"  trial {trial.index} (kill after {trial.kill_after}s): {trial.problems}")
    return sum(not t.passed for t in done)


def _injection(site: str) -> int:
    found = asyncio.run(injection.run_corpus(site))
    seen = sum(c.seen_by_planner for c in found)
    print(f"\n## Prompt injection: {len(found)} hostile responses, {seen} seen by the planner\n"
          f"attacker hits {sum(c.attacker_hits for c in found)}, side effects run "
          f"{sum(c.effects_run for c in found)} (approval deny), injected writes run under "
          f"approval auto {sum(c.auto_effects_run for c in found)} "
          f"({sum(c.auto_escalated for c in found)} escalated to a human), injected text "
          f"outside the data fence "
          f"{sum(c.escaped_fence or c.in_faithful_plan for c in found)}, credentials in a "
          f"prompt {sum(c.secret_in_prompt for c in found)}; a hijacked (gullible) planner "
          f"changed its answer in {sum(c.answer_changed for c in found)}\n")
    print("| case | attack | seen | contained by |\n|---|---|---|---|")
    for c in found:
        print(f"| {c.case.name} | {c.case.attack} | {'yes' if c.seen_by_planner else 'no'} | "
              f"{c.contained_by}{' | ' + '; '.join(c.problems) if c.problems else ''} |")
    return sum(bool(c.problems) for c in found)


def _load(threads: int, work: Path) -> int:
    results = [asyncio.run(load.run_load(str(work / "load.sqlite"), "sqlite", threads))]
    if postgres_bin():
        with running_postgres() as url:
            results.append(asyncio.run(load.run_load(url, "postgres", threads)))
    print("\n## Concurrency\n| backend | threads | s | runs/s | vs one at a time | "
          "checkpoints | checks |\n|---|---|---|---|---|---|---|")
    for r in results:
        print(f"| {r.backend} | {r.threads} | {r.seconds:.2f} | {r.runs_per_second:.1f} | "
              f"{r.speedup:.2f}x | {r.checkpoints} | "
              f"{'ok' if not r.problems else '; '.join(r.problems[:3])} |")
    if not postgres_bin():
        print("PostgreSQL is not installed here: the Postgres figure is missing "
              "(bash scripts/setup installs it)")
        return 1
    return sum(bool(r.problems) for r in results)


def _concurrency(rounds: int, site: str, work: Path) -> int:
    started = time.perf_counter()
    done = concurrency.run_rounds(rounds, 8, site, work / "crm.sqlite", work / "concurrency")
    runs = sum(len(r.statuses) for r in done)
    held = sum(s == "completed" for r in done for s in r.statuses.values())
    print(f"\n## Runs at once on one home\n{rounds} rounds of 8 concurrent `duet run` processes "
          f"on one DUET_HOME (the first on a fresh home), each a {concurrency.STEPS}-step plan "
          f"with {concurrency.WRITES} writes, in {time.perf_counter() - started:.0f}s "
          f"(slowest round {max(r.seconds for r in done):.0f}s): {held}/{runs} runs completed; "
          f"{sum(r.passed for r in done)}/{rounds} rounds with every step ok, each write once "
          "(counted in the demo site's database) and every run in `duet ls`")
    for found in done:
        for problem in found.problems:
            print(f"  round {found.index}: {problem}")
    url = str(work / "concurrency-embedded" / "checkpoints.sqlite")
    started = time.perf_counter()
    problems = asyncio.run(concurrency.run_in_process(8, site, work / "crm.sqlite", url))
    print(f"8 concurrent runs in one process, each opening the SQLite checkpointer and store "
          f"itself, in {time.perf_counter() - started:.1f}s: "
          f"{'every run completed, each write once' if not problems else '; '.join(problems)}")
    return sum(not r.passed for r in done) + bool(problems)


if __name__ == "__main__":
    main()
