#!/usr/bin/env node
// A small Express 5 shop instrumented with the official Node.js OpenTelemetry
// SDK (@opentelemetry/sdk-node and auto-instrumentations-node, as a service
// would use them), which drives a fixed set of requests to itself and writes
// down the ground truth of every one. reporter/tests/interop_node_sdk.rs runs
// it against a reporter and compares the reporter's answers with that truth.
//
// Usage: node service.js old|stable OUTPUT_FILE
//
//   old     HTTP instrumentation @opentelemetry/instrumentation-http 0.220.0
//           (the last release that still reads OTEL_SEMCONV_STABILITY_OPT_IN),
//           with the variable unset: the old conventions, `http.server.duration`
//           in ms with `http.method`, `http.status_code`, `http.route`.
//   stable  the HTTP instrumentation auto-instrumentations-node brings
//           (0.223.0), which knows only the stable conventions:
//           `http.server.request.duration` in s with `http.request.method`,
//           `http.response.status_code`, `http.route`. From 0.222.0 on the
//           variable is ignored; 0.221.0 still sent the old ones.
//
// Where it sends: the standard variables (OTEL_EXPORTER_OTLP_ENDPOINT,
// OTEL_EXPORTER_OTLP_PROTOCOL=http/protobuf, OTEL_METRIC_EXPORT_INTERVAL,
// OTEL_BSP_SCHEDULE_DELAY), read by the SDK's own exporters and processors.
// Resource: service.name=node-shop, host.name=node-host-1.
//
// Routes of the shop (127.0.0.1, a free port):
//   GET /products/:id   a few ms of sleep (a fixed pseudo-random tier per
//                       request); a fixed ~7% of requests answer 500
//   GET /checkout       some own work, then an outgoing GET (node:http, so a
//                       CLIENT span) to a downstream server in this process
//                       that sleeps a known 20-55 ms, then more own work
//   GET /boom           the handler throws an Error (BOOM_MESSAGE); Express
//                       answers 500
//   anything else       404 from Express, no route matched
// The downstream server stands for another service: its incoming requests are
// not traced (ignoreIncomingRequestHook), nor are the driver's own requests
// (ignoreOutgoingRequestHook), so what the SDK sends is the shop's server side
// and its one outgoing call, as in production.
//
// OUTPUT_FILE gets JSON lines:
//   {"type":"sdk",...}       versions and the conventions asked for
//   {"type":"request",...}   one per request: method, route (the Express
//                            template, null when none matched), path, status,
//                            seconds (process.hrtime.bigint() from node's
//                            'request' event, before Express's first
//                            middleware, to the response's 'finish'), for
//                            /checkout outgoing_seconds (from the call to the
//                            end of the downstream's answer), and sdk_seconds:
//                            the duration of its SERVER span as the SDK
//                            exported it (null if it was not)
//   {"type":"metric",...}    the last point the SDK exported of every
//                            histogram stream (name, unit, temporality,
//                            attributes, bounds, counts, count, sum, min, max)
//   {"type":"spans",...}     what the SDK exported of spans, per distinct
//                            (scope, name, kind, parent's name): how many,
//                            attribute keys, event names, status codes
//   {"type":"exports",...}   export calls per signal and their failures
// and exits 0; 1 when an export failed or a request went wrong; 2 on bad
// usage; 3 when the npm packages are not installed.

'use strict';

const path = require('node:path');
const fs = require('node:fs');

const USAGE = 'usage: node service.js old|stable OUTPUT_FILE';
const [mode, output] = process.argv.slice(2);
if (!['old', 'stable'].includes(mode) || !output) {
  console.error(USAGE);
  process.exit(2);
}

const PACKAGES = [
  '@opentelemetry/api',
  '@opentelemetry/sdk-node',
  '@opentelemetry/auto-instrumentations-node',
  '@opentelemetry/exporter-trace-otlp-proto',
  '@opentelemetry/exporter-metrics-otlp-proto',
  '@opentelemetry/sdk-metrics',
  '@opentelemetry/resources',
  'instrumentation-http-0.220',
  'express',
];
for (const name of PACKAGES) {
  try {
    require.resolve(name);
  } catch {
    console.error(
      `service.js: the npm package ${name} is not installed in ${path.join(__dirname, 'node_modules')}: ` +
        'run tests/run-all.sh (it runs npm ci --prefix tests/node)'
    );
    process.exit(3);
  }
}

if (mode === 'old' && /(^|,)\s*http(\/dup)?\s*(,|$)/.test(process.env.OTEL_SEMCONV_STABILITY_OPT_IN || '')) {
  console.error('service.js old: OTEL_SEMCONV_STABILITY_OPT_IN must not opt into the stable http conventions');
  process.exit(2);
}

// ---- The SDK, started before express and node:http are loaded ----

const { NodeSDK } = require('@opentelemetry/sdk-node');
const { getNodeAutoInstrumentations } = require('@opentelemetry/auto-instrumentations-node');
const { OTLPTraceExporter } = require('@opentelemetry/exporter-trace-otlp-proto');
const { OTLPMetricExporter } = require('@opentelemetry/exporter-metrics-otlp-proto');
const { PeriodicExportingMetricReader } = require('@opentelemetry/sdk-metrics');
const { resourceFromAttributes } = require('@opentelemetry/resources');
const { trace } = require('@opentelemetry/api');

const DRIVER_HEADER = 'x-interop-driver';
let downstreamPort = -1;
const httpConfig = {
  // The downstream stands for another service.
  ignoreIncomingRequestHook: (request) => request.socket?.localPort === downstreamPort,
  // The load driver stands for the users' browsers.
  ignoreOutgoingRequestHook: (options) => Boolean(options.headers && options.headers[DRIVER_HEADER]),
};

let instrumentations = getNodeAutoInstrumentations({
  '@opentelemetry/instrumentation-http': mode === 'stable' ? httpConfig : { enabled: false },
  '@opentelemetry/instrumentation-express': { enabled: true },
  // Every file read, lookup and socket would be a span of its own.
  '@opentelemetry/instrumentation-fs': { enabled: false },
  '@opentelemetry/instrumentation-dns': { enabled: false },
  '@opentelemetry/instrumentation-net': { enabled: false },
});
if (mode === 'old') {
  const { HttpInstrumentation } = require('instrumentation-http-0.220');
  instrumentations = [...instrumentations, new HttpInstrumentation(httpConfig)];
}

/** Counts an exporter's calls and failures, and lets `note` see each batch. */
function watch(exporter, signal, note) {
  const stats = { calls: 0, failures: [] };
  const inner = exporter.export.bind(exporter);
  exporter.export = (items, resultCallback) => {
    stats.calls += 1;
    note(items);
    inner(items, (result) => {
      if (result.code !== 0) {
        stats.failures.push(`${signal}: ${result.error ? result.error.message : `code ${result.code}`}`);
      }
      resultCallback(result);
    });
  };
  return stats;
}

// The last exported point of every histogram stream (cumulative: the whole run).
const lastPoints = new Map();
function noteMetrics(resourceMetrics) {
  for (const scope of resourceMetrics.scopeMetrics) {
    for (const metric of scope.metrics) {
      // DataPointType.HISTOGRAM is 0.
      if (metric.dataPointType !== 0) continue;
      for (const point of metric.dataPoints) {
        const attributes = point.attributes;
        const key = JSON.stringify([scope.scope.name, metric.descriptor.name, attributes]);
        lastPoints.set(key, {
          type: 'metric',
          scope: scope.scope.name,
          scope_version: scope.scope.version,
          name: metric.descriptor.name,
          unit: metric.descriptor.unit,
          temporality: metric.aggregationTemporality === 1 ? 'cumulative' : 'delta',
          attributes,
          bounds: point.value.buckets.boundaries,
          counts: point.value.buckets.counts,
          count: point.value.count,
          sum: point.value.sum,
          min: point.value.min,
          max: point.value.max,
        });
      }
    }
  }
}

// Spans by (scope, name, kind, parent's name): parents are looked up by id
// among all spans exported.
const spans = [];
function noteSpans(batch) {
  for (const span of batch) {
    spans.push({
      scope: span.instrumentationScope.name,
      name: span.name,
      kind: ['INTERNAL', 'SERVER', 'CLIENT', 'PRODUCER', 'CONSUMER'][span.kind],
      id: span.spanContext().spanId,
      parent: span.parentSpanContext ? span.parentSpanContext.spanId : null,
      attributes: Object.keys(span.attributes).sort(),
      events: span.events.map((e) => e.name),
      status: span.status.code,
      seconds: span.duration[0] + span.duration[1] / 1e9,
    });
  }
}

const traceExporter = new OTLPTraceExporter();
const metricExporter = new OTLPMetricExporter();
const exportStats = {
  traces: watch(traceExporter, 'traces', noteSpans),
  metrics: watch(metricExporter, 'metrics', noteMetrics),
};

const interval = Number(process.env.OTEL_METRIC_EXPORT_INTERVAL || 60000);
const sdk = new NodeSDK({
  resource: resourceFromAttributes({ 'service.name': 'node-shop', 'host.name': 'node-host-1' }),
  // The resource is exactly the one above, whatever the machine.
  autoDetectResources: false,
  traceExporter,
  metricReaders: [
    new PeriodicExportingMetricReader({
      exporter: metricExporter,
      exportIntervalMillis: interval,
      exportTimeoutMillis: Math.min(interval, 10000),
    }),
  ],
  instrumentations,
});
sdk.start();

// ---- The shop ----

const http = require('node:http');
const express = require('express');

const BOOM_MESSAGE = 'kuroko-interop: the basket exploded';
const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms));
const seconds = (from, to) => Number(to - from) / 1e9;

/** Busy work for `ms` milliseconds of CPU. */
function spin(ms) {
  const until = process.hrtime.bigint() + BigInt(Math.round(ms * 1e6));
  let x = 0;
  while (process.hrtime.bigint() < until) x = (x * 31 + 7) % 1000003;
  return x;
}

/** A fixed pseudo-random number in [0, 1) for `n` (a 32-bit integer hash). */
function unit(n) {
  let x = (n * 0x9e3779b1) >>> 0;
  x = Math.imul(x ^ (x >>> 16), 0x85ebca6b) >>> 0;
  x = Math.imul(x ^ (x >>> 13), 0xc2b2ae35) >>> 0;
  return ((x ^ (x >>> 16)) >>> 0) / 2 ** 32;
}

/** Sleep of product `id`, ms: 60% 1 ms, 30% 12 ms, 7% 30 ms, 3% 55 ms, so
 * that the median, p95 and p99 fall in different buckets, away from their edges. */
function productMs(id) {
  const u = unit(id);
  return u < 0.6 ? 1 : u < 0.9 ? 12 : u < 0.97 ? 30 : 55;
}

/** ~7% of products fail, a fixed set. */
const productFails = (id) => unit(id + 1000003) < 0.07;

/** Downstream delay of checkout `n`, ms: 80% 20 to 30 ms, 20% 55 ms, so that
 * the median (~35 ms) and p95 (~63 ms) fall in different buckets, away from
 * their edges. */
function downstreamMs(n) {
  const u = unit(n + 2000003);
  return u < 0.8 ? 20 + Math.floor(u * 13.75) : 55;
}

const truth = [];

const app = express();
app.set('env', 'test'); // Express's final handler would print each /boom stack otherwise.

/** The shop's server: each request timed from the moment node hands it over
 * (before Express's first middleware) to its response's 'finish'. */
function shopHandler(req, res) {
  const start = process.hrtime.bigint();
  const span = trace.getActiveSpan();
  res.on('finish', () => {
    truth.push({
      type: 'request',
      method: req.method,
      route: req.route ? req.route.path : null,
      path: req.url,
      status: res.statusCode,
      seconds: seconds(start, process.hrtime.bigint()),
      outgoing_seconds: res.locals?.outgoingSeconds ?? null,
      span_id: span ? span.spanContext().spanId : null,
    });
  });
  app(req, res);
}

app.get('/products/:id', async (req, res) => {
  const id = Number(req.params.id);
  await sleep(productMs(id));
  if (productFails(id)) {
    res.status(500).json({ error: 'out of stock service unavailable' });
  } else {
    res.json({ id, name: `product ${id}` });
  }
});

app.get('/checkout', async (req, res) => {
  const n = Number(req.query.n);
  await sleep(3);
  const start = process.hrtime.bigint();
  await new Promise((resolve, reject) => {
    http
      .get(`http://127.0.0.1:${downstreamPort}/stock?ms=${downstreamMs(n)}`, (answer) => {
        answer.resume();
        answer.on('end', resolve);
        answer.on('error', reject);
      })
      .on('error', reject);
  });
  res.locals.outgoingSeconds = seconds(start, process.hrtime.bigint());
  spin(4);
  res.json({ order: n, ok: true });
});

app.get('/boom', () => {
  throw new Error(BOOM_MESSAGE);
});

const downstream = http.createServer((req, res) => {
  const ms = Number(new URL(req.url, 'http://x').searchParams.get('ms'));
  setTimeout(() => res.end('in stock'), ms);
});

const listen = (server) =>
  new Promise((resolve, reject) => {
    server.once('error', reject);
    server.listen(0, '127.0.0.1', () => resolve(server.address().port));
  });

/** The version of package `name` installed at or above `dir`. */
function installedVersion(name, dir) {
  for (let d = dir; d !== path.dirname(d); d = path.dirname(d)) {
    const file = path.join(d, 'package.json');
    if (fs.existsSync(file)) {
      const json = JSON.parse(fs.readFileSync(file, 'utf8'));
      if (json.name === name) return json.version;
    }
  }
  return null;
}

// ---- The driver ----

/** One GET to the shop; resolves with the status. */
function get(port, target) {
  return new Promise((resolve, reject) => {
    const request = http.request(
      { host: '127.0.0.1', port, path: target, method: 'GET', headers: { [DRIVER_HEADER]: '1' } },
      (answer) => {
        answer.resume();
        answer.on('end', () => resolve(answer.statusCode));
        answer.on('error', reject);
      }
    );
    request.on('error', reject);
    request.end();
  });
}

/** The fixed plan: 240 products, 60 checkouts, 12 booms, 15 unknown paths,
 * interleaved by a fixed shuffle so that every metric export sees a mix. */
function plan() {
  const targets = [];
  for (let i = 0; i < 240; i++) targets.push(`/products/${i}`);
  for (let i = 0; i < 60; i++) targets.push(`/checkout?n=${i}`);
  for (let i = 0; i < 12; i++) targets.push('/boom');
  for (let i = 0; i < 15; i++) targets.push(`/no/such/page/${i}`);
  const order = targets.map((t, i) => [unit(i + 3000017), t]);
  order.sort((a, b) => a[0] - b[0]);
  return order.map(([, t]) => t);
}

async function main() {
  downstreamPort = await listen(downstream);
  const shop = http.createServer(shopHandler);
  const port = await listen(shop);
  const targets = plan();
  const problems = [];
  // Two at a time: some concurrency, as in a live service, without crowding
  // a small machine.
  let next = 0;
  const worker = async () => {
    while (next < targets.length) {
      const target = targets[next++];
      try {
        await get(port, target);
      } catch (error) {
        problems.push(`GET ${target}: ${error.message}`);
      }
    }
  };
  await Promise.all([worker(), worker()]);
  // Every 'finish' has fired once the driver has every answer.
  await sleep(50);
  if (truth.length !== targets.length) {
    problems.push(`${targets.length} requests sent, ${truth.length} finished`);
  }
  shop.close();
  downstream.close();
  // Shutdown force-flushes: the last metric collection, every span.
  try {
    await sdk.shutdown();
  } catch (error) {
    problems.push(`the SDK's shutdown (its last exports) failed: ${error.message}`);
  }

  const versions = {};
  for (const name of [
    '@opentelemetry/sdk-node',
    '@opentelemetry/auto-instrumentations-node',
    '@opentelemetry/instrumentation-express',
    '@opentelemetry/sdk-metrics',
    'express',
  ]) {
    versions[name] = installedVersion(name, path.join(__dirname, 'node_modules', name));
  }
  versions['@opentelemetry/instrumentation-http'] =
    mode === 'old'
      ? installedVersion('@opentelemetry/instrumentation-http', path.join(__dirname, 'node_modules', 'instrumentation-http-0.220'))
      : installedVersion(
          '@opentelemetry/instrumentation-http',
          path.dirname(require.resolve('@opentelemetry/instrumentation-http', { paths: [require.resolve('@opentelemetry/auto-instrumentations-node')] }))
        );

  const byId = new Map(spans.map((s) => [s.id, s]));
  for (const request of truth) {
    const span = byId.get(request.span_id);
    request.sdk_seconds = span && span.kind === 'SERVER' ? span.seconds : null;
    delete request.span_id;
  }
  const groups = new Map();
  for (const span of spans) {
    const parent = span.parent ? byId.get(span.parent) : null;
    const parentName = span.parent ? (parent ? `${parent.kind} ${parent.name}` : '(not exported)') : null;
    const key = JSON.stringify([span.scope, span.name, span.kind, parentName]);
    const group = groups.get(key) || {
      type: 'spans',
      scope: span.scope,
      name: span.name,
      kind: span.kind,
      parent: parentName,
      count: 0,
      attributes: [],
      events: [],
      status_codes: [],
    };
    group.count += 1;
    for (const [list, values] of [
      [group.attributes, span.attributes],
      [group.events, span.events],
      [group.status_codes, [span.status]],
    ]) {
      for (const v of values) if (!list.includes(v)) list.push(v);
    }
    groups.set(key, group);
  }

  const failures = [...exportStats.traces.failures, ...exportStats.metrics.failures];
  const lines = [
    { type: 'sdk', mode, semconv_opt_in: process.env.OTEL_SEMCONV_STABILITY_OPT_IN ?? null, node: process.version, versions },
    ...truth,
    ...lastPoints.values(),
    ...groups.values(),
    {
      type: 'exports',
      metrics: exportStats.metrics.calls,
      traces: exportStats.traces.calls,
      failures,
      problems,
    },
  ];
  fs.writeFileSync(output, lines.map((line) => JSON.stringify(line)).join('\n') + '\n');
  if (failures.length > 0 || problems.length > 0) {
    console.error(`service.js: ${[...failures, ...problems].join('; ')}`);
    process.exit(1);
  }
  process.exit(0);
}

main().catch((error) => {
  console.error(`service.js: ${error.stack || error}`);
  process.exit(1);
});
