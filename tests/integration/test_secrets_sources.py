"""Secrets kept in AWS Secrets Manager (moto's server on loopback, reached through boto3 and
the standard endpoint variable), and a whole use of secrets that leaves no value in any file
but the one it is kept in."""

from __future__ import annotations

import asyncio
import json
import logging
import socket
from collections.abc import Iterator
from pathlib import Path

import boto3
import httpx
import pyotp
import pytest

from graph.redaction import also_redact, redact
from reliability.secrets import scan
from tools.auth import (
    AuthConfig,
    SecretNotAllowed,
    SecretSpec,
    SecretStore,
    SecretUnavailable,
    encoded_forms,
    substitute,
)


@pytest.fixture
def secrets_manager(monkeypatch, aws_test_credentials) -> Iterator:
    """Moto's Secrets Manager on a free loopback port, where boto3's standard variable
    sends every client; yields a client to put secrets in."""
    from moto.server import ThreadedMotoServer

    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    url = f"http://{host}:{port}"
    try:
        monkeypatch.setenv("AWS_ENDPOINT_URL_SECRETS_MANAGER", url)
        yield boto3.client("secretsmanager", region_name="us-east-1")
    finally:
        # Moto keeps its data in this process, not in the server: the next test starts empty.
        httpx.post(f"{url}/moto-api/reset").raise_for_status()
        server.stop()


def aws_store(*sources: str) -> SecretStore:
    return SecretStore(SecretSpec(name=f"s{index}", source=source, kind="token",
                                  hosts=["api.example.com"])
                       for index, source in enumerate(sources))


async def reveal(source: str) -> str:
    return (await aws_store(source).resolve("s0")).reveal()


async def refusal(source: str) -> str:
    with pytest.raises(SecretUnavailable) as caught:
        await aws_store(source).resolve("s0")
    return caught.value.reason


async def test_a_plain_secret_and_a_key_of_a_json_secret(secrets_manager):
    secrets_manager.create_secret(Name="prod/api", SecretString="tok-aws-plain-4c1d")
    secrets_manager.create_secret(Name="prod/crm", SecretString=json.dumps(
        {"user": "ops", "password": "pw-aws-json-88e2"}))
    assert await reveal("aws:prod/api") == "tok-aws-plain-4c1d"
    assert await reveal("aws:prod/crm#password") == "pw-aws-json-88e2"
    secrets_manager.put_secret_value(SecretId="prod/api", SecretString="tok-rotated-9a0b")
    assert await reveal("aws:prod/api") == "tok-rotated-9a0b"  # a rotation is seen at once
    arn = secrets_manager.describe_secret(SecretId="prod/crm")["ARN"]
    assert await reveal(f"aws:{arn}#user") == "ops"


async def test_a_binary_secret_is_read_as_text(secrets_manager):
    secrets_manager.create_secret(Name="bin", SecretBinary=b"tok-binary-51f0")
    assert await reveal("aws:bin") == "tok-binary-51f0"


async def test_a_missing_secret_or_key_is_unavailable_saying_which(secrets_manager):
    secrets_manager.create_secret(Name="prod/api", SecretString="tok-aws-plain-4c1d")
    secrets_manager.create_secret(Name="prod/crm", SecretString=json.dumps({"user": "ops"}))
    assert await refusal("aws:prod/nope") == ("AWS Secrets Manager has no secret 'prod/nope' "
                                              "in region us-east-1")
    assert await refusal("aws:prod/crm#password") == ("the AWS secret 'prod/crm' has no key "
                                                      "'password' (its keys: user)")
    message = await refusal("aws:prod/api#password")
    assert message == "the AWS secret 'prod/api' is not a JSON object, so it has no key 'password'"
    statuses = aws_store("aws:prod/api", "aws:prod/nope").status()
    assert [status.available for status in statuses] == [True, False]
    assert "tok-aws-plain" not in " ".join(status.describe() for status in statuses)


async def test_aws_region_comes_before_aws_default_region(secrets_manager, monkeypatch):
    west = boto3.client("secretsmanager", region_name="eu-west-1")
    west.create_secret(Name="prod/api", SecretString="tok-in-eu-west-1")
    monkeypatch.setenv("AWS_DEFAULT_REGION", "us-east-1")
    monkeypatch.setenv("AWS_REGION", "eu-west-1")
    assert await reveal("aws:prod/api") == "tok-in-eu-west-1"
    monkeypatch.delenv("AWS_REGION")
    assert await refusal("aws:prod/api") == ("AWS Secrets Manager has no secret 'prod/api' in "
                                             "region us-east-1")


async def test_without_a_region_or_credentials_it_says_what_to_set(monkeypatch):
    monkeypatch.delenv("AWS_REGION", raising=False)
    monkeypatch.delenv("AWS_DEFAULT_REGION", raising=False)
    assert await refusal("aws:prod/api") == ("no AWS region is configured: set AWS_REGION (or "
                                             "AWS_DEFAULT_REGION, or a region in the AWS "
                                             "profile)")
    monkeypatch.setenv("AWS_REGION", "us-east-1")  # the suite's set-up gives no credentials
    assert await refusal("aws:prod/api") == ("no AWS credentials were found: set AWS_PROFILE, "
                                             "or AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY")


async def test_an_unreachable_service_is_unavailable(aws_test_credentials, monkeypatch):
    with socket.socket() as bound:  # bound, never listening: each connection is refused
        bound.bind(("127.0.0.1", 0))
        url = f"http://127.0.0.1:{bound.getsockname()[1]}/"
        monkeypatch.setenv("AWS_ENDPOINT_URL_SECRETS_MANAGER", url)
        assert await refusal("aws:prod/api") == ("cannot reach AWS Secrets Manager: Could not "
                                                 f'connect to the endpoint URL: "{url}"')


async def test_the_blocking_call_runs_off_the_event_loop(secrets_manager):
    secrets_manager.create_secret(Name="prod/api", SecretString="tok-aws-plain-4c1d")
    ticks = 0

    async def tick() -> None:
        nonlocal ticks
        while True:
            ticks += 1
            await asyncio.sleep(0)

    ticker = asyncio.create_task(tick())
    await asyncio.sleep(0)
    before = ticks
    await aws_store("aws:prod/api").resolve("s0")
    during = ticks - before  # a resolve that blocked the loop would leave the ticker still
    ticker.cancel()
    assert during > 1


# Kept values: each of these must be found in its own source file and nowhere else.
ENV_VALUE = "env-kept-value-3f9a61"
FILE_VALUE = "file-kept-value-b20c77"
AWS_VALUE = "aws-kept-value-6d1e04"
AWS_JSON_VALUE = "aws-kept-json-value-90ab3c"
SEED = pyotp.random_base32()


async def test_using_secrets_leaves_values_only_where_they_are_kept(
        tmp_path, tmp_path_factory, monkeypatch, secrets_manager):
    kept = tmp_path / "kept"
    kept.mkdir()
    crm_file = kept / "crm.json"
    crm_file.write_text(json.dumps({"password": FILE_VALUE}))
    seed_file = kept / "otp"
    seed_file.write_text(SEED)
    for path in (crm_file, seed_file):
        path.chmod(0o600)
    monkeypatch.setenv("CRM_PW", ENV_VALUE)  # a name the redactor's own scan does not know
    secrets_manager.create_secret(Name="prod/api", SecretString=AWS_VALUE)
    secrets_manager.create_secret(Name="prod/crm",
                                  SecretString=json.dumps({"password": AWS_JSON_VALUE}))
    config = tmp_path / "auth.yaml"
    config.write_text(f"""\
secrets:
  env_pw: {{source: "env:CRM_PW", kind: password, hosts: [crm.example.com]}}
  file_pw: {{source: "file:{crm_file}#password", kind: password, hosts: [crm.example.com]}}
  otp: {{source: "file:{seed_file}", kind: totp, hosts: [crm.example.com]}}
  api: {{source: "aws:prod/api", kind: token, hosts: [api.example.com]}}
  aws_pw: {{source: "aws:prod/crm#password", kind: password, hosts: ["127.0.0.1:8000"]}}
""")
    log = logging.getLogger("duet.secrets-test")
    handler = logging.FileHandler(tmp_path / "run.log")
    log.addHandler(handler)
    log.setLevel(logging.DEBUG)
    try:
        await use_every_secret(AuthConfig.load(config), tmp_path, log)
    finally:
        log.removeHandler(handler)
        handler.close()

    # Not the TOTP code: it lives 30 s, and graph.redaction cuts nothing under 8 characters,
    # so the trace shows it (the lead's wiring decides how codes are cut).
    values = [ENV_VALUE, FILE_VALUE, SEED, AWS_VALUE, AWS_JSON_VALUE]
    leaks = scan([tmp_path_factory.getbasetemp()],
                 secrets=[form for value in values for form in encoded_forms(value)])
    assert {leak.rpartition(": ")[0] for leak in leaks} == {str(crm_file), str(seed_file)}


async def use_every_secret(config: AuthConfig, folder: Path, log: logging.Logger) -> None:
    """What a run does with its secrets, writing everything a run records to `folder`: the
    catalogue, the status, each value as logged, and each call's arguments as traced."""
    store = config.store(on_reveal=also_redact)
    record = {"catalog": store.catalog(),
              "status": [status.describe() for status in store.status()], "calls": []}
    log.info("secrets: %s", record["status"])
    for entry in record["catalog"]:
        name, host = entry["name"], entry["hosts"][0]
        value = await store.resolve(name)
        log.info("resolved %s (%r), forms: %d", value, value, len(value.forms()))
        url = f"http://{host}/login"
        value.check(url)
        try:
            value.check("https://evil.example.com/collect")
        except SecretNotAllowed as refused:
            log.warning("%s", refused)
        args = substitute({"url": url, "headers": {"Authorization": f"Bearer ${{secret.{name}}}"},
                           "json": {"password": f"${{secret.{name}}}"}}, {name: value.reveal()})
        record["calls"].append(redact(args))
    (folder / "trace.json").write_text(json.dumps(record, indent=2))
