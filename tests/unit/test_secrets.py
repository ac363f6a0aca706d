"""Secrets by name (issue 33): sources, TOTP codes, references, hosts, redaction forms, and no
value in any repr, message or config error."""

from __future__ import annotations

import base64
import copy
import json
import logging
import pickle
import subprocess
import sys
from pathlib import Path
from urllib.parse import quote, quote_plus

import pyotp
import pytest
import yaml

from graph.redaction import REDACTED, also_redact, redact_text
from tools.auth import (
    AuthConfig,
    AuthConfigError,
    SecretNotAllowed,
    SecretSpec,
    SecretStore,
    SecretUnavailable,
    SecretValue,
    UnknownSecret,
    encoded_forms,
    secret_names,
    substitute,
)
from tools.auth.secrets import OnReveal, ignore_forms
from tools.errors import BlockedError

VALUE = "s3cr3t Pa55/word+?~"  # so that each encoding differs from the others
SEED = "JBSWY3DPEHPK3PXPJBSWY3DPEHPK3PXP"  # 160 bits, as authenticators use
SPACED = "JBSW Y3DP EHPK 3PXP JBSW Y3DP EHPK 3PXP"  # as a site shows it


def store(*entries: dict, on_reveal: OnReveal = ignore_forms) -> SecretStore:
    specs = [SecretSpec(**{"kind": "password", "hosts": ["crm.example.com"], **entry})
             for entry in entries]
    return SecretStore(specs, on_reveal=on_reveal)


def write(path: Path, text: str, mode: int = 0o600) -> Path:
    path.write_text(text)
    path.chmod(mode)
    return path


async def resolved(source: str, kind: str = "password") -> str:
    value = await store({"name": "s", "source": source, "kind": kind}).resolve("s")
    return value.reveal()


async def unavailable(source: str, kind: str = "password") -> str:
    with pytest.raises(SecretUnavailable) as caught:
        await store({"name": "s", "source": source, "kind": kind}).resolve("s")
    return str(caught.value)


# Sources

async def test_an_environment_variable_is_read_when_resolved(monkeypatch):
    monkeypatch.setenv("CRM_PW", VALUE)
    assert await resolved("env:CRM_PW") == VALUE
    monkeypatch.setenv("CRM_PW", "rotated-value")
    assert await resolved("env:CRM_PW") == "rotated-value"  # read each time, kept nowhere


async def test_an_unset_or_empty_variable_says_what_to_set(monkeypatch):
    monkeypatch.delenv("CRM_PW", raising=False)
    assert await unavailable("env:CRM_PW") == ("secret 's' is unavailable: the environment "
                                              "variable CRM_PW is not set: set it")
    monkeypatch.setenv("CRM_PW", "")
    assert "CRM_PW is empty" in await unavailable("env:CRM_PW")


@pytest.mark.parametrize("mode", [0o600, 0o400])
async def test_a_file_only_its_owner_reads_gives_its_stripped_content(tmp_path, mode):
    path = write(tmp_path / "pw", f"  {VALUE}\n", mode)
    assert await resolved(f"file:{path}") == VALUE


@pytest.mark.parametrize("mode", [0o644, 0o640, 0o604])
async def test_a_file_others_may_read_is_refused_saying_how_to_fix_it(tmp_path, mode):
    path = write(tmp_path / "pw", VALUE, mode)
    message = await unavailable(f"file:{path}")
    assert message == (f"secret 's' is unavailable: {path} has mode {mode:04o}, open to "
                       f"others: chmod 600 {path}")


async def test_a_missing_file_says_how_to_make_it(tmp_path):
    message = await unavailable(f"file:{tmp_path / 'nothing'}")
    assert "does not exist: create it with mode 0600, outside any git repository" in message


@pytest.fixture
def repo(tmp_path) -> Path:
    folder = tmp_path / "project"
    folder.mkdir()
    subprocess.run(["git", "init", "-q", str(folder)], check=True)
    return folder


async def test_a_file_inside_a_git_work_tree_is_refused(repo):
    (repo / "config").mkdir()
    path = write(repo / "config" / "secrets.yaml", f"pw: {VALUE}\n")
    message = await unavailable(f"file:{path}#pw")
    assert message.endswith(f"{path} lies inside the git work tree {repo}: move it out of "
                            "every repository")


async def test_a_link_from_outside_to_a_file_inside_a_repo_is_refused_too(repo, tmp_path):
    link = tmp_path / "outside"
    link.symlink_to(write(repo / "pw", VALUE))
    assert "lies inside the git work tree" in await unavailable(f"file:{link}")


async def test_a_linked_work_tree_or_submodule_counts_as_a_repo(tmp_path):
    # Their `.git` is a file naming the repository's folder, not a folder.
    (tmp_path / "linked").mkdir()
    (tmp_path / "linked" / ".git").write_text("gitdir: /elsewhere/.git/worktrees/linked\n")
    path = write(tmp_path / "linked" / "pw", VALUE)
    assert "lies inside the git work tree" in await unavailable(f"file:{path}")


async def test_a_home_relative_path_is_expanded(tmp_path, monkeypatch):
    monkeypatch.setenv("HOME", str(tmp_path))
    write(tmp_path / "pw", VALUE)
    assert await resolved("file:~/pw") == VALUE


@pytest.mark.parametrize("name, text", [
    ("secrets.json", json.dumps({"crm": {"nested": 1}, "pw": VALUE})),
    ("secrets.yaml", f"crm: {{nested: 1}}\npw: '{VALUE}'\n"),
    ("secrets", f"pw: '{VALUE}'\n"),  # not `.json`: read as YAML
])
async def test_a_key_of_a_json_or_yaml_mapping(tmp_path, name, text):
    path = write(tmp_path / name, text)
    assert await resolved(f"file:{path}#pw") == VALUE


async def test_a_missing_key_lists_the_keys_and_a_non_string_is_refused(tmp_path):
    path = write(tmp_path / "s.yaml", f"pw: '{VALUE}'\npin: 0123\n")
    assert f"{path} has no key 'user' (its keys: pin, pw)" in await unavailable(
        f"file:{path}#user")
    # YAML reads 0123 as 83: a value that is not text is refused, not turned into text.
    assert "the key 'pin' of" in (message := await unavailable(f"file:{path}#pin"))
    # (The path is left out of the look: pytest's folder may be numbered 83.)
    assert message.endswith("is not a string: quote its value")
    assert "83" not in message.replace(str(path), "")


@pytest.mark.parametrize("name, text, problem", [
    ("s.yaml", f"pw: '{VALUE}\n  bad: [", "is not valid YAML (line"),
    ("s.json", f'{{"pw": "{VALUE}",}}', "is not valid JSON (line 1, column"),
    ("s.yaml", f"- {VALUE}\n", "holds no mapping, so it has no key 'pw'"),
])
async def test_a_broken_secrets_file_is_named_without_quoting_it(tmp_path, name, text, problem):
    path = write(tmp_path / name, text)
    message = await unavailable(f"file:{path}#pw")
    assert problem in message and VALUE not in message and "\n" not in message


# TOTP

async def test_a_totp_secret_gives_the_current_code_never_the_seed(tmp_path):
    path = write(tmp_path / "otp", SEED + "\n")
    value = await store({"name": "otp", "source": f"file:{path}", "kind": "totp"}).resolve(
        "otp")
    code = value.reveal()
    assert code.isdigit() and len(code) == 6 and SEED not in code
    assert pyotp.TOTP(SEED).verify(code)
    assert {SEED, code} <= set(value.forms())


async def test_a_seed_in_groups_of_four_and_lower_case_works(tmp_path):
    path = write(tmp_path / "otp", SPACED.lower() + "\n")
    code = await resolved(f"file:{path}", kind="totp")
    assert pyotp.TOTP(SEED).verify(code)


async def test_a_totp_secret_that_is_no_base32_seed_is_unavailable(tmp_path):
    path = write(tmp_path / "otp", VALUE)
    message = await unavailable(f"file:{path}", kind="totp")
    assert message == f"secret 's' is unavailable: file:{path} holds no base32 TOTP seed"
    write(path, SEED[:16])  # 80 bits: pyotp asks for 112 at least
    assert (await unavailable(f"file:{path}", kind="totp")).endswith(
        "holds a TOTP seed under 112 bits, which pyotp refuses")


# References

ARGS = {"url": "https://crm.example.com/login", "json": {
    "user": "ops", "password": "${secret.crm_pw}", "count": 3, "flags": [True, None],
    "headers": [{"Authorization": "Bearer ${secret.api}",
                 "X-Both": "${secret.api}:${secret.crm_pw}"}],
    "${secret.not_read}": "keys are field names"}}


def test_secret_names_walks_every_string_value():
    assert secret_names(ARGS) == {"crm_pw", "api"}
    assert secret_names("${secret.a}${secret.b} and ${secret.a}") == {"a", "b"}
    assert secret_names([1, 2.5, None, True, "$secret.x", "{secret.x}"]) == set()


def test_substitute_replaces_exact_and_embedded_references_in_a_copy():
    out = substitute(ARGS, {"crm_pw": VALUE, "api": "tok-123"})
    assert out["json"]["password"] == VALUE
    assert out["json"]["headers"] == [{"Authorization": "Bearer tok-123",
                                       "X-Both": f"tok-123:{VALUE}"}]
    assert out["json"]["count"] == 3 and out["json"]["flags"] == [True, None]
    assert ARGS["json"]["password"] == "${secret.crm_pw}"  # the plan's own args untouched


def test_substitute_refuses_an_unknown_or_misspelt_name():
    with pytest.raises(UnknownSecret) as caught:
        substitute({"a": "${secret.api}"}, {"crm_pw": VALUE})
    assert str(caught.value) == "unknown secret 'api' (known: crm_pw)"
    with pytest.raises(UnknownSecret):  # a name with a space cannot be sent as literal text
        substitute("${secret.crm pw}", {"crm_pw": VALUE})


async def test_the_store_refuses_a_name_it_does_not_define():
    secrets = store({"name": "crm_pw", "source": "env:CRM_PW"})
    with pytest.raises(UnknownSecret, match=r"^unknown secret 'api' \(known: crm_pw\)$"):
        await secrets.resolve("api")


# Hosts

def value(hosts: list[str], stored: str = VALUE) -> SecretValue:
    return SecretValue("crm", "password", hosts, stored)


def test_a_host_entry_allows_any_port_and_a_host_port_entry_only_its_own():
    secret = value(["crm.example.com", "api.example.com:8443"])
    assert secret.allows("https://crm.example.com/login")
    assert secret.allows("http://CRM.example.com:8080/x")
    assert secret.allows("https://api.example.com:8443/v1")
    assert not secret.allows("https://api.example.com/v1")
    assert not secret.allows("https://evil.example.com/?to=crm.example.com")
    assert not secret.allows("ftp://crm.example.com/")
    assert not secret.allows("https://crm.example.com:99999/")  # a bad port is refused


def test_this_machine_needs_its_port_as_in_the_allowlist():
    secret = value(["127.0.0.1:8000", "[::1]:8000"])
    assert secret.allows("http://127.0.0.1:8000/login")
    assert secret.allows("http://[::1]:8000/login")
    assert not secret.allows("http://127.0.0.1:5432/")
    for entry in ("localhost", "127.0.0.1", "[::1]"):
        with pytest.raises(ValueError, match=r"this machine's hosts need their port"):
            SecretSpec(name="s", source="env:X", kind="token", hosts=[entry])


def test_a_use_on_another_host_is_blocked_naming_the_host_only():
    secret = value(["crm.example.com"])
    with pytest.raises(SecretNotAllowed) as caught:
        secret.check(f"https://ops:{quote(VALUE, safe='')}@evil.example.com:8443/?k={VALUE}")
    assert isinstance(caught.value, BlockedError) and caught.value.status == "blocked"
    assert str(caught.value) == ("secret 'crm' may not be sent to evil.example.com:8443: it "
                                 "allows only ['crm.example.com']")
    for url in (f"https://ops:{VALUE}@evil.example.com/", f"http://[{VALUE}/"):
        with pytest.raises(SecretNotAllowed) as caught:
            secret.check(url)
        assert not any(form in str(caught.value) for form in encoded_forms(VALUE))
    value(["crm.example.com"]).check("https://crm.example.com/login")  # allowed: no error


@pytest.mark.parametrize("entry, problem", [
    ("https://crm.example.com", "is not a host or host:port"),
    ("crm.example.com/login", "is not a host or host:port"),
    ("*.example.com", "wildcards are not supported"),
])
def test_a_host_entry_no_url_could_match_is_refused(entry, problem):
    with pytest.raises(ValueError, match=problem):
        SecretSpec(name="s", source="env:X", kind="token", hosts=[entry])


# Redaction forms and the hook

def test_forms_hold_every_encoding_of_the_value():
    data = VALUE.encode()
    expected = {VALUE, quote(VALUE), quote(VALUE, safe=""), quote_plus(VALUE),
                base64.b64encode(data).decode(), base64.urlsafe_b64encode(data).decode()}
    expected |= {form.rstrip("=") for form in expected}
    assert len(expected) == 8  # the value was chosen so that each form differs
    assert expected <= set(value(["crm.example.com"]).forms())
    assert set(encoded_forms(VALUE)) == set(value(["crm.example.com"]).forms())


async def test_on_reveal_gets_the_forms_before_the_value_is_handed_out(monkeypatch):
    monkeypatch.setenv("CRM_PW", VALUE)
    told: list[list[str]] = []
    secrets = store({"name": "crm", "source": "env:CRM_PW"}, on_reveal=told.append)
    secrets.status()
    secret = await secrets.resolve("crm")
    assert told == []  # nothing handed out yet
    assert secret.reveal() == VALUE
    assert told == [encoded_forms(VALUE)]
    secret.reveal()
    (await secrets.resolve("crm")).reveal()
    assert len(told) == 1  # each form is told once


async def test_a_totp_code_is_told_before_it_is_handed_out(tmp_path):
    path = write(tmp_path / "otp", SPACED)
    told: list[str] = []
    secrets = store({"name": "otp", "source": f"file:{path}", "kind": "totp"},
                    on_reveal=told.extend)
    code = (await secrets.resolve("otp")).reveal()
    assert {code, SEED, SPACED, quote_plus(SPACED)} <= set(told)


async def test_with_the_redactor_every_form_is_cut(monkeypatch):
    monkeypatch.setenv("CRM_PW", VALUE)
    secret = await store({"name": "crm", "source": "env:CRM_PW"},
                         on_reveal=also_redact).resolve("crm")
    secret.reveal()
    text = " ".join(f"[{form}]" for form in encoded_forms(VALUE))
    assert redact_text(text) == " ".join([f"[{REDACTED}]"] * len(encoded_forms(VALUE)))


# Nothing shows a value

async def test_a_resolved_value_shows_its_name_only(monkeypatch, caplog):
    monkeypatch.setenv("CRM_PW", VALUE)
    secret = await store({"name": "crm", "source": "env:CRM_PW"}).resolve("crm")
    shown = [repr(secret), str(secret), f"{secret}", f"{secret!r:>80}", str([secret]),
             str({"v": secret})]
    with caplog.at_level(logging.INFO):
        logging.getLogger("duet").info("resolved %s %r", secret, secret)
    assert all(VALUE not in text for text in [*shown, caplog.text])
    assert repr(secret) == "SecretValue(name='crm', kind='password', hosts=['crm.example.com'])"
    with pytest.raises(TypeError, match="is not saved anywhere"):
        pickle.dumps(secret)
    with pytest.raises(TypeError):
        json.dumps({"v": secret})
    assert copy.deepcopy({"v": secret})["v"] is secret


async def test_the_catalogue_and_the_status_name_secrets_without_values(tmp_path, monkeypatch):
    monkeypatch.setenv("CRM_PW", VALUE)
    otp = write(tmp_path / "otp", SEED, 0o644)
    secrets = store({"name": "crm", "source": "env:CRM_PW", "description": "the ops login"},
                    {"name": "otp", "source": f"file:{otp}", "kind": "totp",
                     "hosts": ["crm.example.com", "127.0.0.1:8000"]})
    assert secrets.catalog() == [
        {"name": "crm", "kind": "password", "hosts": ["crm.example.com"],
         "description": "the ops login"},
        {"name": "otp", "kind": "totp", "hosts": ["crm.example.com", "127.0.0.1:8000"]}]
    crm, otp_status = secrets.status()
    assert crm.available and crm.describe() == ("crm (password from env:CRM_PW, for "
                                                "crm.example.com): ok")
    assert not otp_status.available
    assert otp_status.describe() == (f"otp (totp from file:{otp}, for crm.example.com, "
                                     f"127.0.0.1:8000): unavailable: {otp} has mode 0644, "
                                     f"open to others: chmod 600 {otp}")
    assert SEED not in json.dumps(secrets.catalog()) + otp_status.describe()


def test_a_store_refuses_a_name_defined_twice():
    with pytest.raises(ValueError, match="secret 'a' is defined twice"):
        store({"name": "a", "source": "env:A"}, {"name": "a", "source": "env:B"})


# The config file

CONFIG = """\
secrets:
  crm_pw:
    source: env:CRM_PW
    kind: password
    hosts: [crm.example.com, "127.0.0.1:8000"]
    description: the ops login
  otp: {source: "file:~/otp", kind: totp, hosts: [crm.example.com]}
logins:
  crm:
    hosts: [crm.example.com]
    login_url: https://crm.example.com/login
    page: {url: "/login*"}
    fields: {"#password": "${secret.crm_pw}"}
    submit: button
    check: {not_url: "/login*"}
"""


async def test_a_yaml_or_json_config_gives_a_store(tmp_path, monkeypatch):
    monkeypatch.setenv("CRM_PW", VALUE)
    yaml_file = tmp_path / "auth.yaml"
    yaml_file.write_text(CONFIG)
    config = AuthConfig.load(yaml_file)
    assert [spec.name for spec in config.secrets.values()] == ["crm_pw", "otp"]
    assert config.logins["crm"].login_url == "https://crm.example.com/login"
    assert config.logins["crm"].fields == {"#password": "${secret.crm_pw}"}
    json_file = tmp_path / "auth.json"
    json_file.write_text(json.dumps(yaml.safe_load(CONFIG)))
    assert AuthConfig.load(str(json_file)) == config
    assert AuthConfig.load(json_file.read_text()) == config  # JSON text works as well
    assert (await config.store().resolve("crm_pw")).reveal() == VALUE


@pytest.mark.parametrize("text, problem", [
    ("secrets:\n  crm: {source: env:A, kind: password}\n", "secret 'crm': hosts: is missing"),
    ("secrets:\n  crm: {source: env:A, kind: password, hosts: []}\n",
     "secret 'crm': hosts: name at least one host: a secret goes nowhere else"),
    ("secrets:\n  crm: {source: env:A, kind: pin, hosts: [x.com]}\n",
     "secret 'crm': kind: Input should be 'password', 'token' or 'totp'"),
    (f"secrets:\n  crm: {{source: env:A, value: '{VALUE}', kind: token, hosts: [x.com]}}\n",
     "secret 'crm': value: is not a field (a secret names its source, never holds its value)"),
    (f"secrets:\n  crm: {{source: '{VALUE}', kind: token, hosts: [x.com]}}\n",
     "secret 'crm': source: a source is one of env:VAR, file:PATH, file:PATH#KEY, "
     "aws:SECRET_ID or aws:SECRET_ID#KEY"),
    ("secrets:\n  crm: {source: 'file:secrets.yaml#pw', kind: token, hosts: [x.com]}\n",
     "secret 'crm': source: a file: source needs an absolute path (or one starting with ~)"),
    ("secrets:\n  crm: {source: 'file:~no-such-user-here/pw', kind: token, hosts: [x.com]}\n",
     "secret 'crm': source: a file: source starts with a ~ that names no home"),
    ("secrets:\n  crm: {source: 'aws:prod/crm#', kind: token, hosts: [x.com]}\n",
     "secret 'crm': source: a source is one of env:VAR, file:PATH, file:PATH#KEY, "
     "aws:SECRET_ID or aws:SECRET_ID#KEY, with nothing empty"),
    ("secrets:\n  crm: {source: env:A, kind: token, hosts: [localhost]}\n",
     "secret 'crm': hosts: 'localhost': this machine's hosts need their port (localhost:PORT)"),
    ("secrets:\n  crm: {name: other, source: env:A, kind: token, hosts: [x.com]}\n",
     "secret 'crm': its name is its key, so it needs no name:"),
    ("secrets:\n  my crm: {source: env:A, kind: token, hosts: [x.com]}\n",
     "secret 'my crm': name: a name is letters, digits, _ and -, not starting with a digit or "
     "-, as `${secret.NAME}` reads it"),
    ("secrets: {}\nlogins:\n  crm: {hosts: [x.com], login_url: 'https://x.com/login', "
     "page: {url: /login}, fields: {'#pw': '${secret.crm_pw}'}, submit: b, "
     "check: {not_url: /login}}\n",
     "logins.crm: unknown secret 'crm_pw' (defined: none)"),
    ("secret:\n  crm: {}\n", "secret: is not a field"),
    ("- a\n- b\n", "Input should be a valid dictionary or instance of AuthConfig"),
    (f"secrets:\n  crm: {{source: env:A, kind: token, hosts: [x.com]}}\n  bad: '{VALUE}\n",
     "is not valid YAML (line 4, column 1)"),
])
def test_a_config_error_is_one_line_naming_the_file_the_secret_and_the_problem(
        tmp_path, text, problem):
    path = tmp_path / "auth.yaml"
    path.write_text(text)
    with pytest.raises(AuthConfigError) as caught:
        AuthConfig.load(path)
    message = str(caught.value)
    assert str(path) in message and problem in message
    assert "\n" not in message and VALUE not in message


def test_a_config_that_cannot_be_read_or_parsed_says_so(tmp_path):
    with pytest.raises(AuthConfigError, match=r"^cannot read the auth config .*: "
                                              r"FileNotFoundError$"):
        AuthConfig.load(tmp_path / "missing.yaml")
    with pytest.raises(AuthConfigError, match=r"^the auth config \(JSON text\) is not valid "
                                              r"JSON \(line 1, column 2\)$"):
        AuthConfig.load("{secrets: 1}")


def test_the_executors_side_never_imports_the_graph():
    code = "import sys, tools.auth; print([m for m in sys.modules if m.startswith('graph')])"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=True).stdout
    assert out.strip() == "[]"
