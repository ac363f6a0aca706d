"""What the OpenTelemetry environment asks of a run's export, read before any work."""

from __future__ import annotations

import pytest

from graph.app.telemetry import TelemetryConfigError, export_timeout

VARIABLES = ("OTEL_EXPORTER_OTLP_ENDPOINT", "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT",
             "OTEL_EXPORTER_OTLP_PROTOCOL", "OTEL_EXPORTER_OTLP_TRACES_PROTOCOL",
             "OTEL_EXPORTER_OTLP_TIMEOUT", "OTEL_EXPORTER_OTLP_TRACES_TIMEOUT",
             "OTEL_SDK_DISABLED", "OTEL_TRACES_EXPORTER")


@pytest.fixture(autouse=True)
def no_otel_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in VARIABLES:
        monkeypatch.delenv(name, raising=False)


@pytest.mark.parametrize("environment, timeout", [
    ({}, None),
    ({"OTEL_EXPORTER_OTLP_ENDPOINT": "  "}, None),
    ({"OTEL_EXPORTER_OTLP_ENDPOINT": "http://127.0.0.1:4318"}, 10.0),
    ({"OTEL_EXPORTER_OTLP_TRACES_ENDPOINT": "https://otel.example.com/v1/traces"}, 10.0),
    ({"OTEL_EXPORTER_OTLP_ENDPOINT": "http://127.0.0.1:4318",
      "OTEL_EXPORTER_OTLP_PROTOCOL": "http/protobuf", "OTEL_EXPORTER_OTLP_TIMEOUT": "2.5"}, 2.5),
    # The traces variable comes first, as the SDK reads it.
    ({"OTEL_EXPORTER_OTLP_ENDPOINT": "http://127.0.0.1:4318",
      "OTEL_EXPORTER_OTLP_TIMEOUT": "30", "OTEL_EXPORTER_OTLP_TRACES_TIMEOUT": "3"}, 3.0),
    ({"OTEL_EXPORTER_OTLP_ENDPOINT": "http://127.0.0.1:4318",
      "OTEL_EXPORTER_OTLP_PROTOCOL": "grpc",
      "OTEL_EXPORTER_OTLP_TRACES_PROTOCOL": "http/protobuf"}, 10.0),
    # Turned off: nothing is exported, and nothing else is checked.
    ({"OTEL_EXPORTER_OTLP_ENDPOINT": "http://127.0.0.1:4318", "OTEL_SDK_DISABLED": "true",
      "OTEL_EXPORTER_OTLP_PROTOCOL": "grpc"}, None),
    ({"OTEL_EXPORTER_OTLP_ENDPOINT": "http://127.0.0.1:4318", "OTEL_TRACES_EXPORTER": "none"},
     None),
])
def test_export_timeout_reads_the_standard_variables(monkeypatch, environment, timeout):
    for name, value in environment.items():
        monkeypatch.setenv(name, value)
    assert export_timeout() == timeout


@pytest.mark.parametrize("environment, said", [
    ({"OTEL_EXPORTER_OTLP_PROTOCOL": "grpc"},
     "OTEL_EXPORTER_OTLP_PROTOCOL=grpc: nova-duet exports traces over OTLP/HTTP"),
    ({"OTEL_EXPORTER_OTLP_TRACES_PROTOCOL": "http/json"},
     "OTEL_EXPORTER_OTLP_TRACES_PROTOCOL=http/json: nova-duet exports traces over OTLP/HTTP"),
    ({"OTEL_TRACES_EXPORTER": "console"},
     "OTEL_TRACES_EXPORTER=console: nova-duet exports traces over OTLP only"),
    ({"OTEL_EXPORTER_OTLP_TIMEOUT": "soon"},
     "OTEL_EXPORTER_OTLP_TIMEOUT=soon: the bound of one export, in seconds, must be a "
     "positive number"),
    ({"OTEL_EXPORTER_OTLP_TRACES_TIMEOUT": "0"}, "OTEL_EXPORTER_OTLP_TRACES_TIMEOUT=0:"),
    ({"OTEL_EXPORTER_OTLP_TIMEOUT": "inf"}, "OTEL_EXPORTER_OTLP_TIMEOUT=inf:"),
])
def test_an_export_that_cannot_be_made_is_a_config_error(monkeypatch, environment, said):
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_ENDPOINT", "http://127.0.0.1:4318")
    for name, value in environment.items():
        monkeypatch.setenv(name, value)
    with pytest.raises(TelemetryConfigError) as raised:
        export_timeout()
    assert str(raised.value).startswith(said)


@pytest.mark.parametrize("endpoint", ["127.0.0.1:4318", "localhost:4318", "grpc://collector:4317",
                                      "http://"])
def test_an_endpoint_that_is_not_an_http_url_is_refused_without_repeating_it(monkeypatch,
                                                                              endpoint):
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT", endpoint)
    with pytest.raises(TelemetryConfigError) as raised:
        export_timeout()
    assert str(raised.value) == ("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT is not an http(s) URL "
                                 "(e.g. http://127.0.0.1:4318)")
