use super::*;

const GOOD: &str = r##"
[teams.payments]
display_name = "Payments"
email = ["payments@example.com", "oncall@example.com"]
chat_channel = "#payments"
chat_webhook_env = "KUROKO_SLACK_PAYMENTS"

[teams.catalog]
email = ["catalog@example.com"]
chat_webhook = "https://hooks.example.com/services/T0/B0/secret"

[features.checkout]
team = "payments"
description = "Paying for a cart"
patterns = [
  { service = "shop-api", transaction = "POST /checkout*" },
  { service = "shop-api", transaction = "GET /cards/{id}" },
]

[features.checkout-confirm]
team = "payments"
patterns = [ { service = "shop-api", transaction = "POST /checkout/confirm" } ]

[features.browse]
team = "catalog"
patterns = [
  { service = "shop-api", transaction = "*" },
  { service = "search-*", transaction = "GET /search?*" },
]
"##;

fn problems_in(text: &str) -> Vec<Problem> {
    match Owners::parse(text, "owners.toml") {
        Ok(_) => panic!("expected problems in:\n{text}"),
        Err(OwnersError::Invalid { problems, .. }) => problems,
        Err(other) => panic!("unexpected error {other}"),
    }
}

#[test]
fn a_good_file_gives_teams_and_features() {
    let owners = Owners::parse(GOOD, "owners.toml").unwrap();
    let names: Vec<&str> = owners.teams().map(|t| t.name.as_str()).collect();
    assert_eq!(names, ["catalog", "payments"]);
    let payments = owners.team("payments").unwrap();
    assert_eq!(payments.label(), "Payments");
    assert_eq!(payments.email, ["payments@example.com", "oncall@example.com"]);
    assert_eq!(payments.chat_channel.as_deref(), Some("#payments"));
    assert_eq!(owners.team("catalog").unwrap().label(), "catalog");
    let features: Vec<&str> = owners
        .features_of_team("payments")
        .iter()
        .map(|f| f.name.as_str())
        .collect();
    assert_eq!(features, ["checkout", "checkout-confirm"]);
    assert_eq!(owners.team_of_feature("browse").unwrap().name, "catalog");
    let checkout = owners.feature("checkout").unwrap();
    assert_eq!(checkout.description.as_deref(), Some("Paying for a cart"));
    assert_eq!(checkout.patterns[1].position, Position { line: 17, column: 3 });
}

#[test]
fn the_agent_tag_wins_and_an_undeclared_tag_is_unowned() {
    let owners = Owners::parse(GOOD, "owners.toml").unwrap();
    assert_eq!(
        owners.feature_of("shop-api", "POST /checkout", Some("browse")),
        Some("browse")
    );
    assert_eq!(
        owners.feature_of("shop-api", "POST /checkout", Some("")),
        Some("checkout")
    );
    assert_eq!(
        owners.feature_of("shop-api", "GET /x", Some("gift-cards")),
        Some("gift-cards")
    );
    assert!(owners.team_of_feature("gift-cards").is_none());
    assert!(owners.team_of("shop-api", "GET /x", Some("gift-cards")).is_none());
    assert!(owners.owns("catalog", "shop-api", "POST /checkout", Some("browse")));
    assert!(!owners.owns("payments", "shop-api", "POST /checkout", Some("browse")));
}

#[test]
fn the_most_specific_pattern_wins() {
    let owners = Owners::parse(GOOD, "owners.toml").unwrap();
    // A literal beats a glob, whatever the file order.
    assert_eq!(
        owners.feature_of("shop-api", "POST /checkout/confirm", None),
        Some("checkout-confirm")
    );
    // A longer literal prefix beats `*`.
    assert_eq!(
        owners.feature_of("shop-api", "POST /checkout/start", None),
        Some("checkout")
    );
    assert_eq!(owners.feature_of("shop-api", "GET /products", None), Some("browse"));
    // Braces are literal, so route templates match as written.
    assert_eq!(owners.feature_of("shop-api", "GET /cards/{id}", None), Some("checkout"));
    assert_eq!(owners.feature_of("shop-api", "GET /cards/id", None), Some("browse"));
    assert_eq!(owners.feature_of("search-eu", "GET /search?q", None), Some("browse"));
    assert_eq!(owners.feature_of("billing", "POST /checkout", None), None);
    assert!(owners.owns("payments", "shop-api", "POST /checkout/confirm", None));
    assert!(!owners.owns("payments", "shop-api", "GET /products", None));
    assert!(!owners.owns("payments", "billing", "POST /checkout", None));
}

#[test]
fn a_literal_transaction_beats_a_literal_service() {
    let owners = Owners::parse(
        r#"
[teams.a]
[features.whole-service]
team = "a"
patterns = [ { service = "shop-api" } ]
[features.health]
team = "a"
patterns = [ { transaction = "GET /health" } ]
"#,
        "o.toml",
    )
    .unwrap();
    assert_eq!(owners.feature_of("shop-api", "GET /health", None), Some("health"));
    assert_eq!(owners.feature_of("shop-api", "GET /other", None), Some("whole-service"));
    assert_eq!(owners.feature_of("other", "GET /health", None), Some("health"));
}

#[test]
fn a_webhook_comes_from_the_file_or_the_named_variable() {
    let owners = Owners::parse(GOOD, "owners.toml").unwrap();
    let env = |name: &str| (name == "KUROKO_SLACK_PAYMENTS").then(|| " https://hooks/x \n".to_owned());
    let payments = owners.team("payments").unwrap();
    assert_eq!(payments.webhook_url_from(env).unwrap().expose(), "https://hooks/x");
    assert!(payments.webhook_url_from(|_| None).is_none());
    let catalog = owners.team("catalog").unwrap();
    assert_eq!(
        catalog.webhook_url_from(|_| None).unwrap().expose(),
        "https://hooks.example.com/services/T0/B0/secret"
    );
    assert!(!format!("{catalog:?}").contains("secret"));
}

#[test]
fn a_pattern_two_features_declare_is_a_conflict_naming_both_lines() {
    let problems = problems_in(
        r#"[teams.a]
[features.one]
team = "a"
patterns = [ { service = "api", transaction = "GET /x*" } ]
[features.two]
team = "a"
patterns = [
  { service = "api", transaction = "GET /y" },
  { service = "api", transaction = "GET /x*" },
]
"#,
    );
    assert_eq!(problems.len(), 1, "{problems:?}");
    assert_eq!(problems[0].kind, ProblemKind::Conflict);
    let text = problems[0].to_string();
    assert!(text.starts_with("owners.toml:9:3: "), "{text}");
    assert!(
        text.contains("owners.toml:4") && text.contains("owners.toml:9"),
        "{text}"
    );
    assert!(text.contains("`one`") && text.contains("`two`"), "{text}");
}

#[test]
fn an_unknown_team_is_reported_with_line_column_and_feature() {
    let problems = problems_in("[teams.payments]\n\n[features.checkout]\nteam = \"paymants\"\n");
    assert_eq!(problems.len(), 1, "{problems:?}");
    assert_eq!(problems[0].kind, ProblemKind::UnknownTeam);
    assert_eq!(problems[0].position, Position { line: 4, column: 8 });
    let text = problems[0].to_string();
    assert!(text.starts_with("owners.toml:4:8: "), "{text}");
    assert!(text.contains("`checkout`") && text.contains("`paymants`"), "{text}");
    assert!(
        text.contains("payments"),
        "the message lists the declared teams: {text}"
    );
}

#[test]
fn an_invalid_glob_is_reported() {
    let problems = problems_in(
        "[teams.a]\n[features.f]\nteam = \"a\"\npatterns = [ { service = \"api\", transaction = \"GET /[ab\" } ]\n",
    );
    assert_eq!(problems.len(), 1, "{problems:?}");
    assert_eq!(problems[0].kind, ProblemKind::InvalidGlob);
    assert_eq!(problems[0].position.line, 4);
    assert!(problems[0].message.contains("GET /[ab"), "{}", problems[0]);
}

#[test]
fn an_unknown_key_is_reported_where_it_is() {
    let problems = problems_in("[teams.a]\nemial = [\"a@example.com\"]\n");
    assert_eq!(problems.len(), 1, "{problems:?}");
    assert_eq!(problems[0].kind, ProblemKind::UnknownKey);
    assert_eq!(problems[0].position, Position { line: 2, column: 1 });
    assert!(problems[0].message.contains("emial"), "{}", problems[0]);
    let top = problems_in("[team.a]\n");
    assert_eq!(top[0].kind, ProblemKind::UnknownKey);
    assert!(top[0].message.contains("`team`"), "{}", top[0]);
}

#[test]
fn every_problem_is_collected_in_file_order() {
    let text = r#"[teams.a]
colour = "red"
[teams.b]
email = ["b@example.com"]
[features.one]
team = "nobody"
patterns = [ { service = "api", transaction = "[x" } ]
[features.two]
team = "b"
patterns = [ { service = "api", transaction = "GET /" } ]
[features.three]
team = "b"
patterns = [ { service = "api", transaction = "GET /" } ]
"#;
    let problems = problems_in(text);
    let kinds: Vec<(ProblemKind, usize)> = problems.iter().map(|p| (p.kind, p.position.line)).collect();
    assert_eq!(
        kinds,
        [
            (ProblemKind::UnknownKey, 2),
            (ProblemKind::UnknownTeam, 6),
            (ProblemKind::InvalidGlob, 7),
            (ProblemKind::Conflict, 13),
        ]
    );
    let err = Owners::parse(text, "owners.toml").unwrap_err().to_string();
    assert!(err.starts_with("owners.toml has 4 problem(s):\n"), "{err}");
}

#[test]
fn a_syntax_error_is_reported_with_its_position() {
    let problems = problems_in("[teams.a]\nemail = [\"a@example.com\"\n");
    assert_eq!(problems[0].kind, ProblemKind::Syntax);
    assert!(problems[0].position.line >= 2, "{}", problems[0]);
}

#[test]
fn bad_team_values_are_reported() {
    let problems = problems_in(
        "[teams.a]\nemail = [\"not-an-address\"]\nchat_webhook = \"hooks.example.com\"\n\
         chat_webhook_env = \"https://hooks.example.com/x\"\n",
    );
    let lines: Vec<usize> = problems.iter().map(|p| p.position.line).collect();
    assert_eq!(lines, [2, 3, 4, 4], "{problems:?}");
}

#[test]
fn the_example_file_parses() {
    let owners = Owners::parse(include_str!("../../../owners.example.toml"), "owners.example.toml")
        .unwrap_or_else(|e| panic!("{e}"));
    assert!(owners.teams().count() >= 2);
    assert!(owners.features().all(|f| owners.team_of_feature(&f.name).is_some()));
    // What its comments promise.
    assert_eq!(
        owners.feature_of("shop-api", "POST /checkout/refund", None),
        Some("refunds")
    );
    assert_eq!(
        owners.feature_of("shop-api", "POST /checkout/start", None),
        Some("checkout")
    );
    assert_eq!(
        owners.feature_of("payment-worker", "refund-sweep", None),
        Some("refunds")
    );
    assert_eq!(owners.feature_of("payment-worker", "capture", None), Some("checkout"));
    assert_eq!(owners.feature_of("billing", "GET /health", None), Some("health"));
    assert!(owners.owns("catalog", "search-eu", "GET /search", None));
}

#[test]
fn a_missing_file_is_a_read_error_naming_it() {
    let err = Owners::load(Path::new("/nonexistent/owners.toml")).unwrap_err();
    assert!(matches!(err, OwnersError::Read { .. }));
    assert!(err.to_string().contains("/nonexistent/owners.toml"), "{err}");
}

#[test]
fn patterns_that_decide_nothing_are_warned_about() {
    let owners = Owners::parse(GOOD, "owners.toml").unwrap();
    let series = |s: &str, t: &str, f: &str| (s.to_owned(), t.to_owned(), f.to_owned());
    let known = [
        series("shop-api", "POST /checkout", ""),
        series("shop-api", "GET /products", ""),
        // Tagged: the literal pattern matches it but does not decide it.
        series("shop-api", "POST /checkout/confirm", "checkout"),
    ];
    let warnings = owners.unmatched_patterns(&known);
    assert_eq!(warnings.len(), 3, "{warnings:#?}");
    assert!(warnings[0].starts_with("owners.toml:17:3: ") && warnings[0].contains("matches none"));
    assert!(warnings[1].starts_with("owners.toml:22:") && warnings[1].contains("decides none"));
    assert!(warnings[2].starts_with("owners.toml:28:3: ") && warnings[2].contains("search-*"));
    let all = [
        series("shop-api", "POST /checkout", ""),
        series("shop-api", "GET /cards/{id}", ""),
        series("shop-api", "POST /checkout/confirm", ""),
        series("shop-api", "GET /products", ""),
        series("search-eu", "GET /search?q", ""),
    ];
    assert!(owners.unmatched_patterns(&all).is_empty());
}

#[test]
fn an_empty_owners_file_knows_only_tags() {
    let owners = Owners::empty();
    assert_eq!(owners.feature_of("api", "GET /", Some("f")), Some("f"));
    assert_eq!(owners.feature_of("api", "GET /", None), None);
    assert!(!owners.owns("a", "api", "GET /", Some("f")));
    assert!(Owners::parse("", "o.toml").unwrap().teams().next().is_none());
}

#[test]
fn glob_shapes_measure_specificity() {
    let shape = GlobShape::of("GET /cards/{id}");
    assert!(shape.literal);
    assert_eq!(shape.glob, r"GET /cards/\{id\}");
    let shape = GlobShape::of(r"POST /a\*b*[{]");
    assert!(!shape.literal);
    assert_eq!((shape.prefix, shape.literal_chars), (9, 9));
    assert_eq!(shape.glob, r"POST /a\*b*[{]");
}
