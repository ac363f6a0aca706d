"""OpenTelemetry traces of runs: with an OTLP endpoint in the environment, every run that
`run_thread` or `retry_thread` drives exports its spans, built from its events
(`graph.app.telemetry.spans`); without one, OpenTelemetry's exporter is not even loaded.

The SDK's standard variables configure it: the endpoint (`OTEL_EXPORTER_OTLP_ENDPOINT`, to
which `/v1/traces` is added, or `OTEL_EXPORTER_OTLP_TRACES_ENDPOINT` as it is), headers
(`OTEL_EXPORTER_OTLP_HEADERS`, `OTEL_EXPORTER_OTLP_TRACES_HEADERS`), the bound of one export
(`OTEL_EXPORTER_OTLP_TIMEOUT`, `OTEL_EXPORTER_OTLP_TRACES_TIMEOUT`: seconds, as this SDK
reads them; 10 by default), `OTEL_SERVICE_NAME` and `OTEL_RESOURCE_ATTRIBUTES`.
`OTEL_SDK_DISABLED=true` or `OTEL_TRACES_EXPORTER=none` turn it off. What cannot be done as
asked (a protocol other than OTLP over HTTP with protobuf, an endpoint that is not an
http(s) URL, a timeout that is not a positive number) is refused before any work, in one
line (`TelemetryConfigError`).
"""

from __future__ import annotations

import math
import os
from typing import TYPE_CHECKING
from urllib.parse import urlsplit

from tools.errors import ConfigError

if TYPE_CHECKING:
    from graph.app.telemetry.spans import RunSpans

__all__ = ["TelemetryConfigError", "export_timeout", "run_spans"]

DEFAULT_EXPORT_TIMEOUT_SECONDS = 10.0  # the OTLP exporter's own default


class TelemetryConfigError(ConfigError):
    """The OpenTelemetry environment asks for an export nova-duet cannot make."""


def _setting(*names: str) -> tuple[str, str] | None:
    """The first of these environment variables that is set and not empty: name, value."""
    return next(((name, value.strip()) for name in names
                 if (value := os.environ.get(name, "")).strip()), None)


def export_timeout() -> float | None:
    """The bound of one export, in seconds, when the environment asks for OTLP traces;
    None when it asks for none (no endpoint, or turned off). Raises `TelemetryConfigError`
    for an export that cannot be made as asked (see the module)."""
    if os.environ.get("OTEL_SDK_DISABLED", "").strip().lower() == "true":
        return None
    exporter = os.environ.get("OTEL_TRACES_EXPORTER", "").strip().lower() or "otlp"
    if exporter == "none":
        return None
    endpoint = _setting("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT", "OTEL_EXPORTER_OTLP_ENDPOINT")
    if endpoint is None:
        return None
    if exporter != "otlp":
        raise TelemetryConfigError(
            f"OTEL_TRACES_EXPORTER={exporter}: nova-duet exports traces over OTLP only "
            "(set it to otlp, or none for no traces)")
    protocol = _setting("OTEL_EXPORTER_OTLP_TRACES_PROTOCOL", "OTEL_EXPORTER_OTLP_PROTOCOL")
    if protocol is not None and protocol[1] != "http/protobuf":
        raise TelemetryConfigError(
            f"{protocol[0]}={protocol[1]}: nova-duet exports traces over OTLP/HTTP "
            "(http/protobuf) only; point the endpoint at the collector's HTTP port (4318 "
            "by default)")
    url = urlsplit(endpoint[1])
    if url.scheme not in ("http", "https") or not url.hostname:
        # The value is not repeated: an endpoint may carry credentials.
        raise TelemetryConfigError(
            f"{endpoint[0]} is not an http(s) URL (e.g. http://127.0.0.1:4318)")
    timeout = _setting("OTEL_EXPORTER_OTLP_TRACES_TIMEOUT", "OTEL_EXPORTER_OTLP_TIMEOUT")
    if timeout is None:
        return DEFAULT_EXPORT_TIMEOUT_SECONDS
    try:
        seconds = float(timeout[1])
    except ValueError:
        seconds = math.nan
    if not (math.isfinite(seconds) and seconds > 0):
        raise TelemetryConfigError(
            f"{timeout[0]}={timeout[1]}: the bound of one export, in seconds, must be a "
            "positive number")
    return seconds


def run_spans(thread_id: str) -> RunSpans | None:
    """The spans of one run of `thread_id` (a start, a resume or a retry), its run span
    begun; None when the environment asks for no traces. Raises `TelemetryConfigError` as
    `export_timeout` does."""
    timeout = export_timeout()
    if timeout is None:
        return None
    from graph.app.telemetry.spans import RunSpans  # only runs that export load the SDK

    return RunSpans(thread_id, timeout)
