#!/usr/bin/env python3
"""A small Python HTTP service instrumented by hand with the official
OpenTelemetry SDK (`opentelemetry-sdk` and its OTLP exporters on PyPI), as a
service without an auto-instrumentation would be: each request is a SERVER
span and a point of `http.server.request.duration` (seconds) with the
semantic conventions' attributes (http.request.method, http.route,
http.response.status_code, error.type on a 5xx). The script drives a fixed,
seeded set of requests to itself and writes down what really happened to
each one (its ground truth): route, status and the duration the service
measured around its handler. reporter/tests/interop_python_service.rs
compares Kuroko's answers with it.

Usage: sdk_service.py PROTOCOL ENDPOINT TEMPORALITY AGGREGATION [--pause]
  PROTOCOL     grpc | http
  ENDPOINT     http://HOST:PORT of the reporter
  TEMPORALITY  cumulative | delta
  AGGREGATION  advised     explicit buckets, the bounds the conventions advise
               default-ms  explicit buckets with the SDK's default bounds,
                           which are milliseconds, recording seconds into them
                           (a common mistake: every run in one bucket)
               exponential ExponentialBucketHistogramAggregation(max_size=1000)
  --pause      after the first half of the requests (exported), print
               `paused` and wait for a line on stdin before the second half:
               the test restarts the reporter meanwhile.

Each `GET /orders/{id}` spends half its work in a CLIENT span (a call to a
partner API); each of its 500s records a `PaymentDeclined` exception on its
SERVER span (`record_exception`).

Prints, one per line: `sdk=VERSION`, then
`request=ROUTE<TAB>STATUS<TAB>SECONDS<TAB>OUTGOING` for every request
(OUTGOING: seconds in the CLIENT span, empty for routes without one), `paused` when pausing; exits 0, or 1 when an export
failed, 2 on bad usage, 3 when the packages are missing (tests/run-all.sh
installs them).
"""

import random
import sys
import threading
import time
import urllib.error
import urllib.request
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

try:
    from opentelemetry.sdk.metrics import MeterProvider
    from opentelemetry.sdk.metrics.export import (
        AggregationTemporality,
        MetricExportResult,
        PeriodicExportingMetricReader,
    )
    from opentelemetry.sdk.metrics.view import ExponentialBucketHistogramAggregation, View
    from opentelemetry.sdk.metrics import Histogram as HistogramInstrument
    from opentelemetry.sdk.resources import Resource
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import BatchSpanProcessor, SpanExportResult
    from opentelemetry.sdk.version import __version__ as SDK_VERSION
    from opentelemetry.trace import SpanKind, Status, StatusCode
except ImportError as error:
    print(
        f"sdk_service.py: {error}; python3 lacks the OpenTelemetry SDK: run tests/run-all.sh, which "
        "installs opentelemetry-sdk and the OTLP exporters",
        file=sys.stderr,
    )
    sys.exit(3)

ADVISED_BOUNDS = [0.005, 0.01, 0.025, 0.05, 0.075, 0.1, 0.25, 0.5, 0.75, 1.0, 2.5, 5.0, 7.5, 10.0]
REQUESTS = 240


class PaymentDeclined(Exception):
    """What a 500 of GET /orders/{id} records on its span."""
TIMEOUT_MS = 10_000


def exporters(protocol, endpoint, temporality):
    preferred = {HistogramInstrument: temporality}
    if protocol == "grpc":
        from opentelemetry.exporter.otlp.proto.grpc.metric_exporter import OTLPMetricExporter
        from opentelemetry.exporter.otlp.proto.grpc.trace_exporter import OTLPSpanExporter

        return (
            OTLPMetricExporter(endpoint=endpoint, insecure=True, timeout=10, preferred_temporality=preferred),
            OTLPSpanExporter(endpoint=endpoint, insecure=True, timeout=10),
        )
    from opentelemetry.exporter.otlp.proto.http.metric_exporter import OTLPMetricExporter
    from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter

    return (
        OTLPMetricExporter(endpoint=f"{endpoint}/v1/metrics", timeout=10, preferred_temporality=preferred),
        OTLPSpanExporter(endpoint=f"{endpoint}/v1/traces", timeout=10),
    )


def watch(exporter, success, failures):
    inner = exporter.export

    def export(batch, *args, **kwargs):
        result = inner(batch, *args, **kwargs)
        if result != success:
            failures.append(f"{type(exporter).__name__}: {result}")
        return result

    exporter.export = export


def main(argv):
    args = [a for a in argv[1:] if a != "--pause"]
    pause = "--pause" in argv
    if (
        len(args) != 4
        or args[0] not in ("grpc", "http")
        or not args[1].startswith("http://")
        or args[2] not in ("cumulative", "delta")
        or args[3] not in ("advised", "default-ms", "exponential")
    ):
        print(__doc__, file=sys.stderr)
        return 2
    protocol, endpoint, temporality, aggregation = args
    endpoint = endpoint.rstrip("/")
    temporality = AggregationTemporality.CUMULATIVE if temporality == "cumulative" else AggregationTemporality.DELTA
    resource = Resource.create({"service.name": "py-orders", "host.name": "py-orders-1"})
    metric_exporter, span_exporter = exporters(protocol, endpoint, temporality)
    failures = []
    watch(metric_exporter, MetricExportResult.SUCCESS, failures)
    watch(span_exporter, SpanExportResult.SUCCESS, failures)
    views = []
    if aggregation == "exponential":
        # 1,000 buckets rather than the default 160: over these runs' five
        # octaves, 160 buckets mean scale 5, whose buckets are 2.2% wide, so
        # no reader could be within 1%; 1,000 give scale 7 (0.54%).
        exponential = ExponentialBucketHistogramAggregation(max_size=1000)
        views.append(View(instrument_name="http.server.request.duration", aggregation=exponential))
    # Exported by hand (force_flush) at the end of each half; the periodic
    # export is rare, so that nothing is sent while the reporter restarts.
    meters = MeterProvider(
        resource=resource,
        metric_readers=[
            PeriodicExportingMetricReader(metric_exporter, export_interval_millis=600_000, export_timeout_millis=TIMEOUT_MS)
        ],
        views=views,
    )
    advisory = ADVISED_BOUNDS if aggregation == "advised" else None
    duration = meters.get_meter("py-orders.http").create_histogram(
        "http.server.request.duration",
        unit="s",
        description="Duration of HTTP server requests.",
        explicit_bucket_boundaries_advisory=advisory,
    )
    tracers = TracerProvider(resource=resource)
    tracers.add_span_processor(BatchSpanProcessor(span_exporter, schedule_delay_millis=200))
    tracer = tracers.get_tracer("py-orders.http")

    truth = []
    rng = random.Random(7)
    plan = []
    for i in range(REQUESTS):
        if i % 4 == 0:
            plan.append(("/health", "/health", 0.002 + rng.random() * 0.002, 200))
        else:
            status = 500 if rng.random() < 0.07 else 200
            # Log-normal-ish work: mostly 5-40 ms, a tail to ~200 ms.
            work = min(0.2, 0.004 * (1.0 + rng.lognormvariate(1.2, 0.8)))
            plan.append(("/orders/{id}", f"/orders/{1000 + i}", work, status))
    by_path = {path: (route, work, status) for route, path, work, status in plan}

    class Handler(BaseHTTPRequestHandler):
        def log_message(self, *args):
            pass

        def do_GET(self):
            begin = time.perf_counter()
            route, work, status = by_path[self.path]
            attributes = {"http.request.method": "GET", "http.route": route}
            outgoing = None
            with tracer.start_as_current_span(f"GET {route}", kind=SpanKind.SERVER, attributes=attributes) as span:
                if route == "/orders/{id}":
                    # Half the work is a call to a partner API, timed as
                    # the SDK's HTTP clients time one: a CLIENT span.
                    called = time.perf_counter()
                    with tracer.start_as_current_span(
                        "GET", kind=SpanKind.CLIENT, attributes={"url.full": "http://partner.test/pay"}
                    ):
                        time.sleep(work / 2)
                    outgoing = time.perf_counter() - called
                    time.sleep(work / 2)
                else:
                    time.sleep(work)
                if status >= 500:
                    try:
                        raise PaymentDeclined(f"payment for order {self.path.rsplit('/', 1)[-1]} declined")
                    except PaymentDeclined as error:
                        span.record_exception(error)
                self.send_response(status)
                self.send_header("content-length", "2")
                self.end_headers()
                self.wfile.write(b"ok")
                span.set_attribute("http.response.status_code", status)
                recorded = dict(attributes, **{"http.response.status_code": status})
                if status >= 500:
                    span.set_status(Status(StatusCode.ERROR))
                    recorded["error.type"] = str(status)
                seconds = time.perf_counter() - begin
                duration.record(seconds, recorded)
            truth.append((route, status, seconds, outgoing))

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    base = f"http://127.0.0.1:{server.server_address[1]}"
    print(f"sdk={SDK_VERSION}", flush=True)

    def drive(requests):
        for _route, path, _work, _status in requests:
            try:
                urllib.request.urlopen(base + path, timeout=30).read()
            except urllib.error.HTTPError as answer:
                answer.read()

    half = len(plan) // 2
    for number, requests in enumerate((plan[:half], plan[half:])):
        drive(requests)
        if not meters.force_flush(TIMEOUT_MS):
            failures.append("metrics force_flush timed out")
        if not tracers.force_flush(TIMEOUT_MS):
            failures.append("traces force_flush timed out")
        if pause and number == 0:
            print("paused", flush=True)
            sys.stdin.readline()
    server.shutdown()
    meters.shutdown()
    tracers.shutdown()
    for route, status, seconds, outgoing in truth:
        print(f"request={route}\t{status}\t{seconds!r}\t{'' if outgoing is None else repr(outgoing)}")
    if failures:
        print("\n".join(failures), file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
