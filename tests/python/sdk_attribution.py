#!/usr/bin/env python3
"""Sends two days of traced requests to a reporter with the official Python
OpenTelemetry SDK (`opentelemetry-sdk` and its OTLP/HTTP exporter), with a
planted cause: reporter/tests/interop_python_attribution.rs runs it and checks
that the reporter names the cause of the regression it finds.

Usage: sdk_attribution.py ENDPOINT END_MINUTE   (ENDPOINT: http://HOST:PORT;
END_MINUTE: unix minutes, the end of the second day, on an hour)

Resource: service.name=py-attr, host.name=py-host-1. No metrics: the runs
are the SERVER spans (the reporter counts them), their segments the spans
below them.

Each hour of the 48 before END_MINUTE, 15 runs of each route, spread over
the hour, each a SERVER span with CLIENT children:
  - GET /orders/{id}: `SELECT orders` (db.system.name=postgresql), 30 ms
    the first day and 60 ms the second; `GET partner-api` (an HTTP client
    span), 10 ms; 15 ms of its own code. Every duration log-normal
    (sigma 0.3) around those medians, from a fixed seed.
  - GET /search: `SELECT search` 25 ms and 15 ms of its own: the same both days.
And a second service, py-release (host py-host-2), deployed between the
days: its resource says service.version=3.1.0 the first day and 3.2.0 the
second (a new TracerProvider, as a new process after a deploy), and with
3.2.0 its GET /cart's `SELECT cart` takes 45 ms instead of 20 (10 ms of its
own both days), 15 runs an hour.
A third, py-hosts, on three hosts (py-web-1, -2, -3: one TracerProvider
each): GET /items, `SELECT items` 20 ms and 10 ms of its own, 10 runs an
hour on each host; on the second day py-web-3's `SELECT items` takes 70 ms.
A fourth, py-mix: GET /basket/fast (10 ms) and POST /basket/slow (100 ms),
neither changing, 20 runs an hour between them: 10% of them the slow one
the first day, 40% the second (the test's owners.toml puts both in feature
`basket`).
Spans are given their times (start_time, end_time) and flushed after each
hour, so each request of the exporter holds whole traces.

On success prints `runs=N` (SERVER spans sent) and exits 0. Exits 1 when an
export failed, 2 on bad usage, 3 when the packages are missing
(`tests/run-all.sh` installs them).
"""

import random
import sys

try:
    from opentelemetry import trace as trace_api
    from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
    from opentelemetry.sdk.resources import Resource
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import BatchSpanProcessor, SpanExportResult
    from opentelemetry.trace import SpanKind
except ImportError as error:
    print(
        f"sdk_attribution.py: {error}; python3 lacks the OpenTelemetry SDK: run tests/run-all.sh, which "
        "installs opentelemetry-sdk and opentelemetry-exporter-otlp-proto-http",
        file=sys.stderr,
    )
    sys.exit(3)

RUNS_PER_HOUR = 15
HOURS = 48
MS = 1_000_000


def main(argv):
    if len(argv) != 3 or not argv[1].startswith("http://"):
        print(__doc__, file=sys.stderr)
        return 2
    endpoint, end_minute = argv[1], int(argv[2])
    rng = random.Random(22)
    exporter = OTLPSpanExporter(endpoint=f"{endpoint}/v1/traces", timeout=10)
    failures = []
    inner = exporter.export

    def export(batch, *args, **kwargs):
        result = inner(batch, *args, **kwargs)
        if result != SpanExportResult.SUCCESS:
            failures.append(result)
        return result

    exporter.export = export
    def provider_of(attributes):
        provider = TracerProvider(resource=Resource.create(attributes))
        provider.add_span_processor(
            BatchSpanProcessor(
                exporter, schedule_delay_millis=60_000, max_queue_size=10_000, max_export_batch_size=2_000
            )
        )
        return provider

    provider = provider_of({"service.name": "py-attr", "host.name": "py-host-1"})
    tracer = provider.get_tracer("py-attr.http")
    hosts = {
        host: provider_of({"service.name": "py-hosts", "host.name": host}) for host in ("py-web-1", "py-web-2", "py-web-3")
    }
    mix = provider_of({"service.name": "py-mix", "host.name": "py-host-4"})
    mixer = mix.get_tracer("py-mix.http")
    releases = {
        version: provider_of({"service.name": "py-release", "host.name": "py-host-2", "service.version": version})
        for version in ("3.1.0", "3.2.0")
    }

    def ms(median):
        return rng.lognormvariate(0.0, 0.3) * median * MS

    def client(parent, name, begin, duration, attributes, tracer=tracer):
        span = tracer.start_span(
            name,
            kind=SpanKind.CLIENT,
            context=trace_api.set_span_in_context(parent),
            start_time=int(begin),
            attributes=attributes,
        )
        span.end(end_time=int(begin + duration))
        return begin + duration

    runs = 0
    first_minute = end_minute - HOURS * 60
    for hour in range(HOURS):
        later = hour >= HOURS // 2
        hour_start = (first_minute + hour * 60) * 60 * 1_000_000_000
        for i in range(RUNS_PER_HOUR):
            for route in ("/orders/{id}", "/search"):
                # Spread over the hour, ending well before its end.
                begin = hour_start + int((i + rng.random() * 0.5) * 3_400 / RUNS_PER_HOUR * 1e9)
                parent = tracer.start_span(
                    f"GET {route}",
                    kind=SpanKind.SERVER,
                    start_time=begin,
                    attributes={"http.request.method": "GET", "http.route": route, "http.response.status_code": 200},
                )
                at = begin + ms(5)
                if route == "/orders/{id}":
                    at = client(
                        parent,
                        "SELECT orders",
                        at,
                        ms(60 if later else 30),
                        {"db.system.name": "postgresql", "db.query.text": "SELECT * FROM orders WHERE id = $1"},
                    )
                    at = client(
                        parent,
                        "GET partner-api",
                        at,
                        ms(10),
                        {"http.request.method": "GET", "server.address": "partner-api"},
                    )
                    at += ms(10)
                else:
                    at = client(parent, "SELECT search", at, ms(25), {"db.system.name": "postgresql"})
                    at += ms(10)
                parent.end(end_time=int(at))
                runs += 1
            # py-release: the version of the day, slower with 3.2.0.
            release = releases["3.2.0" if later else "3.1.0"].get_tracer("py-release.http")
            begin = hour_start + int((i + rng.random() * 0.5) * 3_400 / RUNS_PER_HOUR * 1e9)
            parent = release.start_span(
                "GET /cart",
                kind=SpanKind.SERVER,
                start_time=begin,
                attributes={"http.request.method": "GET", "http.route": "/cart", "http.response.status_code": 200},
            )
            at = begin + ms(5)
            at = client(
                parent, "SELECT cart", at, ms(45 if later else 20), {"db.system.name": "postgresql"}, tracer=release
            )
            at += ms(5)
            parent.end(end_time=int(at))
            runs += 1
            # py-hosts: py-web-3 alone slower the second day.
            for host, each in hosts.items():
                if i >= 10:
                    break
                tracer_of_host = each.get_tracer("py-hosts.http")
                begin = hour_start + int((i + rng.random() * 0.5) * 3_400 / 10 * 1e9)
                parent = tracer_of_host.start_span(
                    "GET /items",
                    kind=SpanKind.SERVER,
                    start_time=begin,
                    attributes={"http.request.method": "GET", "http.route": "/items", "http.response.status_code": 200},
                )
                slow = later and host == "py-web-3"
                at = client(
                    parent,
                    "SELECT items",
                    begin + ms(2),
                    ms(70 if slow else 20),
                    {"db.system.name": "postgresql"},
                    tracer=tracer_of_host,
                )
                parent.end(end_time=int(at + ms(10)))
                runs += 1
        # py-mix: 20 runs an hour, 2 (then 8) of them the slow route.
        slow_runs = 8 if later else 2
        for i in range(20):
            slow = i < slow_runs
            route, method, median = ("/basket/slow", "POST", 100) if slow else ("/basket/fast", "GET", 10)
            begin = hour_start + int((i + rng.random() * 0.5) * 3_400 / 20 * 1e9)
            parent = mixer.start_span(
                f"{method} {route}",
                kind=SpanKind.SERVER,
                start_time=begin,
                attributes={"http.request.method": method, "http.route": route, "http.response.status_code": 200},
            )
            parent.end(end_time=int(begin + ms(median)))
            runs += 1
        for flushed in [provider, mix, *hosts.values(), *releases.values()]:
            if not flushed.force_flush(10_000):
                failures.append("force_flush timed out")
    provider.shutdown()
    for each in [mix, *hosts.values(), *releases.values()]:
        each.shutdown()
    if failures:
        print(f"export failures: {failures}", file=sys.stderr)
        return 1
    print(f"runs={runs}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
