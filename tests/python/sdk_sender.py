#!/usr/bin/env python3
"""Sends metrics, traces and logs to a reporter with the official Python
OpenTelemetry SDK (`opentelemetry-sdk` and the OTLP exporters on PyPI), as a
Python service instrumented with the stock SDK would.
reporter/tests/interop_python_sdk.rs runs it and checks what the reporter
stored against the summary it prints.

Usage: sdk_sender.py grpc|http ENDPOINT      (ENDPOINT: http://HOST:PORT)

Resource: service.name=py-shop, host.name=py-host-1.

Metrics: `http.server.request.duration` in seconds, the SDK's default
temporality (cumulative), exported by a PeriodicExportingMetricReader every
250 ms and flushed by hand after each of two phases, so the reporter gets
several cumulative snapshots of each stream and has to turn them into deltas.
  - GET /orders/{id}: the SDK's default aggregation (explicit buckets), with
    the bucket boundaries the semantic conventions advise for this metric
    (what the SDK's HTTP instrumentations pass). The fastest request comes in
    the second phase: the cumulative minimum drops between exports, as it does
    in any live service.
  - GET /search: ExponentialBucketHistogramAggregation, through a View on its
    own meter (Views select instruments, not attribute values). The first
    phase's requests are the middle half of the range, the second's the
    rest: the SDK picks a finer scale for the first snapshot and downscales
    for the next ones.
Traces: 5 SERVER spans `GET /orders` (one answering 500), each with a CLIENT
child `SELECT orders` carrying `db.system.name=postgresql`, on a route of
their own (the reporter counts a SERVER span as a run of its transaction, on
top of any metric points for it); a
BatchSpanProcessor flushed once at the end, so each parent and its child
travel in one export request (a SimpleSpanProcessor would export every span
alone, the child before its parent).
Logs: one ERROR record (exception.type=OrderLost, exception.message=order 42
vanished, code.file.path and code.line.number, in GET /orders/{id}) and one
INFO record that is not an error.

On success prints `key=value` lines (fields inside a value separated by tabs)
and exits 0:
  sdk=VERSION
  metric=ROUTE<TAB>AGGREGATION<TAB>COUNT<TAB>SUM<TAB>MIN<TAB>MAX<TAB>P50<TAB>DETAIL
      AGGREGATION is explicit or exponential; P50 the exact nearest-rank
      median of the values recorded; DETAIL for explicit is the bucket
      holding the median as LOW,HIGH, for exponential the scales of the
      first and the last point exported as FIRST,LAST
  metric_exports=N               (export calls that carried the metric)
  span=NAME<TAB>KIND<TAB>STATUS<TAB>SECONDS   (one per span, parents first)
  log=SEVERITY<TAB>EXCEPTION.TYPE<TAB>MESSAGE<TAB>LOCATION
Exits 1 when an export failed, 2 on bad usage, 3 when the packages are
missing (`tests/run-all.sh` installs them).
"""

import math
import sys
import time

try:
    from opentelemetry import trace as trace_api
    from opentelemetry._logs import SeverityNumber
    from opentelemetry.sdk._logs import LoggerProvider
    from opentelemetry.sdk._logs.export import BatchLogRecordProcessor, LogRecordExportResult
    from opentelemetry.sdk.metrics import MeterProvider
    from opentelemetry.sdk.metrics.export import (
        ExponentialHistogramDataPoint,
        HistogramDataPoint,
        MetricExportResult,
        PeriodicExportingMetricReader,
    )
    from opentelemetry.sdk.metrics.view import ExponentialBucketHistogramAggregation, View
    from opentelemetry.sdk.resources import Resource
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import BatchSpanProcessor, SpanExportResult
    from opentelemetry.sdk.version import __version__ as SDK_VERSION
    from opentelemetry.trace import SpanKind, Status, StatusCode
except ImportError as error:
    print(
        f"sdk_sender.py: {error}; python3 lacks the OpenTelemetry SDK: run tests/run-all.sh, which "
        "installs opentelemetry-sdk, opentelemetry-exporter-otlp-proto-grpc and "
        "opentelemetry-exporter-otlp-proto-http",
        file=sys.stderr,
    )
    sys.exit(3)

METRIC = "http.server.request.duration"
ORDERS = "/orders/{id}"
LIST = "/orders"
SEARCH = "/search"
# What the semantic conventions advise for http.server.request.duration.
ADVISED_BOUNDS = [0.005, 0.01, 0.025, 0.05, 0.075, 0.1, 0.25, 0.5, 0.75, 1.0, 2.5, 5.0, 7.5, 10.0]
INTERVAL_MS = 250
TIMEOUT_MS = 10_000
SPANS = 5
LOG_FILE = "shop/orders.py"
LOG_LINE = 42


def log_uniform(n, low, high, step):
    """n durations spread log-uniformly over [low, high], in a scrambled but
    fixed order (a golden-ratio walk)."""
    return [math.exp(math.log(low) + ((i * step) % 1.0) * (math.log(high) - math.log(low))) for i in range(n)]


def median(values):
    """The nearest-rank median, as the reporter computes quantiles."""
    ordered = sorted(values)
    return ordered[math.ceil(0.5 * len(ordered)) - 1]


def exporters(protocol, endpoint):
    """(metric, span, log) exporters for the protocol."""
    if protocol == "grpc":
        from opentelemetry.exporter.otlp.proto.grpc._log_exporter import OTLPLogExporter
        from opentelemetry.exporter.otlp.proto.grpc.metric_exporter import OTLPMetricExporter
        from opentelemetry.exporter.otlp.proto.grpc.trace_exporter import OTLPSpanExporter

        return (
            OTLPMetricExporter(endpoint=endpoint, insecure=True, timeout=10),
            OTLPSpanExporter(endpoint=endpoint, insecure=True, timeout=10),
            OTLPLogExporter(endpoint=endpoint, insecure=True, timeout=10),
        )
    from opentelemetry.exporter.otlp.proto.http._log_exporter import OTLPLogExporter
    from opentelemetry.exporter.otlp.proto.http.metric_exporter import OTLPMetricExporter
    from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter

    # Given in code, the HTTP endpoints are the full URLs of each signal.
    return (
        OTLPMetricExporter(endpoint=f"{endpoint}/v1/metrics", timeout=10),
        OTLPSpanExporter(endpoint=f"{endpoint}/v1/traces", timeout=10),
        OTLPLogExporter(endpoint=f"{endpoint}/v1/logs", timeout=10),
    )


class Watch:
    """Wraps an exporter's export() to count calls and failures, and to note
    the last histogram point of each route."""

    def __init__(self, exporter, success):
        self.failures = []
        self.metric_exports = 0
        self.first_points = {}
        self.last_points = {}
        inner = exporter.export

        def export(batch, *args, **kwargs):
            self.note(batch)
            result = inner(batch, *args, **kwargs)
            if result != success:
                self.failures.append(result)
            return result

        exporter.export = export

    def note(self, batch):
        carried = False
        for resource_metrics in getattr(batch, "resource_metrics", None) or []:
            for scope_metrics in resource_metrics.scope_metrics:
                for metric in scope_metrics.metrics:
                    if metric.name != METRIC:
                        continue
                    carried = True
                    for point in metric.data.data_points:
                        route = point.attributes.get("http.route")
                        self.first_points.setdefault(route, point)
                        self.last_points[route] = point
        self.metric_exports += carried


def send_metrics(resource, exporter, watch):
    provider = MeterProvider(
        resource=resource,
        metric_readers=[
            PeriodicExportingMetricReader(
                exporter, export_interval_millis=INTERVAL_MS, export_timeout_millis=TIMEOUT_MS
            )
        ],
        views=[
            View(
                instrument_name=METRIC,
                meter_name="py-shop.search",
                aggregation=ExponentialBucketHistogramAggregation(),
            )
        ],
    )
    orders = provider.get_meter("py-shop.orders").create_histogram(
        METRIC,
        unit="s",
        description="Duration of HTTP server requests.",
        explicit_bucket_boundaries_advisory=ADVISED_BOUNDS,
    )
    search = provider.get_meter("py-shop.search").create_histogram(
        METRIC, unit="s", description="Duration of HTTP server requests."
    )
    # 200 requests each: orders from 1 ms to 1.5 s (a fifth of them under the
    # first bound, 5 ms), search from 20 ms to 800 ms.
    recorded = {
        ORDERS: log_uniform(200, 0.001, 1.5, 0.6180339887498949),
        SEARCH: log_uniform(200, 0.020, 0.800, 0.4142135623730951),
    }
    # The fastest order request waits for the second phase.
    fastest = recorded[ORDERS].index(min(recorded[ORDERS]))
    recorded[ORDERS].append(recorded[ORDERS].pop(fastest))
    # The middle half of the searches first.
    center = math.log(0.020 * 0.800) / 2
    recorded[SEARCH].sort(key=lambda value: abs(math.log(value) - center))
    for phase in (slice(0, 100), slice(100, None)):
        for route, histogram in ((ORDERS, orders), (SEARCH, search)):
            for value in recorded[route][phase]:
                histogram.record(value, {"http.request.method": "GET", "http.route": route})
        # Two periodic exports of the same cumulative values, then one by hand.
        time.sleep(2.5 * INTERVAL_MS / 1000)
        if not provider.force_flush(TIMEOUT_MS):
            watch.failures.append("metrics force_flush timed out")
    provider.shutdown()
    lines = []
    for route, aggregation in ((ORDERS, "explicit"), (SEARCH, "exponential")):
        values = recorded[route]
        p50 = median(values)
        point = watch.last_points.get(route)
        if aggregation == "explicit":
            assert isinstance(point, HistogramDataPoint), point
            assert list(point.explicit_bounds) == ADVISED_BOUNDS, point.explicit_bounds
            low = max([b for b in ADVISED_BOUNDS if b < p50], default=0.0)
            high = min(b for b in ADVISED_BOUNDS if b >= p50)
            detail = f"{low},{high}"
        else:
            assert isinstance(point, ExponentialHistogramDataPoint), point
            detail = f"{watch.first_points[route].scale},{point.scale}"
        assert point.count == len(values), (route, point.count)
        lines.append(
            "metric="
            + "\t".join(
                [f"GET {route}", aggregation, str(len(values)), repr(sum(values)), repr(min(values))]
                + [repr(max(values)), repr(p50), detail]
            )
        )
    lines.append(f"metric_exports={watch.metric_exports}")
    return lines


def send_traces(resource, exporter):
    provider = TracerProvider(resource=resource)
    # Flushed once at the end: parents and children travel in one request.
    provider.add_span_processor(BatchSpanProcessor(exporter, schedule_delay_millis=60_000))
    tracer = provider.get_tracer("py-shop.http")
    lines = []
    # Durations in ms: the run answering 500 is the slowest.
    runs = [(20, 200), (40, 200), (60, 200), (80, 200), (300, 500)]
    start = time.time_ns() - 2_000_000_000
    for i, (ms, status) in enumerate(runs):
        begin = start + i * 350_000_000
        end = begin + ms * 1_000_000
        parent = tracer.start_span(
            f"GET {LIST}",
            kind=SpanKind.SERVER,
            start_time=begin,
            attributes={
                "http.request.method": "GET",
                "http.route": LIST,
                "url.path": LIST,
                "url.query": f"page={i}",
                "http.response.status_code": status,
            },
        )
        if status >= 500:
            parent.set_status(Status(StatusCode.ERROR))
        child = tracer.start_span(
            "SELECT orders",
            kind=SpanKind.CLIENT,
            context=trace_api.set_span_in_context(parent),
            start_time=begin + 1_000_000,
            attributes={
                "db.system.name": "postgresql",
                "db.query.text": "SELECT * FROM orders WHERE id = $1",
            },
        )
        child.end(end_time=begin + 1_000_000 + ms * 500_000)
        parent.end(end_time=end)
        lines.append(f"span=GET {LIST}\tserver\t{status}\t{ms / 1000!r}")
        lines.append(f"span=SELECT orders\tclient\t\t{ms / 2000!r}")
    if not provider.force_flush(TIMEOUT_MS):
        lines.append("failure=traces force_flush timed out")
    provider.shutdown()
    return lines


def send_logs(resource, exporter):
    provider = LoggerProvider(resource=resource)
    provider.add_log_record_processor(BatchLogRecordProcessor(exporter, schedule_delay_millis=60_000))
    logger = provider.get_logger("py-shop.orders")
    transaction = {"http.request.method": "GET", "http.route": ORDERS}
    logger.emit(
        severity_number=SeverityNumber.INFO,
        severity_text="INFO",
        body="order 41 shipped",
        attributes=dict(transaction),
    )

    class OrderLost(Exception):
        pass

    try:
        raise OrderLost("order 42 vanished")
    except OrderLost as error:
        # The exception gives the stack trace; the attributes given win over
        # the ones the SDK derives from it (its type would be qualified).
        logger.emit(
            severity_number=SeverityNumber.ERROR,
            severity_text="ERROR",
            body="lost an order",
            exception=error,
            attributes={
                **transaction,
                "exception.type": "OrderLost",
                "exception.message": "order 42 vanished",
                "code.file.path": LOG_FILE,
                "code.line.number": LOG_LINE,
            },
        )
    ok = provider.force_flush(TIMEOUT_MS)
    provider.shutdown()
    lines = [
        "log=INFO\t\torder 41 shipped\t",
        f"log=ERROR\tOrderLost\torder 42 vanished\t{LOG_FILE}:{LOG_LINE}",
    ]
    if not ok:
        lines.append("failure=logs force_flush timed out")
    return lines


def main(argv):
    if len(argv) != 3 or argv[1] not in ("grpc", "http") or not argv[2].startswith("http://"):
        print(__doc__, file=sys.stderr)
        return 2
    protocol, endpoint = argv[1], argv[2].rstrip("/")
    resource = Resource.create({"service.name": "py-shop", "host.name": "py-host-1"})
    metric_exporter, span_exporter, log_exporter = exporters(protocol, endpoint)
    watches = [
        Watch(metric_exporter, MetricExportResult.SUCCESS),
        Watch(span_exporter, SpanExportResult.SUCCESS),
        Watch(log_exporter, LogRecordExportResult.SUCCESS),
    ]
    lines = [f"sdk={SDK_VERSION}"]
    lines += send_metrics(resource, metric_exporter, watches[0])
    lines += send_traces(resource, span_exporter)
    lines += send_logs(resource, log_exporter)
    failures = [f"{line}" for line in lines if line.startswith("failure=")]
    for signal, watch in zip(("metrics", "traces", "logs"), watches):
        failures += [f"{signal} export failed: {result}" for result in watch.failures]
    print("\n".join(line for line in lines if not line.startswith("failure=")))
    if failures:
        print("\n".join(failures), file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
