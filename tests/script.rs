//! `scripts/ring.sh` end to end: the launch script runs the binaries cargo built for these tests
//! (`RINGSWARM_BIN_DIR`), so it builds nothing; its output, exit code and cleanup are checked.

use std::fs;
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Command, ExitStatus, Stdio};
use std::time::Duration;

use crate::args;
use crate::util::*;

/// How long one run of the script may take before the test stops it and fails.
const SCRIPT_LIMIT: Duration = Duration::from_secs(180);

/// The folder holding `file-owner` and `peer` as cargo built them for this test run.
fn bin_dir() -> PathBuf {
    Path::new(PEER)
        .parent()
        .expect("the peer binary has a parent folder")
        .to_path_buf()
}

/// An owner port and a first peer port such that the owner port and `peers` consecutive peer
/// ports after it were all free a moment ago (bound all at once, then released: the script's
/// processes bind them, so they cannot stay held; [`run_script_on_free_ports`] retries when
/// one was taken in between).
///
/// The base is picked below Linux's ephemeral range (32768–60999), so outgoing connections and
/// port-0 binds cannot take one of these ports between the check and the script's bind; only
/// another process choosing ports the same way can.
fn free_ring_ports(peers: u16) -> (u16, u16) {
    for _ in 0..50 {
        let base: u16 = rand::random_range(20_000..32_000);
        let held: std::io::Result<Vec<TcpListener>> = (base - 1..base + peers)
            .map(|p| TcpListener::bind(("127.0.0.1", p)))
            .collect();
        if held.is_ok() {
            return (base - 1, base);
        }
    }
    panic!("found no {} consecutive free ports in 50 tries", peers + 1);
}

/// Runs the script with `args(owner_port, base_port)` on ports [`free_ring_ports`] found,
/// again on other ports (at most 5 times) when a process of the run found its port taken.
fn run_script_on_free_ports(
    peers: u16,
    args: impl Fn(u16, u16) -> Vec<String>,
) -> (ScriptRun, u16, u16) {
    let mut taken = Vec::new();
    for _ in 0..5 {
        let (owner_port, base) = free_ring_ports(peers);
        let run = run_script(args(owner_port, base));
        if run.status.code() == Some(1) && port_taken(&run.stderr) {
            taken.push(run.describe());
            continue;
        }
        return (run, owner_port, base);
    }
    panic!("a port was taken in 5 runs in a row\n{}", taken.join("\n"));
}

/// True when every port in `ports` can be bound again (no process left listening on it).
fn ports_free(ports: impl IntoIterator<Item = u16>) -> bool {
    ports
        .into_iter()
        .all(|p| TcpListener::bind(("127.0.0.1", p)).is_ok())
}

/// One finished run of the script.
struct ScriptRun {
    cmd: String,
    status: ExitStatus,
    stdout: String,
    stderr: String,
    /// The script's TMPDIR: its work folder goes here, and must be gone after it exits.
    tmp: tempfile::TempDir,
}

impl ScriptRun {
    fn describe(&self) -> String {
        format!(
            "--- {}\nstatus: {:?}\nstdout:\n{}\nstderr (last 60 lines):\n{}",
            self.cmd,
            self.status,
            self.stdout,
            tail(&self.stderr, 60)
        )
    }

    /// The work folders the script left behind in its TMPDIR.
    fn leftover_work_folders(&self) -> Vec<String> {
        fs::read_dir(self.tmp.path())
            .unwrap()
            .filter_map(Result::ok)
            .map(|e| e.file_name().to_string_lossy().into_owned())
            .filter(|n| n.starts_with("ringswarm."))
            .collect()
    }
}

/// Runs `bash scripts/ring.sh args…` from the repository root with the test binaries, waiting
/// at most [`SCRIPT_LIMIT`]; past that the script is sent SIGTERM (so its trap stops the
/// owner and peers) and the test fails.
fn run_script(args: Vec<String>) -> ScriptRun {
    let tmp = tempfile::tempdir().unwrap();
    let out_path = tmp.path().join("script.out");
    let err_path = tmp.path().join("script.err");
    let cmd = format!("bash scripts/ring.sh {}", args.join(" "));
    let mut child = Command::new("bash")
        .arg("scripts/ring.sh")
        .args(&args)
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .env("RINGSWARM_BIN_DIR", bin_dir())
        .env("TMPDIR", tmp.path())
        .env("RUST_LOG", "info")
        .stdin(Stdio::null())
        .stdout(fs::File::create(&out_path).unwrap())
        .stderr(fs::File::create(&err_path).unwrap())
        .spawn()
        .unwrap_or_else(|e| panic!("spawning {cmd}: {e}"));
    let mut status = None;
    let exited = wait_until(SCRIPT_LIMIT, || {
        status = child.try_wait().unwrap();
        status.is_some()
    });
    if !exited {
        let _ = Command::new("kill")
            .args(["-TERM", &child.id().to_string()])
            .status();
        if !wait_until(Duration::from_secs(15), || {
            child.try_wait().unwrap().is_some()
        }) {
            let _ = child.kill();
        }
        let _ = child.wait();
        panic!(
            "{cmd} did not exit within {SCRIPT_LIMIT:?}\nstdout:\n{}\nstderr:\n{}",
            fs::read_to_string(&out_path).unwrap_or_default(),
            tail(&fs::read_to_string(&err_path).unwrap_or_default(), 60)
        );
    }
    ScriptRun {
        cmd,
        status: status.expect("exited"),
        stdout: fs::read_to_string(&out_path).unwrap_or_default(),
        stderr: fs::read_to_string(&err_path).unwrap_or_default(),
        tmp,
    }
}

/// Nothing the script started still listens, and its work folder is gone.
fn assert_cleaned_up(run: &ScriptRun, ports: std::ops::Range<u16>) {
    assert!(
        ports_free(ports),
        "an owner or peer still listens after the script exited\n{}",
        run.describe()
    );
    assert!(
        run.leftover_work_folders().is_empty(),
        "work folder not removed: {:?}\n{}",
        run.leftover_work_folders(),
        run.describe()
    );
}

#[test]
fn ring_script_verifies_five_peers() {
    ring_script_verifies_five_peers_with(&[]);
}

/// With `--join` the peers join through the directory, on the same ports, and every copy
/// is verified.
#[test]
fn ring_script_with_join_verifies_five_peers() {
    ring_script_verifies_five_peers_with(&args!["--join"]);
}

fn ring_script_verifies_five_peers_with(extra: &[String]) {
    let (run, owner_port, base) = run_script_on_free_ports(5, |owner_port, base| {
        let mut a = args![
            "--owner-port",
            owner_port,
            "--base-port",
            base,
            "--timeout",
            60
        ];
        a.extend_from_slice(extra);
        a
    });
    assert!(run.status.success(), "script failed\n{}", run.describe());
    assert!(
        run.stdout
            .contains("summary: 5/5 peers OK; file 3.0 MiB (3145728 bytes)"),
        "no summary line\n{}",
        run.describe()
    );
    for port in base..base + 5 {
        // PEER EXIT TIME CHUNKS RESULT, e.g. "20001   0     0.099s     31      OK"
        let row = run
            .stdout
            .lines()
            .map(|l| l.split_whitespace().collect::<Vec<_>>())
            .find(|f| f.first() == Some(&port.to_string().as_str()));
        let Some(row) = row else {
            panic!("no row for peer {port}\n{}", run.describe());
        };
        assert!(
            row.len() == 5
                && row[1] == "0"
                && row[2].ends_with('s')
                && row[3].parse::<u32>().is_ok()
                && row[4] == "OK",
            "peer {port}: row {row:?} is not a verified peer\n{}",
            run.describe()
        );
    }
    assert_cleaned_up(&run, owner_port..base + 5);
}

/// At `--rate 512KiB/s` (every node's upload capped) a peer takes in at most 1 MiB/s, from its
/// neighbour and the owner, so the 3 MiB file takes 3 s or more whatever the machine's
/// speed: `--timeout 1` must expire: exit 1, a clear message, nothing left.
#[test]
fn ring_script_fails_on_timeout() {
    let (run, owner_port, base) = run_script_on_free_ports(5, |owner_port, base| {
        args![
            "--owner-port",
            owner_port,
            "--base-port",
            base,
            "--rate",
            "512KiB/s",
            "--timeout",
            1
        ]
    });
    assert_eq!(run.status.code(), Some(1), "{}", run.describe());
    let all = format!("{}{}", run.stdout, run.stderr);
    assert!(
        all.contains("timed out after 1s"),
        "no timeout message\n{}",
        run.describe()
    );
    assert!(
        !run.stdout.contains("summary: 5/5 peers OK"),
        "{}",
        run.describe()
    );
    assert_cleaned_up(&run, owner_port..base + 5);
}

#[test]
fn ring_script_with_a_rate_prints_the_meter() {
    let (run, _, _) = run_script_on_free_ports(3, |owner_port, base| {
        args![
            "--peers",
            3,
            "--owner-port",
            owner_port,
            "--base-port",
            base,
            "--rate",
            "20MiB/s",
            "--timeout",
            60
        ]
    });
    assert!(run.status.success(), "script failed\n{}", run.describe());
    let meter = run
        .stdout
        .lines()
        .find(|l| l.starts_with("meter: last peer "))
        .unwrap_or_else(|| panic!("no meter line\n{}", run.describe()));
    // 3 MiB at 20 MiB/s: the fluid bound is S/U = 0.15 s.
    assert!(meter.contains("fluid lower bound 0.150s"), "{meter}");
    assert!(
        run.stdout.contains("critical path: peer "),
        "{}",
        run.describe()
    );
}
