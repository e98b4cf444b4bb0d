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
