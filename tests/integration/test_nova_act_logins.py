"""Secrets and logins with Nova Act: the real SDK and Chromium against the loopback Nova Act
service and the demo CRM behind its login. A secret is typed with Playwright's keyboard
after the act focused its field, never given to Nova Act's model."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from tests.fixtures.logins import Crm, auth_config, crm_behind_login, make_auth, step_of  # noqa: F401 - `crm`
from tests.fixtures.nova_act_service import call, observe_then
from tools import BrowserPool, NovaActExecutor, ToolError
from tools.auth import SecretNotAllowed, encoded_forms
from tools.step import StepFiles

pytestmark = pytest.mark.browser


@pytest.fixture
async def nova(nova_act_service):
    pool = BrowserPool()
    yield NovaActExecutor(pool)
    await pool.aclose()


def input_box(observation: dict, index: int) -> str:
    """The `<box>` of the `index`-th input of the page's simplified DOM."""
    ids = [re.search(r"nova-act-id='(\d+)'", line)[1]
           for line in observation["simplifiedDOM"].splitlines()
           if "<input" in line and "nova-act-id" in line]
    bbox = observation["idToBboxMap"][ids[index]]
    top, left = bbox["y"], bbox["x"]
    return f"<box>{top},{left},{top + bbox['height']},{left + bbox['width']}</box>"


def focus_script(*typed: tuple[int, str], click: int):
    """An act that types each (input, text), clicks input `click`, and returns."""
    def script(index: int, observation: dict):
        if index < len(typed):
            field, text = typed[index]
            return observe_then(call("agentType", text, input_box(observation, field)))
        if index == len(typed):
            return observe_then(call("agentClick", input_box(observation, click)))
        return [call("return", "focused")]
    return script


def leaks(value: str, *places: str) -> list[str]:
    """The places that hold `value` in any encoded form."""
    return [place for place in places if any(form in place for form in encoded_forms(value))]


def files_text(folder: Path) -> str:
    return "\n".join(path.read_bytes().decode("latin-1") for path in folder.rglob("*")
                     if path.is_file())


async def test_a_secret_is_typed_after_the_act_never_given_to_nova_act(
        nova, nova_act_service, crm: Crm, isolated_env):
    config = auth_config(crm)
    del config["logins"]  # the act itself goes through the login form here
    auth = make_auth(config, isolated_env)
    files = StepFiles(isolated_env / "runs" / "run-1", "v1-s1")
    step = step_of(crm, auth, files=files)
    nova_act_service.scripts.append(focus_script((0, crm.credentials.username), click=1))
    out = await nova.act("Type the username, then click the password field",
                         f"{crm.url}/login", step, session="crm",
                         secret="${secret.crm_password}", submit=True)
    assert out["typed"] == "${secret.crm_password}" and out["submitted"] is True
    assert crm.attempts() == [("password", "ok")]  # typed into the field, and sent

    # The code page next: a text field, typed the same way.
    nova_act_service.scripts.append(focus_script(click=0))
    await nova.act("Click the code field", f"{crm.url}/login/mfa", step, session="crm",
                   secret="${secret.crm_otp}", submit=True)
    assert crm.attempts() == [("password", "ok"), ("mfa", "ok")]

    sent = json.dumps(nova_act_service.requests)
    logs = files_text(files.nova_act_logs)
    assert logs, "Nova Act wrote no logs"
    assert leaks(crm.credentials.password, sent, logs) == []
    assert leaks(crm.credentials.totp_seed, sent, logs) == []
    # What the service saw last: the page the code led to, signed in.
    assert nova_act_service.observations[-1]["activeURL"] == f"{crm.url}/login/mfa"


async def test_a_secret_is_refused_off_its_hosts_and_no_act_sees_a_field_holding_one(
        nova, nova_act_service, crm: Crm, isolated_env):
    auth = make_auth(auth_config(crm), isolated_env)
    step = step_of(crm, auth)
    # The lookalike on `localhost`: allowed for the run, not for the secret.
    nova_act_service.scripts.append(focus_script((0, crm.credentials.username), click=1))
    with pytest.raises(SecretNotAllowed):
        await nova.act("Type the username, then click the password field",
                       f"http://{crm.other_host}/hostile/lookalike-login", step,
                       session="phish", secret="${secret.crm_password}", submit=True)
    assert crm.auth.lure_posts() == []

    # Typed but not sent: the next act would show the field's value to Nova Act.
    config = auth_config(crm)
    del config["logins"]
    step = step_of(crm, make_auth(config, isolated_env))
    nova_act_service.scripts.append(focus_script((0, crm.credentials.username), click=1))
    await nova.act("Type the username, then click the password field", f"{crm.url}/login",
                   step, session="crm", secret="${secret.crm_password}")
    acts = sum(op == "CreateAct" for op, _ in nova_act_service.requests)
    with pytest.raises(ToolError) as refused:
        await nova.act("Sign in", f"{crm.url}/login", step, session="crm")
    assert refused.value.type_name == "SecretNotAllowed" and refused.value.status == "blocked"
    assert sum(op == "CreateAct" for op, _ in nova_act_service.requests) == acts
    assert leaks(crm.credentials.password, json.dumps(nova_act_service.requests)) == []
    assert crm.attempts() == []


async def test_a_nova_act_step_on_a_login_page_logs_in_with_the_recipe_first(
        nova, nova_act_service, crm: Crm, isolated_env):
    step = step_of(crm, make_auth(auth_config(crm), isolated_env))
    nova_act_service.scripts.append(lambda index, observation: [call("return", "seen")])
    out = await nova.act("Read the page", f"{crm.url}/customers/2", step, session="crm")
    assert out["steps"] == 1
    assert crm.attempts() == [("password", "ok"), ("mfa", "ok")]
    # Nova Act's first look was at the page it was sent to, signed in.
    assert nova_act_service.observations[0]["activeURL"] == f"{crm.url}/customers/2"
    assert leaks(crm.credentials.password, json.dumps(nova_act_service.requests)) == []
