//! A statement normalised, so that the same query with other values is the
//! same statement: `SELECT * FROM items WHERE id = 42 AND name = 'x'` →
//! `SELECT * FROM items WHERE id = ? AND name = ?`.
//!
//! A small hand-written scanner rather than a SQL parser: it must accept
//! whatever a span carries (any dialect, cut statements, URLs, span names
//! such as `SELECT report_rows`) and never fail. Quoted strings (`'…'`,
//! with `''` and `\'` inside), numbers (also `0x…`, decimals, exponents),
//! positional parameters (`$1`, `:name`, `@p1`) and `?` become `?`; a list
//! of placeholders (`IN (?, ?, ?)`, `VALUES (?, ?), (?, ?)`) becomes one;
//! runs of whitespace become one space. Double-quoted and backquoted
//! identifiers are kept. Digits inside a word (`table2`, `t1.id`) are part
//! of the word.
//!
//! A URL (`url.full`, `http.url`) keeps its host and path, numbers and ids in
//! the path become `?`, and the query string and fragment are dropped
//! ([`url()`]).

/// Bytes of a statement looked at; the rest is cut (a long `IN` list or a
/// bulk insert says nothing more).
pub(crate) const MAX_STATEMENT_BYTES: usize = 2048;

/// `text` with its literals replaced by `?`; see the [module documentation](self).
pub(crate) fn normalise(text: &str) -> String {
    let text = cut(text.trim(), MAX_STATEMENT_BYTES);
    let chars: Vec<char> = text.chars().collect();
    let mut out = String::with_capacity(text.len());
    let mut i = 0;
    // Whether the previous output character ends a word (so a digit after it is part of the word).
    let in_word = |out: &str| out.chars().last().is_some_and(|c| c.is_alphanumeric() || c == '_');
    while i < chars.len() {
        let c = chars[i];
        if c.is_whitespace() {
            while i < chars.len() && chars[i].is_whitespace() {
                i += 1;
            }
            if !out.is_empty() {
                out.push(' ');
            }
            continue;
        }
        if c == '\'' {
            i += 1;
            while i < chars.len() {
                match chars[i] {
                    '\\' => i += 2,
                    '\'' if chars.get(i + 1) == Some(&'\'') => i += 2,
                    '\'' => {
                        i += 1;
                        break;
                    }
                    _ => i += 1,
                }
            }
            out.push('?');
            continue;
        }
        if c == '"' || c == '`' {
            // A quoted identifier: kept as it is.
            out.push(c);
            i += 1;
            while i < chars.len() {
                out.push(chars[i]);
                i += 1;
                if chars[i - 1] == c {
                    break;
                }
            }
            continue;
        }
        let starts_number = c.is_ascii_digit()
            || (c == '.' && chars.get(i + 1).is_some_and(char::is_ascii_digit))
            || (c == '-' && chars.get(i + 1).is_some_and(char::is_ascii_digit) && !in_word(&out));
        if starts_number && !in_word(&out) {
            i += 1;
            while i < chars.len() {
                let d = chars[i];
                let exponent_sign = (d == '-' || d == '+') && matches!(chars[i - 1], 'e' | 'E');
                if d.is_ascii_alphanumeric() || d == '.' || exponent_sign {
                    i += 1;
                } else {
                    break;
                }
            }
            out.push('?');
            continue;
        }
        let parameter = (c == '$' || c == ':' || c == '@')
            && chars.get(i + 1).is_some_and(|n| n.is_alphanumeric() || *n == '_')
            && !(c == ':' && chars.get(i + 1) == Some(&':'))
            && !(c == ':' && i > 0 && chars[i - 1] == ':');
        if parameter && !in_word(&out) {
            i += 1;
            while i < chars.len() && (chars[i].is_alphanumeric() || chars[i] == '_') {
                i += 1;
            }
            out.push('?');
            continue;
        }
        out.push(c);
        i += 1;
    }
    collapse_lists(out.trim_end())
}

/// `(?, ?, ?)` → `(?)`, and `(?), (?)` → `(?)`, repeatedly (placeholders
/// listed outside parentheses, as in `SELECT ?, ?`, stay).
fn collapse_lists(text: &str) -> String {
    let mut text = text.to_owned();
    loop {
        let before = text.len();
        text = text.replace("(?, ?", "(?").replace("(?,?", "(?");
        text = text.replace("(?), (?)", "(?)").replace("(?),(?)", "(?)");
        if text.len() == before {
            return text;
        }
    }
}

/// A URL's `host/path` with ids in the path as `?` (`https://api.example/users/42?x=1`
/// → `api.example/users/?`); `text` itself, normalised, when it is no URL.
pub(crate) fn url(text: &str) -> String {
    let Some((_, rest)) = text.split_once("://") else {
        return normalise(text);
    };
    let rest = rest.split(['?', '#']).next().unwrap_or("");
    let mut parts = rest.split('/');
    let host = parts.next().unwrap_or("");
    let host = host.rsplit_once('@').map_or(host, |(_, host)| host);
    let mut out = host.to_owned();
    for part in parts {
        out.push('/');
        let id_like = !part.is_empty()
            && (part.chars().all(|c| c.is_ascii_digit())
                || (part.len() >= 8
                    && part.chars().all(|c| c.is_ascii_hexdigit() || c == '-')
                    && part.chars().any(|c| c.is_ascii_digit())));
        out.push_str(if id_like { "?" } else { part });
    }
    cut(&out, MAX_STATEMENT_BYTES).to_owned()
}

/// The longest prefix of `s` of at most `max` bytes that ends on a char boundary.
fn cut(s: &str, max: usize) -> &str {
    if s.len() <= max {
        return s;
    }
    let mut end = max;
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    &s[..end]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn literals_become_placeholders_and_identifiers_stay() {
        let cases = [
            (
                "SELECT * FROM items WHERE order_id = 17 AND name = 'it''s'",
                "SELECT * FROM items WHERE order_id = ? AND name = ?",
            ),
            (
                "select  a.id\n from t2 a where a.x=-3.5e-2",
                "select a.id from t2 a where a.x=?",
            ),
            (
                "SELECT * FROM t WHERE id IN (1, 2, 3, 4)",
                "SELECT * FROM t WHERE id IN (?)",
            ),
            ("INSERT INTO t VALUES (1, 'a'), (2, 'b')", "INSERT INTO t VALUES (?)"),
            (
                "SELECT $1, :name, @p1, ? FROM \"Table 1\"",
                "SELECT ?, ?, ?, ? FROM \"Table 1\"",
            ),
            ("SELECT x::int FROM t", "SELECT x::int FROM t"),
            ("SELECT report_rows", "SELECT report_rows"),
            (
                "UPDATE t SET v = 0x1f WHERE k = 'a\\'b'",
                "UPDATE t SET v = ? WHERE k = ?",
            ),
        ];
        for (statement, expected) in cases {
            assert_eq!(normalise(statement), expected, "{statement}");
        }
        assert_eq!(
            normalise("SELECT * FROM items WHERE order_id = 1"),
            normalise("SELECT * FROM items WHERE order_id = 99")
        );
    }

    #[test]
    fn urls_keep_host_and_path_without_ids_or_query() {
        assert_eq!(
            url("https://user:pw@api.example:8443/users/42/orders?page=2#top"),
            "api.example:8443/users/?/orders"
        );
        assert_eq!(
            url("http://127.0.0.1:9000/prices/3f2a9c1e-77aa-4b0e-9d1c-1234567890ab"),
            "127.0.0.1:9000/prices/?"
        );
        assert_eq!(url("GET inventory"), "GET inventory");
    }

    #[test]
    fn long_and_odd_statements_are_cut_not_refused() {
        let long = format!("SELECT {}", "a, ".repeat(2_000));
        assert!(normalise(&long).len() <= MAX_STATEMENT_BYTES);
        assert_eq!(normalise("'unterminated"), "?");
        assert_eq!(normalise("é 1 ü"), "é ? ü");
        assert_eq!(normalise(""), "");
    }
}
