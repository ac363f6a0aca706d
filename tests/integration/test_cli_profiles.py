"""`duet profiles` as a user runs it: a real process over the profiles a run kept."""

from __future__ import annotations

import json
import os
import time

from tests.integration.test_cli import duet
from tools.auth.profiles import Profiles

COOKIE_VALUE = "s3ss10n-v4lue-never-shown"
STORAGE_VALUE = "jwt-never-shown"
# A storage state as Playwright's `storage_state()` gives it.
STATE = {
    "cookies": [{"name": "crm_session", "value": COOKIE_VALUE, "domain": "127.0.0.1",
                 "path": "/", "expires": time.time() + 1800, "httpOnly": True,
                 "secure": False, "sameSite": "Lax"},
                {"name": "pref", "value": "dark", "domain": ".crm.example.com", "path": "/",
                 "expires": -1, "httpOnly": False, "secure": True, "sameSite": "Lax"}],
    "origins": [{"origin": "https://crm.example.com",
                 "localStorage": [{"name": "token", "value": STORAGE_VALUE}]}]}


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


def test_a_profile_is_private_and_written_whole(isolated_env):
    profiles = Profiles(isolated_env / "profiles")
    profiles.save("crm", STATE)
    profiles.save("crm", {**STATE, "origins": []})
    assert os.stat(profiles.folder).st_mode & 0o777 == 0o700
    assert os.stat(profiles.path("crm")).st_mode & 0o777 == 0o600
    assert profiles.load("crm") == {**STATE, "origins": []}
    # Only the profile and its lock: no temporary file left behind.
    assert sorted(p.name for p in profiles.folder.iterdir()) == [".crm.lock", "crm.json"]
    profiles.path("crm").write_text("{not json")
    assert profiles.load("crm") is None  # said in a warning; the session starts empty
