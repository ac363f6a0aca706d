"""Secrets and logins: plans name a secret (`${secret.NAME}`), executors put its value in.

The auth config (YAML, or JSON in a `.json` file or as text) names each secret and says
where its value is read and where it may be sent; it never holds a value:

    secrets:
      crm_password:
        source: env:CRM_PASSWORD           # or file:~/.config/duet/crm.yaml#password,
        kind: password                     # or aws:prod/crm#password
        hosts: [crm.example.com, "127.0.0.1:8000"]
        description: the CRM login of the ops user
      crm_otp: {source: "file:~/.config/duet/crm-otp", kind: totp, hosts: [crm.example.com]}
    logins:                                # how the executor logs in (`LoginRecipe`)
      crm:
        hosts: [crm.example.com]
        login_url: https://crm.example.com/login
        page: {url: "/login*"}
        fields: {"#username": ops, "#password": "${secret.crm_password}"}
        submit: "button[type=submit]"
        totp: {field: "#code", secret: crm_otp, page: {url: "/login/mfa*"}}
        check: {not_url: "/login*"}
    http_auth:                             # per API host (`HttpAuth`)
      api.example.com: {bearer: crm_api_token}
    profiles: [crm]                        # named browser sessions kept from run to run

Sources: `env:VAR`; `file:PATH` (the whole file, stripped) or `file:PATH#KEY` (a key of
the JSON or YAML mapping in it), only for a file of mode 0600 outside every git work
tree; `aws:SECRET_ID` or `aws:SECRET_ID#KEY` (AWS Secrets Manager, boto3's usual region,
credentials and endpoint settings). A `totp` secret's value is its base32 seed; what it
gives is the current code.

    config = AuthConfig.load("auth.yaml")
    store = config.store(on_reveal=graph.redaction.also_redact)
    store.catalog()                  # for the planner: names, kinds, hosts; no value
    value = await store.resolve("crm_password")
    value.check(url)                 # SecretNotAllowed off its hosts
    args = substitute(args, {value.name: value.reveal()})
"""

from tools.auth.config import AuthConfig
from tools.auth.errors import AuthConfigError, SecretNotAllowed, SecretUnavailable, UnknownSecret
from tools.auth.logins import BasicAuth, HeaderAuth, HttpAuth, LoginRecipe, PageMatch, TotpStep
from tools.auth.references import secret_names, substitute
from tools.auth.run import NO_AUTH, Auth
from tools.auth.secrets import (
    SecretSpec,
    SecretStatus,
    SecretStore,
    SecretValue,
    encoded_forms,
)

__all__ = [
    "NO_AUTH", "Auth", "BasicAuth", "HeaderAuth", "HttpAuth", "LoginRecipe", "PageMatch",
    "TotpStep",
    "AuthConfig", "AuthConfigError", "SecretNotAllowed", "SecretSpec", "SecretStatus",
    "SecretStore", "SecretUnavailable", "SecretValue", "UnknownSecret", "encoded_forms",
    "secret_names", "substitute",
]
