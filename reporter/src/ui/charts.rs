//! SVG charts drawn on the server: a line chart with axes, ticks and legend,
//! a sparkline, a bar histogram of a latency distribution, horizontal bars,
//! and a trace's segments as a waterfall.
//!
//! Drawn in Rust rather than by a JavaScript library so that pages work
//! without a network or a build step, load as one document, and can be
//! checked by tests reading the markup. Every chart marks its series with
//! `data-series="…"` (and how many points it drew with `data-points`), and
//! every point of a line chart is a `<circle>` with a `<title>`, which the
//! browser shows on hover; a point with no neighbour (`class="alone"`), which
//! no stroke reaches, is always drawn as a marker, so a series of one point
//! or a sparse one shows. Colours are presentation attributes, never
//! `style="…"`, so the pages' Content-Security-Policy forbids inline styles
//! without breaking them.

use maud::{html, Markup};

use crate::analysis::breakdown::TraceSummary;
use crate::analysis::deploys::Deploy;
use crate::format;

/// Series colours, in order: Okabe and Ito's palette, whose colours stay
/// apart for readers with any common colour blindness (the reds of the last
/// palette did not, even for others). Yellow, the hardest to read on white,
/// comes last.
pub(crate) const PALETTE: [&str; 8] = [
    "#0072b2", "#e69f00", "#009e73", "#cc79a7", "#56b4e9", "#d55e00", "#000000", "#f0e442",
];

/// The colour of `index` in [`PALETTE`], round again past its end.
pub(crate) fn colour(index: usize) -> &'static str {
    PALETTE[index % PALETTE.len()]
}

/// What the values of a chart are, for its ticks and tooltips.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Unit {
    /// Durations in seconds.
    Seconds,
    /// Runs per minute.
    PerMinute,
    /// A fraction from 0 to 1, shown as a percentage.
    Ratio,
    /// A plain number (Apdex, counts).
    Number,
}

impl Unit {
    /// `value` for people, in this unit.
    pub(crate) fn format(self, value: f64) -> String {
        if value == 0.0 {
            return "0".to_owned();
        }
        match self {
            Unit::Seconds => format::duration(value),
            Unit::PerMinute => format::rate(value),
            Unit::Ratio => format::percent(value),
            Unit::Number => format::number(value),
        }
    }
}

/// One line of a line chart.
#[derive(Clone, Debug, PartialEq)]
pub(crate) struct Line {
    /// What `data-series` says: `p95`, `throughput`, a feature's name.
    pub key: String,
    /// The legend's text.
    pub label: String,
    /// `(unix minute, value)` in time order; `None` is a gap.
    pub points: Vec<(i64, Option<f64>)>,
    /// Its colour, an index into [`PALETTE`]: the same for the same thing
    /// (a feature) on every chart of a page.
    pub colour: usize,
}

/// A number for an SVG attribute: one decimal is finer than a pixel.
fn n(value: f64) -> String {
    format!("{value:.1}")
}

/// Ticks from 0 to at least `max`: about four steps of 1, 2 or 5 × 10ⁿ.
fn value_ticks(max: f64) -> Vec<f64> {
    if !(max.is_finite() && max > 0.0) {
        return vec![0.0, 1.0];
    }
    let rough = max / 4.0;
    let magnitude = 10f64.powf(rough.log10().floor());
    let step = [1.0, 2.0, 5.0, 10.0]
        .into_iter()
        .map(|m| m * magnitude)
        .find(|s| *s >= rough)
        .unwrap_or(10.0 * magnitude);
    let steps = (max / step).ceil().max(1.0) as usize;
    (0..=steps).map(|i| i as f64 * step).collect()
}

/// A y axis: where a value goes (0 at the bottom, 1 at the top) and its ticks.
#[derive(Clone, Debug, PartialEq)]
enum Scale {
    /// From 0 to `top`.
    Linear { top: f64 },
    /// Logarithmic, from `low` to `high` (powers of ten), for durations:
    /// a 4 s feature does not flatten the 40 ms ones beside it. Values at
    /// or below `low` sit on the bottom.
    Log { low: f64, high: f64 },
}

impl Scale {
    /// The scale for `values` in `unit`: logarithmic for durations.
    fn of(values: impl Iterator<Item = f64> + Clone, unit: Unit) -> (Scale, Vec<f64>) {
        let positive = values.clone().filter(|v| v.is_finite() && *v > 0.0);
        let min = positive.clone().fold(f64::INFINITY, f64::min);
        let max = positive.fold(0.0f64, f64::max);
        if unit == Unit::Seconds && max > 0.0 {
            // Below the least value, so that no line lies on the x axis.
            let mut low = 10f64.powf(min.log10().floor());
            if low >= min {
                low /= 10.0;
            }
            let high = 10f64.powf(max.log10().ceil()).max(low * 10.0);
            return (Scale::Log { low, high }, log_ticks(low, high));
        }
        let max = values.filter(|v| v.is_finite()).fold(0.0f64, f64::max);
        let ticks = value_ticks(max);
        let top = ticks.last().copied().unwrap_or(1.0).max(f64::MIN_POSITIVE);
        (Scale::Linear { top }, ticks)
    }

    /// Where `value` goes, from 0 (bottom) to 1 (top).
    fn fraction(&self, value: f64) -> f64 {
        match *self {
            Scale::Linear { top } => value / top,
            Scale::Log { low, high } => {
                if value <= low {
                    0.0
                } else {
                    (value / low).log10() / (high / low).log10()
                }
            }
        }
    }

    fn name(&self) -> &'static str {
        match self {
            Scale::Linear { .. } => "linear",
            Scale::Log { .. } => "log",
        }
    }
}

/// Ticks of a log axis from `low` to `high`, powers of ten: each power, and
/// 2 and 5 times it when the axis spans two decades or fewer.
fn log_ticks(low: f64, high: f64) -> Vec<f64> {
    let decades = (high / low).log10().round().max(1.0) as i32;
    let steps: &[f64] = if decades <= 2 { &[1.0, 2.0, 5.0] } else { &[1.0] };
    let mut ticks = Vec::new();
    for d in 0..decades {
        let power = low * 10f64.powi(d);
        ticks.extend(steps.iter().map(|s| s * power));
    }
    ticks.push(high);
    ticks
}

/// A tick's label: `unit`'s format without trailing zeros (`1 s`, not
/// `1.00 s`), ticks being round.
fn tick_label(unit: Unit, value: f64) -> String {
    let text = unit.format(value);
    let Some((number, rest)) = text.split_once(' ') else {
        return text;
    };
    if number.contains('.') {
        format!("{} {rest}", number.trim_end_matches('0').trim_end_matches('.'))
    } else {
        text
    }
}

/// Time ticks over `from..to`, aligned to a whole step, at most about eight.
fn time_ticks(from: i64, to: i64) -> (Vec<i64>, &'static str) {
    const STEPS: [i64; 14] = [1, 2, 5, 10, 15, 30, 60, 120, 180, 360, 720, 1_440, 2_880, 10_080];
    let span = (to - from).max(1);
    let step = STEPS.into_iter().find(|s| span / s <= 8).unwrap_or(43_200);
    let format = if step >= 1_440 {
        "%b %d"
    } else if span > 1_440 {
        "%b %d %H:%M"
    } else {
        "%H:%M"
    };
    let first = from.div_euclid(step) * step + if from.rem_euclid(step) == 0 { 0 } else { step };
    let ticks = (0..).map(|i| first + i * step).take_while(|t| *t <= to).collect();
    (ticks, format)
}

/// Plot area of a line chart, in SVG units.
const WIDTH: f64 = 720.0;
const HEIGHT: f64 = 220.0;
const LEFT: f64 = 64.0;
const RIGHT: f64 = 12.0;
const TOP: f64 = 10.0;
const BOTTOM: f64 = 26.0;

/// A moment marked on every chart that draws its time: a deploy.
#[derive(Clone, Debug, PartialEq)]
pub(crate) struct Marker {
    /// When, unix minutes.
    pub(crate) minute: i64,
    /// What, e.g. `shop-api 1.42.0`.
    pub(crate) label: String,
    /// The service deployed, to pick a row's markers (a service's trend).
    pub(crate) service: String,
}

impl From<&Deploy> for Marker {
    fn from(deploy: &Deploy) -> Marker {
        Marker {
            minute: deploy.minute,
            label: format!("{} {}", deploy.service, deploy.version),
            service: deploy.service.clone(),
        }
    }
}

/// `markers` within `from..=to` as dashed vertical lines from `top` to
/// `bottom`, each a `<g class="marker" data-marker>` with a tooltip; with
/// `label_edge` (the x past which a label turns to the left of its line),
/// labelled too. Every chart of time draws its markers with this.
fn marker_lines(
    markers: &[Marker],
    (from, to): (i64, i64),
    x: impl Fn(i64) -> f64,
    (top, bottom): (f64, f64),
    label_edge: Option<f64>,
) -> Markup {
    html! {
        @for marker in markers.iter().filter(|m| (from..=to).contains(&m.minute)) {
            @let at = x(marker.minute);
            g.marker data-marker=(marker.label) stroke="#6b7280" fill="#374151" {
                line x1=(n(at)) x2=(n(at)) y1=(n(top)) y2=(n(bottom)) stroke-dasharray="4 3" stroke-width="1.2" {}
                @if let Some(edge) = label_edge {
                    text x=(n(at + if at > edge { -4.0 } else { 4.0 })) y=(n(top + 10.0))
                        text-anchor=(if at > edge { "end" } else { "start" }) stroke="none" font-size="11" {
                        (marker.label)
                    }
                }
                title { (marker.label) " deployed " (format::utc(marker.minute, "%Y-%m-%d %H:%M UTC")) }
            }
        }
    }
}

/// A line chart of `lines` over `from..to` (unix minutes), with a y axis
/// (from 0, or logarithmic for durations: `data-scale`), UTC time ticks, a
/// legend, and `markers` (deploys) as labelled dashed vertical lines (those
/// outside the window are left out). Each line is a `<g data-series>` with a
/// path (broken at gaps) and one `<circle>` per point that has a value.
pub(crate) fn line_chart(lines: &[Line], unit: Unit, from: i64, to: i64, markers: &[Marker]) -> Markup {
    let (scale, ticks) = Scale::of(lines.iter().flat_map(|l| l.points.iter().filter_map(|p| p.1)), unit);
    let span = (to - from).max(1) as f64;
    let x = |minute: i64| LEFT + (minute - from) as f64 / span * (WIDTH - LEFT - RIGHT);
    let y = |value: f64| HEIGHT - BOTTOM - scale.fraction(value) * (HEIGHT - TOP - BOTTOM);
    let (times, time_format) = time_ticks(from, to);
    let empty = lines.iter().all(|l| l.points.iter().all(|p| p.1.is_none()));
    html! {
        figure.chart {
            svg viewBox=(format!("0 0 {WIDTH} {HEIGHT}")) role="img"
                aria-label=(lines.iter().map(|l| l.label.as_str()).collect::<Vec<_>>().join(", ")) {
                g.axis.y data-scale=(scale.name()) {
                    @for tick in &ticks {
                        line x1=(n(LEFT)) x2=(n(WIDTH - RIGHT)) y1=(n(y(*tick))) y2=(n(y(*tick))) stroke="#e5e7eb" {}
                        text x=(n(LEFT - 6.0)) y=(n(y(*tick) + 4.0)) text-anchor="end" { (tick_label(unit, *tick)) }
                    }
                }
                g.axis.x {
                    line x1=(n(LEFT)) x2=(n(WIDTH - RIGHT)) y1=(n(HEIGHT - BOTTOM)) y2=(n(HEIGHT - BOTTOM)) stroke="#9ca3af" {}
                    @for tick in &times {
                        line x1=(n(x(*tick))) x2=(n(x(*tick))) y1=(n(HEIGHT - BOTTOM)) y2=(n(HEIGHT - BOTTOM + 4.0)) stroke="#9ca3af" {}
                        text x=(n(x(*tick))) y=(n(HEIGHT - 8.0)) text-anchor="middle" { (format::utc(*tick, time_format)) }
                    }
                }
                (marker_lines(markers, (from, to), x, (TOP, HEIGHT - BOTTOM), Some(WIDTH - 160.0)))
                @if empty {
                    text.empty x=(n(WIDTH / 2.0)) y=(n(HEIGHT / 2.0)) text-anchor="middle" { "no data in this window" }
                }
                @for line in lines {
                    @let colour = colour(line.colour);
                    @let drawn = drawn_points(&line.points);
                    g.series data-series=(line.key) data-points=(drawn.len()) stroke=(colour) fill=(colour) {
                        path fill="none" stroke-width="1.8" d=(path(&line.points, &x, &y)) {}
                        @for (minute, value, alone) in &drawn {
                            circle cx=(n(x(*minute))) cy=(n(y(*value))) r=(if *alone { "3" } else { "2.2" }) class=[alone.then_some("alone")] {
                                title { (line.label) " " (format::utc(*minute, "%Y-%m-%d %H:%M UTC")) ": " (unit.format(*value)) }
                            }
                        }
                    }
                }
            }
            figcaption.legend {
                @for line in lines {
                    span.key data-legend=(line.key) {
                        svg.swatch viewBox="0 0 10 10" width="10" height="10" { rect width="10" height="10" fill=(colour(line.colour)) {} }
                        " " (line.label)
                    }
                }
                span.note { "UTC" }
            }
        }
    }
}

/// A value that a chart can draw: finite.
fn drawable(value: Option<f64>) -> Option<f64> {
    value.filter(|v| v.is_finite())
}

/// The points of a line that have a value, each with whether it stands
/// alone: no neighbour with a value, so no stroke of the path reaches it
/// and only its marker shows it (a series of one point, a sparse one).
fn drawn_points<T: Copy>(points: &[(T, Option<f64>)]) -> Vec<(T, f64, bool)> {
    let valued = |i: Option<usize>| i.and_then(|i| points.get(i)).is_some_and(|p| drawable(p.1).is_some());
    points
        .iter()
        .enumerate()
        .filter_map(|(i, &(at, value))| {
            let value = drawable(value)?;
            Some((at, value, !valued(i.checked_sub(1)) && !valued(Some(i + 1))))
        })
        .collect()
}

/// An SVG path through `points`, starting anew after each gap.
fn path(points: &[(i64, Option<f64>)], x: &impl Fn(i64) -> f64, y: &impl Fn(f64) -> f64) -> String {
    let mut d = String::new();
    let mut pen_down = false;
    for &(minute, value) in points {
        match drawable(value) {
            Some(value) => {
                d.push(if pen_down { 'L' } else { 'M' });
                d.push_str(&n(x(minute)));
                d.push(',');
                d.push_str(&n(y(value)));
                pen_down = true;
            }
            None => pen_down = false,
        }
    }
    d
}

/// Where a trend's values lie in time: value `i` is the step from
/// `first + i × step` (unix minutes).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Steps {
    /// The first step's first minute.
    pub(crate) first: i64,
    /// Minutes a step.
    pub(crate) step: i64,
}

/// A small line without axes, for a table row: `values` evenly spaced at
/// `steps`, gaps left out, `markers` (deploys) drawn within its time as
/// unlabelled dashed lines with a tooltip. `data-points` counts the values
/// drawn.
pub(crate) fn sparkline(key: &str, values: &[Option<f64>], steps: Steps, markers: &[Marker]) -> Markup {
    const W: f64 = 100.0;
    const H: f64 = 24.0;
    let max = values
        .iter()
        .flatten()
        .filter(|v| v.is_finite())
        .fold(0.0f64, |a, b| a.max(*b));
    // Inset by a marker's radius, so markers at the ends show whole; a
    // single value stands in the middle.
    let last = values.len().saturating_sub(1) as f64;
    let x = |i: i64| {
        if last > 0.0 {
            2.0 + i as f64 / last * (W - 4.0)
        } else {
            W / 2.0
        }
    };
    let y = |v: f64| {
        if max > 0.0 {
            H - 2.0 - v / max * (H - 4.0)
        } else {
            H - 2.0
        }
    };
    let points: Vec<(i64, Option<f64>)> = values.iter().enumerate().map(|(i, v)| (i as i64, *v)).collect();
    let drawn = drawn_points(&points);
    html! {
        svg.spark viewBox=(format!("0 0 {W} {H}")) width="100" height="24" preserveAspectRatio="none" {
            path data-series=(key) data-points=(drawn.len()) fill="none" stroke=(PALETTE[0]) stroke-width="1.5"
                d=(path(&points, &x, &y)) {}
            @if last > 0.0 {
                @let step = steps.step.max(1);
                @let end = steps.first + step * values.len() as i64;
                (marker_lines(markers, (steps.first, end), |minute| {
                    2.0 + ((minute - steps.first) as f64 / step as f64).min(last) / last * (W - 4.0)
                }, (0.0, H), None))
            }
            @for (i, value, alone) in &drawn {
                @if *alone {
                    circle.alone cx=(n(x(*i))) cy=(n(y(*value))) r="1.8" fill=(PALETTE[0]) {}
                }
            }
        }
    }
}

/// One bar of a latency distribution: runs between `low` and `high` seconds.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Bin {
    /// Lower edge, seconds.
    pub low: f64,
    /// Upper edge, seconds.
    pub high: f64,
    /// Runs in the bin.
    pub count: u64,
}

/// A latency histogram: one bar per bin (equal widths: the bins are
/// exponential, so the x axis is logarithmic), with `marks` (such as p50,
/// p95, p99) drawn as labelled vertical lines.
pub(crate) fn histogram_chart(bins: &[Bin], marks: &[(&str, f64)]) -> Markup {
    let max = bins.iter().map(|b| b.count).max().unwrap_or(0).max(1) as f64;
    let ticks = value_ticks(max);
    let top = ticks.last().copied().unwrap_or(1.0);
    let width = (WIDTH - LEFT - RIGHT) / bins.len().max(1) as f64;
    let y = |count: f64| HEIGHT - BOTTOM - count / top * (HEIGHT - TOP - BOTTOM);
    let label_every = bins.len().div_ceil(8).max(1);
    // Where a value falls: its bin, and log-linearly inside it.
    let position = |value: f64| {
        let i = bins.iter().position(|b| value <= b.high)?;
        let b = bins[i];
        let inside = if b.low > 0.0 && b.high > b.low && value > b.low {
            (value / b.low).ln() / (b.high / b.low).ln()
        } else {
            0.5
        };
        Some(LEFT + (i as f64 + inside.clamp(0.0, 1.0)) * width)
    };
    html! {
        figure.chart {
            svg viewBox=(format!("0 0 {WIDTH} {HEIGHT}")) role="img" aria-label="latency distribution" {
                g.axis.y {
                    @for tick in &ticks {
                        line x1=(n(LEFT)) x2=(n(WIDTH - RIGHT)) y1=(n(y(*tick))) y2=(n(y(*tick))) stroke="#e5e7eb" {}
                        text x=(n(LEFT - 6.0)) y=(n(y(*tick) + 4.0)) text-anchor="end" { (Unit::Number.format(*tick)) }
                    }
                }
                g.series data-series="distribution" data-bars=(bins.len()) fill=(PALETTE[0]) {
                    @for (i, bin) in bins.iter().enumerate() {
                        rect x=(n(LEFT + i as f64 * width + 0.5)) y=(n(y(bin.count as f64)))
                            width=(n((width - 1.0).max(0.5))) height=(n(HEIGHT - BOTTOM - y(bin.count as f64))) {
                            title { (format::duration(bin.low)) " – " (format::duration(bin.high)) ": " (format::count(bin.count)) " runs" }
                        }
                    }
                }
                g.axis.x {
                    @for (i, bin) in bins.iter().enumerate() {
                        @if i % label_every == 0 {
                            text x=(n(LEFT + i as f64 * width)) y=(n(HEIGHT - 8.0)) text-anchor="start" { (format::duration(bin.low)) }
                        }
                    }
                }
                @for (i, (name, value)) in marks.iter().enumerate() {
                    @if let Some(x) = position(*value) {
                        @let label = format!("{name} {}", format::duration(*value));
                        // Right of its line, or left of it where it would
                        // run past the chart's edge.
                        @let (label_x, anchor) = if x + 3.0 + text_width(&label) <= WIDTH - 2.0 { (x + 3.0, "start") } else { (x - 3.0, "end") };
                        g.mark data-mark=(name) stroke=(colour(i + 1)) fill=(colour(i + 1)) {
                            line x1=(n(x)) x2=(n(x)) y1=(n(TOP)) y2=(n(HEIGHT - BOTTOM)) stroke-dasharray="4 3" {}
                            text x=(n(label_x)) y=(n(TOP + 10.0 + 12.0 * i as f64)) text-anchor=(anchor) stroke="none" { (label) }
                        }
                    }
                }
            }
        }
    }
}

/// About how wide `text` is in a chart's 11 px labels, in SVG units: a
/// generous 7 per character, so a label kept inside by it is inside.
fn text_width(text: &str) -> f64 {
    text.chars().count() as f64 * 7.0
}

/// Horizontal bars: one per `(label, value)`, longest first as given, with
/// the value at the bar's end. `key` is the `data-series`.
pub(crate) fn bars(key: &str, rows: &[(String, f64)], unit: Unit) -> Markup {
    const ROW: f64 = 22.0;
    const LABEL: f64 = 300.0;
    let max = rows
        .iter()
        .map(|r| r.1)
        .filter(|v| v.is_finite())
        .fold(0.0f64, f64::max);
    let height = (rows.len().max(1) as f64) * ROW + 4.0;
    let scale = |v: f64| {
        if max > 0.0 {
            v / max * (WIDTH - LABEL - 90.0)
        } else {
            0.0
        }
    };
    html! {
        figure.chart {
            svg.natural viewBox=(format!("0 0 {WIDTH} {height}")) width=(WIDTH) height=(n(height)) role="img" aria-label=(key) {
                g.series data-series=(key) data-bars=(rows.len()) {
                    @for (i, (label, value)) in rows.iter().enumerate() {
                        @let top = i as f64 * ROW + 2.0;
                        text x=(n(LABEL - 6.0)) y=(n(top + 15.0)) text-anchor="end" { (shorten(label, 44)) title { (label) } }
                        rect x=(n(LABEL)) y=(n(top + 3.0)) height=(n(ROW - 6.0)) width=(n(scale(*value).max(1.0)))
                            fill=(PALETTE[0]) { title { (label) ": " (unit.format(*value)) } }
                        text x=(n(LABEL + scale(*value).max(1.0) + 6.0)) y=(n(top + 15.0)) { (unit.format(*value)) }
                    }
                }
            }
        }
    }
}

/// `text`, cut to `max` characters with an ellipsis.
pub(crate) fn shorten(text: &str, max: usize) -> String {
    if text.chars().count() <= max {
        return text.to_owned();
    }
    let mut cut: String = text.chars().take(max.saturating_sub(1)).collect();
    cut.push('…');
    cut
}

/// Colour of a segment kind in a waterfall.
fn kind_colour(kind: &str) -> &'static str {
    match kind {
        "database" => PALETTE[0],
        "external" => PALETTE[4],
        "code" => PALETTE[2],
        _ => PALETTE[3],
    }
}

/// A waterfall's width: wider than other charts, for long traces.
const WATERFALL_WIDTH: f64 = 1_100.0;

/// Segments drawn per waterfall; the rest are counted.
pub(crate) const WATERFALL_ROWS: usize = 40;

/// A kept trace as a waterfall: the whole run on top, each segment below at
/// its offset and length, coloured by kind.
pub(crate) fn waterfall(trace: &TraceSummary) -> Markup {
    waterfall_marked(trace, &[])
}

/// [`waterfall`] with the segments whose index `marked` holds `true` drawn
/// outlined and labelled (a performance problem's offending spans).
pub(crate) fn waterfall_marked(trace: &TraceSummary, marked: &[bool]) -> Markup {
    const ROW: f64 = 18.0;
    const LABEL: f64 = 280.0;
    let shown = &trace.segments[..trace.segments.len().min(WATERFALL_ROWS)];
    let total = trace
        .segments
        .iter()
        .map(|s| s.offset + s.duration)
        .fold(trace.duration, f64::max)
        .max(f64::MIN_POSITIVE);
    let plot = WATERFALL_WIDTH - LABEL - 80.0;
    let x = |seconds: f64| LABEL + seconds / total * plot;
    let height = (shown.len() + 1) as f64 * ROW + 6.0;
    html! {
        figure.chart.waterfall {
            svg.natural viewBox=(format!("0 0 {WATERFALL_WIDTH} {height}")) width=(WATERFALL_WIDTH) height=(n(height)) role="img" aria-label=(format!("trace {}", trace.trace_id)) {
                g.series data-series="waterfall" data-segments=(shown.len()) {
                    text x=(n(LABEL - 6.0)) y=(n(ROW - 5.0)) text-anchor="end" font-weight="bold" { "whole run" }
                    rect x=(n(x(0.0))) y="4" height=(n(ROW - 6.0)) width=(n((x(trace.duration) - x(0.0)).max(1.0))) fill="#6b7280" {
                        title { "whole run: " (format::duration(trace.duration)) }
                    }
                    text x=(n(x(trace.duration) + 4.0)) y=(n(ROW - 5.0)) { (format::duration(trace.duration)) }
                    @for (i, segment) in shown.iter().enumerate() {
                        @let top = (i + 1) as f64 * ROW + 4.0;
                        text x=(n(LABEL - 6.0)) y=(n(top + ROW - 9.0)) text-anchor="end" { (shorten(&segment.name, 40)) }
                        @let hit = marked.get(i).copied().unwrap_or(false);
                        rect.segment.offending[hit] data-kind=(segment.kind) stroke=[hit.then_some("#000")] stroke-width=[hit.then_some("2")] x=(n(x(segment.offset))) y=(n(top)) height=(n(ROW - 6.0))
                            width=(n((x(segment.offset + segment.duration) - x(segment.offset)).max(1.0))) fill=(kind_colour(&segment.kind)) {
                            title { (segment.kind) " " (segment.name) ": " (format::duration(segment.duration)) " at +" (format::duration(segment.offset)) }
                        }
                        text x=(n(x(segment.offset + segment.duration) + 4.0)) y=(n(top + ROW - 9.0)) { (format::duration(segment.duration)) }
                    }
                }
            }
            @if trace.segments.len() > shown.len() {
                figcaption { "and " (trace.segments.len() - shown.len()) " more segments" }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::analysis::breakdown::TraceSegment;

    /// Trend steps of a minute from minute 0.
    const ONE: Steps = Steps { first: 0, step: 1 };

    #[test]
    fn deploys_are_marked_on_line_charts_and_sparklines_within_their_time() {
        let marker = |minute: i64, label: &str| Marker {
            minute,
            label: label.into(),
            service: "shop".into(),
        };
        let markers = [marker(30, "shop 1.1"), marker(500, "shop 1.2")];
        let line = Line {
            key: "p95".into(),
            label: "p95".into(),
            points: vec![(0, Some(0.1)), (60, Some(0.2))],
            colour: 0,
        };
        let svg = line_chart(&[line], Unit::Seconds, 0, 60, &markers).into_string();
        assert_eq!(count(&svg, "data-marker="), 1, "only the deploy in the window: {svg}");
        assert!(svg.contains(r#"data-marker="shop 1.1""#), "{svg}");
        assert!(svg.contains(">shop 1.1</text>"), "labelled: {svg}");
        // Half-way through the chart's plot.
        let middle = n(LEFT + 0.5 * (WIDTH - LEFT - RIGHT));
        assert!(svg.contains(&format!(r#"x1="{middle}""#)), "{svg}");

        // Hourly steps from minute 0: the deploy at 30 is in the first,
        // the one at 500 past the fourth and last.
        let hours = Steps { first: 0, step: 60 };
        let values = [Some(1.0), Some(2.0), Some(1.5), Some(1.0)];
        let spark = sparkline("average", &values, hours, &markers).into_string();
        assert_eq!(count(&spark, "data-marker="), 1, "{spark}");
        assert!(
            spark.contains("<title>shop 1.1 deployed 1970-01-01 00:30 UTC</title>"),
            "{spark}"
        );
        assert!(!spark.contains("<text"), "too small for a label: {spark}");
        assert!(!sparkline("average", &values, hours, &[])
            .into_string()
            .contains("data-marker"));
    }

    fn count(haystack: &str, needle: &str) -> usize {
        haystack.matches(needle).count()
    }

    #[test]
    fn a_line_chart_draws_one_circle_per_point_with_a_value_and_breaks_at_gaps() {
        let p95 = Line {
            key: "p95".into(),
            label: "p95".into(),
            points: vec![(0, Some(0.2)), (60, None), (120, Some(0.3)), (180, Some(0.25))],
            colour: 0,
        };
        let mean = Line {
            key: "average".into(),
            label: "average".into(),
            points: vec![(0, Some(0.1)), (60, Some(0.1)), (120, Some(0.1)), (180, Some(0.1))],
            colour: 1,
        };
        let svg = line_chart(&[p95, mean], Unit::Seconds, 0, 240, &[]).into_string();
        assert_eq!(count(&svg, "<circle"), 7, "3 + 4 points with values");
        assert!(svg.contains(r#"data-series="p95" data-points="3""#), "{svg}");
        assert!(svg.contains(r#"data-series="average" data-points="4""#));
        // The gap after the first p95 point starts a new sub-path.
        let p95_path = svg.split(r#"data-series="p95""#).nth(1).unwrap();
        let d = p95_path.split("d=\"").nth(1).unwrap().split('"').next().unwrap();
        assert_eq!(d.matches('M').count(), 2, "{d}");
        assert_eq!(d.matches('L').count(), 1, "{d}");
        assert!(svg.contains(r#"data-legend="p95""#));
        // Ticks are formatted in the chart's unit.
        assert!(svg.contains("ms</text>"), "{svg}");
    }

    #[test]
    fn points_without_a_neighbour_are_drawn_as_markers() {
        let sparse = Line {
            key: "p95".into(),
            label: "p95".into(),
            points: vec![(0, None), (1, Some(0.2)), (2, None), (3, Some(0.3)), (4, Some(0.4))],
            colour: 0,
        };
        let svg = line_chart(&[sparse], Unit::Seconds, 0, 5, &[]).into_string();
        assert_eq!(count(&svg, "<circle"), 3, "{svg}");
        assert_eq!(count(&svg, r#"class="alone""#), 1, "only the lone point: {svg}");
        let one = Line {
            key: "p95".into(),
            label: "p95".into(),
            points: vec![(0, Some(0.2))],
            colour: 0,
        };
        let svg = line_chart(&[one], Unit::Seconds, 0, 60, &[]).into_string();
        assert_eq!(count(&svg, r#"class="alone""#), 1, "{svg}");
        let spark = sparkline("average", &[None, Some(1.0), None], ONE, &[]).into_string();
        assert!(
            spark.contains(r#"data-points="1""#) && spark.contains("<circle"),
            "{spark}"
        );
        let spark = sparkline("average", &[Some(1.0)], ONE, &[]).into_string();
        assert!(spark.contains(r#"cx="50.0""#), "one value in the middle: {spark}");
    }

    #[test]
    fn an_empty_chart_says_so() {
        let line = Line {
            key: "p95".into(),
            label: "p95".into(),
            points: vec![(0, None), (1, None)],
            colour: 0,
        };
        let svg = line_chart(&[line], Unit::Seconds, 0, 2, &[]).into_string();
        assert!(svg.contains("no data in this window"));
        assert_eq!(count(&svg, "<circle"), 0);
    }

    #[test]
    fn durations_are_drawn_on_a_log_scale_with_round_ticks() {
        let (scale, ticks) = Scale::of([0.04, 4.0].into_iter(), Unit::Seconds);
        assert_eq!(scale, Scale::Log { low: 0.01, high: 10.0 });
        let labels: Vec<String> = ticks.iter().map(|t| tick_label(Unit::Seconds, *t)).collect();
        assert_eq!(labels, ["10 ms", "100 ms", "1 s", "10 s"]);
        // Equal steps per decade: 40 ms is as far from 4 s as 10 ms from 1 s.
        let step = scale.fraction(0.1) - scale.fraction(0.01);
        assert!((scale.fraction(1.0) - scale.fraction(0.1) - step).abs() < 1e-9);
        assert!((scale.fraction(4.0) - scale.fraction(0.04) - 2.0 * step).abs() < 1e-9);
        // Within two decades, 2 and 5 times each power are ticks too.
        let (_, ticks) = Scale::of([0.012, 0.03].into_iter(), Unit::Seconds);
        let labels: Vec<String> = ticks.iter().map(|t| tick_label(Unit::Seconds, *t)).collect();
        assert_eq!(labels, ["10 ms", "20 ms", "50 ms", "100 ms"]);
        // A value on a power of ten is not drawn on the x axis.
        let (scale, _) = Scale::of([0.1, 0.3].into_iter(), Unit::Seconds);
        assert_eq!(scale, Scale::Log { low: 0.01, high: 1.0 });
        // Other units stay linear from 0.
        let (scale, ticks) = Scale::of([3.0, 170.0].into_iter(), Unit::PerMinute);
        assert_eq!(scale, Scale::Linear { top: 200.0 });
        assert_eq!(ticks[0], 0.0);
    }

    #[test]
    fn ticks_are_round_and_cover_the_maximum() {
        assert_eq!(value_ticks(0.9), vec![0.0, 0.5, 1.0]);
        assert_eq!(value_ticks(170.0), vec![0.0, 50.0, 100.0, 150.0, 200.0]);
        let (ticks, _) = time_ticks(0, 1_440);
        assert!(ticks.len() <= 9 && ticks.len() >= 4, "{ticks:?}");
        assert!(ticks.iter().all(|t| t % 180 == 0), "{ticks:?}");
    }

    #[test]
    fn sparklines_histograms_bars_and_waterfalls_mark_their_series() {
        let spark = sparkline("average", &[Some(1.0), None, Some(2.0)], ONE, &[]).into_string();
        assert!(spark.contains(r#"data-series="average" data-points="2""#), "{spark}");

        let bins = [
            Bin {
                low: 0.01,
                high: 0.02,
                count: 5,
            },
            Bin {
                low: 0.02,
                high: 0.04,
                count: 9,
            },
            Bin {
                low: 0.04,
                high: 0.08,
                count: 1,
            },
        ];
        let svg = histogram_chart(&bins, &[("p95", 0.05)]).into_string();
        assert!(svg.contains(r#"data-series="distribution" data-bars="3""#));
        assert_eq!(count(&svg, "<rect"), 3);
        assert!(svg.contains(r#"data-mark="p95""#));
        // A mark near the right edge has its label on its left.
        let svg = histogram_chart(&bins, &[("p50", 0.015), ("p99", 0.079)]).into_string();
        let label = |mark: &str| {
            svg.split(&format!(r#"data-mark="{mark}""#))
                .nth(1)
                .unwrap()
                .split("</g>")
                .next()
                .unwrap()
                .to_owned()
        };
        assert!(label("p50").contains(r#"text-anchor="start""#), "{svg}");
        assert!(label("p99").contains(r#"text-anchor="end""#), "{svg}");

        let svg = bars("p95", &[("a <b>".into(), 2.0), ("c".into(), 1.0)], Unit::Seconds).into_string();
        assert!(svg.contains(r#"data-bars="2""#) && svg.contains("a &lt;b&gt;"), "{svg}");

        let trace = TraceSummary {
            trace_id: "ab".into(),
            host: "h".into(),
            start: 0,
            duration: 1.0,
            segments: (0..3)
                .map(|i| TraceSegment {
                    kind: "database".into(),
                    name: format!("SELECT {i}"),
                    offset: 0.1 * i as f64,
                    duration: 0.2,
                })
                .collect(),
        };
        let svg = waterfall(&trace).into_string();
        assert!(svg.contains(r#"data-segments="3""#));
        assert_eq!(count(&svg, "rect class=\"segment\""), 3, "{svg}");
    }
}
