#!/usr/bin/env python3
"""Sends exceptions to a reporter the two ways Python services instrumented
with the official OpenTelemetry SDK send them: recorded on spans, and as
log records. reporter/tests/interop_python_exceptions.rs runs it and checks
the error groups the reporter made of them against the summary it prints.

Usage: sdk_exceptions.py grpc|http ENDPOINT      (ENDPOINT: http://HOST:PORT)

Resource: service.name=py-shop, host.name=py-host-1.

Two real errors, each raised in two requests:
  - KeyError in GET /orders/{id}: a SERVER span (the route's attributes,
    status 500) around an INTERNAL span of another tracer, `load order`,
    where find_order() raises KeyError for the order's id (a different id
    each request). `load order` records it with span.record_exception() and
    ends with status ERROR; the exception escapes, so
    start_as_current_span records it on the SERVER span too, with a longer
    traceback, and sets its status to ERROR.
  - CardDeclined in POST /checkout: a SERVER span (status 402, not an
    error); deep in its handler, charge() raises CardDeclined for the
    card's user, which the handler catches and logs as an ERROR log record
    with the exception (a real traceback of more than 1 KiB), in the SERVER
    span's context (so the record carries its trace and span ids) but
    without any http.* or kuroko.* attribute.
The logs are exported before the spans (as the SDK's batch processors do:
logs every second, spans every five), each signal in one request.

On success prints `key=value` lines (fields separated by tabs) and exits 0:
  sdk=VERSION
  error=TYPE<TAB>TRANSACTION<TAB>OCCURRENCES<TAB>INNERMOST_FUNCTION<TAB>STACK_BYTES
      (TYPE as the SDK sent it; STACK_BYTES: the shortest traceback it sent
      for it, the innermost span's)
  request=TRANSACTION<TAB>STATUS<TAB>RUNS
Exits 1 when an export failed, 2 on bad usage, 3 when the packages are
missing (`tests/run-all.sh` installs them).
"""

import sys

try:
    from opentelemetry._logs import SeverityNumber
    from opentelemetry.sdk._logs import LoggerProvider
    from opentelemetry.sdk._logs.export import BatchLogRecordProcessor, LogRecordExportResult
    from opentelemetry.sdk.resources import Resource
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import BatchSpanProcessor, SpanExportResult
    from opentelemetry.sdk.version import __version__ as SDK_VERSION
    from opentelemetry.trace import SpanKind, Status, StatusCode
except ImportError as error:
    print(
        f"sdk_exceptions.py: {error}; python3 lacks the OpenTelemetry SDK: run tests/run-all.sh, which "
        "installs opentelemetry-sdk, opentelemetry-exporter-otlp-proto-grpc and "
        "opentelemetry-exporter-otlp-proto-http",
        file=sys.stderr,
    )
    sys.exit(3)

TIMEOUT_MS = 10_000


class CardDeclined(Exception):
    pass


def exporters(protocol, endpoint):
    """(span, log) exporters for the protocol."""
    if protocol == "grpc":
        from opentelemetry.exporter.otlp.proto.grpc._log_exporter import OTLPLogExporter
        from opentelemetry.exporter.otlp.proto.grpc.trace_exporter import OTLPSpanExporter

        return (
            OTLPSpanExporter(endpoint=endpoint, insecure=True, timeout=10),
            OTLPLogExporter(endpoint=endpoint, insecure=True, timeout=10),
        )
    from opentelemetry.exporter.otlp.proto.http._log_exporter import OTLPLogExporter
    from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter

    return (
        OTLPSpanExporter(endpoint=f"{endpoint}/v1/traces", timeout=10),
        OTLPLogExporter(endpoint=f"{endpoint}/v1/logs", timeout=10),
    )


class Watch:
    """Wraps an exporter's export() to note failures and what it sent."""

    def __init__(self, exporter, success):
        self.failures = []
        self.stacks = {}
        inner = exporter.export

        def export(batch, *args, **kwargs):
            for item in batch:
                self.note(item)
            result = inner(batch, *args, **kwargs)
            if result != success:
                self.failures.append(result)
            return result

        exporter.export = export

    def note(self, item):
        """Keeps every stack trace sent per exception type (an exception
        escaping several spans is recorded on each, and each occurrence's
        traceback differs a little): the reporter shows one of them, the
        latest."""
        events = getattr(item, "events", None)
        if events is not None:
            attribute_sets = [e.attributes for e in events if e.name == "exception"]
        else:
            record = getattr(item, "log_record", item)
            attribute_sets = [record.attributes or {}]
        for attributes in attribute_sets:
            kind = attributes.get("exception.type")
            stack = attributes.get("exception.stacktrace") or ""
            if kind and stack:
                self.stacks.setdefault(kind, set()).add(stack)


def find_order(orders, order_id):
    return orders[order_id]


# The checkout handler's calls, down to the one that fails: a traceback of
# more than 1 KiB, as a real service's are.
def handle_checkout(user):
    return open_session(user)


def open_session(user):
    return load_cart(user, session=f"s-{user}")


def load_cart(user, session):
    return validate_cart(user, cart={"session": session, "items": 3})


def validate_cart(user, cart):
    return price_cart(user, cart)


def price_cart(user, cart):
    return apply_discounts(user, total=cart["items"] * 1250)


def apply_discounts(user, total):
    return reserve_stock(user, total=max(total - 100, 0))


def reserve_stock(user, total):
    return authorize_payment(user, total)


def authorize_payment(user, total):
    return call_gateway(user, {"amount": total, "currency": "EUR"})


def call_gateway(user, payment):
    return charge(user, payment)


def charge(user, payment):
    raise CardDeclined(f"card of user {user} declined for {payment['amount']} {payment['currency']}")


def run(tracer, db_tracer, logger):
    """The four requests."""
    for order_id in ("ord_4821", "ord_9377"):
        try:
            with tracer.start_as_current_span(
                "GET /orders/{id}",
                kind=SpanKind.SERVER,
                attributes={"http.request.method": "GET", "http.route": "/orders/{id}", "url.path": f"/orders/{order_id}"},
            ) as server:
                server.set_attribute("http.response.status_code", 500)
                with db_tracer.start_as_current_span("load order", record_exception=False) as load:
                    try:
                        find_order({}, order_id)
                    except KeyError as error:
                        load.record_exception(error)
                        load.set_status(Status(StatusCode.ERROR))
                        raise
        except KeyError:
            pass
    for user in (17, 4242):
        with tracer.start_as_current_span(
            "POST /checkout",
            kind=SpanKind.SERVER,
            attributes={"http.request.method": "POST", "http.route": "/checkout"},
        ) as server:
            try:
                handle_checkout(user)
            except CardDeclined as error:
                logger.emit(
                    severity_number=SeverityNumber.ERROR,
                    severity_text="ERROR",
                    body="checkout failed",
                    exception=error,
                )
            server.set_attribute("http.response.status_code", 402)


def main(argv):
    if len(argv) != 3 or argv[1] not in ("grpc", "http") or not argv[2].startswith("http://"):
        print(__doc__, file=sys.stderr)
        return 2
    protocol, endpoint = argv[1], argv[2].rstrip("/")
    resource = Resource.create({"service.name": "py-shop", "host.name": "py-host-1"})
    span_exporter, log_exporter = exporters(protocol, endpoint)
    spans = Watch(span_exporter, SpanExportResult.SUCCESS)
    logs = Watch(log_exporter, LogRecordExportResult.SUCCESS)
    tracer_provider = TracerProvider(resource=resource)
    tracer_provider.add_span_processor(BatchSpanProcessor(span_exporter, schedule_delay_millis=60_000))
    logger_provider = LoggerProvider(resource=resource)
    logger_provider.add_log_record_processor(BatchLogRecordProcessor(log_exporter, schedule_delay_millis=60_000))
    run(
        tracer_provider.get_tracer("py-shop.http"),
        tracer_provider.get_tracer("py-shop.db"),
        logger_provider.get_logger("py-shop.checkout"),
    )
    failures = []
    # Logs first, as the SDK's batch processors send them.
    for name, provider in (("logs", logger_provider), ("traces", tracer_provider)):
        if not provider.force_flush(TIMEOUT_MS):
            failures.append(f"{name} force_flush timed out")
        provider.shutdown()
    failures += [f"traces export failed: {r}" for r in spans.failures]
    failures += [f"logs export failed: {r}" for r in logs.failures]
    print(f"sdk={SDK_VERSION}")
    for watch, name, transaction, function in (
        (spans, "KeyError", "GET /orders/{id}", "find_order"),
        (logs, "CardDeclined", "POST /checkout", "charge"),
    ):
        # The type as the SDK names it (qualified by its module or not).
        sent = [kind for kind in watch.stacks if kind.split(".")[-1] == name]
        if len(sent) != 1:
            failures.append(f"the SDK sent {name} as {sent or 'nothing'}")
            continue
        lengths = ",".join(str(n) for n in sorted({len(stack) for stack in watch.stacks[sent[0]]}))
        print(f"error={sent[0]}\t{transaction}\t2\t{function}\t{lengths}")
    print("request=GET /orders/{id}\t500\t2")
    print("request=POST /checkout\t402\t2")
    if failures:
        print("\n".join(failures), file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
