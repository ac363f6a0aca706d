"""Every reliability test runs with credentials planted in its environment, and fails if any
of them (or the demo site's planted page credentials) shows up in what it left behind."""

from __future__ import annotations

import logging
from pathlib import Path

import pytest

from reliability.secrets import planted, scan


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    here = Path(__file__).parent
    for item in items:
        if here in Path(item.fspath).parents:
            item.add_marker(pytest.mark.reliability)


@pytest.fixture(autouse=True)
def no_secret_leaks(tmp_path: Path, caplog: pytest.LogCaptureFixture,
                    capfd: pytest.CaptureFixture[str]):
    """Plant the credentials; afterwards scan files, logs (INFO and up) and output for them."""
    caplog.set_level(logging.INFO)
    with planted() as secrets:
        yield
    out, err = capfd.readouterr()
    leaks = scan([tmp_path], [out, err, caplog.text], secrets)
    assert not leaks, f"secrets leaked: {leaks}"
