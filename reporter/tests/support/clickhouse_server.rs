//! A real ClickHouse server for the integration tests, shared by
//! `clickhouse_store.rs`, `clickhouse_replicas.rs`,
//! `grafana_dashboards.rs`, `cumulative_replicas.rs`, `hostile_values.rs`,
//! `problems.rs`, `interop_python_sdk.rs` and `stores.rs` (the suite run on
//! both stores) through
//! `#[path]`.
//!
//! Which engine: Debian's `clickhouse-server` 18.16 (installed by
//! tests/run-all.sh) by default; with `KUROKO_TEST_CLICKHOUSE=chdb`, a
//! current ClickHouse engine instead: chDB (PyPI's `chdb-core`, also
//! installed by tests/run-all.sh) behind `tests/python/chdb_http.py`, which
//! imitates the part of ClickHouse's HTTP interface the store uses.
//! tests/run-all.sh runs the ClickHouse tests on both.
//!
//! One server is started per test binary, on free loopback ports with a
//! temporary data folder, by a small shell watchdog that stops it (and
//! deletes the folder) once the test process has exited. No server, no
//! pass: a test fails with the reason.

#![allow(dead_code)]

use std::process::{Child, Command, Stdio};
use std::sync::{Mutex, OnceLock};
use std::time::{Duration, Instant};

use kuroko_reporter::store::clickhouse::ClickHouseStore;

/// The running server.
pub struct Server {
    /// Its HTTP port.
    pub port: u16,
    /// Its folder: the server runs while `run` is in it (the watchdog
    /// starts and stops it, see [`Server::stop`]).
    dir: std::path::PathBuf,
    _watchdog: Mutex<Child>,
}

impl Server {
    /// Stops the server (SIGTERM, as a service manager would) and waits
    /// until it no longer answers; its data stays.
    pub fn stop(&self) {
        std::fs::remove_file(self.dir.join("run")).unwrap();
        let started = Instant::now();
        while self.answers() {
            assert!(
                started.elapsed() < Duration::from_secs(120),
                "ClickHouse did not stop within 120 s"
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// Starts the stopped server again on the same ports and data, and
    /// waits until it answers.
    pub fn resume(&self) {
        std::fs::write(self.dir.join("run"), "").unwrap();
        self.wait_until_it_answers();
    }

    fn answers(&self) -> bool {
        ureq::get(format!("http://127.0.0.1:{}/ping", self.port))
            .call()
            .is_ok_and(|response| response.status() == 200)
    }

    fn wait_until_it_answers(&self) {
        let started = Instant::now();
        while !self.answers() {
            if started.elapsed() > Duration::from_secs(90) {
                let log = |name: &str| std::fs::read_to_string(self.dir.join(name)).unwrap_or_default();
                panic!(
                    "ClickHouse did not answer on port {} within 90 s.\nstdout: {}\nerrors: {}",
                    self.port,
                    log("stdout.log"),
                    log("server.err.log")
                );
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    }
}

/// A port nothing listens on now.
pub fn free_port() -> u16 {
    let [port] = free_ports();
    port
}

/// `N` different ports nothing listens on now: each is held until all are
/// picked, so that two cannot be the same.
pub fn free_ports<const N: usize>() -> [u16; N] {
    let listeners: [std::net::TcpListener; N] =
        std::array::from_fn(|_| std::net::TcpListener::bind("127.0.0.1:0").unwrap());
    listeners.map(|listener| listener.local_addr().unwrap().port())
}

/// chDB's imitation of ClickHouse's HTTP interface.
const CHDB_HTTP: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../tests/python/chdb_http.py");

/// True when the tests run on chDB (`KUROKO_TEST_CLICKHOUSE=chdb`) rather
/// than on Debian's `clickhouse-server` (unset, or `clickhouse-server`).
pub fn on_chdb() -> bool {
    match std::env::var("KUROKO_TEST_CLICKHOUSE").as_deref() {
        Ok("chdb") => true,
        Ok("clickhouse-server") | Ok("") | Err(_) => false,
        Ok(other) => panic!("KUROKO_TEST_CLICKHOUSE={other}: expected chdb or clickhouse-server (or unset)"),
    }
}

/// The command serving chDB on `port` with its databases in `data`.
fn chdb_command(port: u16, data: &std::path::Path) -> Vec<String> {
    let found = Command::new("python3")
        .args(["-c", "import chdb.session"])
        .stdin(Stdio::null())
        .output();
    match found {
        Ok(output) if output.status.success() => {}
        Ok(output) => panic!(
            "KUROKO_TEST_CLICKHOUSE=chdb but Python cannot import chdb (install PyPI's chdb-core: tests/run-all.sh does): {}",
            String::from_utf8_lossy(&output.stderr).trim()
        ),
        Err(e) => panic!("KUROKO_TEST_CLICKHOUSE=chdb needs python3 with chdb-core (tests/run-all.sh installs it): {e}"),
    }
    vec![
        "python3".to_owned(),
        CHDB_HTTP.to_owned(),
        format!("--port={port}"),
        format!("--path={}", data.display()),
    ]
}

/// The server binary: Debian's `clickhouse-server`, or a release's `clickhouse server`.
fn server_command() -> Vec<String> {
    for path in ["/usr/sbin/clickhouse-server", "/usr/bin/clickhouse-server"] {
        if std::path::Path::new(path).exists() {
            return vec![path.to_owned()];
        }
    }
    for dir in std::env::var("PATH").unwrap_or_default().split(':') {
        if std::path::Path::new(dir).join("clickhouse-server").exists() {
            return vec![format!("{dir}/clickhouse-server")];
        }
        if std::path::Path::new(dir).join("clickhouse").exists() {
            return vec![format!("{dir}/clickhouse"), "server".to_owned()];
        }
    }
    panic!("no ClickHouse server: install Debian's clickhouse-server (tests/run-all.sh does: apt-get install clickhouse-server)");
}

/// The server, started on first use.
pub fn server() -> &'static Server {
    static SERVER: OnceLock<Server> = OnceLock::new();
    SERVER.get_or_init(start_server)
}

/// A server of its own, which the caller may stop and start again (the
/// shared one of [`server`] must keep running for the other tests).
pub fn own_server(name: &str) -> Server {
    launch(std::env::temp_dir().join(format!("kuroko-clickhouse-{name}-{}", std::process::id())))
}

fn start_server() -> Server {
    launch(std::env::temp_dir().join(format!("kuroko-clickhouse-{}", std::process::id())))
}

fn launch(dir: std::path::PathBuf) -> Server {
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(dir.join("data")).unwrap();
    let [port, tcp_port] = free_ports();
    let d = dir.display();
    std::fs::write(
        dir.join("config.xml"),
        format!(
            "<?xml version=\"1.0\"?>
<yandex>
    <logger><level>warning</level><log>{d}/server.log</log><errorlog>{d}/server.err.log</errorlog></logger>
    <http_port>{port}</http_port>
    <tcp_port>{tcp_port}</tcp_port>
    <listen_host>127.0.0.1</listen_host>
    <path>{d}/data/</path>
    <tmp_path>{d}/data/tmp/</tmp_path>
    <user_files_path>{d}/data/user_files/</user_files_path>
    <format_schema_path>{d}/data/format_schemas/</format_schema_path>
    <mark_cache_size>67108864</mark_cache_size>
    <users_config>{d}/users.xml</users_config>
    <default_profile>default</default_profile>
    <default_database>default</default_database>
    <timezone>UTC</timezone>
</yandex>
"
        ),
    )
    .unwrap();
    std::fs::write(
        dir.join("users.xml"),
        "<?xml version=\"1.0\"?>
<yandex>
    <profiles><default><max_memory_usage>2000000000</max_memory_usage></default></profiles>
    <users><default><password></password><networks><ip>127.0.0.1</ip></networks>
        <profile>default</profile><quota>default</quota></default></users>
    <quotas><default><interval><duration>3600</duration><queries>0</queries><errors>0</errors>
        <result_rows>0</result_rows><read_rows>0</read_rows><execution_time>0</execution_time></interval></default></quotas>
</yandex>
",
    )
    .unwrap();
    let command = if on_chdb() {
        chdb_command(port, &dir.join("data"))
    } else {
        let mut command = server_command();
        command.push(format!("--config-file={d}/config.xml"));
        command
    };
    // The watchdog: runs the server while `run` is in its folder and this
    // test process lives, then stops it and deletes the folder.
    std::fs::write(dir.join("run"), "").unwrap();
    let script = r#"
        dir="$1"; parent="$2"; shift 2
        server=""
        while kill -0 "$parent" 2>/dev/null; do
            if [ -e "$dir/run" ] && { [ -z "$server" ] || ! kill -0 "$server" 2>/dev/null; }; then
                "$@" >>"$dir/stdout.log" 2>&1 &
                server=$!
            elif [ ! -e "$dir/run" ] && [ -n "$server" ]; then
                kill "$server" 2>/dev/null; wait "$server"; server=""
            fi
            sleep 0.2
        done
        [ -n "$server" ] && { kill "$server" 2>/dev/null; wait "$server"; }
        rm -rf "$dir"
    "#;
    let watchdog = Command::new("sh")
        .arg("-c")
        .arg(script)
        .arg("watchdog")
        .arg(&dir)
        .arg(std::process::id().to_string())
        .args(&command)
        .stdin(Stdio::null())
        .spawn()
        .unwrap_or_else(|e| panic!("cannot start {command:?} under sh: {e}"));
    let server = Server {
        port,
        dir,
        _watchdog: Mutex::new(watchdog),
    };
    server.wait_until_it_answers();
    server
}

/// A store on a database of its own, emptied first.
pub fn clickhouse(database: &str) -> ClickHouseStore {
    let port = server().port;
    let response = ureq::post(format!("http://127.0.0.1:{port}/"))
        .send(format!("DROP DATABASE IF EXISTS {database}"))
        .unwrap();
    assert_eq!(response.status(), 200);
    ClickHouseStore::connect(&format!("clickhouse://127.0.0.1:{port}/{database}")).unwrap()
}

/// Another connection to `database`, as a second replica would open.
pub fn connect_again(database: &str) -> ClickHouseStore {
    ClickHouseStore::connect(&format!("clickhouse://127.0.0.1:{}/{database}", server().port)).unwrap()
}

/// The store URL of `database` on the server.
pub fn url(database: &str) -> String {
    format!("clickhouse://127.0.0.1:{}/{database}", server().port)
}

/// Runs `sql` on the server (64-bit integers in JSON unquoted); its answer,
/// or the server's error.
pub fn query(sql: &str) -> Result<String, String> {
    let response = ureq::post(format!(
        "http://127.0.0.1:{}/?output_format_json_quote_64bit_integers=0",
        server().port
    ))
    .config()
    .http_status_as_error(false)
    .build()
    .send(sql)
    .map_err(|e| e.to_string())?;
    let ok = response.status() == 200;
    let text = response.into_body().read_to_string().map_err(|e| e.to_string())?;
    if ok {
        Ok(text)
    } else {
        Err(text)
    }
}

/// `kuroko serve` on loopback over a fresh store: the database `database`
/// of this server (`clickhouse`, the replica's journal in `dir`), else a
/// SQLite file in `dir`. `dir` is emptied first. The reporter and the
/// store's location.
pub async fn serve_fresh(
    dir: &std::path::Path,
    database: &str,
    clickhouse: bool,
) -> (kuroko_reporter::serve::Running, String) {
    let _ = std::fs::remove_dir_all(dir);
    std::fs::create_dir_all(dir).unwrap();
    let store = if clickhouse {
        drop(self::clickhouse(database));
        url(database)
    } else {
        dir.join("kuroko.db").display().to_string()
    };
    let mut config = kuroko_reporter::config::Config {
        store: store.clone().into(),
        grpc_listen: "127.0.0.1:0".parse().unwrap(),
        http_listen: "127.0.0.1:0".parse().unwrap(),
        ..kuroko_reporter::config::Config::default()
    };
    config.journal.dir = dir.join("journal");
    let reporter = kuroko_reporter::serve::start(&config).await.unwrap();
    (reporter, store)
}
