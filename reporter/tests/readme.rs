//! The README, run as a newcomer runs it: every command of its quick start
//! ("Two commands"), of "Asking questions" and of "Reports, digests and
//! alerts", and the commands the demo's banner suggests, against a folder
//! of `kuroko demo --minutes 1`. The commands are read from README.md's
//! fenced `bash` blocks, so the README and this test cannot drift apart.
//! Each must exit 0 and say something about the demo (name one of its
//! services or teams, or the error group it acts on); the few that cannot
//! run here are skipped with their reason, printed.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Command;

use kuroko_reporter::demo::fleet;

#[path = "support/demo_run.rs"]
mod demo_run;
#[path = "support/kuroko_serve.rs"]
mod kuroko_serve;

/// The README itself, at the time this test was built (cargo rebuilds the
/// test when it changes).
const README: &str = include_str!("../../README.md");

/// The sections whose commands a newcomer runs.
const SECTIONS: [&str; 3] = [
    "## Two commands",
    "### Asking questions",
    "### Reports, digests and alerts",
];

/// The text under `heading`, up to the next heading of its level or
/// higher (lines of fenced blocks are not headings).
fn section<'a>(readme: &'a str, heading: &str) -> &'a str {
    let level = heading.split(' ').next().unwrap_or_default().len();
    let mut start = None;
    let mut offset = 0;
    let mut fenced = false;
    for line in readme.split_inclusive('\n') {
        let here = offset;
        offset += line.len();
        if line.starts_with("```") {
            fenced = !fenced;
            continue;
        }
        if fenced {
            continue;
        }
        let hashes = line.chars().take_while(|c| *c == '#').count();
        match start {
            None if line.trim_end() == heading => start = Some(offset),
            Some(from) if hashes > 0 && hashes <= level && line[hashes..].starts_with(' ') => {
                return &readme[from..here];
            }
            _ => {}
        }
    }
    let from = start.unwrap_or_else(|| panic!("README.md has no section {heading:?}"));
    &readme[from..]
}

/// The contents of the fenced blocks marked `bash` in `text`.
fn bash_blocks(text: &str) -> Vec<String> {
    let mut blocks = Vec::new();
    let mut current: Option<String> = None;
    for line in text.lines() {
        match (&mut current, line.trim_start().strip_prefix("```")) {
            (None, Some(info)) if info.trim() == "bash" => current = Some(String::new()),
            (None, Some(_)) => current = Some(String::from("\u{0}")), // another language: skipped
            (Some(_), Some(_)) => {
                let block = current.take().unwrap_or_default();
                if !block.starts_with('\u{0}') {
                    blocks.push(block);
                }
            }
            (Some(block), None) => {
                block.push_str(line);
                block.push('\n');
            }
            (None, None) => {}
        }
    }
    blocks
}

/// The commands of a shell script, each as its words: quotes (single and
/// double) and backslash continuations as a shell reads them, `#` comments
/// dropped. Nothing is expanded: a `$` is kept as written.
fn shell_commands(script: &str) -> Vec<Vec<String>> {
    let mut commands = Vec::new();
    let mut words: Vec<String> = Vec::new();
    let mut word = String::new();
    let mut in_word = false;
    let mut chars = script.chars().peekable();
    let end_word = |words: &mut Vec<String>, word: &mut String, in_word: &mut bool| {
        if *in_word {
            words.push(std::mem::take(word));
            *in_word = false;
        }
    };
    while let Some(c) = chars.next() {
        match c {
            '\\' if chars.peek() == Some(&'\n') => {
                chars.next();
            }
            '\\' => {
                if let Some(next) = chars.next() {
                    word.push(next);
                    in_word = true;
                }
            }
            '\'' => {
                in_word = true;
                for next in chars.by_ref() {
                    if next == '\'' {
                        break;
                    }
                    word.push(next);
                }
            }
            '"' => {
                in_word = true;
                while let Some(next) = chars.next() {
                    match next {
                        '"' => break,
                        '\\' => word.extend(chars.next()),
                        _ => word.push(next),
                    }
                }
            }
            '#' if !in_word => {
                while chars.peek().is_some_and(|next| *next != '\n') {
                    chars.next();
                }
            }
            '\n' => {
                end_word(&mut words, &mut word, &mut in_word);
                if !words.is_empty() {
                    commands.push(std::mem::take(&mut words));
                }
            }
            c if c.is_whitespace() => end_word(&mut words, &mut word, &mut in_word),
            c => {
                word.push(c);
                in_word = true;
            }
        }
    }
    end_word(&mut words, &mut word, &mut in_word);
    if !words.is_empty() {
        commands.push(words);
    }
    commands
}

/// Why a command of the README is not run here, if it is not.
fn skipped(words: &[String]) -> Option<&'static str> {
    // Leading NAME=value words set the command's environment.
    let command: Vec<&str> = words
        .iter()
        .map(String::as_str)
        .skip_while(|w| w.split_once('=').is_some_and(|(name, _)| is_variable(name)))
        .collect();
    match command.as_slice() {
        ["cargo", "install", ..] => Some(
            "compiles a release build of `kuroko` (minutes); this test runs the `kuroko` cargo built for it",
        ),
        ["cargo", "run", .., "--", "demo"] => Some(
            "compiles the reporter; this test runs the same demo with the binary cargo built for it (`kuroko demo --minutes 1`)",
        ),
        ["cargo", "run", rest @ ..] if rest.windows(2).any(|w| w == ["--example", "axum_service"]) => Some(
            "compiles the agent's example; tests/tests/example_service.rs and whole_path.rs run it, with --export, from cargo's build",
        ),
        ["tests/run-all.sh"] => Some("runs the whole suite, this test included"),
        ["export", assignment] if assignment.starts_with("PATH=") => {
            Some("`kuroko` here is the binary cargo built for this test (CARGO_BIN_EXE_kuroko)")
        }
        _ => None,
    }
}

fn is_variable(name: &str) -> bool {
    !name.is_empty()
        && name
            .chars()
            .all(|c| c.is_ascii_uppercase() || c.is_ascii_digit() || c == '_')
}

/// The demo's names: what a meaningful answer about it mentions.
fn names_the_demo(text: &str) -> bool {
    fleet::SERVICES.iter().any(|s| text.contains(s)) || fleet::TEAMS.iter().any(|(team, _, _)| text.contains(team))
}

/// A command's output says something about the demo: it names one of its
/// services or teams, or lists files (a preview) of which one does.
fn meaningful(words: &[String], stdout: &str, cwd: &Path) -> Result<(), String> {
    if stdout.trim().is_empty() {
        return Err("printed nothing".into());
    }
    // `kuroko errors ACTION GROUP …` answers with the group and its status.
    if words.get(1).map(String::as_str) == Some("errors") {
        let group = words.get(3).map(String::as_str).unwrap_or_default();
        return if stdout.contains(&format!("error group {group}: ")) {
            Ok(())
        } else {
            Err(format!("does not name the error group {group}"))
        };
    }
    // `kuroko report weekly --send` after the demo sent this week's: the ledger says so.
    if stdout.contains("nothing sent: already sent") {
        return Ok(());
    }
    if names_the_demo(stdout) {
        return Ok(());
    }
    let files: Vec<PathBuf> = stdout
        .lines()
        .map(|l| cwd.join(l.trim()))
        .filter(|p| p.is_file())
        .collect();
    if files
        .iter()
        .any(|f| std::fs::read(f).is_ok_and(|bytes| names_the_demo(&String::from_utf8_lossy(&bytes))))
    {
        return Ok(());
    }
    Err("names none of the demo's services or teams".into())
}

/// What running the README found: one line per command.
#[derive(Default)]
struct Findings {
    ran: Vec<String>,
    skipped: Vec<String>,
    failed: Vec<String>,
}

/// Runs README commands (and the banner's) in `cwd` with the binary cargo
/// built; `export NAME=value` lines set the environment of those after.
struct Runner {
    cwd: PathBuf,
    env: BTreeMap<String, String>,
    /// A `kuroko serve` on the demo's configuration, for `--server`, started at the first need.
    server: Option<kuroko_serve::Serve>,
    findings: Findings,
}

impl Runner {
    fn run(&mut self, words: Vec<String>) {
        let shown = words.join(" ");
        if let Some(reason) = skipped(&words) {
            self.findings.skipped.push(format!("{shown}\n      skipped: {reason}"));
            return;
        }
        if let [export, assignment] = words.as_slice() {
            if export == "export" {
                let (name, value) = assignment
                    .split_once('=')
                    .unwrap_or_else(|| panic!("README: `{shown}` sets no variable"));
                assert!(
                    !value.contains('$'),
                    "README: `{shown}`: this test expands no variables"
                );
                self.env.insert(name.to_owned(), value.to_owned());
                self.findings.ran.push(format!("{shown}   (for the commands after it)"));
                return;
            }
        }
        let Some((program, args)) = words.split_first() else {
            return;
        };
        assert!(
            program == "kuroko" || program == env!("CARGO_BIN_EXE_kuroko"),
            "README: `{shown}` is neither a `kuroko` command nor skipped with a reason: teach tests/readme.rs"
        );
        let mut args = args.to_vec();
        let mut shown = shown;
        if let Some(at) = args.iter().position(|a| a == "--server") {
            let url = self.server_url();
            shown.push_str(&format!(
                "   (--server: {url}, a `kuroko serve` on the demo's configuration)"
            ));
            match args.get_mut(at + 1) {
                Some(value) => *value = url,
                None => panic!("README: `{shown}`: --server without an address"),
            }
        }
        let output = Command::new(env!("CARGO_BIN_EXE_kuroko"))
            .args(&args)
            .current_dir(&self.cwd)
            .env_remove("KUROKO_CONFIG")
            .env_remove("KUROKO_STORE")
            .env_remove("KUROKO_QUERY_TOKEN")
            .env_remove("RUST_BACKTRACE")
            .envs(&self.env)
            .output()
            .expect("the kuroko binary cargo built for this test starts");
        let stdout = String::from_utf8_lossy(&output.stdout);
        let stderr = String::from_utf8_lossy(&output.stderr);
        let lines = stdout.lines().count();
        let verdict = if output.status.success() {
            meaningful(&words, &stdout, &self.cwd)
        } else {
            Err(format!("exit {:?}", output.status.code()))
        };
        match verdict {
            Ok(()) => self.findings.ran.push(format!("{shown}   (exit 0, {lines} lines)")),
            Err(why) => self.findings.failed.push(format!(
                "{shown}\n      {why}\n      stdout: {stdout}\n      stderr: {stderr}"
            )),
        }
    }

    /// The address of a reporter on the demo's configuration (its store and owners).
    fn server_url(&mut self) -> String {
        let config = self.cwd.join("kuroko-demo").join("kuroko.toml");
        let server = self.server.get_or_insert_with(|| {
            let config = config.to_str().expect("a temporary folder's name is text").to_owned();
            kuroko_serve::Serve::start(&["--config", &config, "--http", "127.0.0.1:0", "--grpc", "127.0.0.1:0"])
        });
        format!("http://{}", server.http)
    }
}

/// The commands the demo's banner suggests: those after "Try a query" and
/// in "(use it with …)", which start with the program's path.
fn banner_commands(banner: &str) -> Vec<Vec<String>> {
    let program = format!("{} ", env!("CARGO_BIN_EXE_kuroko"));
    banner
        .lines()
        .filter_map(|line| line.find(&program).map(|at| &line[at..]))
        .map(|command| match command.strip_suffix(')') {
            Some(inside) if !command.contains('(') => inside,
            _ => command,
        })
        .flat_map(shell_commands)
        .collect()
}

#[test]
fn the_readme_parses_as_a_shell_reads_it() {
    let commands = shell_commands(
        "export A=b   # a comment\nkuroko query x --transaction 'GET /a/{id}' \\\n   --since 2h  # why\n# only a comment\nkuroko sql \"SELECT \\\"x\\\" # not a comment\"\n",
    );
    assert_eq!(
        commands,
        [
            vec!["export", "A=b"],
            vec!["kuroko", "query", "x", "--transaction", "GET /a/{id}", "--since", "2h"],
            vec!["kuroko", "sql", "SELECT \"x\" # not a comment"],
        ]
    );
    for heading in SECTIONS {
        let blocks = bash_blocks(section(README, heading));
        assert!(!blocks.is_empty(), "{heading}: no bash block");
    }
    assert!(!section(README, "### Asking questions").contains("### Reports"));
}

#[test]
fn every_readme_command_runs_against_the_demo() {
    let base = demo_run::temp_dir("readme");
    std::fs::create_dir_all(&base).unwrap();
    // As the README says, but bounded, and on a free port.
    let output = demo_run::demo(&base, &["--minutes", "1"]);
    let banner = String::from_utf8_lossy(&output.stdout).into_owned();
    assert!(
        output.status.success(),
        "kuroko demo --minutes 1: exit {:?}\n{banner}\n{}",
        output.status,
        String::from_utf8_lossy(&output.stderr)
    );
    assert!(base.join("kuroko-demo").join("kuroko.toml").is_file(), "{banner}");

    let mut runner = Runner {
        cwd: base.clone(),
        env: BTreeMap::new(),
        server: None,
        findings: Findings::default(),
    };
    let banner_commands = banner_commands(&banner);
    assert!(banner_commands.len() >= 3, "the banner suggests commands:\n{banner}");
    for words in banner_commands {
        runner.run(words);
    }
    let mut from_readme = 0;
    for heading in SECTIONS {
        for block in bash_blocks(section(README, heading)) {
            for words in shell_commands(&block) {
                from_readme += 1;
                runner.run(words);
            }
        }
    }
    drop(runner.server.take());

    let Findings { ran, skipped, failed } = runner.findings;
    eprintln!("README commands and the demo banner's, run in {}:", base.display());
    for line in &ran {
        eprintln!("  ok    {line}");
    }
    for line in &skipped {
        eprintln!("  skip  {line}");
    }
    for line in &failed {
        eprintln!("  FAIL  {line}");
    }
    assert!(
        failed.is_empty(),
        "{} command(s) of the README failed (above)",
        failed.len()
    );
    assert!(
        from_readme >= 15,
        "only {from_readme} commands found in the README's sections"
    );
    assert!(ran.len() >= 15, "only {} commands ran", ran.len());
    std::fs::remove_dir_all(&base).unwrap();
}

/// A newcomer who forgets the configuration is told which file was read
/// (none, or one without `owners`) and how to pass one, and nothing is
/// created in their folder.
#[test]
fn a_team_without_owners_says_which_configuration_was_read_and_how_to_pass_one() {
    let dir = demo_run::temp_dir("readme-no-owners");
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(dir.join("plain.toml"), "store = \"kuroko.db\"\n").unwrap();
    let run = |args: &[&str], config: Option<&str>| {
        let mut command = Command::new(env!("CARGO_BIN_EXE_kuroko"));
        command.args(args).current_dir(&dir).env_remove("KUROKO_CONFIG");
        if let Some(config) = config {
            command.env("KUROKO_CONFIG", config);
        }
        let output = command
            .output()
            .expect("the kuroko binary cargo built for this test starts");
        assert!(!output.status.success(), "{args:?} succeeded");
        String::from_utf8_lossy(&output.stderr).into_owned()
    };
    let weekly = [
        "report",
        "weekly",
        "--team",
        "payments",
        "--dry-run",
        "--out",
        "preview",
    ];
    let none = run(&weekly, None);
    assert!(
        none.contains("no configuration file was given") && none.contains("--config FILE"),
        "{none}"
    );
    let plain = run(&weekly, Some("plain.toml"));
    assert!(
        plain.contains("the configuration file plain.toml sets no `owners`") && plain.contains("KUROKO_CONFIG"),
        "{plain}"
    );
    let slowest = run(
        &["query", "slowest", "--team", "discovery", "--config", "plain.toml"],
        None,
    );
    assert!(slowest.contains("plain.toml sets no `owners`"), "{slowest}");
    let assign = run(&["errors", "assign", "cb2cbe63977a5d0c", "payments"], None);
    assert!(assign.contains("no configuration file was given"), "{assign}");
    let left: Vec<_> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    assert_eq!(left, ["plain.toml"], "nothing is created by a command that fails");
    std::fs::remove_dir_all(&dir).unwrap();
}
