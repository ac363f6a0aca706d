"""Kept browser profiles on disk (`tools.auth.profiles`): private files, written whole, named
only as a file name."""

from __future__ import annotations

import os

import pytest

from tests.fixtures.logins import STATE
from tools.auth import AuthConfig, AuthConfigError
from tools.auth.profiles import ProfileError, Profiles


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


@pytest.mark.parametrize("name", ["../crm", "a/b", ".hidden", "-x", "", "x" * 101])
def test_a_profile_is_named_as_a_file_never_a_path(tmp_path, name):
    with pytest.raises(ProfileError, match="cannot name a profile"):
        Profiles(tmp_path).save(name, STATE)
    with pytest.raises(AuthConfigError, match="cannot name a profile"):
        AuthConfig.load(f'{{"profiles": ["{name}"]}}')
    assert list(tmp_path.iterdir()) == []
