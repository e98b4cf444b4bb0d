#!/usr/bin/env python3
"""A Python service instrumented with the official OpenTelemetry SDK,
exporting to a reporter that speaks TLS. The CA to trust comes the way the
SDK documents it: OTEL_EXPORTER_OTLP_CERTIFICATE (a PEM file), read by the
exporter itself. tests/tests/tls.rs runs it.

Usage: sdk_tls.py ENDPOINT PROTOCOL SERVICE
  ENDPOINT: https://HOST:PORT of the reporter's OTLP/HTTP or OTLP/gRPC port
  PROTOCOL: http/protobuf or grpc
  SERVICE:  its service.name

Resource: service.name=SERVICE, host.name=py-host-1. Records 120 durations of GET /orders/{id} into the
SDK's default histogram and exports them once (force_flush).

On success prints `runs=120` and exits 0; exits 1 when the export failed
(an untrusted certificate, for one), 2 on bad usage, 3 when the packages
are missing (`tests/run-all.sh` installs them).
"""

import sys

try:
    from opentelemetry.exporter.otlp.proto.grpc.metric_exporter import (
        OTLPMetricExporter as GrpcExporter,
    )
    from opentelemetry.exporter.otlp.proto.http.metric_exporter import (
        OTLPMetricExporter as HttpExporter,
    )
    from opentelemetry.sdk.metrics import MeterProvider
    from opentelemetry.sdk.metrics.export import PeriodicExportingMetricReader
    from opentelemetry.sdk.resources import Resource
except ImportError as error:
    print(
        f"sdk_tls.py: {error}; python3 lacks the OpenTelemetry SDK: run tests/run-all.sh, which installs "
        "opentelemetry-sdk and the OTLP exporters",
        file=sys.stderr,
    )
    sys.exit(3)

TIMEOUT_MS = 15_000
RUNS = 120


def main():
    if len(sys.argv) != 4 or not sys.argv[1].startswith("https://") or sys.argv[2] not in ("http/protobuf", "grpc"):
        print(__doc__, file=sys.stderr)
        sys.exit(2)
    endpoint, protocol, name = sys.argv[1], sys.argv[2], sys.argv[3]
    resource = Resource.create({"service.name": name, "host.name": "py-host-1"})
    if protocol == "grpc":
        # insecure=False: TLS, with the CA file of OTEL_EXPORTER_OTLP_CERTIFICATE.
        exporter = GrpcExporter(endpoint=endpoint, insecure=False, timeout=10)
    else:
        exporter = HttpExporter(endpoint=f"{endpoint}/v1/metrics", timeout=10)
    reader = PeriodicExportingMetricReader(exporter, export_interval_millis=60_000, export_timeout_millis=TIMEOUT_MS)
    provider = MeterProvider(resource=resource, metric_readers=[reader])
    histogram = provider.get_meter(name).create_histogram(
        "http.server.request.duration", unit="s", description="Duration of HTTP server requests."
    )
    for i in range(RUNS):
        seconds = 0.010 + 0.040 * ((i * 0.6180339887498949) % 1.0)
        histogram.record(seconds, {"http.request.method": "GET", "http.route": "/orders/{id}"})
    flushed = provider.force_flush(TIMEOUT_MS)
    provider.shutdown()
    if not flushed:
        print(f"sdk_tls.py: the {protocol} export to {endpoint} failed", file=sys.stderr)
        sys.exit(1)
    print(f"runs={RUNS}")


if __name__ == "__main__":
    main()
