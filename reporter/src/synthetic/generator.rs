//! The generator: samples every run of every series and step from the
//! [model](super::model), and turns them into the batches ingest would write.

use super::model::*;
use super::{ErrorBurst, Overrides, Planted, Rng, SegmentModel, Spec, TransactionModel, Truths, DAY, WEEK};
use crate::histogram::Histogram;
use crate::store::{Batch, CounterPoint, ErrorPoint, HistogramPoint, SeriesKey, TracePoint};

const NANOS_PER_MINUTE: u64 = 60_000_000_000;

/// Sums over a counter period of one series.
#[derive(Default)]
struct Tally {
    runs: u64,
    seconds: f64,
    outcomes: [u64; 4],
    apdex: [u64; 3],
    /// The period's first step.
    minute: Option<i64>,
}

/// Generates a [`Spec`]'s data; see the [module documentation](super).
#[derive(Clone, Debug)]
pub struct Generator {
    spec: Spec,
    /// Per service × transaction.
    profiles: Vec<Profile>,
    /// Per series, in index order.
    keys: Vec<SeriesKey>,
    /// `kuroko.apdex.threshold=…,kuroko.apdex.zone=…` per zone.
    apdex_labels: [String; 3],
    regression_start: i64,
    regression_factor: f64,
    burst: (i64, i64),
    burst_failure: f64,
    /// Service names, by index.
    services: Vec<String>,
    /// Host names per service.
    hosts: Vec<Vec<String>>,
}

impl Generator {
    /// The generator of `spec` (normalised: see [`Spec::transactions_per_service`]).
    pub fn new(spec: &Spec) -> Generator {
        let spec = spec.normalised();
        let mut profiles = Vec::new();
        for service in 0..spec.services {
            for transaction in 0..spec.transactions_per_service {
                profiles.push(profile(spec.seed, spec.services, service, transaction));
            }
        }
        let services: Vec<String> = (0..spec.services).map(service_name).collect();
        let hosts = services
            .iter()
            .map(|name| (0..spec.hosts_per_service).map(|h| format!("{name}-{h}")).collect())
            .collect();
        let t = spec.apdex_threshold;
        let apdex_labels = ["satisfied", "tolerating", "frustrated"]
            .map(|zone| format!("kuroko.apdex.threshold={t},kuroko.apdex.zone={zone}"));
        let (start, end, step) = (spec.start_minute, spec.end_minute(), spec.step_minutes);
        let regression_start = align_up(end - (spec.minutes / 2).min(WEEK), start, step);
        // The burst: 09:00 to 15:00 UTC of the day before the last, or the
        // middle of a spec shorter than that.
        let day = (end - 1).div_euclid(DAY) - 1;
        let mut burst = (day * DAY + 9 * 60, day * DAY + 15 * 60);
        if burst.0 < start || burst.1 > end {
            let middle = start + spec.minutes / 2;
            burst = (middle, (middle + 6 * 60).min(end));
        }
        let mut generator = Generator {
            spec,
            profiles,
            keys: Vec::new(),
            apdex_labels,
            regression_start,
            regression_factor: REGRESSION_FACTOR,
            burst,
            burst_failure: BURST_FAILURE,
            services,
            hosts,
        };
        generator.make_keys("production");
        generator
    }

    /// The generator of `spec` with `overrides` applied: the same model and
    /// planted truths under other names (and, if asked, another regression).
    pub(crate) fn with_overrides(spec: &Spec, overrides: &Overrides) -> Generator {
        let mut generator = Generator::new(spec);
        let per = generator.spec.transactions_per_service;
        for (service, name) in overrides.services.iter().enumerate().take(generator.services.len()) {
            generator.services[service] = name.clone();
            generator.hosts[service] = (0..generator.spec.hosts_per_service)
                .map(|h| format!("{name}-{h}"))
                .collect();
        }
        for (service, hosts) in overrides.hosts.iter().enumerate().take(generator.hosts.len()) {
            for (host, name) in hosts.iter().enumerate().take(generator.spec.hosts_per_service) {
                generator.hosts[service][host] = name.clone();
            }
        }
        for (service, transactions) in overrides.transactions.iter().enumerate().take(generator.services.len()) {
            for (transaction, named) in transactions.iter().enumerate().take(per) {
                let profile = &mut generator.profiles[service * per + transaction];
                profile.name = named.name.clone();
                profile.feature = named.feature.clone();
                profile.kind = if named.kind == "job" { "job" } else { "web" };
            }
        }
        if let Some((start, factor)) = overrides.regression {
            generator.regression_start = align_up(start, generator.spec.start_minute, generator.spec.step_minutes);
            generator.regression_factor = if factor.is_finite() && factor > 0.0 {
                factor
            } else {
                1.0
            };
        }
        if let Some((from, to, failure)) = overrides.burst {
            generator.burst = (from, to.max(from));
            generator.burst_failure = if failure.is_finite() {
                failure.clamp(0.0, 1.0)
            } else {
                BURST_FAILURE
            };
        }
        let environment = overrides.environment.as_deref().unwrap_or("production");
        generator.make_keys(environment);
        generator
    }

    /// Every series' key, service-major, then host, then transaction.
    fn make_keys(&mut self, environment: &str) {
        let spec = &self.spec;
        let mut keys = Vec::new();
        for service in 0..spec.services {
            for host in 0..spec.hosts_per_service {
                for transaction in 0..spec.transactions_per_service {
                    let p = &self.profiles[service * spec.transactions_per_service + transaction];
                    keys.push(SeriesKey {
                        service: self.services[service].clone(),
                        host: self.hosts[service][host].clone(),
                        transaction: p.name.clone(),
                        feature: p.feature.clone(),
                        kind: p.kind.to_owned(),
                        environment: environment.to_owned(),
                    });
                }
            }
        }
        self.keys = keys;
    }

    /// How each transaction behaves, per service then transaction: what a
    /// live simulation samples from to carry the generated history on.
    pub(crate) fn models(&self) -> Vec<TransactionModel> {
        let per = self.spec.transactions_per_service;
        self.profiles
            .iter()
            .enumerate()
            .map(|(i, p)| TransactionModel {
                service: self.services[i / per].clone(),
                transaction: p.name.clone(),
                feature: p.feature.clone(),
                kind: p.kind.to_owned(),
                role: p.role,
                popularity: p.popularity,
                median: p.fast.median,
                sigma: p.fast.sigma,
                slow_mode: p.slow.map(|(weight, mode)| (weight, mode.median, mode.sigma)),
                failure_rate: p.failure_rate,
                client_error_rate: p.client_error_rate,
                errors: p
                    .errors
                    .iter()
                    .map(|&e| {
                        let (error_type, message, location) = BACKGROUND_ERRORS[e];
                        (error_type.to_owned(), message.to_owned(), location.to_owned())
                    })
                    .collect(),
                segments: p
                    .segments
                    .iter()
                    .map(|s| SegmentModel {
                        kind: s.kind.to_owned(),
                        name: s.name.to_owned(),
                        share: s.share,
                        calls_per_run: s.calls_per_run,
                    })
                    .collect(),
            })
            .collect()
    }

    /// What is planted, known before generating (the counts are zero).
    pub fn planted(&self) -> Truths {
        self.truths()
    }

    /// The spec generated, normalised.
    pub fn spec(&self) -> &Spec {
        &self.spec
    }

    /// Every series, by index: service-major, then host, then transaction.
    pub fn series(&self) -> &[SeriesKey] {
        &self.keys
    }

    /// Batches [`generate`](Self::generate) hands to its sink: one per
    /// clock hour touched and service.
    pub(crate) fn batch_count(&self) -> u64 {
        let hours = hour_chunks(&self.spec).count() as u64;
        hours * self.spec.services as u64
    }

    /// The minutes that carry a point: `start_minute + k × step_minutes`.
    pub fn steps(&self) -> impl Iterator<Item = i64> {
        let step = self.spec.step_minutes as usize;
        (self.spec.start_minute..self.spec.end_minute()).step_by(step)
    }

    /// The durations (seconds) sampled for series `series` at `minute`: the
    /// very samples its histogram point was built from, in the order drawn.
    /// Empty when `minute` carries no point or `series` is out of range.
    pub fn raw_samples(&self, series: usize, minute: i64) -> Vec<f64> {
        let mut runs = Vec::new();
        self.runs(series, minute, &mut runs);
        runs.iter().map(|r| r.seconds).collect()
    }

    fn profile_of(&self, series: usize) -> (usize, usize, &Profile) {
        let per_service = self.spec.hosts_per_service * self.spec.transactions_per_service;
        let service = series / per_service;
        let host = series % per_service / self.spec.transactions_per_service;
        let transaction = series % self.spec.transactions_per_service;
        let profile = &self.profiles[service * self.spec.transactions_per_service + transaction];
        (service, host, profile)
    }

    /// Samples the runs of `series` at `minute` into `out`.
    fn runs(&self, series: usize, minute: i64, out: &mut Vec<Run>) {
        out.clear();
        let spec = &self.spec;
        if series >= self.keys.len()
            || minute < spec.start_minute
            || minute >= spec.end_minute()
            || (minute - spec.start_minute) % spec.step_minutes != 0
        {
            return;
        }
        let (service, host, p) = self.profile_of(series);
        let mut rng = Rng::new(&[spec.seed, 2, series as u64, minute as u64]);
        let mean = spec.runs_per_minute * spec.step_minutes as f64 * p.popularity * traffic(minute);
        let n = rng.poisson(mean);
        let slow_scale = if p.role == Role::Regressing && minute >= self.regression_start {
            self.regression_factor
        } else {
            1.0
        };
        let latency = latency_cycle(minute);
        let burst =
            p.role == Role::ErrorBurst && service == 0 && host == 0 && (self.burst.0..self.burst.1).contains(&minute);
        let failed = if p.kind == "web" {
            Outcome::ServerError
        } else {
            Outcome::Error
        };
        for _ in 0..n {
            let pick = rng.uniform();
            let z = rng.normal();
            let mode = match p.slow {
                Some((weight, slow)) if pick < weight => Mode {
                    median: slow.median * slow_scale,
                    ..slow
                },
                _ => p.fast,
            };
            let seconds = mode.median * (mode.sigma * z).exp() * latency;
            let fate = rng.uniform();
            let which = rng.next_u64();
            let (outcome, failure) = if burst && fate < self.burst_failure {
                let failure = Failure::Burst {
                    order: 10_000 + (which % 90_000) as u32,
                    user: (which >> 32) as u32,
                };
                (Outcome::ServerError, Some(failure))
            } else if fate >= 1.0 - p.failure_rate {
                let error = p.errors[which as usize % p.errors.len()];
                (failed, Some(Failure::Background(error)))
            } else if fate >= 1.0 - p.failure_rate - p.client_error_rate {
                (Outcome::ClientError, None)
            } else {
                (Outcome::Ok, None)
            };
            out.push(Run {
                seconds,
                outcome,
                failure,
            });
        }
    }

    /// Generates every batch, in time order (an hour of one service at a
    /// time, so memory stays flat), handing each to `sink`; stops at the
    /// sink's first error.
    pub fn generate<E>(&self, mut sink: impl FnMut(Batch) -> Result<(), E>) -> Result<Truths, E> {
        let mut truths = self.truths();
        let mut runs = Vec::new();
        for (from, to) in hour_chunks(&self.spec) {
            for service in 0..self.spec.services {
                let mut batch = Batch::default();
                let per_service = self.spec.hosts_per_service * self.spec.transactions_per_service;
                for series in service * per_service..(service + 1) * per_service {
                    self.series_chunk(series, (from, to), &mut runs, &mut batch, &mut truths);
                }
                truths.histogram_points += batch.histograms.len() as u64;
                truths.counter_points += batch.counters.len() as u64;
                truths.error_points += batch.errors.len() as u64;
                truths.traces += batch.traces.len() as u64;
                sink(batch)?;
            }
        }
        Ok(truths)
    }

    /// The truths known before generating; counts start at zero.
    fn truths(&self) -> Truths {
        let planted = |role: Role| -> Vec<Planted> {
            let per = self.spec.transactions_per_service;
            self.profiles
                .iter()
                .enumerate()
                .filter(|(_, p)| p.role == role)
                .map(|(i, p)| Planted {
                    service: self.services[i / per].clone(),
                    transaction: p.name.clone(),
                    feature: p.feature.clone(),
                })
                .collect()
        };
        let first = |role| planted(role).into_iter().next().unwrap_or_else(|| missing_role(role));
        let burst = first(Role::ErrorBurst);
        Truths {
            slow_endpoints: planted(Role::Slow),
            regression: first(Role::Regressing),
            regression_start: self.regression_start,
            regression_factor: self.regression_factor,
            noisy: first(Role::Noisy),
            error_burst: ErrorBurst {
                host: self
                    .services
                    .iter()
                    .position(|s| *s == burst.service)
                    .and_then(|s| self.hosts[s].first().cloned())
                    .unwrap_or_default(),
                transaction: burst,
                error_type: BURST_TYPE.to_owned(),
                location: BURST_LOCATION.to_owned(),
                message_pattern: BURST_PATTERN.to_owned(),
                from_minute: self.burst.0,
                to_minute: self.burst.1,
                count: 0,
            },
            background_errors: 0,
            database_heavy: first(Role::DatabaseHeavy),
            database_segment: DATABASE_SEGMENT.to_owned(),
            database_share: DATABASE_SHARE,
            apdex_threshold: self.spec.apdex_threshold,
            series: self.keys.len(),
            runs: 0,
            histogram_points: 0,
            counter_points: 0,
            error_points: 0,
            traces: 0,
        }
    }

    /// One series' points for the minutes `from..to`, added to `batch`.
    fn series_chunk(
        &self,
        series: usize,
        (from, to): (i64, i64),
        runs: &mut Vec<Run>,
        batch: &mut Batch,
        truths: &mut Truths,
    ) {
        let (_, _, p) = self.profile_of(series);
        let key = &self.keys[series];
        let threshold = self.spec.apdex_threshold;
        let mut tally = Tally::default();
        // The chunk's slowest run: (seconds, minute, index, runs in its step, outcome).
        let mut slowest: Option<(f64, i64, usize, usize, Outcome)> = None;
        let step = self.spec.step_minutes;
        for minute in (align_up(from, self.spec.start_minute, step)..to).step_by(step as usize) {
            self.runs(series, minute, runs);
            tally.minute.get_or_insert(minute);
            let mut histogram = Histogram::empty();
            let mut background = [(0u64, 0u64); BACKGROUND_ERRORS.len()];
            for (i, run) in runs.iter().enumerate() {
                let _ = histogram.record(run.seconds);
                tally.runs += 1;
                tally.seconds += run.seconds;
                tally.outcomes[run.outcome as usize] += 1;
                let zone = match run.failure {
                    Some(_) => 2,
                    None if run.seconds <= threshold => 0,
                    None if run.seconds <= 4.0 * threshold => 1,
                    None => 2,
                };
                tally.apdex[zone] += 1;
                let ended = run_end(minute, step, i, runs.len());
                match run.failure {
                    Some(Failure::Background(error)) => {
                        background[error].0 += 1;
                        background[error].1 = ended;
                        truths.background_errors += 1;
                    }
                    Some(Failure::Burst { order, user }) => {
                        batch.errors.push(ErrorPoint {
                            key: key.clone(),
                            minute,
                            error_type: BURST_TYPE.to_owned(),
                            message: format!("order {order} not found for user {user:08x}"),
                            location: BURST_LOCATION.to_owned(),
                            count: 1,
                            last_seen: ended,
                            fingerprint: String::new(),
                            stacktrace: String::new(),
                            trace_id: String::new(),
                        });
                        truths.error_burst.count += 1;
                    }
                    None => {}
                }
                if slowest.is_none_or(|s| run.seconds > s.0) {
                    slowest = Some((run.seconds, minute, i, runs.len(), run.outcome));
                }
            }
            truths.runs += runs.len() as u64;
            for (error, &(count, last_seen)) in background.iter().enumerate().filter(|(_, e)| e.0 > 0) {
                let (error_type, message, location) = BACKGROUND_ERRORS[error];
                batch.errors.push(ErrorPoint {
                    key: key.clone(),
                    minute,
                    error_type: error_type.to_owned(),
                    message: message.to_owned(),
                    location: location.to_owned(),
                    count,
                    last_seen,
                    fingerprint: String::new(),
                    stacktrace: String::new(),
                    trace_id: String::new(),
                });
            }
            if histogram.count > 0 {
                batch.histograms.push(HistogramPoint {
                    key: key.clone().into(),
                    minute,
                    histogram,
                });
            }
            if !self.spec.hourly_counters {
                self.flush(key, p, std::mem::take(&mut tally), batch);
            }
        }
        self.flush(key, p, tally, batch);
        if let Some((seconds, minute, i, n, outcome)) = slowest {
            if seconds >= SLOW_FACTOR * threshold {
                batch
                    .traces
                    .push(self.trace(series, p, (seconds, run_end(minute, step, i, n), outcome)));
            }
        }
    }

    /// The counters of a period, non-zero ones only.
    fn flush(&self, key: &SeriesKey, p: &Profile, tally: Tally, batch: &mut Batch) {
        let Some(minute) = tally.minute else { return };
        if tally.runs == 0 {
            return;
        }
        let mut push = |name: &str, labels: String, value: f64| {
            batch.counters.push(CounterPoint {
                key: key.clone().into(),
                minute,
                name: name.to_owned(),
                labels,
                value,
            });
        };
        for (outcome, &count) in OUTCOMES.iter().zip(&tally.outcomes).filter(|(_, c)| **c > 0) {
            push(
                "kuroko.transaction.outcomes",
                format!("kuroko.outcome={outcome}"),
                count as f64,
            );
        }
        for (labels, &count) in self.apdex_labels.iter().zip(&tally.apdex).filter(|(_, c)| **c > 0) {
            push("kuroko.transaction.apdex", labels.clone(), count as f64);
        }
        for segment in &p.segments {
            let seconds = segment.share * tally.seconds;
            push(
                "kuroko.segment.calls",
                segment.labels.clone(),
                (tally.runs * u64::from(segment.calls_per_run)) as f64,
            );
            push("kuroko.segment.duration", segment.labels.clone(), seconds);
            // Segments do not nest here: exclusive time is all of it.
            push("kuroko.segment.exclusive_duration", segment.labels.clone(), seconds);
        }
    }

    /// A kept trace of one run: the root span and one span per segment call,
    /// laid end to end, as `ingest::traces` stores them.
    fn trace(&self, series: usize, p: &Profile, (seconds, ended, outcome): (f64, u64, Outcome)) -> TracePoint {
        let key = &self.keys[series];
        let duration = (seconds * 1e9) as u64;
        let start = ended.saturating_sub(duration);
        let id = |part: u64| super::random::hash(&[self.spec.seed, 3, series as u64, ended, part]);
        let trace_id = format!("{:016x}{:016x}", id(0), id(1));
        let mut attributes = serde_json::Map::new();
        let mut attribute = |k: &str, v: &str| {
            attributes.insert(k.to_owned(), serde_json::Value::String(v.to_owned()));
        };
        attribute("kuroko.transaction", &p.name);
        attribute("kuroko.feature", &p.feature);
        if let Some((method, route)) = p.name.split_once(' ').filter(|_| p.kind == "web") {
            attribute("http.request.method", method);
            attribute("http.route", route);
            let status = match outcome {
                Outcome::Ok => "200",
                Outcome::ClientError => "404",
                Outcome::ServerError | Outcome::Error => "500",
            };
            attribute("http.response.status_code", status);
        }
        let mut spans = vec![serde_json::json!({
            "name": p.name,
            "kind": p.kind,
            "span_id": format!("{:016x}", id(2)),
            "start": start,
            "duration_ns": duration,
            "attributes": attributes,
        })
        .to_string()];
        let mut at = start;
        for (s, segment) in p.segments.iter().enumerate() {
            let calls = segment.calls_per_run.max(1);
            let each = (segment.share * duration as f64 / f64::from(calls)) as u64;
            for call in 0..calls {
                spans.push(
                    serde_json::json!({
                        "name": segment.name,
                        "kind": segment.kind,
                        "span_id": format!("{:016x}", id(3 + (s as u64) * 1_000 + u64::from(call))),
                        "start": at,
                        "duration_ns": each,
                        "attributes": {"kuroko.segment.kind": segment.kind},
                    })
                    .to_string(),
                );
                at += each;
            }
        }
        TracePoint {
            key: key.clone(),
            trace_id,
            start,
            duration: seconds,
            spans: format!("[{}]", spans.join(",")),
        }
    }
}

fn missing_role(role: Role) -> Planted {
    // Generator::new normalises to at least 6 transactions, so every role exists.
    Planted {
        service: String::new(),
        transaction: format!("{role:?}"),
        feature: String::new(),
    }
}

/// The first `start + k × step` at or after `minute`.
fn align_up(minute: i64, start: i64, step: i64) -> i64 {
    if minute <= start {
        return start;
    }
    start + (minute - start + step - 1) / step * step
}

/// The clock hours the spec touches, clipped to it.
fn hour_chunks(spec: &Spec) -> impl Iterator<Item = (i64, i64)> {
    let (start, end) = (spec.start_minute, spec.end_minute());
    let first = start.div_euclid(60) * 60;
    (first..end)
        .step_by(60)
        .map(move |hour| (hour.max(start), (hour + 60).min(end)))
}

/// When run `i` of `n` in the step at `minute` ended: spread evenly, unix ns.
fn run_end(minute: i64, step: i64, i: usize, n: usize) -> u64 {
    let base = (minute.max(0) as u64).saturating_mul(NANOS_PER_MINUTE);
    let span = step as u64 * NANOS_PER_MINUTE;
    base + span / (n as u64 + 1) * (i as u64 + 1)
}
