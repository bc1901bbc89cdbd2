//! The command line end to end: `chorus dev` brings up a cluster, the client commands talk to
//! it, SIGTERM stops it, and a second `chorus dev` on the same folder brings the data back.

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

const BIN: &str = env!("CARGO_BIN_EXE_chorus");

struct Dev {
    child: Child,
    lines: mpsc::Receiver<String>,
}

impl Dev {
    fn start(dir: &Path, port: u16) -> Dev {
        let mut child = Command::new(BIN)
            .args(["dev", "--nodes", "3", "--dir"])
            .arg(dir)
            .args(["--base-port", &port.to_string()])
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("spawn chorus dev");
        let out = child.stdout.take().expect("stdout");
        let (tx, lines) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(out).lines().map_while(Result::ok) {
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        let dev = Dev { child, lines };
        dev.wait_for("ready", Duration::from_secs(120));
        dev
    }

    fn wait_for(&self, needle: &str, within: Duration) -> String {
        let deadline = Instant::now() + within;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.lines.recv_timeout(left) {
                Ok(line) if line.contains(needle) => return line,
                Ok(_) => {}
                Err(_) => panic!("chorus dev printed no line with {needle:?} within {within:?}"),
            }
        }
    }

    fn terminate(mut self) {
        unsafe_kill(self.child.id(), libc::SIGTERM);
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            if let Ok(Some(status)) = self.child.try_wait() {
                assert!(status.success(), "chorus dev exited with {status}");
                return;
            }
            assert!(Instant::now() < deadline, "chorus dev ignored SIGTERM");
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

impl Drop for Dev {
    fn drop(&mut self) {
        let _ = self.child.kill();
    }
}

fn unsafe_kill(pid: u32, sig: i32) {
    // SAFETY: kill(2) has no memory effects.
    unsafe {
        libc::kill(pid as i32, sig);
    }
}

fn alive(pid: u32) -> bool {
    // A zombie still has a /proc entry; look at its state.
    match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        Ok(stat) => !stat.contains(") Z"),
        Err(_) => false,
    }
}

fn chorus(cfg: &Path, args: &[&str]) -> (bool, String, String) {
    let out = Command::new(BIN)
        .arg("--config")
        .arg(cfg)
        .args(args)
        .output()
        .expect("run chorus");
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

fn get_json(cfg: &Path, key: &str) -> serde_json::Value {
    let (ok, out, err) = chorus(cfg, &["get", key, "--r", "all", "--json"]);
    assert!(ok, "get {key}: {err}");
    serde_json::from_str(out.trim()).expect("get --json prints JSON")
}

#[test]
fn dev_cluster_and_client_commands() {
    let dir = std::env::temp_dir().join(format!("chorus-cli-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    let port = 20000 + (std::process::id() % 20000) as u16;
    let dev = Dev::start(&dir, port);
    let cfg = dir.join("client.toml");
    let pids: Vec<u32> = (1..=3)
        .map(|k| {
            let p = std::fs::read_to_string(dir.join(format!("n{k}/pid"))).expect("pid file");
            p.trim().parse().expect("pid")
        })
        .collect();

    let (ok, _, err) = chorus(&cfg, &["put", "k1", "v1", "--w", "all"]);
    assert!(ok, "{err}");
    let j = get_json(&cfg, "k1");
    assert_eq!(j["found"], true);
    assert_eq!(j["values"], serde_json::json!(["v1"]));

    // Two writes without a context: two siblings. The context resolves them.
    let (ok, _, err) = chorus(&cfg, &["put", "k1", "v2"]);
    assert!(ok, "{err}");
    let j = get_json(&cfg, "k1");
    assert_eq!(j["values"].as_array().map(|a| a.len()), Some(2), "{j}");
    let ctx = j["context"].as_str().expect("context").to_string();
    let (ok, _, err) = chorus(&cfg, &["put", "k1", "v3", "--context", &ctx]);
    assert!(ok, "{err}");
    assert_eq!(get_json(&cfg, "k1")["values"], serde_json::json!(["v3"]));

    // Value from standard input, config from the environment.
    let mut child = Command::new(BIN)
        .env("CHORUS_CONFIG", &cfg)
        .args(["put", "k2", "-", "--bucket", "b2"])
        .stdin(Stdio::piped())
        .spawn()
        .expect("spawn put");
    {
        use std::io::Write;
        let mut stdin = child.stdin.take().expect("stdin");
        stdin.write_all(b"from stdin").expect("write stdin");
    }
    assert!(child.wait().expect("wait").success());
    let (ok, out, err) = chorus(&cfg, &["get", "k2", "--bucket", "b2", "--json"]);
    assert!(ok, "{err}");
    assert!(out.contains("from stdin"), "{out}");

    // Delete with the context: reads say not found.
    let ctx = get_json(&cfg, "k1")["context"]
        .as_str()
        .expect("ctx")
        .to_string();
    let (ok, _, err) = chorus(&cfg, &["delete", "k1", "--context", &ctx]);
    assert!(ok, "{err}");
    assert_eq!(get_json(&cfg, "k1")["found"], false);

    // Failures: non-zero exit and one line on stderr.
    let (ok, _, err) = chorus(&cfg, &["get", "k1", "--r", "9"]);
    assert!(!ok);
    assert_eq!(err.trim().lines().count(), 1, "{err}");
    let (ok, _, err) = chorus(&cfg, &["put", "k1", "v", "--context", "!!not-base64!!"]);
    assert!(!ok);
    assert!(err.contains("context"), "{err}");

    let (ok, out, err) = chorus(&cfg, &["status", "--json"]);
    assert!(ok, "{err}");
    let st: serde_json::Value = serde_json::from_str(out.trim()).expect("status JSON");
    let nodes = st["nodes"].as_array().expect("nodes");
    assert_eq!(nodes.len(), 3);
    assert!(nodes.iter().all(|n| n["status"] == "up"), "{st}");

    // SIGTERM stops every node; a second run brings the same data back.
    dev.terminate();
    for pid in &pids {
        assert!(!alive(*pid), "node pid {pid} survived chorus dev's SIGTERM");
    }
    let dev = Dev::start(&dir, port);
    let j = get_json(&cfg, "k2");
    assert_eq!(j["found"], false, "k2 lives in bucket b2, not default");
    let (ok, out, err) = chorus(
        &cfg,
        &["get", "k2", "--bucket", "b2", "--json", "--r", "all"],
    );
    assert!(ok, "{err}");
    assert!(out.contains("from stdin"), "{out}");

    // A node that dies is reported, not restarted.
    let pid: u32 = std::fs::read_to_string(dir.join("n3/pid"))
        .expect("pid")
        .trim()
        .parse()
        .expect("pid");
    unsafe_kill(pid, libc::SIGKILL);
    dev.wait_for("n3 exited", Duration::from_secs(10));
    dev.terminate();
    let _ = std::fs::remove_dir_all(&dir);
}
