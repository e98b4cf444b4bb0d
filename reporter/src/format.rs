//! Numbers, durations and times as people read them: one way to write each,
//! used by every place a person reads one — the web UI, the email and digest,
//! chat messages, alerts and `kuroko query`'s tables.
//!
//! JSON and CSV carry the raw numbers (seconds, ratios from 0 to 1, unix
//! minutes); only what is shown goes through here. A value that cannot be
//! shown (NaN, infinite, absent) reads [`NONE`].
//!
//! [`url_component`] is here too: it writes a value into a link's path or
//! query, the one percent-encoding every link the reporter builds uses.

use percent_encoding::{utf8_percent_encode, AsciiSet, NON_ALPHANUMERIC};

/// What a missing or unshowable value reads: an en dash.
pub(crate) const NONE: &str = "–";

/// A duration: `850 µs`, `4.2 ms`, `120 ms`, `1.25 s`, `42.0 s`,
/// `2 min 5 s`, `1 h 20 min`, `3 d 4 h`; `0 s` for zero, a leading `-` for
/// a negative one.
pub fn duration(seconds: f64) -> String {
    if !seconds.is_finite() {
        return NONE.to_owned();
    }
    if seconds < 0.0 {
        return format!("-{}", duration(-seconds));
    }
    if seconds == 0.0 {
        return "0 s".to_owned();
    }
    let ms = seconds * 1e3;
    if ms < 0.9995 {
        format!("{:.0} µs", seconds * 1e6)
    } else if ms < 9.95 {
        format!("{ms:.1} ms")
    } else if ms < 999.5 {
        format!("{ms:.0} ms")
    } else if seconds < 9.995 {
        format!("{seconds:.2} s")
    } else if seconds < 59.95 {
        format!("{seconds:.1} s")
    } else if seconds < 3599.5 {
        let total = seconds.round() as u64;
        format!("{} min {} s", total / 60, total % 60)
    } else if seconds < 86_370.0 {
        let minutes = (seconds / 60.0).round() as u64;
        format!("{} h {} min", minutes / 60, minutes % 60)
    } else {
        let hours = (seconds / 3600.0).round() as u64;
        format!("{} d {} h", hours / 24, hours % 24)
    }
}

/// Time gained or lost: [`duration`] with its sign, `+2 min 5 s`, `-42.0 s`.
pub(crate) fn signed_duration(seconds: f64) -> String {
    if seconds < 0.0 {
        duration(seconds)
    } else {
        format!("+{}", duration(seconds))
    }
}

/// A percentile, marked `≈` when it is an estimate (an SDK's explicit buckets).
pub fn percentile(seconds: f64, estimated: bool) -> String {
    if estimated {
        format!("≈{}", duration(seconds))
    } else {
        duration(seconds)
    }
}

/// A relative change (0.31 is +31%): `+31%`, `-4.2%`, `±0%`; [`NONE`] when unknown.
pub fn change(change: Option<f64>) -> String {
    match change {
        Some(c) if c.is_finite() => {
            let percent = c * 100.0;
            if percent.abs() < 0.05 {
                "±0%".to_owned()
            } else if percent.abs() < 9.95 {
                format!("{percent:+.1}%")
            } else {
                format!("{percent:+.0}%")
            }
        }
        _ => NONE.to_owned(),
    }
}

/// A share or rate from 0 to 1 as a percentage: `0%`, `0.12%`, `4.5%`, `31%`.
pub fn percent(ratio: f64) -> String {
    let percent = ratio * 100.0;
    if !percent.is_finite() {
        NONE.to_owned()
    } else if percent == 0.0 {
        "0%".to_owned()
    } else if percent.abs() < 0.995 {
        format!("{percent:.2}%")
    } else if percent.abs() < 9.95 {
        format!("{percent:.1}%")
    } else {
        format!("{percent:.0}%")
    }
}

/// Runs per minute: `0.05/min`, `12.3/min`, `840/min`, `12.5k/min`.
pub fn rate(per_min: f64) -> String {
    if !per_min.is_finite() || per_min < 0.0 {
        NONE.to_owned()
    } else if per_min < 1.0 {
        format!("{per_min:.2}/min")
    } else if per_min < 99.95 {
        format!("{per_min:.1}/min")
    } else if per_min < 9999.5 {
        format!("{per_min:.0}/min")
    } else {
        format!("{:.1}k/min", per_min / 1e3)
    }
}

/// A count with thousands separators: `12,345`.
pub fn count(count: u64) -> String {
    group_thousands(&count.to_string())
}

/// A number rounded to a whole one, with thousands separators: `-12,345`.
pub fn thousands(value: f64) -> String {
    if !value.is_finite() {
        return NONE.to_owned();
    }
    let whole = value.abs().round();
    let digits = if whole < 1e18 {
        (whole as u64).to_string()
    } else {
        format!("{whole:.0}")
    };
    let sign = if value < 0.0 && whole > 0.0 { "-" } else { "" };
    format!("{sign}{}", group_thousands(&digits))
}

/// `digits` (ASCII digits only) with a comma between groups of three.
fn group_thousands(digits: &str) -> String {
    let mut out = String::with_capacity(digits.len() + digits.len() / 3);
    for (i, c) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(c);
    }
    out
}

/// A plain number (runs per run, a rate without unit): whole numbers and
/// anything from 100 up as [`thousands`], else three significant digits
/// (`0.94`, `12.3`).
pub fn number(value: f64) -> String {
    let magnitude = value.abs();
    if !value.is_finite() {
        NONE.to_owned()
    } else if magnitude >= 100.0 || value.fract() == 0.0 {
        thousands(value)
    } else if magnitude >= 10.0 {
        format!("{value:.1}")
    } else {
        format!("{value:.2}")
    }
}

/// An Apdex score (0 to 1): `0.94`; [`NONE`] when no threshold applies.
pub fn apdex(apdex: Option<f64>) -> String {
    match apdex {
        Some(a) if a.is_finite() => format!("{a:.2}"),
        _ => NONE.to_owned(),
    }
}

/// A change of an Apdex score, in points: `+0.03`, `-0.10`, `±0`.
pub fn apdex_change(change: Option<f64>) -> String {
    match change {
        Some(c) if c.is_finite() && c.abs() >= 0.005 => format!("{c:+.2}"),
        Some(c) if c.is_finite() => "±0".to_owned(),
        _ => NONE.to_owned(),
    }
}

/// A q-value (a p-value adjusted for many comparisons): `q = 0.004`, `q < 0.001`.
pub fn q_value(q: f64) -> String {
    p_value(q).replacen('p', "q", 1)
}

/// A test's p-value: `p = 0.004`, `p < 0.001`.
pub fn p_value(p: f64) -> String {
    if p < 0.001 {
        "p < 0.001".to_owned()
    } else {
        format!("p = {p:.3}")
    }
}

/// A unix minute as UTC time written by `pattern` (strftime, e.g. `%H:%M`);
/// empty when out of range.
pub fn utc(minute: i64, pattern: &str) -> String {
    jiff::Timestamp::from_second(minute.saturating_mul(60))
        .map(|t| t.strftime(pattern).to_string())
        .unwrap_or_default()
}

/// A unix minute as UTC time: `2026-03-09 14:05`; empty when out of range.
pub fn minute(minute: i64) -> String {
    utc(minute, "%Y-%m-%d %H:%M")
}

/// Unix nanoseconds as UTC time to the second: `2026-03-09 14:05:09`;
/// empty when out of range.
pub fn nanos(nanos: u64) -> String {
    jiff::Timestamp::from_nanosecond(i128::from(nanos))
        .map(|t| t.strftime("%Y-%m-%d %H:%M:%S").to_string())
        .unwrap_or_default()
}

/// What stays as it is in a URL component: RFC 3986's unreserved characters.
const UNRESERVED: &AsciiSet = &NON_ALPHANUMERIC.remove(b'-').remove(b'.').remove(b'_').remove(b'~');

/// `text` percent-encoded for one path segment or query value: all but
/// `A-Z a-z 0-9 - . _ ~` as `%XX` of its UTF-8 bytes.
pub(crate) fn url_component(text: &str) -> String {
    utf8_percent_encode(text, UNRESERVED).to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_read_as_people_write_them() {
        let cases = [
            (0.0, "0 s"),
            (0.00085, "850 µs"),
            (0.0042, "4.2 ms"),
            (0.0123, "12 ms"),
            (0.12, "120 ms"),
            (0.9996, "1.00 s"),
            (1.2404, "1.24 s"),
            (42.0, "42.0 s"),
            (125.0, "2 min 5 s"),
            (150.0, "2 min 30 s"),
            (4800.0, "1 h 20 min"),
            (86_369.0, "23 h 59 min"),
            (86_370.0, "1 d 0 h"),
            (183_600.0, "2 d 3 h"),
            (-42.0, "-42.0 s"),
            (f64::NAN, "–"),
        ];
        for (seconds, expected) in cases {
            assert_eq!(duration(seconds), expected, "{seconds}");
        }
        assert_eq!(signed_duration(125.0), "+2 min 5 s");
        assert_eq!(signed_duration(-0.5), "-500 ms");
        assert_eq!(percentile(0.25, true), "≈250 ms");
    }

    #[test]
    fn numbers_read_easily() {
        assert_eq!(change(Some(0.31)), "+31%");
        assert_eq!(change(Some(-0.042)), "-4.2%");
        assert_eq!(change(Some(0.0001)), "±0%");
        assert_eq!(change(None), "–");
        assert_eq!(percent(0.5), "50%");
        assert_eq!(percent(0.045), "4.5%");
        assert_eq!(percent(0.0004), "0.04%");
        assert_eq!(percent(0.0), "0%");
        assert_eq!(count(1_234_567), "1,234,567");
        assert_eq!(count(999), "999");
        assert_eq!(thousands(1_234_567.4), "1,234,567");
        assert_eq!(thousands(-1234.0), "-1,234");
        assert_eq!(thousands(-0.2), "0");
        assert_eq!(rate(12.34), "12.3/min");
        assert_eq!(rate(12_500.0), "12.5k/min");
        assert_eq!(number(0.94), "0.94");
        assert_eq!(number(12.34), "12.3");
        assert_eq!(number(5.0), "5");
        assert_eq!(number(1234.5), "1,235");
        assert_eq!(apdex(Some(0.941)), "0.94");
        assert_eq!(apdex_change(Some(-0.03)), "-0.03");
        assert_eq!(apdex_change(Some(0.001)), "±0");
        assert_eq!(p_value(0.0004), "p < 0.001");
        assert_eq!(p_value(0.004), "p = 0.004");
    }

    #[test]
    fn times_are_utc() {
        assert_eq!(minute(60), "1970-01-01 01:00");
        assert_eq!(nanos(61_500_000_000), "1970-01-01 00:01:01");
        assert_eq!(utc(0, "%H:%M"), "00:00");
        assert_eq!(minute(i64::MAX), "");
    }

    #[test]
    fn url_components_keep_only_unreserved_characters() {
        assert_eq!(url_component("a-Z_0.~"), "a-Z_0.~");
        assert_eq!(
            url_component("<script>alert(1)</script> & \"q\""),
            "%3Cscript%3Ealert%281%29%3C%2Fscript%3E%20%26%20%22q%22"
        );
        assert_eq!(url_component("é/?"), "%C3%A9%2F%3F");
    }
}
