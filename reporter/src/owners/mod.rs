//! `owners.toml`: which team owns which product feature, and which
//! transactions belong to which feature.
//!
//! Reports go to people, not to services: the weekly performance email goes
//! to each team, and the morning digest and alerts go to a team's chat
//! channel. So every transaction has to land on a team. The agent may tag a
//! transaction with its feature (`kuroko.feature`); for the many it does not,
//! `owners.toml` declares patterns — a service glob and a transaction glob —
//! that assign transactions to features, and each feature names its team.
//!
//! A mistake in this file silently sends a report to the wrong team, so
//! loading is strict and talkative: every problem (syntax, unknown key,
//! unknown team, invalid glob, two features claiming the same pattern) is
//! collected with its file, line and column and what to do, and all of them
//! are returned at once. Patterns that match no known transaction are a
//! warning ([`Owners::unmatched_patterns`]), since a transaction may simply
//! not have run yet.
//!
//! Resolution (see `docs/owners.md`): the agent's tag wins; otherwise the
//! most specific matching pattern, in an order fixed at load (literal beats
//! wildcard, transaction before service, longer literal prefix first, then
//! file order).
//!
//! About 850 lines: the file's parsing with line-numbered problems and its
//! matching of series to features belong together; its tests are in `tests.rs`.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;
use std::path::{Path, PathBuf};

use globset::{GlobBuilder, GlobMatcher};
use serde::Deserialize;
use toml::de::{DeTable, DeValue, ValueDeserializer};
use toml::Spanned;

use crate::config::Secret;

/// A place in the owners file, 1-based.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord)]
pub struct Position {
    /// Line, from 1.
    pub line: usize,
    /// Column in characters, from 1.
    pub column: usize,
}

impl fmt::Display for Position {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}", self.line, self.column)
    }
}

/// What kind of problem a [`Problem`] is.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ProblemKind {
    /// The file is not valid TOML.
    Syntax,
    /// A key this file does not know (a typo, most often).
    UnknownKey,
    /// A value of the wrong type or shape.
    InvalidValue,
    /// A feature names a team that is not declared.
    UnknownTeam,
    /// A pattern's glob does not compile.
    InvalidGlob,
    /// Two features declare the same pattern.
    Conflict,
}

/// One problem in the owners file, with where it is and what to do.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Problem {
    /// The kind of problem.
    pub kind: ProblemKind,
    /// The file, as given for messages.
    pub path: String,
    /// Where in the file.
    pub position: Position,
    /// What is wrong and what to do about it.
    pub message: String,
}

impl fmt::Display for Problem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}: {}", self.path, self.position, self.message)
    }
}

/// Why an owners file was refused.
#[derive(Debug, thiserror::Error)]
pub enum OwnersError {
    /// The file could not be read.
    #[error("cannot read owners file {path}")]
    Read {
        /// The file.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// The file has problems; all of them are listed, in file order.
    #[error("{path} has {} problem(s):\n{}", problems.len(), list(problems))]
    Invalid {
        /// The file, as given for messages.
        path: String,
        /// Every problem found.
        problems: Vec<Problem>,
    },
}

fn list(problems: &[Problem]) -> String {
    problems.iter().map(|p| format!("  {p}")).collect::<Vec<_>>().join("\n")
}

/// A team: who receives reports, and where.
#[derive(Clone, Debug, PartialEq)]
pub struct Team {
    /// The team's key in `[teams.NAME]`; what `--team` names.
    pub name: String,
    /// A human name for reports; [`Team::label`] falls back to `name`.
    pub display_name: Option<String>,
    /// Addresses that receive the weekly performance email.
    pub email: Vec<String>,
    /// The chat channel's name (e.g. `#payments`), shown in messages.
    pub chat_channel: Option<String>,
    /// A webhook URL written in the file (discouraged: it is a secret).
    pub chat_webhook: Option<Secret>,
    /// The environment variable that holds the webhook URL.
    pub chat_webhook_env: Option<String>,
    /// Where the team is declared.
    pub position: Position,
}

impl Team {
    /// The name to show people: `display_name`, else `name`.
    pub fn label(&self) -> &str {
        self.display_name.as_deref().unwrap_or(&self.name)
    }

    /// The chat webhook URL: `chat_webhook`, else the value of the variable
    /// `chat_webhook_env` names, read through `lookup`. `None` when neither
    /// gives a non-empty URL.
    pub(crate) fn webhook_url_from(&self, lookup: impl Fn(&str) -> Option<String>) -> Option<Secret> {
        if let Some(url) = &self.chat_webhook {
            return Some(url.clone());
        }
        let value = lookup(self.chat_webhook_env.as_deref()?)?;
        let value = value.trim();
        (!value.is_empty()).then(|| Secret::new(value))
    }
}

/// A pattern that assigns transactions to a feature.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Pattern {
    /// Glob over `service.name` (`*` when omitted).
    pub service: String,
    /// Glob over the transaction's name (`*` when omitted).
    pub transaction: String,
    /// Where the pattern is declared.
    pub position: Position,
}

impl fmt::Display for Pattern {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{{ service = {:?}, transaction = {:?} }}",
            self.service, self.transaction
        )
    }
}

/// A product feature and its owning team.
#[derive(Clone, Debug, PartialEq)]
pub struct Feature {
    /// The feature's key in `[features.NAME]`; what the agent tags.
    pub name: String,
    /// The owning team's name.
    pub team: String,
    /// What the feature is, for reports.
    pub description: Option<String>,
    /// Patterns that assign untagged transactions to this feature.
    pub patterns: Vec<Pattern>,
    /// Where the feature is declared.
    pub position: Position,
}

/// The loaded owners file: teams, features, and the compiled patterns.
#[derive(Clone, Debug)]
pub struct Owners {
    path: String,
    teams: BTreeMap<String, Team>,
    features: BTreeMap<String, Feature>,
    /// Most specific first: the first that matches decides.
    rules: Vec<Rule>,
}

/// A compiled pattern.
#[derive(Clone, Debug)]
struct Rule {
    feature: String,
    pattern: Pattern,
    service: GlobMatcher,
    transaction: GlobMatcher,
    specificity: Specificity,
}

impl Rule {
    fn matches(&self, service: &str, transaction: &str) -> bool {
        self.service.is_match(service) && self.transaction.is_match(transaction)
    }
}

/// How specific a pattern is; greater is more specific. Field order is the
/// comparison order.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
struct Specificity {
    transaction_literal: bool,
    service_literal: bool,
    transaction_prefix: usize,
    service_prefix: usize,
    transaction_literal_chars: usize,
    service_literal_chars: usize,
}

impl Owners {
    /// An owners file with nothing in it: only agent tags give features,
    /// and no feature has a team.
    pub fn empty() -> Owners {
        Owners {
            path: String::new(),
            teams: BTreeMap::new(),
            features: BTreeMap::new(),
            rules: Vec::new(),
        }
    }

    /// Reads and checks the file at `path`.
    pub fn load(path: &Path) -> Result<Owners, OwnersError> {
        let text = std::fs::read_to_string(path).map_err(|source| OwnersError::Read {
            path: path.to_owned(),
            source,
        })?;
        Owners::parse(&text, &path.display().to_string())
    }

    /// Parses and checks `text`; problems name `path_for_messages`. Every
    /// problem is returned, not only the first.
    pub fn parse(text: &str, path_for_messages: &str) -> Result<Owners, OwnersError> {
        let mut loader = Loader {
            text,
            path: path_for_messages,
            problems: Vec::new(),
        };
        let owners = loader.load();
        let mut problems = loader.problems;
        if problems.is_empty() {
            return Ok(owners);
        }
        problems.sort_by_key(|p| p.position);
        Err(OwnersError::Invalid {
            path: path_for_messages.to_owned(),
            problems,
        })
    }

    /// The file these owners came from, as given for messages.
    pub fn path(&self) -> &str {
        &self.path
    }

    /// The team named `name`.
    pub fn team(&self, name: &str) -> Option<&Team> {
        self.teams.get(name)
    }

    /// Every team, by name.
    pub fn teams(&self) -> impl Iterator<Item = &Team> {
        self.teams.values()
    }

    /// The feature named `name`, when declared.
    pub fn feature(&self, name: &str) -> Option<&Feature> {
        self.features.get(name)
    }

    /// Every declared feature, by name.
    pub fn features(&self) -> impl Iterator<Item = &Feature> {
        self.features.values()
    }

    /// Whether only the agent's tag can put a transaction in `feature`: no
    /// pattern names it.
    pub(crate) fn tags_only(&self, feature: &str) -> bool {
        self.feature(feature).is_none_or(|f| f.patterns.is_empty())
    }

    /// The features `team` owns, by name.
    #[cfg(test)]
    pub(crate) fn features_of_team(&self, team: &str) -> Vec<&Feature> {
        self.features.values().filter(|f| f.team == team).collect()
    }

    /// The team owning `feature`; `None` when the feature is not declared
    /// (an unowned feature the agent tagged).
    pub(crate) fn team_of_feature(&self, feature: &str) -> Option<&Team> {
        self.teams.get(&self.features.get(feature)?.team)
    }

    /// A transaction's feature: the agent's tag when there is one (empty
    /// counts as none), else the most specific matching pattern's feature.
    pub(crate) fn feature_of<'a>(
        &'a self,
        service: &str,
        transaction: &str,
        tagged: Option<&'a str>,
    ) -> Option<&'a str> {
        if let Some(tag) = tagged.filter(|t| !t.is_empty()) {
            return Some(tag);
        }
        self.rule_for(service, transaction).map(|rule| rule.feature.as_str())
    }

    /// The team owning a transaction, through [`Owners::feature_of`].
    pub(crate) fn team_of(&self, service: &str, transaction: &str, tagged: Option<&str>) -> Option<&Team> {
        self.team_of_feature(self.feature_of(service, transaction, tagged)?)
    }

    /// Whether `team` owns the transaction: what `--team` filters by.
    pub fn owns(&self, team: &str, service: &str, transaction: &str, tagged: Option<&str>) -> bool {
        self.team_of(service, transaction, tagged)
            .is_some_and(|t| t.name == team)
    }

    /// Warnings for patterns that decide no transaction among the known
    /// `series` (service, transaction, feature tag or empty): those matching
    /// none, and those whose matches are all tagged or taken by a more
    /// specific pattern. Each message starts with `file:line:column`. With no
    /// series known yet every pattern would be reported, so callers should
    /// skip this on an empty store.
    pub(crate) fn unmatched_patterns(&self, series: &[(String, String, String)]) -> Vec<String> {
        let mut matched = vec![0usize; self.rules.len()];
        let mut decided = vec![false; self.rules.len()];
        for (service, transaction, tag) in series {
            let mut first = tag.is_empty();
            for (i, rule) in self.rules.iter().enumerate() {
                if rule.matches(service, transaction) {
                    matched[i] += 1;
                    decided[i] |= first;
                    first = false;
                }
            }
        }
        let mut warnings: Vec<(Position, String)> = Vec::new();
        for (i, rule) in self.rules.iter().enumerate() {
            let at = format!("{}:{}", self.path, rule.pattern.position);
            let what = format!("pattern {} of feature `{}`", rule.pattern, rule.feature);
            if matched[i] == 0 {
                warnings.push((
                    rule.pattern.position,
                    format!(
                        "{at}: {what} matches none of the {} known transactions; \
                         check the service and transaction names (globs are case-sensitive)",
                        series.len()
                    ),
                ));
            } else if !decided[i] {
                warnings.push((
                    rule.pattern.position,
                    format!(
                        "{at}: {what} matches {} known transaction(s) but decides none: each is tagged \
                         by the agent or matched by a more specific pattern; remove it or narrow the others",
                        matched[i]
                    ),
                ));
            }
        }
        warnings.sort_by_key(|(position, _)| *position);
        warnings.into_iter().map(|(_, message)| message).collect()
    }

    fn rule_for(&self, service: &str, transaction: &str) -> Option<&Rule> {
        self.rules.iter().find(|rule| rule.matches(service, transaction))
    }
}

/// `[teams.NAME]` as written.
#[derive(Deserialize)]
#[serde(deny_unknown_fields, rename = "team table")]
struct RawTeam {
    display_name: Option<String>,
    #[serde(default)]
    email: Vec<Spanned<String>>,
    chat_channel: Option<String>,
    chat_webhook: Option<Spanned<Secret>>,
    chat_webhook_env: Option<Spanned<String>>,
}

/// `[features.NAME]` as written.
#[derive(Deserialize)]
#[serde(deny_unknown_fields, rename = "feature table")]
struct RawFeature {
    team: Spanned<String>,
    description: Option<String>,
    #[serde(default)]
    patterns: Vec<Spanned<RawPattern>>,
}

/// One `{ service = "…", transaction = "…" }` as written.
#[derive(Deserialize)]
#[serde(deny_unknown_fields, rename = "pattern table")]
struct RawPattern {
    service: Option<Spanned<String>>,
    transaction: Option<Spanned<String>>,
}

/// Turns text into [`Owners`], collecting every problem on the way.
struct Loader<'a> {
    text: &'a str,
    path: &'a str,
    problems: Vec<Problem>,
}

impl Loader<'_> {
    fn load(&mut self) -> Owners {
        let mut owners = Owners {
            path: self.path.to_owned(),
            ..Owners::empty()
        };
        let (root, syntax) = DeTable::parse_recoverable(self.text);
        if !syntax.is_empty() {
            // What a broken file recovers to is a guess; its other problems would mislead.
            for error in syntax {
                self.report_toml(ProblemKind::Syntax, &error, "fix the TOML syntax");
            }
            return owners;
        }
        let mut raw_features = Vec::new();
        // Every team named, even one with problems, so its features are not also reported.
        let mut declared = BTreeSet::new();
        for (key, value) in root.into_inner() {
            match key.get_ref().as_ref() {
                "teams" => {
                    for (name, value) in self.entries(&key, value) {
                        declared.insert(name.get_ref().clone());
                        if let Some(team) = self.team(name, value) {
                            owners.teams.insert(team.name.clone(), team);
                        }
                    }
                }
                "features" => {
                    for (name, value) in self.entries(&key, value) {
                        if let Some(raw) = self.deserialize::<RawFeature>(value, "a feature") {
                            raw_features.push((name, raw));
                        }
                    }
                }
                other => self.report(
                    ProblemKind::UnknownKey,
                    key.span().start,
                    format!("unknown key `{other}`; the file holds only [teams.NAME] and [features.NAME] tables"),
                ),
            }
        }
        // In file order, so a conflict is reported at the later of the two declarations.
        raw_features.sort_by_key(|(name, _)| name.span().start);
        let mut claimed: BTreeMap<(String, String), (String, Position)> = BTreeMap::new();
        for (name, raw) in raw_features {
            let feature = self.feature(name, raw, &declared, &mut owners.rules, &mut claimed);
            owners.features.insert(feature.name.clone(), feature);
        }
        owners.rules.sort_by(|a, b| {
            b.specificity
                .cmp(&a.specificity)
                .then(a.pattern.position.cmp(&b.pattern.position))
        });
        owners
    }

    /// The entries of `[key.NAME]` tables; a problem if `value` is no table.
    fn entries<'i>(
        &mut self,
        key: &Spanned<std::borrow::Cow<'i, str>>,
        value: Spanned<DeValue<'i>>,
    ) -> Vec<(Spanned<String>, Spanned<DeValue<'i>>)> {
        let span = value.span();
        match value.into_inner() {
            DeValue::Table(table) => table
                .into_iter()
                .map(|(name, value)| {
                    let span = name.span();
                    (Spanned::new(span, name.into_inner().into_owned()), value)
                })
                .collect(),
            _ => {
                let key = key.get_ref();
                self.report(
                    ProblemKind::InvalidValue,
                    span.start,
                    format!("`{key}` must be a table of tables: write [{key}.NAME] sections"),
                );
                Vec::new()
            }
        }
    }

    fn deserialize<T: for<'de> Deserialize<'de>>(&mut self, value: Spanned<DeValue<'_>>, what: &str) -> Option<T> {
        let start = value.span().start;
        match T::deserialize(ValueDeserializer::from(value)) {
            Ok(raw) => Some(raw),
            Err(error) => {
                let kind = if error.message().starts_with("unknown field") {
                    ProblemKind::UnknownKey
                } else {
                    ProblemKind::InvalidValue
                };
                let hint = format!("see docs/owners.md for the keys of {what}");
                let offset = error.span().map_or(start, |s| s.start);
                self.report(kind, offset, format!("{}; {hint}", flatten(error.message())));
                None
            }
        }
    }

    fn team(&mut self, name: Spanned<String>, value: Spanned<DeValue<'_>>) -> Option<Team> {
        let raw: RawTeam = self.deserialize(value, "a team")?;
        self.check_name(&name, "team");
        for address in &raw.email {
            if !address.get_ref().contains('@') {
                self.report(
                    ProblemKind::InvalidValue,
                    address.span().start,
                    format!("`{}` is not an email address (no `@`)", address.get_ref()),
                );
            }
        }
        if let (Some(_), Some(env)) = (&raw.chat_webhook, &raw.chat_webhook_env) {
            self.report(
                ProblemKind::InvalidValue,
                env.span().start,
                format!(
                    "team `{}` sets both chat_webhook and chat_webhook_env; keep chat_webhook_env \
                     (webhook URLs are secrets) and remove chat_webhook",
                    name.get_ref()
                ),
            );
        }
        if let Some(url) = &raw.chat_webhook {
            let value = url.get_ref().expose();
            if !(value.starts_with("https://") || value.starts_with("http://")) {
                self.report(
                    ProblemKind::InvalidValue,
                    url.span().start,
                    "chat_webhook must be an http(s) URL".to_owned(),
                );
            }
        }
        if let Some(env) = &raw.chat_webhook_env {
            let var = env.get_ref();
            if var.is_empty() || !var.chars().all(|c| c.is_ascii_alphanumeric() || c == '_') {
                self.report(
                    ProblemKind::InvalidValue,
                    env.span().start,
                    format!(
                        "chat_webhook_env = {var:?} is not a variable name; name the variable \
                         (letters, digits, `_`), not its value"
                    ),
                );
            }
        }
        Some(Team {
            position: self.position(name.span().start),
            name: name.into_inner(),
            display_name: raw.display_name,
            email: raw.email.into_iter().map(Spanned::into_inner).collect(),
            chat_channel: raw.chat_channel,
            chat_webhook: raw.chat_webhook.map(Spanned::into_inner),
            chat_webhook_env: raw.chat_webhook_env.map(Spanned::into_inner),
        })
    }

    fn feature(
        &mut self,
        name: Spanned<String>,
        raw: RawFeature,
        teams: &BTreeSet<String>,
        rules: &mut Vec<Rule>,
        claimed: &mut BTreeMap<(String, String), (String, Position)>,
    ) -> Feature {
        self.check_name(&name, "feature");
        let feature_name = name.get_ref().clone();
        if !teams.contains(raw.team.get_ref()) {
            let known: Vec<&str> = teams.iter().map(String::as_str).collect();
            self.report(
                ProblemKind::UnknownTeam,
                raw.team.span().start,
                format!(
                    "feature `{feature_name}` names team `{}`, which is not declared; declare [teams.{}] \
                     or use one of: {}",
                    raw.team.get_ref(),
                    raw.team.get_ref(),
                    if known.is_empty() {
                        "(no teams declared)".to_owned()
                    } else {
                        known.join(", ")
                    }
                ),
            );
        }
        let mut patterns = Vec::new();
        for raw_pattern in raw.patterns {
            let position = self.position(raw_pattern.span().start);
            let raw_pattern = raw_pattern.into_inner();
            if raw_pattern.service.is_none() && raw_pattern.transaction.is_none() {
                self.report(
                    ProblemKind::InvalidValue,
                    self.offset_of(position),
                    format!(
                        "a pattern of feature `{feature_name}` has neither service nor transaction; \
                         give at least one (write service = \"*\" to mean every transaction)"
                    ),
                );
                continue;
            }
            let service = self.glob(raw_pattern.service.as_ref(), &feature_name);
            let transaction = self.glob(raw_pattern.transaction.as_ref(), &feature_name);
            let text = |g: &Option<Spanned<String>>| g.as_ref().map_or("*".to_owned(), |g| g.get_ref().clone());
            let pattern = Pattern {
                service: text(&raw_pattern.service),
                transaction: text(&raw_pattern.transaction),
                position,
            };
            let key = (pattern.service.clone(), pattern.transaction.clone());
            match claimed.get(&key) {
                Some((other, _)) if *other == feature_name => continue, // a harmless repeat
                Some((other, other_position)) => {
                    let message = format!(
                        "pattern {pattern} is declared by feature `{other}` (at {}:{}) and by feature \
                         `{feature_name}` (at {}:{}); a transaction has one feature: remove one of them",
                        self.path, other_position.line, self.path, position.line
                    );
                    self.report(ProblemKind::Conflict, self.offset_of(position), message);
                    continue;
                }
                None => {
                    claimed.insert(key, (feature_name.clone(), position));
                }
            }
            if let (Some((service, service_spec)), Some((transaction, transaction_spec))) = (service, transaction) {
                rules.push(Rule {
                    feature: feature_name.clone(),
                    specificity: Specificity {
                        transaction_literal: transaction_spec.literal,
                        service_literal: service_spec.literal,
                        transaction_prefix: transaction_spec.prefix,
                        service_prefix: service_spec.prefix,
                        transaction_literal_chars: transaction_spec.literal_chars,
                        service_literal_chars: service_spec.literal_chars,
                    },
                    pattern: pattern.clone(),
                    service,
                    transaction,
                });
            }
            patterns.push(pattern);
        }
        Feature {
            position: self.position(name.span().start),
            name: feature_name,
            team: raw.team.into_inner(),
            description: raw.description,
            patterns,
        }
    }

    /// Compiles one glob (`*` when absent); `None` after reporting a bad one.
    fn glob(&mut self, glob: Option<&Spanned<String>>, feature: &str) -> Option<(GlobMatcher, GlobShape)> {
        let (text, offset) = match glob {
            Some(g) => (g.get_ref().as_str(), g.span().start),
            None => ("*", 0),
        };
        if text.is_empty() {
            self.report(
                ProblemKind::InvalidGlob,
                offset,
                format!("an empty glob in feature `{feature}` matches nothing; write \"*\" for anything"),
            );
            return None;
        }
        let shape = GlobShape::of(text);
        let built = GlobBuilder::new(&shape.glob)
            .literal_separator(false)
            .backslash_escape(true)
            .case_insensitive(false)
            .build();
        match built {
            Ok(g) => Some((g.compile_matcher(), shape)),
            Err(error) => {
                let reason = match error.kind() {
                    globset::ErrorKind::UnclosedClass => "a `[` class is not closed with `]`".to_owned(),
                    globset::ErrorKind::DanglingEscape => "it ends with a lone `\\`".to_owned(),
                    kind => kind.to_string(),
                };
                self.report(
                    ProblemKind::InvalidGlob,
                    offset,
                    format!(
                        "invalid glob {text:?} in feature `{feature}`: {reason}; globs know `*`, `?` and \
                         `[...]`, and `\\` makes the next character literal"
                    ),
                );
                None
            }
        }
    }

    fn check_name(&mut self, name: &Spanned<String>, what: &str) {
        if name.get_ref().trim().is_empty() {
            self.report(
                ProblemKind::InvalidValue,
                name.span().start,
                format!("a {what} needs a non-empty name"),
            );
        }
    }

    fn report_toml(&mut self, kind: ProblemKind, error: &toml::de::Error, hint: &str) {
        let offset = error.span().map_or(0, |s| s.start);
        self.report(kind, offset, format!("{}; {hint}", flatten(error.message())));
    }

    fn report(&mut self, kind: ProblemKind, offset: usize, message: String) {
        self.problems.push(Problem {
            kind,
            path: self.path.to_owned(),
            position: self.position(offset),
            message,
        });
    }

    /// The 1-based line and column of byte `offset`.
    fn position(&self, offset: usize) -> Position {
        let mut offset = offset.min(self.text.len());
        while !self.text.is_char_boundary(offset) {
            offset -= 1;
        }
        let before = &self.text[..offset];
        let line_start = before.rfind('\n').map_or(0, |i| i + 1);
        Position {
            line: before.matches('\n').count() + 1,
            column: before[line_start..].chars().count() + 1,
        }
    }

    /// The byte offset of `position` (the inverse of [`Loader::position`]).
    fn offset_of(&self, position: Position) -> usize {
        let line_start: usize = self
            .text
            .split_inclusive('\n')
            .take(position.line.saturating_sub(1))
            .map(str::len)
            .sum();
        let column: usize = self.text[line_start..]
            .chars()
            .take(position.column.saturating_sub(1))
            .map(char::len_utf8)
            .sum();
        line_start + column
    }
}

fn flatten(message: &str) -> String {
    message.trim().replace('\n', " ")
}

/// A user's glob made ready for `globset`, with how specific it is.
#[derive(Debug, PartialEq)]
struct GlobShape {
    /// The glob for `globset`: braces escaped, since `{` and `}` are literal
    /// here (route templates like `/cards/{id}`), not alternation.
    glob: String,
    /// No `*`, `?` or `[`: matches one string only.
    literal: bool,
    /// Literal characters before the first wildcard.
    prefix: usize,
    /// Literal characters anywhere.
    literal_chars: usize,
}

impl GlobShape {
    fn of(text: &str) -> GlobShape {
        let mut glob = String::with_capacity(text.len() + 4);
        let mut wild = false;
        let (mut prefix, mut literal_chars) = (0, 0);
        let mut literal = |wild: bool, prefix: &mut usize| {
            literal_chars += 1;
            if !wild {
                *prefix += 1;
            }
        };
        let mut chars = text.chars().peekable();
        while let Some(c) = chars.next() {
            match c {
                '\\' => {
                    glob.push('\\');
                    if let Some(next) = chars.next() {
                        glob.push(next);
                        literal(wild, &mut prefix);
                    }
                }
                '*' | '?' => {
                    wild = true;
                    glob.push(c);
                }
                '[' => {
                    wild = true;
                    glob.push('[');
                    // Copy the class whole: `!` or `^` and a leading `]` belong to it.
                    if let Some(&n) = chars.peek().filter(|n| matches!(n, '!' | '^')) {
                        glob.push(n);
                        chars.next();
                    }
                    if let Some(&n) = chars.peek().filter(|n| **n == ']') {
                        glob.push(n);
                        chars.next();
                    }
                    for n in chars.by_ref() {
                        glob.push(n);
                        if n == ']' {
                            break;
                        }
                    }
                }
                '{' | '}' => {
                    glob.push('\\');
                    glob.push(c);
                    literal(wild, &mut prefix);
                }
                _ => {
                    glob.push(c);
                    literal(wild, &mut prefix);
                }
            }
        }
        GlobShape {
            glob,
            literal: !wild,
            prefix,
            literal_chars,
        }
    }
}

#[cfg(test)]
mod tests;
