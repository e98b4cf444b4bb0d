#!/usr/bin/env python3
"""Decodes an OTLP request the agent produced with the official Python classes
(the `opentelemetry-proto` package on PyPI) and validates it the way a strict
backend would.

Usage: check_otlp.py metrics|logs FILE

FILE holds one serialized ExportMetricsServiceRequest or
ExportLogsServiceRequest. On success, prints a summary as `key=value` lines
(fields inside a value are separated by tabs) and exits 0. On any violation,
prints every violation found to stderr and exits 1. Exits 2 on bad usage, 3
when Python lacks the `opentelemetry-proto` package (`tests/run-all.sh`
installs it), and 4 when the checker itself fails.

Summary lines:
  kind=metrics|logs
  service.name=NAME
  telemetry.sdk.name=NAME
  scope=NAME
  metric=NAME<TAB>TYPE<TAB>UNIT<TAB>POINTS            (metrics, one per metric)
  points=N                                           (metrics: all data points)
  histogram=METRIC<TAB>COUNT<TAB>TRANSACTION         (one per histogram point)
  logs=N                                             (logs: all log records)
  log=COUNT<TAB>EXCEPTION.TYPE<TAB>TRANSACTION       (one per log record)
  roundtrip=ok
  warning=TEXT                                       (questionable, not invalid)
"""

import math
import re
import sys

try:
    from google.protobuf import unknown_fields
    from opentelemetry.proto.collector.logs.v1.logs_service_pb2 import ExportLogsServiceRequest
    from opentelemetry.proto.collector.metrics.v1.metrics_service_pb2 import ExportMetricsServiceRequest
    from opentelemetry.proto.logs.v1.logs_pb2 import SEVERITY_NUMBER_ERROR
    from opentelemetry.proto.metrics.v1.metrics_pb2 import (
        AGGREGATION_TEMPORALITY_CUMULATIVE,
        AGGREGATION_TEMPORALITY_DELTA,
    )
except ImportError as error:
    print(
        f"check_otlp.py: the Python package opentelemetry-proto is not installed ({error}); "
        "run tests/run-all.sh, which installs it",
        file=sys.stderr,
    )
    sys.exit(3)

# OpenTelemetry instrument name syntax (API spec, "Instrument name syntax").
METRIC_NAME = re.compile(r"^[A-Za-z][A-Za-z0-9_./-]{0,254}$")
# The exponential histogram scales the data model allows.
SCALES = range(-10, 21)
# Relative tolerance for float sums compared with count × min / max.
EPSILON = 1e-9

violations = []
warnings = []


def violation(where, text):
    violations.append(f"{where}: {text}")


def warning(where, text):
    warnings.append(f"{where}: {text}")


def value_of(any_value):
    """The Python value of an AnyValue, or None when it holds nothing."""
    kind = any_value.WhichOneof("value")
    return None if kind is None else getattr(any_value, kind)


def check_attributes(where, attributes):
    """Checks a list of KeyValue and returns it as a dict."""
    seen = {}
    for kv in attributes:
        if not kv.key:
            violation(where, "attribute with an empty key")
            continue
        if kv.key in seen:
            violation(where, f"attribute {kv.key!r} appears twice (keys must be unique)")
        if not kv.HasField("value") or kv.value.WhichOneof("value") is None:
            violation(where, f"attribute {kv.key!r} has no value")
            seen[kv.key] = None
            continue
        value = value_of(kv.value)
        if isinstance(value, float) and not math.isfinite(value):
            violation(where, f"attribute {kv.key!r} is {value}")
        seen[kv.key] = value
    return seen


def is_repeated(field):
    # protobuf 6+ has `is_repeated`, and newer releases dropped `label`.
    if hasattr(field, "is_repeated"):
        return field.is_repeated
    return field.label == field.LABEL_REPEATED


def check_no_unknown_fields(where, message):
    """Fields the official schema does not know would be dropped by a backend."""
    count = len(unknown_fields.UnknownFieldSet(message))
    if count:
        violation(where, f"{count} field(s) unknown to the official schema in {message.DESCRIPTOR.name}")
    for field, value in message.ListFields():
        if field.message_type is None:
            continue
        if is_repeated(field):
            if field.message_type.GetOptions().map_entry:
                continue
            for i, item in enumerate(value):
                check_no_unknown_fields(f"{where}.{field.name}[{i}]", item)
        else:
            check_no_unknown_fields(f"{where}.{field.name}", value)


def check_resource(where, holder):
    if not holder.HasField("resource"):
        violation(where, "no resource")
        return {}
    attributes = check_attributes(f"{where}.resource", holder.resource.attributes)
    name = attributes.get("service.name")
    if not isinstance(name, str) or not name:
        violation(f"{where}.resource", "no service.name string attribute")
    return attributes


def check_scope(where, holder):
    if not holder.HasField("scope") or not holder.scope.name:
        violation(where, "no instrumentation scope name")
        return ""
    check_attributes(f"{where}.scope", holder.scope.attributes)
    return holder.scope.name


def series_key(attributes):
    return tuple(sorted((kv.key, repr(value_of(kv.value))) for kv in attributes))


def check_duplicate_series(where, points):
    seen = set()
    for i, point in enumerate(points):
        key = series_key(point.attributes)
        if key in seen:
            violation(f"{where}[{i}]", "two data points with the same attributes in one metric")
        seen.add(key)


def check_times(where, point, start_required):
    if point.time_unix_nano == 0:
        violation(where, "time_unix_nano is 0")
    if start_required and point.start_time_unix_nano == 0:
        violation(where, "start_time_unix_nano is 0")
    if point.time_unix_nano < point.start_time_unix_nano:
        violation(
            where,
            f"time_unix_nano {point.time_unix_nano} before start_time_unix_nano {point.start_time_unix_nano}",
        )


def check_exponential_point(where, metric, point):
    attributes = check_attributes(where, point.attributes)
    check_times(where, point, start_required=True)
    if point.scale not in SCALES:
        violation(where, f"scale {point.scale} outside [-10, 20]")
    positive = sum(point.positive.bucket_counts)
    negative = sum(point.negative.bucket_counts)
    if point.count != point.zero_count + positive + negative:
        violation(
            where,
            f"count {point.count} != zero_count {point.zero_count} + positive {positive} + negative {negative}",
        )
    if negative:
        violation(where, f"{negative} negative durations")
    if point.zero_threshold < 0 or not math.isfinite(point.zero_threshold):
        violation(where, f"zero_threshold {point.zero_threshold}")
    if not point.HasField("sum"):
        violation(where, "no sum")
    elif not math.isfinite(point.sum) or point.sum < 0:
        violation(where, f"sum {point.sum} is not a finite value >= 0")
    if point.count > 0:
        for field in ("min", "max"):
            if not point.HasField(field):
                violation(where, f"no {field}")
        if point.HasField("min") and point.HasField("max"):
            low, high = point.min, point.max
            if not (math.isfinite(low) and math.isfinite(high)):
                violation(where, f"min {low} / max {high} not finite")
            elif low > high:
                violation(where, f"min {low} > max {high}")
            elif low < 0:
                violation(where, f"min {low} < 0 for a duration")
            elif point.HasField("sum"):
                slack = EPSILON * max(1.0, point.sum)
                if point.sum < point.count * low - slack or point.sum > point.count * high + slack:
                    violation(
                        where,
                        f"sum {point.sum} outside count × [min, max] = [{point.count * low}, {point.count * high}]",
                    )
            check_zero_region(where, point)
            check_bounds_against_buckets(where, point)
    if metric.name == "http.server.request.duration":
        for key in ("http.request.method", "http.route", "kuroko.transaction"):
            if not isinstance(attributes.get(key), str) or not attributes.get(key):
                violation(where, f"no {key} attribute")
    elif not isinstance(attributes.get("kuroko.transaction"), str):
        violation(where, "no kuroko.transaction attribute")
    return attributes


def check_zero_region(where, point):
    """zero_count holds the values in [-zero_threshold, zero_threshold], exact
    zeros included: positive buckets cannot hold them (metrics.proto)."""
    threshold = point.zero_threshold
    if point.min <= threshold and point.zero_count == 0:
        violation(
            where,
            f"min {point.min} lies in the zero region [0, zero_threshold {threshold}] but zero_count is 0: "
            "values of zero belong in zero_count, and the positive buckets now claim them as larger values",
        )
    if point.zero_count > 0 and point.min > threshold:
        violation(where, f"zero_count {point.zero_count} but min {point.min} > zero_threshold {threshold}")


def check_bounds_against_buckets(where, point):
    """min and max should fall in the lowest and highest populated buckets.

    Not invalid per the data model, but a reader that clamps its estimates to
    [min, max] or checks consistency would see a disagreement: reported as a
    warning."""
    counts = list(point.positive.bucket_counts)
    populated = [i for i, c in enumerate(counts) if c]
    if not populated or not point.HasField("min") or not point.HasField("max"):
        return
    base = 2.0 ** (2.0 ** -point.scale)
    first = point.positive.offset + populated[0]
    last = point.positive.offset + populated[-1]
    lowest_low, lowest_high = base**first, base ** (first + 1)
    highest_low, highest_high = base**last, base ** (last + 1)
    in_lowest = lowest_low <= point.min * (1 + EPSILON) and point.min <= lowest_high * (1 + EPSILON)
    # A min in the zero region is check_zero_region's business.
    if point.zero_count == 0 and point.min > point.zero_threshold and not in_lowest:
        warning(
            where,
            f"min {point.min} is outside the lowest populated bucket ({lowest_low}, {lowest_high}]",
        )
    if not (highest_low <= point.max * (1 + EPSILON) and point.max <= highest_high * (1 + EPSILON)):
        warning(
            where,
            f"max {point.max} is outside the highest populated bucket ({highest_low}, {highest_high}]",
        )


def check_number_point(where, point, start_required, monotonic):
    check_attributes(where, point.attributes)
    check_times(where, point, start_required)
    kind = point.WhichOneof("value")
    if kind is None:
        violation(where, "no value")
        return
    value = getattr(point, kind)
    if isinstance(value, float) and not math.isfinite(value):
        violation(where, f"value {value}")
    if monotonic and value < 0:
        violation(where, f"negative value {value} in a monotonic sum")


def check_metrics(request, summary):
    histograms = []
    total_points = 0
    if not request.resource_metrics:
        violation("request", "no resource_metrics")
    for r, resource_metrics in enumerate(request.resource_metrics):
        where = f"resource_metrics[{r}]"
        resource = check_resource(where, resource_metrics)
        summary.append(("service.name", resource.get("service.name")))
        summary.append(("telemetry.sdk.name", resource.get("telemetry.sdk.name")))
        for s, scope_metrics in enumerate(resource_metrics.scope_metrics):
            where_scope = f"{where}.scope_metrics[{s}]"
            summary.append(("scope", check_scope(where_scope, scope_metrics)))
            names = set()
            for m, metric in enumerate(scope_metrics.metrics):
                where_metric = f"{where_scope}.metrics[{m}]"
                if not metric.name:
                    violation(where_metric, "metric without a name")
                else:
                    where_metric = f"{where_metric} ({metric.name})"
                    if not METRIC_NAME.match(metric.name):
                        violation(where_metric, "name does not follow the instrument name syntax")
                    if metric.name in names:
                        violation(where_metric, "metric name appears twice in one scope")
                    names.add(metric.name)
                if len(metric.unit) > 63 or not metric.unit.isascii():
                    violation(where_metric, f"unit {metric.unit!r} is not ASCII of at most 63 characters")
                kind = metric.WhichOneof("data")
                if kind is None:
                    violation(where_metric, "no data")
                    continue
                data = getattr(metric, kind)
                points = data.data_points
                if not points:
                    violation(where_metric, "no data points")
                check_duplicate_series(f"{where_metric}.data_points", points)
                if kind == "exponential_histogram":
                    if data.aggregation_temporality != AGGREGATION_TEMPORALITY_DELTA:
                        violation(where_metric, f"temporality {data.aggregation_temporality}, expected DELTA")
                    if metric.unit != "s":
                        violation(where_metric, f"unit {metric.unit!r}, expected 's'")
                    for p, point in enumerate(points):
                        attributes = check_exponential_point(f"{where_metric}.data_points[{p}]", metric, point)
                        histograms.append((metric.name, point.count, attributes.get("kuroko.transaction")))
                elif kind == "sum":
                    temporality = data.aggregation_temporality
                    if temporality not in (AGGREGATION_TEMPORALITY_DELTA, AGGREGATION_TEMPORALITY_CUMULATIVE):
                        violation(where_metric, f"sum temporality {temporality} is unspecified")
                    for p, point in enumerate(points):
                        check_number_point(
                            f"{where_metric}.data_points[{p}]", point, start_required=True, monotonic=data.is_monotonic
                        )
                elif kind == "gauge":
                    for p, point in enumerate(points):
                        check_number_point(
                            f"{where_metric}.data_points[{p}]", point, start_required=False, monotonic=False
                        )
                else:
                    violation(where_metric, f"unexpected metric type {kind}")
                total_points += len(points)
                summary.append(("metric", f"{metric.name}\t{kind}\t{metric.unit}\t{len(points)}"))
    summary.append(("points", total_points))
    for name, count, transaction in histograms:
        summary.append(("histogram", f"{name}\t{count}\t{transaction}"))


def check_logs(request, summary):
    records = 0
    if not request.resource_logs:
        violation("request", "no resource_logs")
    logs = []
    for r, resource_logs in enumerate(request.resource_logs):
        where = f"resource_logs[{r}]"
        resource = check_resource(where, resource_logs)
        summary.append(("service.name", resource.get("service.name")))
        summary.append(("telemetry.sdk.name", resource.get("telemetry.sdk.name")))
        for s, scope_logs in enumerate(resource_logs.scope_logs):
            where_scope = f"{where}.scope_logs[{s}]"
            summary.append(("scope", check_scope(where_scope, scope_logs)))
            for i, record in enumerate(scope_logs.log_records):
                where_record = f"{where_scope}.log_records[{i}]"
                records += 1
                if record.severity_number != SEVERITY_NUMBER_ERROR:
                    violation(where_record, f"severity_number {record.severity_number}, expected ERROR (17)")
                if record.severity_text and record.severity_text != "ERROR":
                    violation(where_record, f"severity_text {record.severity_text!r}")
                if record.time_unix_nano == 0 and record.observed_time_unix_nano == 0:
                    violation(where_record, "neither time_unix_nano nor observed_time_unix_nano is set")
                if record.time_unix_nano and record.observed_time_unix_nano:
                    if record.time_unix_nano > record.observed_time_unix_nano:
                        warning(where_record, "time_unix_nano is after observed_time_unix_nano")
                if record.trace_id and len(record.trace_id) != 16:
                    violation(where_record, f"trace_id of {len(record.trace_id)} bytes")
                if record.span_id and len(record.span_id) != 8:
                    violation(where_record, f"span_id of {len(record.span_id)} bytes")
                attributes = check_attributes(where_record, record.attributes)
                for key in ("exception.type", "exception.message", "kuroko.transaction"):
                    if not isinstance(attributes.get(key), str) or not attributes.get(key):
                        violation(where_record, f"no {key} string attribute")
                count = attributes.get("kuroko.error.count")
                if not isinstance(count, int) or isinstance(count, bool) or count <= 0:
                    violation(where_record, f"kuroko.error.count {count!r} is not a positive int")
                if "code.line.number" in attributes:
                    line = attributes["code.line.number"]
                    if not isinstance(line, int) or isinstance(line, bool) or line <= 0:
                        violation(where_record, f"code.line.number {line!r} is not a positive int")
                    if not isinstance(attributes.get("code.file.path"), str):
                        violation(where_record, "code.line.number without code.file.path")
                if not record.HasField("body") or record.body.WhichOneof("value") != "string_value":
                    violation(where_record, "body is not a string")
                elif record.body.string_value != attributes.get("exception.message"):
                    warning(where_record, "body differs from exception.message")
                logs.append((count, attributes.get("exception.type"), attributes.get("kuroko.transaction")))
    summary.append(("logs", records))
    for count, error_type, transaction in logs:
        summary.append(("log", f"{count}\t{error_type}\t{transaction}"))


def main(argv):
    if len(argv) != 3 or argv[1] not in ("metrics", "logs"):
        print("usage: check_otlp.py metrics|logs FILE", file=sys.stderr)
        return 2
    kind, path = argv[1], argv[2]
    with open(path, "rb") as file:
        data = file.read()
    request = ExportMetricsServiceRequest() if kind == "metrics" else ExportLogsServiceRequest()
    try:
        request.ParseFromString(data)
    except Exception as error:  # DecodeError, or a bad UTF-8 string
        print(f"check_otlp.py: {path} does not parse as {type(request).__name__}: {error}", file=sys.stderr)
        return 1
    if not data:
        violation("request", "empty message")

    check_no_unknown_fields("request", request)
    summary = [("kind", kind)]
    if kind == "metrics":
        check_metrics(request, summary)
    else:
        check_logs(request, summary)

    # Round trip through the official serializer.
    again = type(request)()
    again.ParseFromString(request.SerializeToString())
    if again != request:
        violation("request", "re-serialized message does not parse back equal")
    else:
        summary.append(("roundtrip", "ok"))

    if violations:
        print(f"check_otlp.py: {len(violations)} violation(s) in {kind} from {path}:", file=sys.stderr)
        for text in violations:
            print(f"  {text}", file=sys.stderr)
        return 1
    for key, value in summary:
        print(f"{key}={value}")
    for text in warnings:
        print(f"warning={text}")
    return 0


if __name__ == "__main__":
    try:
        status = main(sys.argv)
    except Exception:  # a bug here, not a violation: keep it apart from exit 1
        import traceback

        traceback.print_exc()
        status = 4
    sys.exit(status)
