#!/usr/bin/env python3
"""Sends traces with planted performance problems to a reporter with the
official Python OpenTelemetry SDK (`opentelemetry-sdk` and its OTLP/HTTP
exporter), as a Python service instrumented with the stock SDK would.
reporter/tests/problems.rs runs it and checks which problems the reporter
finds.

Usage: sdk_problems.py ENDPOINT      (ENDPOINT: http://HOST:PORT)

Resource: service.name=py-problems, host.name=py-host-1. Every span has
explicit start and end times (a few seconds ago), so its duration is exact
whatever the machine's load. Each transaction runs RUNS times, each run a
SERVER span with CLIENT or INTERNAL children:
  - GET /orders/{id}/export: one `SELECT * FROM orders WHERE id = ?` (5 ms),
    then an N+1 loop: 8 x `SELECT * FROM order_lines WHERE order_id = N`
    (25 ms each, 5 ms apart), in 300 ms.
  - GET /quote: two independent calls one after the other, `GET
    http://prices.internal/quote?sku=12` (200 ms) then `GET
    http://stock.internal/levels/12` (150 ms, 1 ms later), in 400 ms.
  - GET /reports/{id}: one slow query, `SELECT sum(total) FROM orders WHERE
    day > '2024-01-01'` (800 ms, 80% of the run), then `render` (100 ms), in
    1 s.
  - GET /products (clean): 20 x `SELECT price FROM prices WHERE sku = N`
    (1 ms each), in 45 ms.
  - GET /cart (clean): two different calls of 10 ms one after the other, in
    40 ms.
Prints `runs=N` and exits 0; 1 when an export failed, 2 on bad usage, 3
when the packages are missing (`tests/run-all.sh` installs them).
"""

import sys
import time

try:
    from opentelemetry import trace as trace_api
    from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
    from opentelemetry.sdk.resources import Resource
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import BatchSpanProcessor
    from opentelemetry.trace import SpanKind
except ImportError as error:
    print(
        f"sdk_problems.py: {error}; python3 lacks the OpenTelemetry SDK: run tests/run-all.sh, which "
        "installs opentelemetry-sdk and opentelemetry-exporter-otlp-proto-http",
        file=sys.stderr,
    )
    sys.exit(3)

RUNS = 3
MS = 1_000_000


def run(tracer, start, route, duration_ms, children):
    """One SERVER span of `route` from `start` (ns) with `children`:
    (name, kind, attributes, offset ms, duration ms)."""
    method, path = route.split(" ", 1)
    root = tracer.start_span(
        route,
        kind=SpanKind.SERVER,
        start_time=start,
        attributes={"http.request.method": method, "http.route": path, "http.response.status_code": 200},
    )
    context = trace_api.set_span_in_context(root)
    for name, kind, attributes, offset, duration in children:
        child = tracer.start_span(name, context=context, kind=kind, start_time=start + offset * MS, attributes=attributes)
        child.end(end_time=start + (offset + duration) * MS)
    root.end(end_time=start + duration_ms * MS)


def db(statement, offset, duration):
    name = statement.split(" ", 1)[0]
    return (name, SpanKind.CLIENT, {"db.system.name": "postgresql", "db.query.text": statement}, offset, duration)


def http(url, offset, duration):
    host = url.split("/")[2]
    attributes = {"http.request.method": "GET", "url.full": url, "server.address": host}
    return ("GET", SpanKind.CLIENT, attributes, offset, duration)


def main():
    if len(sys.argv) != 2:
        print(__doc__, file=sys.stderr)
        sys.exit(2)
    endpoint = sys.argv[1].rstrip("/")
    resource = Resource.create({"service.name": "py-problems", "host.name": "py-host-1"})
    provider = TracerProvider(resource=resource)
    provider.add_span_processor(BatchSpanProcessor(OTLPSpanExporter(endpoint=f"{endpoint}/v1/traces", timeout=10)))
    tracer = provider.get_tracer("sdk_problems")
    base = time.time_ns() - 30 * 1_000 * MS
    for i in range(RUNS):
        start = base + i * 2_000 * MS
        loop = [db("SELECT * FROM orders WHERE id = 7", 0, 5)]
        loop += [db(f"SELECT * FROM order_lines WHERE order_id = {n}", 10 + n * 30, 25) for n in range(8)]
        run(tracer, start, "GET /orders/{id}/export", 300, loop)
        run(
            tracer,
            start + 1,
            "GET /quote",
            400,
            [http("http://prices.internal/quote?sku=12", 5, 200), http("http://stock.internal/levels/12", 206, 150)],
        )
        slow = db("SELECT sum(total) FROM orders WHERE day > '2024-01-01'", 10, 800)
        run(tracer, start + 2, "GET /reports/{id}", 1_000, [slow, ("render", SpanKind.INTERNAL, {}, 820, 100)])
        cheap = [db(f"SELECT price FROM prices WHERE sku = {n}", 2 + n * 2, 1) for n in range(20)]
        run(tracer, start + 3, "GET /products", 45, cheap)
        calls = [http("http://prices.internal/cart", 5, 10), http("http://stock.internal/cart", 16, 10)]
        run(tracer, start + 4, "GET /cart", 40, calls)
    if not provider.force_flush(timeout_millis=10_000):
        print("sdk_problems.py: the spans were not all exported", file=sys.stderr)
        sys.exit(1)
    provider.shutdown()
    print(f"runs={RUNS}")


if __name__ == "__main__":
    main()
