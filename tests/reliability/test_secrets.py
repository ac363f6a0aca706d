"""Planted credentials never leave a run; the scan that proves it can find a leak."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from urllib.parse import urlsplit

from demo_site.hostile import PAGE_AWS_KEY_ID, PAGE_AWS_SECRET
from graph.redaction import REDACTED, RedactingFilter, redact, redact_text
from reliability.secrets import PLANTED_ENV, PLANTED_VALUES, scan

ROOT = Path(__file__).resolve().parents[2]


def test_the_scan_finds_a_leak_in_a_file_in_json_and_in_output(tmp_path):
    secret = PLANTED_ENV["NOVA_ACT_API_KEY"]
    folder = tmp_path / "leaky"
    folder.mkdir()
    (folder / "plain.log").write_text(f"key={secret}")
    (folder / "state.json").write_text(json.dumps({"page": f'say "{PAGE_AWS_SECRET}"'}))
    leaks = scan([folder], [f"printed {PAGE_AWS_KEY_ID}"])
    assert len(leaks) == 3
    for planted_file in folder.iterdir():  # so the fixture's own scan stays clean
        planted_file.unlink()


def test_redaction_cuts_environment_secrets_and_credential_shapes():
    text = (f"env {os.environ['NOVA_ACT_API_KEY']} page aws_secret_access_key={PAGE_AWS_SECRET} "
            f"id {PAGE_AWS_KEY_ID} header Bearer planted-cdp-bearer-77aa ok=1 id=1002 "
            '"max_tokens": 100000000')
    cleaned = redact_text(text)
    assert not any(value in cleaned for value in PLANTED_VALUES)
    assert cleaned.count(REDACTED) == 4
    assert 'ok=1 id=1002 "max_tokens": 100000000' in cleaned  # data is left alone
    assert redact({"k": [text]})["k"][0] == cleaned


def test_redacting_filter_cleans_log_records_and_tracebacks():
    import logging

    record = logging.LogRecord("duet", logging.ERROR, __file__, 1, "failed with %s",
                               (PLANTED_ENV["GITHUB_TOKEN"],), None)
    try:
        raise ValueError(PLANTED_ENV["LANGSMITH_API_KEY"])
    except ValueError:
        record.exc_info = sys.exc_info()
    RedactingFilter().filter(record)
    assert PLANTED_ENV["GITHUB_TOKEN"] not in record.getMessage()
    assert PLANTED_ENV["LANGSMITH_API_KEY"] not in record.exc_text


def test_cli_run_reading_a_page_with_credentials_leaks_nothing(site, tmp_path, isolated_env):
    plan = tmp_path / "plan.json"
    plan.write_text(json.dumps({"goal": "read settings", "steps": [
        {"id": "s1", "tool": "http_request", "args": {"url": f"{site}/hostile/credentials"}},
        {"id": "s2", "tool": "http_request", "args": {"url": f"{site}/api/customers/999"}}]}))
    out = subprocess.run([sys.executable, "-m", "graph.app.cli", "run", "read the settings page",
                          "--plan-file", str(plan), "--allow-host", urlsplit(site).netloc],
                         capture_output=True, text=True, cwd=ROOT,
                         env=os.environ.copy(), timeout=120)
    assert out.returncode == 1  # s2 fails (no customer 999): the run ends failed
    thread = next((isolated_env / "runs").glob("*.json")).stem
    shown = subprocess.run([sys.executable, "-m", "graph.app.cli", "show", thread, "--json"],
                           capture_output=True, text=True, cwd=ROOT, env=os.environ.copy(),
                           timeout=120)
    page = json.loads(shown.stdout)["results"][0]["output"]["text"]
    assert "INJ-credentials" in page and REDACTED in page
    assert scan([tmp_path], [out.stdout, out.stderr, shown.stdout]) == []
