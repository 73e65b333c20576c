//! `up` and `down` through the project's fault proxy (scripts/fault-proxy.py):
//! a seeded share of mutating calls is throttled, or applied by the emulator
//! and then answered 503, so the SDK retries a call that already happened.
//! Each run must converge in one go, leave no duplicate (a second `up`
//! finds exactly one of everything and changes nothing) and `down` must
//! leave nothing.
//!
//! ```sh
//! PAYOPS_TEST_ENDPOINT=http://127.0.0.1:5199 PAYOPS_TEST_EMULATOR=moto \
//!     cargo nextest run --test faults --run-ignored only
//! ```

mod common;

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};

use common::{Aws, TestEnv, assert_no_mutation, endpoint, remaining};

/// Fixed, so a failure replays the same faults (`--seed` of the proxy).
const SEED: &str = "7";
/// Shares of mutating calls throttled, and applied-then-lost.
const THROTTLE: &str = "0.05";
const LOST: &str = "0.05";

/// The proxy, stopped when dropped.
struct Proxy {
    child: Child,
    url: String,
    log: PathBuf,
}

impl Proxy {
    fn start(dir: &Path) -> Self {
        let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("scripts/fault-proxy.py");
        let log = dir.join("faults.log");
        let mut child = Command::new("python3")
            .arg(script)
            .args(["--upstream", &endpoint(), "--port", "0", "--seed", SEED])
            .args(["--throttle", THROTTLE, "--lost", LOST])
            .arg("--log")
            .arg(&log)
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("python3 scripts/fault-proxy.py");
        let mut line = String::new();
        BufReader::new(child.stdout.take().expect("the proxy's stdout"))
            .read_line(&mut line)
            .expect("the proxy's address");
        assert!(line.starts_with("http://"), "fault proxy said {line:?}");
        Self {
            child,
            url: line.trim().to_owned(),
            log,
        }
    }

    /// (throttled, lost) so far.
    fn faults(&self) -> (usize, usize) {
        let text = std::fs::read_to_string(&self.log).unwrap_or_default();
        let count = |kind: &str| text.lines().filter(|l| l.starts_with(kind)).count();
        (count("throttle "), count("lost "))
    }
}

impl Drop for Proxy {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs an AWS emulator: make test-integration"]
async fn up_and_down_converge_through_throttling_and_lost_answers() {
    let aws = Aws::connect().await;
    let plain = TestEnv::new();
    let proxy = Proxy::start(plain.dir());
    let mut env = plain.with_var("AWS_ENDPOINT_URL", &proxy.url);

    // One run, whatever the faults.
    env.up_json(&["--nat", "single"]);
    let (throttled, lost) = proxy.faults();
    assert!(
        throttled > 0 && lost > 0,
        "the proxy injected no faults ({throttled} throttled, {lost} lost): the test shows nothing"
    );

    // Exactly one of everything: no step finds two (it would refuse), and
    // none has anything left to do.
    let (_, again) = env.up_json(&["--nat", "single"]);
    assert_no_mutation(&again, "second up after a faulty first one");

    env.down().assert_success();
    let left = remaining(&aws, &env.name).await;
    assert!(left.is_empty(), "left behind by down: {left:#?}");
    let (throttled, lost) = proxy.faults();
    eprintln!("fault proxy: {throttled} throttled, {lost} applied and answered 503");
}
