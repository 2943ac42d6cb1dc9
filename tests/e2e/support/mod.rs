//! The end-to-end harness: the real worker under `wrangler dev`, real local D1 and Durable
//! Objects, driven over plain HTTP.
//!
//! - [`worker`] is one worker shared by every test in this binary; [`spawn`] starts a
//!   dedicated one with its own vars (another environment, small limits, no schema).
//! - Each worker gets free ports and a fresh state directory.
//! - A test that panics prints the worker's log (through [`Worker::on_failure`]).
//! - No process outlives the test binary: wrangler runs under a small supervisor shell that
//!   kills its whole process group as soon as the pipe from this process closes, which
//!   happens however this process ends.

#![allow(dead_code)]

use std::{
    collections::BTreeMap,
    io::Write,
    net::TcpListener,
    path::{Path, PathBuf},
    process::{Child, ChildStdin, Command, Stdio},
    sync::{
        atomic::{AtomicUsize, Ordering},
        Mutex, OnceLock, RwLock,
    },
    time::{Duration, Instant},
};

mod client;
mod identity;
pub mod plaintexts;
mod stub;
mod team;
pub use client::{Call, Reply};
pub use identity::*;
pub use stub::*;
pub use team::*;

pub const ROOT: &str = env!("CARGO_MANIFEST_DIR");
const READY_TIMEOUT: Duration = Duration::from_secs(180);

#[derive(Default, Clone)]
pub struct Options {
    /// `--var NAME:VALUE` overrides on top of wrangler.toml and .dev.vars.
    pub vars: BTreeMap<String, String>,
    /// Leave the database empty (no migration applied), to see how the worker behaves
    /// without its schema.
    pub skip_schema: bool,
    /// Reuse another (stopped) worker's state: a restart.
    pub state_dir: Option<PathBuf>,
}

impl Options {
    pub fn var(mut self, name: &str, value: &str) -> Self {
        self.vars.insert(name.into(), value.into());
        self
    }
}

pub struct Worker {
    pub base_url: String,
    /// The same worker by the proxy host (`COMFY_CLOUD_PROXY_HOST=localhost`): the host mount.
    pub proxy_url: String,
    pub state_dir: PathBuf,
    pub log_path: PathBuf,
    supervisor: Mutex<Option<(Child, ChildStdin)>>,
    /// Requests hold it shared, [`Worker::d1`] exclusively: local D1 fails a write with
    /// "internal error" while another process has its SQLite file open, so the tests never
    /// read the file while a request is in flight.
    pub(crate) db_access: RwLock<()>,
}

/// The worker every test in this binary shares, started on first use.
pub fn worker() -> &'static Worker {
    static SHARED: OnceLock<Worker> = OnceLock::new();
    SHARED.get_or_init(|| Worker::start(Options::default()))
}

/// A worker of its own, stopped when the returned value is dropped.
pub fn spawn(options: Options) -> Worker {
    Worker::start(options)
}

pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("no free local port")
}

fn wrangler() -> PathBuf {
    let path = Path::new(ROOT).join("node_modules/.bin/wrangler");
    assert!(
        path.exists(),
        "wrangler is not installed: run ./scripts/test.sh (it runs setup first)"
    );
    path
}

/// Non-interactive, no telemetry, and no attempt to fetch `Request.cf` from the internet.
const WRANGLER_ENV: [(&str, &str); 4] = [
    ("CI", "true"),
    ("WRANGLER_SEND_METRICS", "false"),
    ("CLOUDFLARE_CF_FETCH_ENABLED", "false"),
    ("NO_COLOR", "1"),
];

fn wrangler_command() -> Command {
    let mut cmd = Command::new(wrangler());
    cmd.current_dir(ROOT).envs(WRANGLER_ENV);
    cmd
}

/// Builds the release worker once, before any wrangler starts: each `wrangler dev` runs the
/// build command too, and several of them building at once would write `build/` together.
fn ensure_built() {
    static BUILT: OnceLock<()> = OnceLock::new();
    BUILT.get_or_init(|| {
        let out = Command::new("bash")
            .arg("scripts/build.sh")
            .current_dir(ROOT)
            .output()
            .expect("run scripts/build.sh");
        assert!(
            out.status.success(),
            "scripts/build.sh failed:\n{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
    });
}

/// Runs `program` under a small supervisor shell that kills its whole process group as soon
/// as the returned stdin closes (EOF) or the program exits: no process outlives the tests,
/// however this process ends.
fn supervise(program: &Path, args: &[String], log_path: &Path) -> (Child, ChildStdin) {
    let script = r#"
        trap '' TERM
        "$@" > "$LOG" 2>&1 < /dev/null &
        w=$!
        while kill -0 "$w" 2>/dev/null; do
            read -r -t 1 _; rc=$?
            [ "$rc" -gt 128 ] || break
        done
        kill -TERM -- -$$ 2>/dev/null; sleep 1; kill -KILL -- -$$ 2>/dev/null
    "#;
    let mut supervisor = Command::new("bash");
    supervisor
        .arg("-c")
        .arg(script)
        .arg("supervisor")
        .arg(program)
        .args(args)
        .current_dir(ROOT)
        .envs(WRANGLER_ENV)
        .env("LOG", log_path)
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::null());
    std::os::unix::process::CommandExt::process_group(&mut supervisor, 0);
    let mut child = supervisor.spawn().expect("start a supervisor");
    let stdin = child.stdin.take().unwrap();
    (child, stdin)
}

impl Worker {
    fn start(options: Options) -> Worker {
        ensure_built();
        static COUNT: AtomicUsize = AtomicUsize::new(0);
        let n = COUNT.fetch_add(1, Ordering::SeqCst);
        let state_dir = match &options.state_dir {
            Some(dir) => dir.clone(),
            None => {
                let dir = Path::new(env!("CARGO_TARGET_TMPDIR"))
                    .join(format!("e2e-{}-{n}", std::process::id()));
                let _ = std::fs::remove_dir_all(&dir);
                std::fs::create_dir_all(&dir).unwrap();
                dir
            }
        };
        let log_path = state_dir.join(format!("worker-{n}.log"));

        if !options.skip_schema {
            let out = wrangler_command()
                .args(["d1", "migrations", "apply", "DB", "--local", "--persist-to"])
                .arg(&state_dir)
                .output()
                .expect("run wrangler d1 migrations apply");
            assert!(
                out.status.success(),
                "applying migrations/ failed:\n{}{}",
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr)
            );
        }

        let port = free_port();
        let mut args: Vec<String> = vec![
            "dev".into(),
            "--ip=127.0.0.1".into(),
            format!("--port={port}"),
            format!("--inspector-port={}", free_port()),
            format!("--persist-to={}", state_dir.display()),
            "--show-interactive-dev-session=false".into(),
            "--test-scheduled".into(),
        ];
        // Most tests send many requests from one address: the shared defaults raise the
        // limits, and the rate-limit tests set their own. Test hooks are on, except where a
        // test asks for production, which refuses them.
        // ComfyUI Cloud is the shared provider stub, with short timeouts so the timeout tests
        // stay quick (the stub's slow answers take 8 s).
        let mut vars: BTreeMap<String, String> = [
            ("RATE_LIMIT_IP_REQUESTS", "1000000"),
            ("RATE_LIMIT_PRINCIPAL_REQUESTS", "1000000"),
            ("RATE_LIMIT_PROVIDER_REQUESTS", "1000000"),
            ("COMFY_CLOUD_ORIGIN", stub().base_url.as_str()),
            ("COMFY_CLOUD_TIMEOUT_MS", "3000"),
            ("COMFY_CLOUD_VERIFY_TIMEOUT_MS", "2000"),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
        let environment = options.vars.get("ENVIRONMENT").map(String::as_str);
        if environment != Some("production") {
            vars.insert("TEST_HOOKS".into(), "1".into());
        }
        // Deployed environments take only https origins: their real ones, never contacted
        // by the tests that ask for those environments.
        match environment {
            Some("production") => vars.insert(
                "COMFY_CLOUD_ORIGIN".into(),
                "https://cloud.comfy.org".into(),
            ),
            Some("staging") => vars.insert(
                "COMFY_CLOUD_ORIGIN".into(),
                "https://stagingcloud.comfy.org".into(),
            ),
            _ => None,
        };
        vars.extend(options.vars.clone());
        for (name, value) in &vars {
            args.push("--var".into());
            args.push(format!("{name}:{value}"));
        }

        let (child, stdin) = supervise(&wrangler(), &args, &log_path);
        let worker = Worker {
            base_url: format!("http://127.0.0.1:{port}"),
            proxy_url: format!("http://localhost:{port}"),
            state_dir,
            log_path,
            supervisor: Mutex::new(Some((child, stdin))),
            db_access: RwLock::new(()),
        };
        worker.wait_until_ready();
        worker
    }

    fn wait_until_ready(&self) {
        let started = Instant::now();
        loop {
            if Call::get(self, "/healthz").try_send().is_ok() {
                return;
            }
            let exited = self
                .supervisor
                .lock()
                .unwrap()
                .as_mut()
                .map(|(child, _)| matches!(child.try_wait(), Ok(Some(_))))
                .unwrap_or(true);
            if exited || started.elapsed() > READY_TIMEOUT {
                panic!(
                    "the worker did not become ready ({}):\n{}",
                    if exited {
                        "wrangler exited"
                    } else {
                        "timed out"
                    },
                    self.log()
                );
            }
            std::thread::sleep(Duration::from_millis(250));
        }
    }

    /// Everything the worker and wrangler printed so far.
    pub fn log(&self) -> String {
        std::fs::read_to_string(&self.log_path).unwrap_or_default()
    }

    /// Waits (up to 10 s) until the log contains `needle`: wrangler prints the worker's
    /// console output asynchronously, after the response.
    pub fn log_eventually_contains(&self, needle: &str) -> bool {
        log_eventually(|| self.log().contains(needle).then_some(())).is_some()
    }

    /// The log line of the request that got `reply`, once wrangler has printed all of it
    /// (the file can end in the middle of the line: waiting for the id alone is not enough).
    pub fn log_line_of(&self, reply: &Reply) -> serde_json::Value {
        let id = reply
            .header("x-request-id")
            .expect("X-Request-ID")
            .to_string();
        log_eventually(|| {
            self.request_logs()
                .into_iter()
                .find(|l| l["request_id"] == id.as_str())
        })
        .unwrap_or_else(|| panic!("no complete log line for {id}"))
    }

    /// The JSON log lines the worker wrote, one per request.
    pub fn request_logs(&self) -> Vec<serde_json::Value> {
        self.log()
            .lines()
            .filter_map(|l| serde_json::from_str::<serde_json::Value>(l.trim()).ok())
            .filter(|v| v.get("request_id").is_some())
            .collect()
    }

    /// Prints this worker's log if the current test panics while the guard is alive.
    pub fn on_failure(&self) -> FailureLog<'_> {
        FailureLog(self)
    }

    pub fn stop(&self) {
        if let Some((mut child, stdin)) = self.supervisor.lock().unwrap().take() {
            drop(stdin); // EOF: the supervisor kills the group
            let _ = child.wait();
        }
    }

    /// Kills wrangler and workerd with SIGKILL, as a crash would: nothing gets to flush.
    pub fn crash(&self) {
        if let Some((mut child, stdin)) = self.supervisor.lock().unwrap().take() {
            // The supervisor leads its own process group, wrangler and workerd included.
            let _ = Command::new("kill")
                .args(["-KILL", "--", &format!("-{}", child.id())])
                .status();
            drop(stdin);
            let _ = child.wait();
        }
    }

    /// Runs a query against this worker's local D1 database file, as `wrangler d1 execute`.
    /// A second process on the same SQLite file can find it busy, so this retries.
    pub fn d1(&self, sql: &str) -> Vec<serde_json::Value> {
        let _exclusive = self.db_access.write().unwrap_or_else(|e| e.into_inner());
        let mut failure = String::new();
        for _ in 0..20 {
            let out = wrangler_command()
                .args(["d1", "execute", "DB", "--local", "--json", "--persist-to"])
                .arg(&self.state_dir)
                .args(["--command", sql])
                .output()
                .expect("run wrangler d1 execute");
            let text = String::from_utf8_lossy(&out.stdout);
            if out.status.success() {
                let parsed: serde_json::Value =
                    serde_json::from_str(&text).expect("wrangler --json output");
                return parsed[0]["results"].as_array().cloned().unwrap_or_default();
            }
            failure = format!("{text}{}", String::from_utf8_lossy(&out.stderr));
            std::thread::sleep(Duration::from_millis(250));
        }
        panic!("d1 query failed: {failure}");
    }

    /// Fires the worker's scheduled (cron) handler once and waits for it to finish.
    pub fn run_cron(&self) {
        let r = Call::get(self, "/__scheduled?cron=*/15+*+*+*+*").send();
        assert_eq!(r.status, 200, "{}", r.text);
    }

    pub fn url(&self, path: &str) -> String {
        if path.starts_with("http://") {
            return path.to_string();
        }
        format!("{}{}", self.base_url, path)
    }

    /// The process group that runs wrangler and workerd (the supervisor leads it).
    pub fn process_group(&self) -> Option<u32> {
        self.supervisor
            .lock()
            .unwrap()
            .as_ref()
            .map(|(child, _)| child.id())
    }
}

impl Drop for Worker {
    fn drop(&mut self) {
        self.stop();
    }
}

pub struct FailureLog<'a>(&'a Worker);

impl Drop for FailureLog<'_> {
    fn drop(&mut self) {
        if std::thread::panicking() {
            let log = self.0.log();
            let tail: Vec<&str> = log.lines().rev().take(200).collect();
            let mut err = std::io::stderr().lock();
            let _ = writeln!(
                err,
                "---- worker log ({}), last 200 lines ----",
                self.0.base_url
            );
            for line in tail.into_iter().rev() {
                let _ = writeln!(err, "{line}");
            }
        }
    }
}

/// Asks `probe` every 100 ms for up to 10 s: wrangler prints the worker's console output
/// asynchronously, after the response.
fn log_eventually<T>(mut probe: impl FnMut() -> Option<T>) -> Option<T> {
    let started = Instant::now();
    while started.elapsed() < Duration::from_secs(10) {
        if let Some(found) = probe() {
            return Some(found);
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    None
}
