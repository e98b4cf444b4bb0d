//! How `kuroko sql` writes a result: an aligned table, CSV or JSON, row by
//! row as they come (a table once all are in).

use std::io::Write;

use rusqlite::types::ValueRef;

use super::Format;
use crate::histogram::Histogram;

/// Writes rows as they come: CSV and JSON at once; a table once all are
/// in (to align them), each cell cut to what the table shows.
pub(super) enum RowWriter<'a> {
    Table {
        columns: Vec<String>,
        rows: Vec<Vec<Cell>>,
        out: &'a mut dyn Write,
    },
    Csv(&'a mut dyn Write),
    Json {
        columns: Vec<String>,
        rows: u64,
        out: &'a mut dyn Write,
    },
}

impl<'a> RowWriter<'a> {
    pub(super) fn new(format: Format, columns: &[String], out: &'a mut dyn Write) -> std::io::Result<Self> {
        let columns = columns.to_vec();
        Ok(match format {
            Format::Table => RowWriter::Table {
                columns,
                rows: Vec::new(),
                out,
            },
            Format::Csv => {
                out.write_all(csv_line(columns.iter().map(String::as_str)).as_bytes())?;
                RowWriter::Csv(out)
            }
            Format::Json => RowWriter::Json { columns, rows: 0, out },
        })
    }

    pub(super) fn row(&mut self, cells: Vec<Cell>) -> std::io::Result<()> {
        match self {
            RowWriter::Table { rows, .. } => rows.push(cells.into_iter().map(Cell::shown).collect()),
            RowWriter::Csv(out) => out.write_all(
                csv_line(
                    cells
                        .iter()
                        .map(|c| c.plain())
                        .collect::<Vec<_>>()
                        .iter()
                        .map(String::as_str),
                )
                .as_bytes(),
            )?,
            RowWriter::Json { columns, rows, out } => {
                out.write_all(if *rows == 0 { b"[\n" } else { b",\n" })?;
                out.write_all(json_object(columns, &cells).as_bytes())?;
                *rows += 1;
            }
        }
        Ok(())
    }

    pub(super) fn finish(self) -> std::io::Result<()> {
        match self {
            RowWriter::Table { columns, rows, out } => out.write_all(table(&columns, &rows).as_bytes())?,
            RowWriter::Csv(out) => out.flush()?,
            RowWriter::Json { rows: 0, out, .. } => out.write_all(b"[]\n")?,
            RowWriter::Json { out, .. } => out.write_all(b"\n]\n")?,
        }
        Ok(())
    }
}

/// One value of a result row, owned.
pub(super) enum Cell {
    Null,
    Integer(i64),
    Real(f64),
    Text(String),
    Blob(Vec<u8>),
}

impl From<ValueRef<'_>> for Cell {
    fn from(value: ValueRef<'_>) -> Self {
        match value {
            ValueRef::Null => Cell::Null,
            ValueRef::Integer(i) => Cell::Integer(i),
            ValueRef::Real(r) => Cell::Real(r),
            ValueRef::Text(t) => Cell::Text(String::from_utf8_lossy(t).into_owned()),
            ValueRef::Blob(b) => Cell::Blob(b.to_vec()),
        }
    }
}

impl Cell {
    fn is_number(&self) -> bool {
        matches!(self, Cell::Integer(_) | Cell::Real(_))
    }

    /// As CSV and JSON text show it (reals at full precision).
    fn plain(&self) -> String {
        match self {
            Cell::Null => String::new(),
            Cell::Integer(i) => i.to_string(),
            Cell::Real(r) => r.to_string(),
            Cell::Text(t) => t.clone(),
            Cell::Blob(b) => blob_label(b),
        }
    }

    /// The cell as a table keeps it: text cut past what it shows, a blob
    /// as its label.
    fn shown(self) -> Cell {
        match self {
            Cell::Text(text) if text.len() > MAX_WIDTH * 4 => Cell::Text(text.chars().take(MAX_WIDTH + 1).collect()),
            Cell::Blob(blob) => Cell::Text(blob_label(&blob)),
            other => other,
        }
    }

    /// As the table shows it (reals to 6 significant digits).
    fn short(&self) -> String {
        match self {
            Cell::Real(r) => short_real(*r),
            other => other.plain(),
        }
    }
}

/// A histogram blob as `<histogram n=…>`, any other as its length.
fn blob_label(blob: &[u8]) -> String {
    match Histogram::from_blob(blob) {
        Ok(h) if h.estimated => format!("<histogram n={} estimated>", h.count),
        Ok(h) => format!("<histogram n={}>", h.count),
        Err(_) => format!("<blob {} bytes>", blob.len()),
    }
}

fn short_real(value: f64) -> String {
    if !value.is_finite() || value == 0.0 {
        return value.to_string();
    }
    let magnitude = value.abs().log10().floor() as i32;
    if !(-4..15).contains(&magnitude) {
        return format!("{value:.5e}");
    }
    let decimals = usize::try_from(5 - magnitude).unwrap_or(0);
    let text = format!("{value:.decimals$}");
    if text.contains('.') {
        text.trim_end_matches('0').trim_end_matches('.').to_owned()
    } else {
        text
    }
}

/// Widest a table column gets; longer values are cut with `…`.
const MAX_WIDTH: usize = 60;

fn table(columns: &[String], rows: &[Vec<Cell>]) -> String {
    let shown: Vec<Vec<String>> = rows
        .iter()
        .map(|row| {
            row.iter()
                .map(|cell| {
                    let text = cell.short().replace(['\n', '\r', '\t'], " ");
                    if text.chars().count() > MAX_WIDTH {
                        text.chars().take(MAX_WIDTH - 1).chain(['…']).collect()
                    } else {
                        text
                    }
                })
                .collect()
        })
        .collect();
    let widths: Vec<usize> = (0..columns.len())
        .map(|c| {
            shown
                .iter()
                .map(|row| row[c].chars().count())
                .chain([columns[c].chars().count()])
                .max()
                .unwrap_or(0)
        })
        .collect();
    let numeric: Vec<bool> = (0..columns.len())
        .map(|c| {
            rows.iter().any(|row| row[c].is_number())
                && rows
                    .iter()
                    .all(|row| row[c].is_number() || matches!(row[c], Cell::Null))
        })
        .collect();
    let line = |cells: &[String]| -> String {
        let padded: Vec<String> = cells
            .iter()
            .enumerate()
            .map(|(c, text)| {
                let pad = widths[c].saturating_sub(text.chars().count());
                if numeric[c] {
                    format!("{}{text}", " ".repeat(pad))
                } else {
                    format!("{text}{}", " ".repeat(pad))
                }
            })
            .collect();
        padded.join("  ").trim_end().to_owned() + "\n"
    };
    let mut out = line(columns);
    out += &line(&widths.iter().map(|w| "-".repeat(*w)).collect::<Vec<_>>());
    for row in &shown {
        out += &line(row);
    }
    out += &match rows.len() {
        1 => "(1 row)\n".to_owned(),
        n => format!("({n} rows)\n"),
    };
    out
}

/// One CSV line of `fields`, quoted where they must be.
fn csv_line<'a>(fields: impl Iterator<Item = &'a str>) -> String {
    let field = |text: &str| -> String {
        if text.contains([',', '"', '\n', '\r']) {
            format!("\"{}\"", text.replace('"', "\"\""))
        } else {
            text.to_owned()
        }
    };
    fields.map(field).collect::<Vec<_>>().join(",") + "\n"
}

#[cfg(test)]
fn csv(columns: &[String], rows: &[Vec<Cell>]) -> String {
    let mut out = csv_line(columns.iter().map(String::as_str));
    for row in rows {
        let plain: Vec<String> = row.iter().map(Cell::plain).collect();
        out += &csv_line(plain.iter().map(String::as_str));
    }
    out
}

/// One row as a JSON object, columns in query order, indented for the array.
fn json_object(columns: &[String], row: &[Cell]) -> String {
    let fields: Vec<String> = columns
        .iter()
        .zip(row)
        .map(|(name, cell)| {
            let value = match cell {
                Cell::Null => serde_json::Value::Null,
                Cell::Integer(i) => serde_json::Value::from(*i),
                // Not finite: null, as JSON has no such numbers.
                Cell::Real(r) => serde_json::Number::from_f64(*r).map_or(serde_json::Value::Null, Into::into),
                other => serde_json::Value::String(other.plain()),
            };
            format!("{}:{value}", serde_json::Value::String(name.clone()))
        })
        .collect();
    format!("  {{{}}}", fields.join(","))
}

#[cfg(test)]
fn json(columns: &[String], rows: &[Vec<Cell>]) -> String {
    if rows.is_empty() {
        return "[]\n".to_owned();
    }
    let objects: Vec<String> = rows.iter().map(|row| json_object(columns, row)).collect();
    format!("[\n{}\n]\n", objects.join(",\n"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tables_align_numbers_right_and_cut_long_text() {
        let columns = vec!["txn".to_owned(), "p95".to_owned()];
        let rows = vec![
            vec![Cell::Text("GET /a".into()), Cell::Real(0.123_456_789)],
            vec![Cell::Text("x".repeat(100)), Cell::Real(12.5)],
        ];
        let out = table(&columns, &rows);
        let lines: Vec<&str> = out.lines().collect();
        assert!(lines[2].ends_with(" 0.123457"), "{out}");
        assert!(lines[3].ends_with("    12.5"), "{out}");
        assert!(lines[3].contains('…') && lines[3].chars().count() < 80, "{out}");
        assert_eq!(lines[4], "(2 rows)");
    }

    #[test]
    fn csv_and_json_quote_what_they_must() {
        let columns = vec!["a".to_owned(), "b".to_owned()];
        let rows = vec![vec![Cell::Text("x, \"y\"".into()), Cell::Real(f64::NAN)]];
        assert_eq!(csv(&columns, &rows), "a,b\n\"x, \"\"y\"\"\",NaN\n");
        assert_eq!(json(&columns, &rows), "[\n  {\"a\":\"x, \\\"y\\\"\",\"b\":null}\n]\n");
    }
}
