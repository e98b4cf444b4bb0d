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
mod tests;
