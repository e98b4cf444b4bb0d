#!/usr/bin/env python3
"""A Python service instrumented with the official OpenTelemetry SDK,
deployed twice: it sends its request durations as version 1.0.0, then
(a new process, as after a deploy) as 2.0.0, slower.
reporter/tests/interop_python_versions.rs runs it and checks that the
reporter recorded the deploy.

Usage: sdk_versions.py ENDPOINT      (ENDPOINT: http://HOST:PORT, OTLP/HTTP)

Resource: service.name=py-shop, host.name=py-host-1,
deployment.environment.name=production, service.version=1.0.0 then 2.0.0.
Each version records 200 durations of GET /orders/{id} (version 2.0.0's
twice as long) into the SDK's default (explicit-bucket) histogram and
exports them once (force_flush), then shuts its provider down.

On success prints `version=VERSION<TAB>RUNS` per version and exits 0;
exits 1 when an export failed, 2 on bad usage, 3 when the packages are
missing (`tests/run-all.sh` installs them).
"""

import sys

try:
    from opentelemetry.exporter.otlp.proto.http.metric_exporter import OTLPMetricExporter
    from opentelemetry.sdk.metrics import MeterProvider
    from opentelemetry.sdk.metrics.export import PeriodicExportingMetricReader
    from opentelemetry.sdk.resources import Resource
except ImportError as error:
    print(
        f"sdk_versions.py: {error}; python3 lacks the OpenTelemetry SDK: run tests/run-all.sh, which "
        "installs opentelemetry-sdk and opentelemetry-exporter-otlp-proto-http",
        file=sys.stderr,
    )
    sys.exit(3)

TIMEOUT_MS = 10_000
ROUTE = "GET /orders/{id}"


def run(endpoint, version, scale):
    resource = Resource.create(
        {
            "service.name": "py-shop",
            "host.name": "py-host-1",
            "deployment.environment.name": "production",
            "service.version": version,
        }
    )
    exporter = OTLPMetricExporter(endpoint=f"{endpoint}/v1/metrics", timeout=10)
    reader = PeriodicExportingMetricReader(
        exporter, export_interval_millis=60_000, export_timeout_millis=TIMEOUT_MS
    )
    provider = MeterProvider(resource=resource, metric_readers=[reader])
    histogram = provider.get_meter("py-shop").create_histogram(
        "http.server.request.duration", unit="s", description="Duration of HTTP server requests."
    )
    runs = 200
    for i in range(runs):
        seconds = scale * (0.020 + 0.080 * ((i * 0.6180339887498949) % 1.0))
        histogram.record(seconds, {"http.request.method": "GET", "http.route": "/orders/{id}"})
    flushed = provider.force_flush(TIMEOUT_MS)
    provider.shutdown()
    if not flushed:
        print(f"sdk_versions.py: the export of {version} failed", file=sys.stderr)
        sys.exit(1)
    print(f"version={version}\t{runs}")


def main():
    if len(sys.argv) != 2 or not sys.argv[1].startswith("http"):
        print(__doc__, file=sys.stderr)
        sys.exit(2)
    run(sys.argv[1], "1.0.0", 1.0)
    run(sys.argv[1], "2.0.0", 2.0)


if __name__ == "__main__":
    main()
