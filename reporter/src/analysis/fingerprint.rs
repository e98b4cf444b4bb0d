//! Error grouping: which occurrences are "the same error".
//!
//! The store keeps one row per distinct (type, message, location), and raw
//! messages carry values: user ids, timeouts, hosts, timestamps. Grouped by
//! the raw message, one bug becomes thousands of groups of one. A
//! [`Fingerprint`] groups by the error's type, its message with every
//! variable value replaced by a placeholder ([`normalise_message`]), and the
//! file (not the line) where it was raised, so a deploy that moves code does
//! not split a group either. An error with a stack trace that holds frames of
//! the service's own code is grouped by its type and those frames instead
//! (as Sentry does, see [`super::stack`]): the same code path is one group
//! whatever its message says, and two errors of one type raised in different
//! places are two. An explicit fingerprint sent by the service (attribute
//! `kuroko.error.fingerprint`) replaces all of that.
//!
//! The message is scanned once, by one regex whose alternatives are tried in
//! priority order at each position (quoted values, urls, emails, uuids, dates,
//! protocol names kept as they are, IP addresses, durations, decimals, host
//! names, Kubernetes pod names, then plain words). The `regex` crate matches
//! in linear time, and the input is capped at [`MAX_INPUT_BYTES`], so hostile
//! messages cost bounded work. Words are judged in Rust, not by regex: `user42` becomes
//! `user<num>` but `E11000`, `utf8` and `sha256` stay readable. The id is a
//! hand-written 64-bit FNV-1a, identical across runs, builds and platforms.
//! The rules, with examples, are in `docs/fingerprints.md`; changing them
//! changes ids, so they are versioned in the hash ([`fingerprint`]).

use crate::stable_hash::fnv1a64;
use std::sync::LazyLock;

use regex::{Captures, Regex};

/// Bytes of a message (and of a custom fingerprint) looked at; the rest is ignored.
pub(crate) const MAX_INPUT_BYTES: usize = 4096;
/// Bytes of a normalised message kept. Smaller than the input cap, so that two
/// long messages that differ only in the length of a value still group together.
pub(crate) const MAX_NORMALISED_BYTES: usize = 1024;
/// Bytes of an error type and of a location kept.
const MAX_NAME_BYTES: usize = 512;

/// How one error is grouped.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Fingerprint {
    /// The group's id: a stable 64-bit FNV-1a hash (shown as 16 hex digits).
    pub id: u64,
    /// What to show for the group: `type: normalised message`.
    pub title: String,
    /// The location with its line (and column) removed, e.g. `src/db.rs`.
    pub location: String,
    /// Whether the id comes from the service's own fingerprint.
    pub custom: bool,
    /// Whether the id comes from the in-app frames of the stack trace.
    pub stack: bool,
}

/// The fingerprint of one error: `error_type` (`exception.type`), `message`,
/// `location` (`file:line`, may be empty) and the service's own fingerprint
/// (`kuroko.error.fingerprint`), which, when present and not blank, decides
/// the id alone. The title is always built from type and message.
pub(crate) fn fingerprint(error_type: &str, message: &str, location: &str, custom: Option<&str>) -> Fingerprint {
    fingerprint_with_frames(error_type, message, location, &[], custom)
}

/// [`fingerprint`] of an error with a stack trace (`exception.stacktrace`,
/// may be empty): when the trace holds in-app frames, the id is its type and
/// those frames ([`super::stack::in_app_frames`]), not its message or
/// location; else as [`fingerprint`]. The custom fingerprint still wins.
#[cfg(test)]
pub(crate) fn fingerprint_with_stack(
    error_type: &str,
    message: &str,
    location: &str,
    stacktrace: &str,
    custom: Option<&str>,
) -> Fingerprint {
    let frames = super::stack::in_app_frames(stacktrace);
    fingerprint_with_frames(error_type, message, location, &frames, custom)
}

/// `fingerprint_with_stack` given the stack trace's in-app frames already
/// read (callers that meet one trace many times read it once).
pub(crate) fn fingerprint_with_frames(
    error_type: &str,
    message: &str,
    location: &str,
    frames: &[String],
    custom: Option<&str>,
) -> Fingerprint {
    let error_type = truncate(error_type.trim(), MAX_NAME_BYTES);
    let message = normalise_message(message);
    let location = normalise_location(location);
    let title = match (error_type.is_empty(), message.is_empty()) {
        (_, true) => error_type.to_string(),
        (true, false) => message.clone(),
        (false, false) => format!("{error_type}: {message}"),
    };
    let custom = custom
        .map(|c| truncate(c.trim(), MAX_INPUT_BYTES))
        .filter(|c| !c.is_empty());
    // The leading tag versions the rules: a change of normalisation must
    // change it, so old and new groups never collide by accident. Fields are
    // separated by 0xff, a byte UTF-8 never contains.
    //
    // An id may be all digits (`5f3c9a1e` one time, `48213907` the next),
    // carry letters, or even read as a duration (`8650081d`): to the id,
    // `<num>`, `<hex>`, `<id>` and `<duration>` are one kind of value, so such
    // a message stays one group (the title keeps what it saw).
    //
    // With in-app frames, the type and the frames (file and function, in
    // order) are the id, under a tag of their own.
    let id = match custom {
        Some(custom) => fnv1a64(&[b"kuroko-fp-custom-1", custom.as_bytes()]),
        None if !frames.is_empty() => {
            let mut fields: Vec<&[u8]> = vec![b"kuroko-fp-stack-1", error_type.as_bytes()];
            fields.extend(frames.iter().map(|f| f.as_bytes()));
            fnv1a64(&fields)
        }
        None => fnv1a64(&[
            b"kuroko-fp-2",
            error_type.as_bytes(),
            id_shape(&message).as_bytes(),
            location.as_bytes(),
        ]),
    };
    Fingerprint {
        id,
        title,
        location,
        custom: custom.is_some(),
        stack: custom.is_none() && !frames.is_empty(),
    }
}

/// The normalised message as the id reads it: the placeholders of values
/// that one id can take in turn made one.
fn id_shape(message: &str) -> String {
    ["<hex>", "<id>", "<duration>"]
        .iter()
        .fold(message.to_owned(), |shaped, kind| shaped.replace(kind, "<num>"))
}

/// The message with every variable value replaced by a placeholder
/// (`<num>`, `<hex>`, `<id>`, `<uuid>`, `<email>`, `<url>`, `<host>`, `<ip>`,
/// `<date>`, `<duration>`, `<quoted>`) and runs of whitespace collapsed to one
/// space. Only the first [`MAX_INPUT_BYTES`] are read and at most
/// [`MAX_NORMALISED_BYTES`] are returned.
pub(crate) fn normalise_message(message: &str) -> String {
    let collapsed = truncate(message, MAX_INPUT_BYTES)
        .split_whitespace()
        .collect::<Vec<_>>()
        .join(" ");
    let mut out = String::with_capacity(collapsed.len());
    let mut last = 0;
    for caps in TOKEN.captures_iter(&collapsed) {
        let Some(whole) = caps.get(0) else { continue };
        out.push_str(&collapsed[last..whole.start()]);
        replace_token(&caps, &collapsed[whole.end()..], &mut out);
        last = whole.end();
    }
    out.push_str(&collapsed[last..]);
    truncate(&out, MAX_NORMALISED_BYTES).to_string()
}

/// The longest prefix of `s` of at most `max` bytes that ends on a char boundary.
fn truncate(s: &str, max: usize) -> &str {
    let mut end = s.len().min(max);
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    &s[..end]
}

/// `src/db.rs:42:7` → `src/db.rs`: every `:line` is dropped, so a deploy that
/// moves the code keeps the group; the path (and a function name, when the
/// location carries one) stays, so the same message raised in two places
/// makes two groups. Backslashes become slashes.
fn normalise_location(location: &str) -> String {
    let location = truncate(location.trim(), MAX_NAME_BYTES).replace('\\', "/");
    LINE_NUMBER.replace_all(&location, "").into_owned()
}

static LINE_NUMBER: LazyLock<Regex> = LazyLock::new(|| compile(r":[0-9]+(?-u:\b)"));

fn compile(pattern: &str) -> Regex {
    // The patterns are constants, compiled (and so checked) by every test.
    Regex::new(pattern).expect("fingerprint patterns are valid")
}

/// One alternative per kind of token, in priority order: at a given position
/// the first alternative that matches wins, and the scan never starts inside
/// a word (the last alternative consumes whole words), so e.g. a uuid is never
/// read as hex or numbers and an email never as a host.
static TOKEN: LazyLock<Regex> = LazyLock::new(|| {
    const HEX4: &str = "[0-9A-Fa-f]{1,4}";
    const IPV4: &str = r"[0-9]{1,3}(?:\.[0-9]{1,3}){3}";
    const MONTH: &str = "(?:Jan(?:uary)?|Feb(?:ruary)?|Mar(?:ch)?|Apr(?:il)?|May|June?|July?|Aug(?:ust)?\
                         |Sep(?:t(?:ember)?)?|Oct(?:ober)?|Nov(?:ember)?|Dec(?:ember)?)";
    const WEEKDAY: &str = "(?:Mon|Tues?|Wed(?:nes)?|Thu(?:rs)?|Fri|Sat(?:ur)?|Sun)(?:day)?";
    const TIME: &str = "[0-9]{1,2}:[0-9]{2}(?::[0-9]{2}(?:[.,][0-9]+)?)?";
    const ZONE: &str = "(?:UTC|GMT|UT|[ECMP][SD]T|[+-][0-9]{4})";
    const POD: &str = "[bcdfghjklmnpqrstvwxz2456789]";
    let b = r"(?-u:\b)";
    let alternatives = [
        // 'x', "x", `x`: a quote that opens after a non-word character and
        // closes before one, so apostrophes (can't, users') never open one.
        r#"(?P<quoted>(?-u:\B)(?:'[^']*'|"[^"]*"|`[^`]*`)(?-u:\B))"#.to_string(),
        r#"(?P<url>[A-Za-z][A-Za-z0-9+.-]*://[^ "'`<>]*[^ "'`<>.,;:!?)\]}])"#.to_string(),
        format!(r"(?P<email>[A-Za-z0-9._%+-]+@[A-Za-z0-9-]+(?:\.[A-Za-z0-9-]+)+{b})"),
        format!(r"(?P<uuid>[0-9A-Fa-f]{{8}}-[0-9A-Fa-f]{{4}}-[0-9A-Fa-f]{{4}}-[0-9A-Fa-f]{{4}}-[0-9A-Fa-f]{{12}}{b})"),
        format!(
            "(?P<date>\
             [0-9]{{4}}[-/][0-9]{{2}}[-/][0-9]{{2}}(?:[T ][0-9]{{2}}:[0-9]{{2}}(?::[0-9]{{2}}(?:[.,][0-9]+)?)?\
             (?:Z|[+-][0-9]{{2}}(?::?[0-9]{{2}})?)?(?: ?(?:UTC|GMT))?)?{b}\
             |(?:{WEEKDAY},? )?[0-9]{{1,2}} {MONTH},? [0-9]{{4}}(?: {TIME})?(?: {ZONE})?{b}\
             |(?:{WEEKDAY},? )?{MONTH} [0-9]{{1,2}}(?:,? [0-9]{{4}}(?: {TIME})?| {TIME}(?: {ZONE})?(?: [0-9]{{4}})?){b}\
             |[0-9]{{1,2}}:[0-9]{{2}}:[0-9]{{2}}(?:[.,][0-9]+)?(?: ?[AaPp][Mm])?{b})"
        ),
        // Names that contain digits but are not values.
        format!(
            "(?P<keep>(?:HTTPS?|SPDY|RTSP|SIP)/[0-9](?:\\.[0-9])?{b}\
             |(?:D?TLS|SSL) ?v?[0-9](?:\\.[0-9])?{b}\
             |(?:ORA|PLS|TNS)-[0-9]{{5}}{b}\
             |(?:UTF|utf|UCS|ucs|SHA|sha|ISO|iso|AES|aes|RSA|rsa|PKCS|pkcs|CP|cp|Windows|windows)(?:-[0-9]+)+{b})"
        ),
        // Checked in `replace_token` (a digit, and `::` or eight groups), so
        // `a::b` stays a path and `file:12:5` a place.
        format!(
            "(?P<ipv6>(?:{HEX4}(?::(?:{IPV4}|{HEX4})?){{1,6}}|:(?::(?:{IPV4}|{HEX4})?){{0,6}})\
             (?::(?:{IPV4}|{HEX4})(?:%[0-9A-Za-z]+)?{b}|:(?-u:\\B)))"
        ),
        format!(r"(?P<ipv4>{IPV4}(?:/[0-9]{{1,2}})?{b})"),
        format!(
            "(?P<duration>[0-9]+(?:\\.[0-9]+)?(?:\
             (?:ns|us|[µμ]s|ms|h|m|s|d)(?:[0-9]+(?:\\.[0-9]+)?(?:ns|us|[µμ]s|ms|h|m|s))*\
             | ?(?:nanoseconds?|microseconds?|milliseconds?|millis|seconds?|secs?|minutes?|mins?\
             |hours?|hrs?|days?|weeks?)){b})"
        ),
        // Decimals, versions and 1,234,567, with a unit kept: 1.5GB → <num>GB.
        format!(
            r"(?P<number>[vV]?[0-9]+(?:\.[0-9]+)+[A-Za-z]{{0,4}}{b}|[0-9]{{1,3}}(?:,[0-9]{{3}})+(?:\.[0-9]+)?[A-Za-z]{{0,4}}{b})"
        ),
        // Checked against known top-level domains in `replace_token`, so
        // `java.lang.String` and `config.yaml` stay as they are.
        format!(r"(?P<host>(?:[A-Za-z0-9](?:[A-Za-z0-9-]*[A-Za-z0-9])?\.)+[A-Za-z](?:[A-Za-z0-9-]*[A-Za-z0-9])?{b})"),
        // Kubernetes pod names, `deployment-<hash>-<suffix>` or `name-<suffix>`,
        // both in the alphabet Kubernetes draws them from (no vowels, no 0, 1
        // or 3); checked in `replace_token` (a hash, or a mixed suffix).
        format!(
            "(?P<pod>(?P<pod_name>[a-z0-9](?:[a-z0-9-]*?[a-z0-9])?)-(?:(?P<pod_hash>{POD}{{6,10}})-)?(?P<pod_suffix>{POD}{{5}}){b})"
        ),
        "(?P<word>[A-Za-z0-9_]+)".to_string(),
    ];
    compile(&alternatives.join("|"))
});

/// Appends the replacement of the token `caps` matched; `rest` is the text after it.
fn replace_token(caps: &Captures<'_>, rest: &str, out: &mut String) {
    const FIXED: [(&str, &str); 7] = [
        ("quoted", "<quoted>"),
        ("url", "<url>"),
        ("email", "<email>"),
        ("uuid", "<uuid>"),
        ("date", "<date>"),
        ("ipv4", "<ip>"),
        ("duration", "<duration>"),
    ];
    if let Some((_, placeholder)) = FIXED.iter().find(|(name, _)| caps.name(name).is_some()) {
        out.push_str(placeholder);
    } else if let Some(m) = caps.name("keep") {
        out.push_str(m.as_str());
    } else if let Some(m) = caps.name("ipv6") {
        let s = m.as_str();
        if s.bytes().any(|b| b.is_ascii_digit()) && (s.contains("::") || s.matches(':').count() == 7) {
            out.push_str("<ip>");
        } else {
            normalise_words(m.as_str(), out);
        }
    } else if let Some(m) = caps.name("number") {
        let s = m.as_str();
        let prefix = s.len() - s.trim_start_matches(|c: char| c.is_ascii_alphabetic()).len();
        let suffix = s.trim_end_matches(|c: char| c.is_ascii_alphabetic()).len();
        out.push_str(&s[..prefix]);
        out.push_str("<num>");
        out.push_str(&s[suffix..]);
    } else if let Some(m) = caps.name("host") {
        if is_host(m.as_str(), rest) {
            out.push_str("<host>");
        } else {
            normalise_words(m.as_str(), out);
        }
    } else if let Some(m) = caps.name("pod") {
        replace_pod(caps, m.as_str(), out);
    } else if let Some(m) = caps.name("word") {
        normalise_word(m.as_str(), false, out);
    }
}

/// A Kubernetes pod name: its deployment (or owner) kept, the replica set's
/// hash and the pod's suffix replaced, e.g. `checkout-7d9f8b6c5-x2k4p` →
/// `checkout-<hex>-<id>` (the hash reads as `<hex>` when it is one, as the
/// word rules always read it). Without a hash, only a suffix holding a
/// digit and a letter makes a pod name (`agent-x2k4p`, not `agent-bcdfg` or
/// `555-24567`); anything else is judged as words.
fn replace_pod(caps: &Captures<'_>, whole: &str, out: &mut String) {
    let (Some(name), Some(suffix)) = (caps.name("pod_name"), caps.name("pod_suffix")) else {
        return normalise_words(whole, out);
    };
    let hash = caps.name("pod_hash").map(|h| h.as_str());
    let suffix = suffix.as_str().as_bytes();
    let mixed = suffix.iter().any(u8::is_ascii_digit) && suffix.iter().any(u8::is_ascii_alphabetic);
    if hash.is_none() && !mixed {
        return normalise_words(whole, out);
    }
    normalise_words(name.as_str(), out);
    if let Some(hash) = hash {
        let hex = hash.bytes().all(|b| b.is_ascii_hexdigit()) && hash.bytes().any(|b| b.is_ascii_digit());
        out.push_str(if hex { "-<hex>" } else { "-<id>" });
    }
    out.push_str("-<id>");
}

/// Top-level domains (and internal suffixes) a dotted name must end in to be
/// a host. Deliberately short: file extensions that are also country codes
/// (`.rs`, `.py`, `.sh`, `.md`) are left out.
#[rustfmt::skip]
const TLDS: &[&str] = &[
    "app", "arpa", "au", "br", "ca", "ch", "cloud", "cluster", "cn", "co", "com", "consul", "corp", "de", "dev",
    "edu", "es", "eu", "example", "fr", "gov", "home", "int", "internal", "intranet", "invalid", "io", "jp",
    "lan", "local", "localdomain", "mil", "net", "nl", "org", "ru", "se", "svc", "test", "uk", "us",
];

/// Source file extensions: `main.rs:42` is a place, not a host and port.
#[rustfmt::skip]
const SOURCE_EXTENSIONS: &[&str] = &[
    "c", "cc", "cjs", "clj", "cpp", "cs", "dart", "erl", "ex", "exs", "go", "h", "hpp", "java", "js", "jsx",
    "kt", "lua", "mjs", "php", "pl", "pm", "py", "rb", "rs", "scala", "sh", "swift", "ts", "tsx", "zig",
];

/// A dotted name is a host when it ends in a known TLD, or when a port
/// follows it (`cache01.prod:6379`) and it is not a source file.
fn is_host(name: &str, rest: &str) -> bool {
    let tld = name.rsplit('.').next().unwrap_or_default().to_ascii_lowercase();
    let port_follows = rest
        .strip_prefix(':')
        .is_some_and(|r| r.starts_with(|c: char| c.is_ascii_digit()));
    TLDS.contains(&tld.as_str()) || (port_follows && !SOURCE_EXTENSIONS.contains(&tld.as_str()))
}

/// Words with digits that are names, not values (compared in lowercase).
#[rustfmt::skip]
const KNOWN_WORDS: &[&str] = &[
    "1xx", "2fa", "2xx", "3ds", "3xx", "4xx", "5xx", "aarch64", "aes128", "aes256", "amd64", "arm64", "base32",
    "boto3", "base58", "base64", "crc32", "ec2", "ed25519", "f16", "f32", "f64", "float32", "float64", "h2",
    "h3", "http2", "http3", "i128", "i16", "i18n", "i32", "i64", "i686", "i8", "int16", "int2", "int32", "int4",
    "int64", "int8", "ipv4", "ipv6", "k8s", "l10n", "latin1", "log4j", "log4js", "md5", "oauth2", "p256", "p384",
    "p50", "p90", "p95", "p99", "p999", "psycopg2", "python3", "pkcs1", "pkcs12", "pkcs8", "s3", "secp256k1",
    "sha1", "sha224", "sha256", "sha384", "sha512", "u128", "u16", "u32", "u64", "u8", "ucs2", "uint16", "uint32",
    "uint64", "uint8", "urllib3", "utf16", "utf32", "utf8", "win32", "x509", "x64", "x86", "x86_64",
];

fn is_known_word(word: &str) -> bool {
    KNOWN_WORDS.contains(&word.to_ascii_lowercase().as_str())
}

/// Normalises each word of `text`, a dotted or `::` name that is not a host
/// or address (`psycopg2.errors.UniqueViolation`, `batch-000123.csv`): it is
/// code or a file name, so `psycopg2` stays a module name, but numbers, hex
/// and ids in it are still values.
pub(crate) fn normalise_words(text: &str, out: &mut String) {
    let is_word = |c: char| c.is_ascii_alphanumeric() || c == '_';
    let mut rest = text;
    while let Some(start) = rest.find(is_word) {
        out.push_str(&rest[..start]);
        let end = rest[start..]
            .find(|c: char| !is_word(c))
            .map_or(rest.len(), |e| start + e);
        normalise_word(&rest[start..end], true, out);
        rest = &rest[end..];
    }
    out.push_str(rest);
}

/// A word (`[A-Za-z0-9_]+`): known names whole, then each `_`-separated part.
/// `in_name`: the word is part of a dotted name (see [`normalise_words`]).
fn normalise_word(word: &str, in_name: bool, out: &mut String) {
    let hex_letters = |part: &str| is_hex_letters(part.as_bytes());
    if (!word.bytes().any(|b| b.is_ascii_digit()) && !word.split('_').any(hex_letters)) || is_known_word(word) {
        out.push_str(word);
        return;
    }
    for (i, part) in word.split('_').enumerate() {
        if i > 0 {
            out.push('_');
        }
        normalise_part(part, in_name, out);
    }
}

/// The rules for one part of a word, first match wins: no digit → unchanged,
/// unless 8+ letters of hex ([`is_hex_letters`]) → `<hex>`; digits → `<num>`; `0x` + hex → `<hex>`; a known name stays; an error
/// code (1–5 capitals then digits: `E11000`, `HY000`) stays; 7+ hex digits
/// → `<hex>`; two or more separate runs of digits, or a base-36 id
/// ([`is_base36_id`]) → `<id>` (random ids, `3MqLiJ2eZvKYlo2C1`, pod
/// suffixes `x2x7k`, `ab3xk`); letters then digits
/// (`user42`) → `user<num>`, except inside a dotted name (`psycopg2.errors`);
/// digits then letters (`512MB`) → `<num>MB`; anything else (`Utf8Error`) stays.
fn normalise_part(part: &str, in_name: bool, out: &mut String) {
    let bytes = part.as_bytes();
    let digits = bytes.iter().filter(|b| b.is_ascii_digit()).count();
    let is_hex = |s: &[u8]| !s.is_empty() && s.iter().all(u8::is_ascii_hexdigit);
    let leading_letters = bytes.iter().take_while(|b| b.is_ascii_alphabetic()).count();
    let leading_digits = bytes.iter().take_while(|b| b.is_ascii_digit()).count();
    let digit_runs = bytes
        .iter()
        .enumerate()
        .filter(|&(i, b)| b.is_ascii_digit() && (i == 0 || !bytes[i - 1].is_ascii_digit()))
        .count();
    let is_error_code = (1..=5).contains(&leading_letters)
        && bytes[..leading_letters].iter().all(u8::is_ascii_uppercase)
        && leading_letters + digits == bytes.len();

    if digits == 0 {
        out.push_str(if is_hex_letters(bytes) { "<hex>" } else { part });
    } else if digits == bytes.len() {
        out.push_str("<num>");
    } else if (part.starts_with("0x") || part.starts_with("0X")) && is_hex(&bytes[2..]) {
        out.push_str("<hex>");
    } else if is_known_word(part) || is_error_code {
        out.push_str(part);
    } else if bytes.len() >= 7 && is_hex(bytes) {
        out.push_str("<hex>");
    } else if digit_runs >= 2 || is_base36_id(part) {
        out.push_str("<id>");
    } else if leading_letters > 0 && leading_letters + digits == bytes.len() && !in_name {
        out.push_str(&part[..leading_letters]);
        out.push_str("<num>");
    } else if leading_digits > 0 && leading_digits == digits {
        out.push_str("<num>");
        out.push_str(&part[leading_digits..]);
    } else {
        out.push_str(part);
    }
}

/// A hex id that happens to hold no digit (`deeeabba`): 8 or more letters,
/// all of `a`–`f` or all of `A`–`F`. Shorter runs are words (`facade`,
/// `defaced`, `accede`).
fn is_hex_letters(part: &[u8]) -> bool {
    part.len() >= 8
        && (part.iter().all(|b| (b'a'..=b'f').contains(b)) || part.iter().all(|b| (b'A'..=b'F').contains(b)))
}

/// A base-36 id with one run of digits inside letters (`ab3xk`, `q7zvxm`):
/// 5 or more characters, letters of one case (so `Utf8Error` and `Ipv4Addr`
/// stay names), and not a known name followed by more letters (`md5sum`,
/// `ipv4addr`, `k8sapi`).
fn is_base36_id(part: &str) -> bool {
    let bytes = part.as_bytes();
    let leading_letters = bytes.iter().take_while(|b| b.is_ascii_alphabetic()).count();
    let digits = bytes[leading_letters..]
        .iter()
        .take_while(|b| b.is_ascii_digit())
        .count();
    let rest = &bytes[leading_letters + digits..];
    let one_case = bytes.iter().all(|b| !b.is_ascii_uppercase()) || bytes.iter().all(|b| !b.is_ascii_lowercase());
    bytes.len() >= 5
        && leading_letters > 0
        && digits > 0
        && !rest.is_empty()
        && rest.iter().all(u8::is_ascii_alphabetic)
        && one_case
        && !KNOWN_WORDS
            .iter()
            .any(|known| part.to_ascii_lowercase().starts_with(known))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Messages on one line must share a fingerprint.
    const SAME_GROUP: &[&[&str]] = &[
        &[
            "timeout after 1500ms connecting to db-7.internal:5432",
            "timeout after 30000ms connecting to db-12.internal:5432",
            "timeout after 2.5s connecting to db-3.internal:6432",
        ],
        &["User 123 not found", "User 98765 not found", "User  42\n  not found"],
        &[
            "order 550e8400-e29b-41d4-a716-446655440000 not found",
            "order 6BA7B810-9DAD-11D1-80B4-00C04FD430C8 not found",
        ],
        &["Duplicate key 'abc@x.com'", "Duplicate key 'someone.else@example.org'"],
        &[
            "ERROR: duplicate key value violates unique constraint \"users_email_key\" DETAIL: Key (email)=(alice@example.com) already exists. (SQLSTATE 23505)",
            "ERROR: duplicate key value violates unique constraint \"users_email_key\" DETAIL: Key (email)=(bob.smith+test@corp.example.co.uk) already exists. (SQLSTATE 23505)",
        ],
        &[
            "Duplicate entry '42' for key 'PRIMARY'",
            "Duplicate entry 'alice-2026' for key 'PRIMARY'",
        ],
        &[
            "Lock wait timeout exceeded; try restarting transaction (conn=1234, trx 0x7f3a9c21be)",
            "Lock wait timeout exceeded; try restarting transaction (conn=7, trx 0x1)",
        ],
        &[
            "java.net.SocketTimeoutException: Read timed out after 30000 ms calling https://api.example.com/v1/orders/1234?expand=items&token=abc123",
            "java.net.SocketTimeoutException: Read timed out after 5000 ms calling http://10.1.2.3:8080/v1/orders/9?x=1",
        ],
        &["KeyError: 'user_42'", "KeyError: 'user_1337'"],
        &[
            "<app.models.Order object at 0x7f8e4c2a1b50> has no attribute id",
            "<app.models.Order object at 0x55d0c0ffee00> has no attribute id",
        ],
        &[
            "connect to [2001:db8::1]:443 failed",
            "connect to [fe80::1ff:fe23:4567:890a%eth0]:8443 failed",
            "connect to [::1]:80 failed",
            "connect to [::ffff:192.0.2.1]:443 failed",
        ],
        &["connection refused from 10.0.0.12:51234", "connection refused from 192.168.1.7:443"],
        &[
            "certificate expired at 2026-11-30T06:55:32Z",
            "certificate expired at 2025-01-02T00:00:00.123+01:00",
            "certificate expired at 2026-11-30 06:55:32",
            "certificate expired at Mon, 30 Nov 2026 06:55:32 +0000",
            "certificate expired at Thu Nov 30 06:55:32 UTC 2026",
            "certificate expired at 2026-11-30",
        ],
        &["retry in 3 minutes", "retry in 1 minute", "retry in 250ms", "retry in 1h2m3.5s"],
        &[
            "object a94a8fe5ccb19ba61c4c0873d391e987982fbbd3 missing",
            "object 356a192b7913b04c54574d18c28d46e6395428ab missing",
            "object 7f3a9c2 missing",
        ],
        &["worker17 crashed", "worker3 crashed"],
        &["order_7f3a9c21 failed", "order_19bd02ee failed"],
        &["invalid recipient bob@example.com", "invalid recipient alice.smith@mail.example.org"],
        &["could not resolve api.stripe.com", "could not resolve hooks.slack.com"],
        &["cache01.prod:6379 is down", "cache02.stage:6380 is down"],
        &[
            "E11000 duplicate key error collection: app.users index: email_1 dup key: { email: \"a@b.com\" }",
            "E11000 duplicate key error collection: app.users index: email_1 dup key: { email: \"c.d@e.org\" }",
        ],
        &["processed 1,234 rows of 1,000,000", "processed 12 rows of 50"],
        &["No such charge: ch_3MqLiJ2eZvKYlo2C1GXHCtVh", "No such charge: ch_3NabCdEfGh4IjKl5MnOpQr6S"],
        &["upload of 1.5GB exceeds quota", "upload of 12.25GB exceeds quota"],
        &["unknown column `age` in table", "unknown column `created_at` in table"],
        &["thread 'main' panicked at src/main.rs:42:5", "thread 'tokio-1' panicked at src/main.rs:7:13"],
        &["requires version v1.2.3, got 1.10", "requires version v2.0.0, got 3.1"],
    ];

    #[test]
    fn messages_with_different_values_share_a_group() {
        for group in SAME_GROUP {
            let first = fingerprint("Error", group[0], "src/db.rs:10", None);
            for message in &group[1..] {
                let other = fingerprint("Error", message, "src/db.rs:10", None);
                assert_eq!(first.title, other.title, "{:?} and {message:?} should group", group[0]);
                assert_eq!(first.id, other.id);
            }
        }
    }

    #[test]
    fn placeholders_say_what_was_replaced() {
        let cases = [
            (
                "timeout after 1500ms connecting to db-7.internal:5432",
                "timeout after <duration> connecting to <host>:<num>",
            ),
            ("User 123 not found", "User <num> not found"),
            ("HTTP/1.1 400 Bad Request", "HTTP/1.1 <num> Bad Request"),
            ("Duplicate key 'abc@x.com'", "Duplicate key <quoted>"),
            ("mail to bob@example.com failed", "mail to <email> failed"),
            (
                "GET https://x.example.com/a?b=1 returned 502",
                "GET <url> returned <num>",
            ),
            ("id 550e8400-e29b-41d4-a716-446655440000", "id <uuid>"),
            ("from 10.0.0.1 and 2001:db8::ff00:42:8329", "from <ip> and <ip>"),
            ("at 2026-11-30 06:55:32 took 3 minutes", "at <date> took <duration>"),
            (
                "worker17 saw 0xdeadbeef and order_7f3a9c21",
                "worker<num> saw <hex> and order_<hex>",
            ),
            ("token x9Kf2mZ7qL1w", "token <id>"),
            (
                "file /data/batch-000123.csv not found",
                "file /data/batch-<num>.csv not found",
            ),
            ("key ns:user:42:session expired", "key ns:user:<num>:session expired"),
            ("panicked at src/main.rs:42:5", "panicked at src/main.rs:<num>:<num>"),
            ("[Errno 111] Connection refused", "[Errno <num>] Connection refused"),
            ("took 10µs and 7d", "took <duration> and <duration>"),
            ("since Nov 30, 2026 on v2", "since <date> on v<num>"),
            ("file 2026/11/30 of 512MB", "file <date> of <num>MB"),
            (
                "query took 12.5s on pod web-5d8f7c9b4-x2x7k",
                "query took <duration> on pod web-<hex>-<id>",
            ),
        ];
        for (message, expected) in cases {
            assert_eq!(normalise_message(message), expected, "{message:?}");
        }
    }

    #[test]
    fn names_that_contain_digits_stay_readable() {
        for message in [
            "E11000 duplicate key error",
            "HTTP/1.1 Bad Request over HTTP/2",
            "invalid utf8 in base64 sha256 digest",
            "std::str::Utf8Error on x86_64 with TLSv1.2",
            "ORA-00942: table or view does not exist",
            "SQLSTATE HY000 general error in UTF-8 ISO-8859-1",
            "Int32 overflow in ipv6 parser: i18n p99",
            "std::io::Error in Foo::Bad::Cafe",
            "failed to read config.yaml: see java.lang.String and e.g. node.js",
            "can't parse the users' input",
            "psycopg2.errors.UniqueViolation from boto3",
            "Base64Error and Ipv4Addr in E0277 CS0103",
        ] {
            assert_eq!(normalise_message(message), message);
        }
    }

    #[test]
    fn different_errors_stay_apart() {
        let pairs = [
            (("Error", "connection refused"), ("Error", "connection reset")),
            (
                ("io::Error", "connection refused"),
                ("hyper::Error", "connection refused"),
            ),
            (("Error", "E11000 duplicate key"), ("Error", "E11001 duplicate key")),
            (("Error", "table users not found"), ("Error", "table orders not found")),
            (("Error", "utf8 error"), ("Error", "utf16 error")),
        ];
        for ((type_a, message_a), (type_b, message_b)) in pairs {
            let a = fingerprint(type_a, message_a, "src/db.rs:10", None);
            let b = fingerprint(type_b, message_b, "src/db.rs:10", None);
            assert_ne!(a.id, b.id, "{type_a} {message_a:?} vs {type_b} {message_b:?}");
        }
    }

    #[test]
    fn the_file_splits_groups_but_the_line_does_not() {
        let at = |location| fingerprint("Error", "boom", location, None);
        assert_eq!(at("src/db.rs:10").id, at("src/db.rs:250").id);
        assert_eq!(at("src/db.rs:10").id, at("src/db.rs:12:7").id);
        assert_eq!(at("src\\db.rs:10").id, at("src/db.rs:11").id);
        assert_eq!(at("src/db.rs:10").location, "src/db.rs");
        assert_ne!(at("src/db.rs:10").id, at("src/api.rs:10").id);
        assert_ne!(at("src/db.rs:10").id, at("").id);
    }

    #[test]
    fn a_custom_fingerprint_wins() {
        let a = fingerprint(
            "TimeoutError",
            "upstream a timed out",
            "src/a.rs:1",
            Some("upstream-timeout"),
        );
        let b = fingerprint("IoError", "socket closed", "src/b.rs:9", Some(" upstream-timeout "));
        assert!(a.custom && b.custom);
        assert_eq!(a.id, b.id);
        assert_eq!(a.title, "TimeoutError: upstream a timed out");
        let c = fingerprint("TimeoutError", "upstream a timed out", "src/a.rs:1", Some("other"));
        assert_ne!(a.id, c.id);
        // A blank custom fingerprint is no fingerprint.
        let blank = fingerprint("IoError", "socket closed", "src/b.rs:9", Some("  "));
        let none = fingerprint("IoError", "socket closed", "src/b.rs:9", None);
        assert!(!blank.custom);
        assert_eq!(blank, none);
    }

    #[test]
    fn a_hostile_message_is_truncated_without_panic() {
        let patterns = ["'a1:", "€", "::", "1.", "x", "a@", "\"", "0", "http://a/"];
        for pattern in patterns {
            let message = pattern.repeat(1_000_000 / pattern.len());
            let normalised = normalise_message(&message);
            assert!(normalised.len() <= MAX_NORMALISED_BYTES, "{pattern:?}");
            let fp = fingerprint(&message, &message, &message, Some(&message));
            assert!(fp.title.len() <= MAX_NAME_BYTES + 2 + MAX_NORMALISED_BYTES);
            assert!(fp.location.len() <= MAX_NAME_BYTES);
        }
    }

    #[test]
    fn long_messages_that_differ_in_a_value_still_group() {
        let tail = " at frame".repeat(1000);
        let a = fingerprint("Error", &format!("User 1 failed{tail}"), "", None);
        let b = fingerprint("Error", &format!("User 1234567 failed{tail}"), "", None);
        assert_eq!(a.id, b.id);
    }

    #[test]
    fn ids_the_word_rules_used_to_miss_are_values() {
        let same = [
            // Hex ids with no digit: one group with their siblings that have one.
            &[
                "user deeeabba not found",
                "user 5f3c9a1e not found",
                "user 48213907 not found",
            ][..],
            &["blob DEADBEEF missing", "blob 0A1B2C3D missing"],
            // Base-36 ids with one run of digits inside letters.
            &[
                "session ab3xk expired",
                "session q7zvxm expired",
                "session k3j9x0q2 expired",
            ],
            // Kubernetes pod names: the deployment stays, the hashes go.
            &[
                "pod checkout-7d9f8b6c5-x2k4p evicted",
                "pod checkout-6b8c4d5f7-qzvwb evicted",
                "pod checkout-5c98dbfnh-bq7zx evicted",
            ],
            &["node agent-x2k4p is down", "node agent-9zq7b is down"],
        ];
        for group in same {
            let first = fingerprint("Error", group[0], "", None);
            for message in &group[1..] {
                assert_eq!(
                    first.id,
                    fingerprint("Error", message, "", None).id,
                    "{:?} and {message:?}",
                    group[0]
                );
            }
        }
        assert_eq!(
            normalise_message("pod checkout-7d9f8b6c5-x2k4p evicted"),
            "pod checkout-<hex>-<id> evicted"
        );
        assert_eq!(
            normalise_message("pod checkout-bcdfghjkl-qzvwb"),
            "pod checkout-<id>-<id>"
        );
        assert_eq!(normalise_message("user deeeabba"), "user <hex>");
        assert_eq!(normalise_message("session ab3xk"), "session <id>");
        // Still apart: other deployments, and words and names that only look like ids.
        let apart = [
            (
                "pod checkout-7d9f8b6c5-x2k4p evicted",
                "pod payments-7d9f8b6c5-x2k4p evicted",
            ),
            ("defaced page", "effaced page"),
            ("agent-bcdfg is down", "agent-xzvwq is down"),
        ];
        assert_eq!(normalise_message("call 555-24567"), "call <num>-<num>");
        for (a, b) in apart {
            assert_ne!(
                fingerprint("Error", a, "", None).id,
                fingerprint("Error", b, "", None).id,
                "{a:?} vs {b:?}"
            );
        }
        for kept in [
            "facade accede defaced",
            "md5sum ipv4addr k8sapi x509cert log4js h2c e2e a11y",
            "Utf8Error Base64Error Ipv4Addr",
            "checkout-service is down",
        ] {
            assert_eq!(normalise_message(kept), kept);
        }
    }

    /// The demo's planted error (`reporter/src/demo/fleet.rs`): one group
    /// whatever its order number and user, including users whose hex id has
    /// no digit (about one in 2,600).
    #[test]
    fn the_demos_planted_error_is_one_group() {
        let mut state = 0x9e37_79b9_7f4a_7c15_u64;
        let mut ids = std::collections::HashSet::new();
        for _ in 0..20_000 {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            let message = format!(
                "order {} not found for user {:08x}",
                10_000 + state % 90_000,
                state >> 32
            );
            ids.insert(fingerprint("kuroko_shop::orders::OrderNotFound", &message, "src/orders.rs:88", None).id);
        }
        // A user with no digit in its id, whatever the generator gave.
        ids.insert(
            fingerprint(
                "kuroko_shop::orders::OrderNotFound",
                "order 12345 not found for user deeeabba",
                "src/orders.rs:88",
                None,
            )
            .id,
        );
        assert_eq!(ids.len(), 1);
    }

    /// A Python stack raising `KeyError` in `function` of `file` at `line`,
    /// called through Flask.
    fn python_stack(file: &str, function: &str, line: u32) -> String {
        format!(
            "Traceback (most recent call last):\n  \
             File \"/usr/local/lib/python3.12/site-packages/flask/app.py\", line 880, in dispatch\n    \
             rv = self.view()\n  File \"/app/shop/views.py\", line 12, in checkout\n    return {function}()\n  \
             File \"/app/shop/{file}\", line {line}, in {function}\n    raise KeyError(key)\nKeyError: 'x'"
        )
    }

    #[test]
    fn errors_with_in_app_frames_group_by_type_and_frames() {
        let at = |message: &str, stack: &str| fingerprint_with_stack("KeyError", message, "", stack, None);
        let user = python_stack("users.py", "load_user", 40);
        let amount = python_stack("pricing.py", "price", 7);
        // Same type, different places: two groups, whatever the messages.
        assert_ne!(at("'user_id'", &user).id, at("'amount'", &amount).id);
        assert_ne!(at("'user_id'", &user).id, at("'user_id'", &amount).id);
        // The same place with different values, or moved by a deploy: one group.
        assert_eq!(at("'user_id'", &user).id, at("'order_id'", &user).id);
        assert_eq!(
            at("'user_id'", &user).id,
            at("'user_id'", &python_stack("users.py", "load_user", 44)).id
        );
        assert!(at("'user_id'", &user).stack);
        // The title still reads the message.
        assert_eq!(at("'user_id'", &user).title, "KeyError: <quoted>");
        // Another type at the same place is another error.
        assert_ne!(
            at("'user_id'", &user).id,
            fingerprint_with_stack("ValueError", "'user_id'", "", &user, None).id
        );
        // Without in-app frames, or without a trace, the message decides as before.
        let library = "Traceback (most recent call last):\n  File \"/usr/lib/python3.12/json/decoder.py\", line 3, in decode\nKeyError: 'a'";
        for stack in ["", library, "not a stack trace"] {
            let with = fingerprint_with_stack("KeyError", "'a' missing in user 42", "src/a.py:3", stack, None);
            assert_eq!(
                with,
                fingerprint("KeyError", "'a' missing in user 42", "src/a.py:3", None)
            );
            assert!(!with.stack);
        }
        // The service's own fingerprint still wins.
        let custom = fingerprint_with_stack("KeyError", "'a'", "", &user, Some("mine"));
        assert!(custom.custom && !custom.stack);
        assert_eq!(custom.id, fingerprint("Other", "b", "", Some("mine")).id);
    }

    #[test]
    fn the_id_is_stable_across_builds() {
        let fp = fingerprint("std::io::Error", "User 123 not found", "src/db.rs:42", None);
        assert_eq!(fp.title, "std::io::Error: User <num> not found");
        // Also checked against an independent FNV-1a implementation.
        assert_eq!(format!("{:016x}", fp.id), "5f286148cc226fab");
    }
}
