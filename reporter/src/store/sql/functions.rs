//! The `hist_*` SQL functions and `label_value` that `kuroko sql` registers:
//! they merge the stored histogram rows and read percentiles, means and
//! shares from them, and never panic on what a query hands them.

use rusqlite::functions::{Aggregate, Context, FunctionFlags};
use rusqlite::types::ValueRef;
use rusqlite::Connection;

use crate::histogram::{Histogram, StoredParts};

/// Registers the `hist_*` functions and `label_value` on `connection`.
pub fn register_functions(connection: &Connection) -> rusqlite::Result<()> {
    let flags = FunctionFlags::SQLITE_UTF8 | FunctionFlags::SQLITE_DETERMINISTIC;
    connection.create_aggregate_function("hist_merge", 9, flags, HistMerge)?;
    connection.create_aggregate_function("hist_merge", 1, flags, HistMerge)?;
    connection.create_scalar_function("hist_quantile", 2, flags, |ctx| {
        let Some(h) = histogram_arg(ctx, "hist_quantile", 0)? else {
            return Ok(None);
        };
        let Some(q) = number_arg(ctx, "hist_quantile", 1, "q")? else {
            return Ok(None);
        };
        if !(0.0..=1.0).contains(&q) {
            return Err(fail(format!(
                "hist_quantile: q must be between 0 and 1 (0.95 for p95), got {q}"
            )));
        }
        Ok(Some(h.quantile(q)))
    })?;
    connection.create_scalar_function("hist_count", 1, flags, |ctx| {
        Ok(histogram_arg(ctx, "hist_count", 0)?.map(|h| i64::try_from(h.count).unwrap_or(i64::MAX)))
    })?;
    type Read = fn(&Histogram) -> f64;
    let reads: [(&str, Read); 5] = [
        ("hist_mean", Histogram::mean),
        ("hist_min", |h| if h.count == 0 { 0.0 } else { h.min }),
        ("hist_max", |h| h.max),
        ("hist_sum", |h| h.sum),
        ("hist_stddev", Histogram::stddev),
    ];
    for (name, read) in reads {
        connection.create_scalar_function(name, 1, flags, move |ctx| {
            Ok(histogram_arg(ctx, name, 0)?.map(|h| read(&h)))
        })?;
    }
    connection.create_scalar_function("hist_fraction_above", 2, flags, |ctx| {
        let Some(h) = histogram_arg(ctx, "hist_fraction_above", 0)? else {
            return Ok(None);
        };
        let Some(seconds) = number_arg(ctx, "hist_fraction_above", 1, "seconds")? else {
            return Ok(None);
        };
        if !seconds.is_finite() || seconds < 0.0 {
            return Err(fail(format!(
                "hist_fraction_above: seconds must be a finite number, 0 or more, got {seconds}"
            )));
        }
        Ok(Some(h.fraction_above(seconds)))
    })?;
    connection.create_scalar_function("label_value", 2, flags, |ctx| {
        let text = |index: usize| -> rusqlite::Result<Option<String>> {
            match ctx.get_raw(index) {
                ValueRef::Null => Ok(None),
                ValueRef::Text(t) => Ok(Some(String::from_utf8_lossy(t).into_owned())),
                other => Err(fail(format!(
                    "label_value: argument {} must be TEXT, got {}",
                    index + 1,
                    other.data_type()
                ))),
            }
        };
        let (Some(labels), Some(key)) = (text(0)?, text(1)?) else {
            return Ok(None);
        };
        Ok(label_value(&labels, &key))
    })?;
    Ok(())
}

/// The value of `key` in canonical `k=v,k=v` labels. A piece without `=`
/// belongs to the value before it (a value holding a comma).
fn label_value(labels: &str, key: &str) -> Option<String> {
    let mut found: Option<String> = None;
    let mut in_key = false;
    for piece in labels.split(',') {
        match piece.split_once('=') {
            Some((k, v)) => {
                if found.is_some() && in_key {
                    break;
                }
                in_key = k == key;
                if in_key {
                    found = Some(v.to_owned());
                }
            }
            None => {
                if let (true, Some(value)) = (in_key, found.as_mut()) {
                    value.push(',');
                    value.push_str(piece);
                }
            }
        }
    }
    found
}

fn fail(message: String) -> rusqlite::Error {
    rusqlite::Error::UserFunctionError(message.into())
}

/// Argument `index` as a histogram blob; `None` for NULL.
fn histogram_arg(ctx: &Context<'_>, function: &str, index: usize) -> rusqlite::Result<Option<Histogram>> {
    match ctx.get_raw(index) {
        ValueRef::Null => Ok(None),
        ValueRef::Blob(blob) => Histogram::from_blob(blob)
            .map(Some)
            .map_err(|e| fail(format!("{function}: argument {} is not a histogram: {e}", index + 1))),
        other => Err(fail(format!(
            "{function}: argument {} must be a histogram BLOB made by hist_merge, got {}",
            index + 1,
            other.data_type()
        ))),
    }
}

/// Argument `index` as a number; `None` for NULL.
fn number_arg(ctx: &Context<'_>, function: &str, index: usize, name: &str) -> rusqlite::Result<Option<f64>> {
    match ctx.get_raw(index) {
        ValueRef::Null => Ok(None),
        ValueRef::Integer(i) => Ok(Some(i as f64)),
        ValueRef::Real(r) => Ok(Some(r)),
        other => Err(fail(format!(
            "{function}: argument {} ({name}) must be a number, got {}",
            index + 1,
            other.data_type()
        ))),
    }
}

/// `hist_merge`: with nine arguments a histogram row's columns, with one a
/// blob of an earlier `hist_merge`; rows whose first argument is NULL are
/// skipped; no rows give NULL.
struct HistMerge;

impl HistMerge {
    /// The histogram a row's arguments describe, `None` to skip it.
    fn histogram(ctx: &Context<'_>) -> rusqlite::Result<Option<Histogram>> {
        if ctx.len() == 1 {
            return histogram_arg(ctx, "hist_merge", 0);
        }
        let names = [
            "count",
            "sum",
            "min",
            "max",
            "scale",
            "zero_count",
            "zero_threshold",
            "buckets",
            "estimated",
        ];
        let wrong = |index: usize, what: &str, got: ValueRef<'_>| {
            fail(format!(
                "hist_merge: argument {} ({}) must be {what}, got {}",
                index + 1,
                names[index],
                got.data_type()
            ))
        };
        let integer = |index: usize| -> rusqlite::Result<i64> {
            match ctx.get_raw(index) {
                ValueRef::Integer(i) => Ok(i),
                other => Err(wrong(index, "an INTEGER", other)),
            }
        };
        let count = |index: usize| -> rusqlite::Result<u64> {
            u64::try_from(integer(index)?).map_err(|_| {
                fail(format!(
                    "hist_merge: argument {} ({}) is negative",
                    index + 1,
                    names[index]
                ))
            })
        };
        let real = |index: usize| -> rusqlite::Result<f64> {
            match ctx.get_raw(index) {
                ValueRef::Integer(i) => Ok(i as f64),
                ValueRef::Real(r) => Ok(r),
                other => Err(wrong(index, "a number", other)),
            }
        };
        if matches!(ctx.get_raw(0), ValueRef::Null) {
            return Ok(None);
        }
        let buckets = match ctx.get_raw(7) {
            ValueRef::Blob(blob) => blob,
            other => return Err(wrong(7, "the buckets BLOB", other)),
        };
        let scale =
            i32::try_from(integer(4)?).map_err(|_| fail("hist_merge: argument 5 (scale) is out of range".into()))?;
        let parts = StoredParts {
            count: count(0)?,
            sum: real(1)?,
            min: real(2)?,
            max: real(3)?,
            scale,
            zero_count: count(5)?,
            zero_threshold: real(6)?,
            buckets,
            estimated: integer(8)? != 0,
        };
        Histogram::from_stored(parts)
            .map(Some)
            .map_err(|e| fail(format!("hist_merge: a row is not a histogram: {e}")))
    }
}

impl Aggregate<Option<Histogram>, Option<Vec<u8>>> for HistMerge {
    fn init(&self, _: &mut Context<'_>) -> rusqlite::Result<Option<Histogram>> {
        Ok(None)
    }

    fn step(&self, ctx: &mut Context<'_>, merged: &mut Option<Histogram>) -> rusqlite::Result<()> {
        let Some(histogram) = HistMerge::histogram(ctx)? else {
            return Ok(());
        };
        match merged {
            Some(total) => {
                // Adding counts that overflow would panic (or wrap): refuse.
                if total.count.checked_add(histogram.count).is_none() {
                    return Err(fail("hist_merge: the merged count overflows".into()));
                }
                total.merge(&histogram);
            }
            None => *merged = Some(histogram),
        }
        Ok(())
    }

    fn finalize(&self, _: &mut Context<'_>, merged: Option<Option<Histogram>>) -> rusqlite::Result<Option<Vec<u8>>> {
        Ok(merged.flatten().map(|h| h.to_blob()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn label_values_are_found_by_key_even_with_commas() {
        let labels = "kuroko.segment.kind=database,kuroko.segment.name=SELECT a, b FROM cards";
        assert_eq!(label_value(labels, "kuroko.segment.kind").as_deref(), Some("database"));
        assert_eq!(
            label_value(labels, "kuroko.segment.name").as_deref(),
            Some("SELECT a, b FROM cards")
        );
        assert_eq!(label_value(labels, "kuroko.outcome"), None);
    }
}
