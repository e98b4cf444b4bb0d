//! The weekly report's charts: a feature's daily average and p95, drawn with
//! `plotters` into an RGB buffer and encoded as PNG.
//!
//! PNG because Gmail and Outlook for Windows show no SVG in mail. The labels
//! are drawn with DejaVu Sans embedded in the binary
//! (`reporter/assets/fonts/`, Bitstream Vera licence beside it) through
//! plotters' `ab_glyph` backend, so rendering needs no system font lookup
//! (no fontconfig) and draws the same on every machine.

use std::sync::OnceLock;

use plotters::prelude::*;
use plotters::style::text_anchor::{HPos, Pos, VPos};
use plotters::style::{register_font, FontStyle};

use super::weekly::{ChartDeploy, DailyPoint, WeeklyReport};
use crate::format;

/// Width of a chart in pixels.
pub(crate) const CHART_WIDTH: u32 = 600;
/// Height of a chart in pixels.
pub(crate) const CHART_HEIGHT: u32 = 240;

const FONT_BYTES: &[u8] = include_bytes!("../../assets/fonts/DejaVuSans.ttf");
/// The family the embedded font is registered as: plotters' default.
const FONT: &str = "sans-serif";
const AVG_COLOR: RGBColor = RGBColor(0x09, 0x69, 0xda);
const P95_COLOR: RGBColor = RGBColor(0xbc, 0x4c, 0x00);
const GRID_COLOR: RGBColor = RGBColor(0xea, 0xee, 0xf2);
const AXIS_COLOR: RGBColor = RGBColor(0x59, 0x63, 0x6e);
/// A deploy's dashed line and label: the web UI's marker grey.
const DEPLOY_COLOR: RGBColor = RGBColor(0x6b, 0x72, 0x80);
/// Longest chart title, in characters; the HTML carries the full name.
const MAX_TITLE_CHARS: usize = 70;

/// Why a chart could not be drawn.
#[derive(Debug, thiserror::Error)]
pub enum ChartError {
    /// Every day lacks values: nothing to draw.
    #[error("no day has a value to chart")]
    NoData,
    /// The embedded font could not be loaded.
    #[error("the embedded chart font could not be loaded")]
    Font,
    /// Plotters failed while drawing.
    #[error("drawing the chart: {0}")]
    Draw(String),
    /// The PNG encoder failed.
    #[error("encoding the chart as PNG: {0}")]
    Encode(#[from] png::EncodingError),
}

/// A rendered chart and how the message refers to it.
#[derive(Clone, Debug, PartialEq)]
pub struct ChartRef {
    /// The feature it belongs to ([`super::weekly::FeatureRow::name`]).
    pub feature: String,
    /// Its MIME Content-ID, without angle brackets; the HTML says `cid:<this>`.
    pub content_id: String,
    /// Its file name in a preview directory and in the message: letters,
    /// digits, `-`, `_` and `.` only.
    pub file_name: String,
    /// The PNG image.
    pub png: Vec<u8>,
}

fn draw_error(error: impl std::fmt::Display) -> ChartError {
    ChartError::Draw(error.to_string())
}

fn ensure_font() -> Result<(), ChartError> {
    static REGISTERED: OnceLock<bool> = OnceLock::new();
    let ok = *REGISTERED.get_or_init(|| register_font(FONT, FontStyle::Normal, FONT_BYTES).is_ok());
    if ok {
        Ok(())
    } else {
        Err(ChartError::Font)
    }
}

/// The runs of consecutive days that have a value: a day without runs breaks
/// the line instead of pretending the value fell to zero.
fn segments(points: &[DailyPoint], value: impl Fn(&DailyPoint) -> Option<f64>) -> Vec<Vec<(i32, f64)>> {
    let mut out: Vec<Vec<(i32, f64)>> = Vec::new();
    let mut current = Vec::new();
    for (i, point) in points.iter().enumerate() {
        match value(point).filter(|v| v.is_finite()) {
            Some(v) => current.push((i32::try_from(i).unwrap_or(i32::MAX), v)),
            None if !current.is_empty() => out.push(std::mem::take(&mut current)),
            None => {}
        }
    }
    if !current.is_empty() {
        out.push(current);
    }
    out
}

/// A `CHART_WIDTH` × `CHART_HEIGHT` PNG of `points`' daily average and p95,
/// with a title, a day axis, a duration axis, a legend, and `deploys` as
/// labelled dashed vertical lines on their days (as the web UI marks them).
pub(crate) fn daily_chart_png(
    title: &str,
    points: &[DailyPoint],
    deploys: &[ChartDeploy],
) -> Result<Vec<u8>, ChartError> {
    let avg = segments(points, |p| p.avg_s);
    let p95 = segments(points, |p| p.p95_s);
    let max = avg
        .iter()
        .chain(&p95)
        .flatten()
        .map(|&(_, v)| v)
        .fold(None, |m: Option<f64>, v| Some(m.map_or(v, |m| m.max(v))))
        .ok_or(ChartError::NoData)?;
    ensure_font()?;
    let title: String = title.chars().map(|c| if c.is_control() { ' ' } else { c }).collect();
    let title = match title.char_indices().nth(MAX_TITLE_CHARS) {
        Some((end, _)) => format!("{}…", &title[..end]),
        None => title,
    };
    let y_max = if max > 0.0 { max * 1.15 } else { 1.0 };
    let last_day = i32::try_from(points.len().saturating_sub(1)).unwrap_or(i32::MAX).max(1);

    let mut rgb = vec![0u8; CHART_WIDTH as usize * CHART_HEIGHT as usize * 3];
    {
        let root =
            BitMapBackend::<plotters::backend::RGBPixel>::with_buffer_and_format(&mut rgb, (CHART_WIDTH, CHART_HEIGHT))
                .map_err(draw_error)?
                .into_drawing_area();
        root.fill(&WHITE).map_err(draw_error)?;
        let mut chart = ChartBuilder::on(&root)
            .caption(title, (FONT, 15).into_font().color(&BLACK))
            .margin(8)
            .x_label_area_size(26)
            .y_label_area_size(64)
            .build_cartesian_2d(0..last_day, 0f64..y_max)
            .map_err(draw_error)?;
        let day_label = |x: &i32| {
            usize::try_from(*x)
                .ok()
                .and_then(|i| points.get(i))
                .map_or_else(String::new, |p| p.day.clone())
        };
        let duration_label = |y: &f64| {
            if *y == 0.0 {
                "0".to_owned()
            } else {
                format::duration(*y)
            }
        };
        chart
            .configure_mesh()
            .disable_x_mesh()
            .light_line_style(WHITE)
            .bold_line_style(GRID_COLOR)
            .axis_style(AXIS_COLOR)
            .x_labels(points.len().clamp(2, 8))
            .x_label_formatter(&day_label)
            .y_labels(5)
            .y_label_formatter(&duration_label)
            .label_style((FONT, 11).into_font().color(&AXIS_COLOR))
            .draw()
            .map_err(draw_error)?;
        // Deploys: a dashed line behind the series, and its label above
        // the day axis (the legend holds the top left), on top of them.
        let deploys: Vec<(i32, &ChartDeploy)> = deploys
            .iter()
            .filter(|d| d.day < points.len())
            .map(|d| (i32::try_from(d.day).unwrap_or(i32::MAX), d))
            .collect();
        for &(day, _) in &deploys {
            chart
                .draw_series(DashedLineSeries::new(
                    [(day, 0.0), (day, y_max)],
                    5,
                    4,
                    DEPLOY_COLOR.stroke_width(1),
                ))
                .map_err(draw_error)?;
        }
        for (name, runs, color) in [("p95", &p95, P95_COLOR), ("average", &avg, AVG_COLOR)] {
            let line = color.stroke_width(2);
            for (i, run) in runs.iter().enumerate() {
                let series = chart
                    .draw_series(LineSeries::new(run.iter().copied(), line))
                    .map_err(draw_error)?;
                if i == 0 {
                    series
                        .label(name)
                        .legend(move |(x, y)| PathElement::new([(x, y), (x + 16, y)], color.stroke_width(2)));
                }
                chart
                    .draw_series(run.iter().map(|&point| Circle::new(point, 2, color.filled())))
                    .map_err(draw_error)?;
            }
        }
        for &(day, deploy) in &deploys {
            // Beside its line, on its left past the chart's middle.
            let left = day * 2 > last_day;
            let anchor = if left { HPos::Right } else { HPos::Left };
            let style = (FONT, 11)
                .into_font()
                .color(&DEPLOY_COLOR)
                .pos(Pos::new(anchor, VPos::Bottom));
            let label: String = deploy.label.chars().filter(|c| !c.is_control()).take(40).collect();
            chart
                .plotting_area()
                .draw(&(EmptyElement::at((day, 0.0)) + Text::new(label, (if left { -4 } else { 4 }, -3), style)))
                .map_err(draw_error)?;
        }
        chart
            .configure_series_labels()
            .position(SeriesLabelPosition::UpperLeft)
            .background_style(WHITE.mix(0.85))
            .border_style(GRID_COLOR)
            .label_font((FONT, 11).into_font().color(&BLACK))
            .draw()
            .map_err(draw_error)?;
        root.present().map_err(draw_error)?;
    }

    let mut png_bytes = Vec::with_capacity(32 * 1024);
    let mut encoder = png::Encoder::new(&mut png_bytes, CHART_WIDTH, CHART_HEIGHT);
    encoder.set_color(png::ColorType::Rgb);
    encoder.set_depth(png::BitDepth::Eight);
    let mut writer = encoder.write_header()?;
    writer.write_image_data(&rgb)?;
    writer.finish()?;
    Ok(png_bytes)
}

/// One chart per feature that has daily values, in the report's order, with
/// Content-IDs and file names of Kuroko's own making (`chart-N`), never
/// derived from a feature's name. Features without any value get no chart.
pub fn render_charts(report: &WeeklyReport) -> Result<Vec<ChartRef>, ChartError> {
    let mut charts = Vec::new();
    for (i, feature) in report.features.iter().enumerate() {
        let title = format!("{}: daily average and p95", feature.name);
        let png = match daily_chart_png(&title, &feature.daily, &feature.deploys) {
            Ok(png) => png,
            Err(ChartError::NoData) => continue,
            Err(e) => return Err(e),
        };
        charts.push(ChartRef {
            feature: feature.name.clone(),
            content_id: format!("chart-{i}@kuroko"),
            file_name: format!("chart-{i}.png"),
            png,
        });
    }
    Ok(charts)
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use super::*;
    use crate::report::weekly::tests::sample;

    fn decode(png_bytes: &[u8]) -> (png::OutputInfo, Vec<u8>) {
        let mut reader = png::Decoder::new(std::io::Cursor::new(png_bytes)).read_info().unwrap();
        let mut pixels = vec![0; reader.output_buffer_size().unwrap()];
        let info = reader.next_frame(&mut pixels).unwrap();
        pixels.truncate(info.buffer_size());
        (info, pixels)
    }

    fn has_color(pixels: &[u8], color: RGBColor) -> bool {
        pixels.chunks_exact(3).any(|p| p == [color.0, color.1, color.2])
    }

    #[test]
    fn draws_both_lines_into_a_png_of_the_promised_size() {
        let report = sample();
        let png_bytes = daily_chart_png("checkout", &report.features[0].daily, &[]).unwrap();
        assert_eq!(&png_bytes[..8], b"\x89PNG\r\n\x1a\n");
        let (info, pixels) = decode(&png_bytes);
        assert_eq!((info.width, info.height), (CHART_WIDTH, CHART_HEIGHT));
        assert!(has_color(&pixels, AVG_COLOR), "no average line");
        assert!(has_color(&pixels, P95_COLOR), "no p95 line");
        // Text was drawn: black pixels from the title and legend.
        assert!(has_color(&pixels, BLACK), "no text");
        assert!(!has_color(&pixels, DEPLOY_COLOR), "no deploy, no marker");
    }

    #[test]
    fn a_deploy_is_a_dashed_line_on_its_day() {
        let daily = &sample().features[0].daily;
        let deploys = [ChartDeploy {
            day: 3,
            label: "shop 1.1".into(),
        }];
        let (_, pixels) = decode(&daily_chart_png("checkout", daily, &deploys).unwrap());
        let width = CHART_WIDTH as usize;
        let marked: Vec<(usize, usize)> = pixels
            .chunks_exact(3)
            .enumerate()
            .filter(|(_, p)| *p == [DEPLOY_COLOR.0, DEPLOY_COLOR.1, DEPLOY_COLOR.2])
            .map(|(i, _)| (i % width, i / width))
            .collect();
        // A vertical line: one column holds most of its pixels, dashed so
        // not the whole height; the label's pixels are the rest.
        let mut columns: BTreeMap<usize, usize> = BTreeMap::new();
        for (x, _) in &marked {
            *columns.entry(*x).or_default() += 1;
        }
        let (&column, &tall) = columns.iter().max_by_key(|(_, n)| **n).unwrap();
        assert!(
            tall > 60 && tall < CHART_HEIGHT as usize - 40,
            "a dashed line {tall} px tall"
        );
        // On the fourth of the days: a fraction of the plot's width in.
        let fraction = column as f64 / f64::from(CHART_WIDTH);
        let expected = 3.0 / (daily.len() - 1) as f64;
        assert!((fraction - expected).abs() < 0.2, "at {fraction:.2} of the width");
        // Its label at its foot, above the day axis, on its right (the
        // first half of the chart).
        let foot = marked
            .iter()
            .filter(|(x, _)| *x == column)
            .map(|(_, y)| *y)
            .max()
            .unwrap();
        let inked = (foot - 16..foot - 1)
            .flat_map(|y| (column + 3..column + 40).map(move |x| (y * width + x) * 3))
            .filter(|&i| pixels[i..i + 3].iter().all(|c| *c < 200))
            .count();
        assert!(inked > 10, "a label beside the line's foot ({inked} dark pixels)");
        // A deploy past the chart's days is not drawn.
        let outside = [ChartDeploy {
            day: daily.len(),
            label: "shop 1.2".into(),
        }];
        let (_, pixels) = decode(&daily_chart_png("checkout", daily, &outside).unwrap());
        assert!(!has_color(&pixels, DEPLOY_COLOR));
    }

    #[test]
    fn a_chart_without_values_is_refused_and_skipped() {
        let empty = vec![
            DailyPoint {
                day: "03-01".into(),
                avg_s: None,
                p95_s: None
            };
            7
        ];
        assert!(matches!(daily_chart_png("x", &empty, &[]), Err(ChartError::NoData)));
        assert!(matches!(daily_chart_png("x", &[], &[]), Err(ChartError::NoData)));
        let mut report = sample();
        report.features[0].daily = empty;
        assert!(render_charts(&report).unwrap().is_empty());
    }

    #[test]
    fn one_day_and_a_gap_still_draw() {
        let one = [DailyPoint {
            day: "03-01".into(),
            avg_s: Some(0.2),
            p95_s: Some(0.0),
        }];
        let (_, pixels) = decode(&daily_chart_png("one day", &one, &[]).unwrap());
        assert!(has_color(&pixels, AVG_COLOR));
        let runs = segments(&sample().features[0].daily, |p| p.avg_s);
        assert_eq!(runs.iter().map(Vec::len).collect::<Vec<_>>(), [5, 8]);
    }
}
