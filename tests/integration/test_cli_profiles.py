"""`duet profiles` as a user runs it: a real process over the profiles a run kept."""

from __future__ import annotations

import json

from tests.fixtures.logins import COOKIE_VALUE, STATE, STORAGE_VALUE
from tests.integration.test_cli import duet
from tools.auth.profiles import Profiles


def test_profiles_lists_shows_and_deletes_without_a_value(isolated_env):
    assert duet("profiles", "list").stdout.startswith("no profiles in ")
    Profiles(isolated_env / "profiles").save("crm", STATE)

    listed = duet("profiles", "list", "--json")
    assert listed.returncode == 0, listed.stderr
    [row] = json.loads(listed.stdout)
    assert row["name"] == "crm" and row["domains"] == ["127.0.0.1", "crm.example.com"]
    assert (row["cookies"], row["origins"]) == (2, 1) and 0 <= row["age_seconds"] < 120
    table = duet("profiles", "list").stdout
    assert "crm" in table and "127.0.0.1, crm.example.com" in table and "s ago" in table

    shown = json.loads(duet("profiles", "show", "crm", "--json").stdout)
    assert [c["name"] for c in shown["cookies"]] == ["crm_session", "pref"]
    assert shown["cookies"][1]["expires"] is None  # ends with the browser
    assert shown["local_storage"] == [{"origin": "https://crm.example.com", "keys": ["token"]}]
    text = duet("profiles", "show", "crm").stdout
    assert "crm_session" in text and "with the browser" in text
    for out in (listed.stdout, table, json.dumps(shown), text):
        assert COOKIE_VALUE not in out and STORAGE_VALUE not in out and "dark" not in out

    assert duet("profiles", "delete", "crm").returncode == 0
    assert not (isolated_env / "profiles" / "crm.json").exists()
    missing = duet("profiles", "show", "crm")
    assert missing.returncode == 2
    assert missing.stderr.strip().splitlines() == [
        f"error: no profile 'crm' in {isolated_env / 'profiles'} (profiles: none)"]
    assert duet("profiles", "delete", "../crm").returncode == 2

