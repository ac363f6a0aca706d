"""Where a secret's value is read from: `env:VAR`, `file:PATH[#KEY]` or `aws:SECRET_ID[#KEY]`."""

from __future__ import annotations

import json
import os
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

_VARIABLE = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
SOURCE_FORMS = "env:VAR, file:PATH, file:PATH#KEY, aws:SECRET_ID or aws:SECRET_ID#KEY"


class SourceProblem(Exception):
    """A source cannot be read now; the message says why and what to do, never a value."""


@dataclass(frozen=True)
class EnvSource:
    """An environment variable of this process."""

    variable: str

    def read(self) -> str:
        """The variable's value; `SourceProblem` when it is unset or empty."""
        value = os.environ.get(self.variable)
        if not value:
            state = "is empty" if value == "" else "is not set"
            raise SourceProblem(f"the environment variable {self.variable} {state}: set it")
        return value


@dataclass(frozen=True)
class FileSource:
    """A file only its owner may read, outside every git work tree: the whole of it
    (stripped), or one key of the JSON (`.json`) or YAML (any other name) mapping in it."""

    path: Path
    key: str | None = None

    def read(self) -> str:
        """The value; `SourceProblem` for a missing, shared or tracked file, or a bad key."""
        real = self.path.resolve()
        _check_private(real)
        _check_untracked(real)
        try:
            text = real.read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError) as exc:
            raise SourceProblem(f"cannot read {real}: {type(exc).__name__}") from None
        if self.key is None:
            return _non_empty(text.strip(), str(real))
        try:
            document = parse_document(text, as_json=real.suffix == ".json")
        except ValueError as exc:
            raise SourceProblem(f"{real} is {exc}") from None
        return _key_of(document, self.key, str(real))


def _check_private(path: Path) -> None:
    """Refuse a file that is missing, not a regular file, or open to its group or others:
    a secret another user can read is no longer only ours (ssh refuses such keys too)."""
    try:
        status = path.stat()
    except FileNotFoundError:
        raise SourceProblem(f"{path} does not exist: create it with mode 0600, outside "
                            "any git repository") from None
    except OSError as exc:
        raise SourceProblem(f"cannot read {path}: {type(exc).__name__}") from None
    if not path.is_file():
        raise SourceProblem(f"{path} is not a regular file")
    mode = status.st_mode & 0o777
    if mode & 0o077:
        raise SourceProblem(f"{path} has mode {mode:04o}, open to others: chmod 600 {path}")


def _check_untracked(path: Path) -> None:
    """Refuse a file inside a git work tree (a `.git` folder, or the `.git` file of a linked
    work tree or a submodule, in one of its folders): one `git add .` would publish it."""
    for folder in path.parents:
        if (folder / ".git").exists():
            raise SourceProblem(f"{path} lies inside the git work tree {folder}: move it out "
                                "of every repository")


def parse_document(text: str, *, as_json: bool) -> Any:
    """The JSON or YAML document in `text`; `ValueError` with the parser's position only,
    since a parser's message quotes the line it failed on, and that line may hold a value."""
    if as_json:
        try:
            return json.loads(text)
        except json.JSONDecodeError as exc:
            raise ValueError(f"not valid JSON (line {exc.lineno}, column {exc.colno})") from None
    try:
        return yaml.safe_load(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" (line {mark.line + 1}, column {mark.column + 1})" if mark else ""
        raise ValueError(f"not valid YAML{where}") from None


def _key_of(document: Any, key: str, where: str) -> str:
    """The string at `key` of a mapping; `SourceProblem` naming `where` otherwise."""
    if not isinstance(document, dict):
        raise SourceProblem(f"{where} holds no mapping, so it has no key {key!r}")
    if key not in document:
        keys = ", ".join(sorted(map(str, document))) or "none"
        raise SourceProblem(f"{where} has no key {key!r} (its keys: {keys})")
    value = document[key]
    if not isinstance(value, str):
        # YAML reads `pin: 0123` as a number (83, in octal): a value must be quoted text.
        raise SourceProblem(f"the key {key!r} of {where} is not a string: quote its value")
    return _non_empty(value, f"the key {key!r} of {where}")


def _non_empty(value: str, where: str) -> str:
    if not value:
        raise SourceProblem(f"{where} is empty")
    return value


@dataclass(frozen=True)
class AwsSource:
    """A secret of AWS Secrets Manager (`GetSecretValue` with boto3's usual region,
    credentials and endpoint settings, `AWS_ENDPOINT_URL_SECRETS_MANAGER` included): its
    whole string, or one key of the JSON object it holds. Blocks: call it off the loop."""

    secret_id: str
    key: str | None = None

    def read(self) -> str:
        """The value; `SourceProblem` saying what to set when AWS cannot give it."""
        text = _secret_string(self.secret_id)
        where = f"the AWS secret {self.secret_id!r}"
        if self.key is None:
            return _non_empty(text, where)
        try:
            document = json.loads(text)
        except json.JSONDecodeError:
            raise SourceProblem(f"{where} is not a JSON object, so it has no key "
                                f"{self.key!r}") from None
        return _key_of(document, self.key, where)


def _secret_string(secret_id: str) -> str:
    """The secret's string (a binary secret decoded as UTF-8) from Secrets Manager."""
    # Imported here: only secrets kept in AWS need botocore, which takes a while to load.
    import boto3
    from botocore.config import Config
    from botocore.exceptions import BotoCoreError, ClientError, NoCredentialsError, NoRegionError

    # A session of its own: boto3's default session is not thread-safe, and each read runs
    # in a worker thread. Short timeouts: a thread cannot be cancelled when its step times out.
    config = Config(connect_timeout=5, read_timeout=10, retries={"mode": "standard"})
    # boto3 reads AWS_DEFAULT_REGION only; AWS_REGION (the AWS CLI's and this project's,
    # which Bedrock and Nova Act use) comes first, as in the AWS CLI.
    region = os.environ.get("AWS_REGION") or None
    try:
        client = boto3.session.Session().client("secretsmanager", region_name=region,
                                                 config=config)
    except NoRegionError:
        raise SourceProblem("no AWS region is configured: set AWS_REGION (or "
                            "AWS_DEFAULT_REGION, or a region in the AWS profile)") from None
    try:
        answer = client.get_secret_value(SecretId=secret_id)
    except NoCredentialsError:
        raise SourceProblem("no AWS credentials were found: set AWS_PROFILE, or "
                            "AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY") from None
    except ClientError as exc:
        error = exc.response.get("Error", {})
        if error.get("Code") == "ResourceNotFoundException":
            raise SourceProblem(f"AWS Secrets Manager has no secret {secret_id!r} in region "
                                f"{client.meta.region_name}") from None
        raise SourceProblem(f"AWS Secrets Manager refused {secret_id!r}: {error.get('Code')}: "
                            f"{error.get('Message')}") from None
    except BotoCoreError as exc:
        raise SourceProblem(f"cannot reach AWS Secrets Manager: {exc}") from None
    if "SecretString" in answer:
        return str(answer["SecretString"])
    try:
        return bytes(answer["SecretBinary"]).decode("utf-8")
    except UnicodeDecodeError:
        raise SourceProblem(f"the AWS secret {secret_id!r} is binary, not text") from None


Source = EnvSource | FileSource | AwsSource


def parse_source(text: str) -> Source:
    """The source a spec's `source` names; `ValueError` saying which forms exist. The text
    is never quoted back, in case a value was written there by mistake."""
    scheme, _, rest = text.partition(":")
    if scheme == "env" and _VARIABLE.fullmatch(rest):
        return EnvSource(rest)
    if scheme == "file":
        path, key = _split_key(rest)
        try:
            expanded = Path(path).expanduser()
        except RuntimeError:  # `~user` of no user, or `~` with no home
            raise ValueError("a file: source starts with a ~ that names no home") from None
        if not expanded.is_absolute():
            raise ValueError("a file: source needs an absolute path (or one starting with ~)")
        return FileSource(expanded, key)
    if scheme == "aws":
        secret_id, key = _split_key(rest)
        return AwsSource(secret_id, key)
    raise ValueError(f"a source is one of {SOURCE_FORMS}")


def _split_key(rest: str) -> tuple[str, str | None]:
    """`PATH#KEY` split at its last `#` (so a path holding a `#` must end with `#KEY`)."""
    base, hashed, key = rest.rpartition("#")
    if not hashed:
        base, key = rest, ""
    if not base or (hashed and not key):
        raise ValueError(f"a source is one of {SOURCE_FORMS}, with nothing empty")
    return base, key or None
