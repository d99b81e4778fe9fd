//! `scripts/netns-ring.sh` end to end: the owner and five peers on six hosts made of network
//! namespaces, uplinks shaped with tc, one peer killed and restarted mid-transfer.
//!
//! It needs root and iproute2 (`ip`, `tc`): without them the test prints `skipped: <reason>`
//! and passes. With them, when `ip netns add` does not work (a container without the
//! privilege), it skips the same way, but not in CI (`CI` set), where that fails the test. Namespace names carry this process's id and a random tag, so
//! two runs never collide, and a guard deletes whatever the script left behind.

use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Command, ExitStatus, Stdio};
use std::time::Duration;

use crate::args;
use crate::util::*;

/// How long one run of the script may take before the test stops it and fails.
const SCRIPT_LIMIT: Duration = Duration::from_secs(240);

/// Runs `ip args…`, returning its stdout, or a one-line reason when it cannot run or fails.
fn ip(args: &[&str]) -> Result<String, String> {
    let out = Command::new("ip")
        .args(args)
        .stdin(Stdio::null())
        .output()
        .map_err(|e| format!("cannot run `ip` (iproute2): {e}"))?;
    if out.status.success() {
        Ok(String::from_utf8_lossy(&out.stdout).into_owned())
    } else {
        Err(format!(
            "`ip {}` failed: {}",
            args.join(" "),
            String::from_utf8_lossy(&out.stderr).trim()
        ))
    }
}

/// Why this test cannot run here: `Skip` when root, `ip` or `tc` is missing; `Broken` when
/// they are there but a namespace named `probe` cannot be added and deleted.
enum NoNetns {
    Skip(String),
    Broken(String),
}

fn why_no_netns(probe: &str) -> Option<NoNetns> {
    let status = fs::read_to_string("/proc/self/status").unwrap_or_default();
    // "Uid:	real	effective	saved	fs"
    let euid = status
        .lines()
        .find_map(|l| l.strip_prefix("Uid:"))
        .and_then(|l| l.split_whitespace().nth(1))
        .unwrap_or("?");
    if euid != "0" {
        return Some(NoNetns::Skip(format!("not running as root (euid {euid})")));
    }
    if let Err(why) = ip(&["-V"]) {
        return Some(NoNetns::Skip(why));
    }
    if Command::new("tc")
        .arg("-V")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_err()
    {
        return Some(NoNetns::Skip("cannot run `tc` (iproute2)".into()));
    }
    if let Err(why) = ip(&["netns", "add", probe]) {
        return Some(NoNetns::Broken(why));
    }
    if let Err(why) = ip(&["netns", "del", probe]) {
        return Some(NoNetns::Broken(why));
    }
    None
}

/// The namespaces whose names start with `prefix-`; on drop, kills every process left in
/// them and deletes them, so a failing test leaves nothing behind.
struct Namespaces {
    prefix: String,
}

impl Namespaces {
    /// Names of our namespaces that exist now.
    fn existing(&self) -> Vec<String> {
        let list = ip(&["netns", "list"]).unwrap_or_default();
        let mine = format!("{}-", self.prefix);
        list.lines()
            .filter_map(|l| l.split_whitespace().next())
            .filter(|n| n.starts_with(&mine))
            .map(str::to_string)
            .collect()
    }
}

impl Drop for Namespaces {
    fn drop(&mut self) {
        for ns in self.existing() {
            for pid in ip(&["netns", "pids", &ns])
                .unwrap_or_default()
                .split_whitespace()
            {
                let _ = Command::new("kill").args(["-KILL", pid]).status();
            }
            let _ = ip(&["netns", "del", &ns]);
        }
    }
}

/// One finished run of the script.
struct ScriptRun {
    cmd: String,
    status: ExitStatus,
    stdout: String,
    stderr: String,
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
}

/// Runs `bash scripts/netns-ring.sh args…` with the binaries cargo built for these tests and
/// `tmp` as TMPDIR, waiting at most [`SCRIPT_LIMIT`]; past that the script gets SIGTERM (its
/// trap stops the processes and deletes the namespaces) and the test fails.
fn run_script(args: Vec<String>, tmp: &Path) -> ScriptRun {
    let bin_dir: PathBuf = Path::new(PEER).parent().expect("bin folder").to_path_buf();
    let out_path = tmp.join("script.out");
    let err_path = tmp.join("script.err");
    let cmd = format!("bash scripts/netns-ring.sh {}", args.join(" "));
    let mut child = Command::new("bash")
        .arg("scripts/netns-ring.sh")
        .args(&args)
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .env("RINGSWARM_BIN_DIR", bin_dir)
        .env("TMPDIR", tmp)
        .env("RUST_LOG", "info")
        .stdin(Stdio::null())
        .stdout(fs::File::create(&out_path).unwrap())
        .stderr(fs::File::create(&err_path).unwrap())
        .spawn()
        .unwrap_or_else(|e| panic!("spawning {cmd}: {e}"));
    let mut status = None;
    if !wait_until(SCRIPT_LIMIT, || {
        status = child.try_wait().unwrap();
        status.is_some()
    }) {
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
    }
}

#[test]
fn netns_ring_verifies_five_hosts_across_a_restart() {
    let prefix = format!("rswt{}x{:04x}", std::process::id(), rand::random::<u16>());
    match why_no_netns(&format!("{prefix}-probe")) {
        None => {}
        Some(NoNetns::Skip(why)) => return skip(&why),
        Some(NoNetns::Broken(why)) if in_ci() => {
            panic!("root, ip and tc are here, yet network namespaces do not work: {why}")
        }
        Some(NoNetns::Broken(why)) => {
            return skip(&format!("{why} (with CI set this fails the test)"));
        }
    }
    let namespaces = Namespaces {
        prefix: prefix.clone(),
    };
    let tmp = tempfile::tempdir().unwrap();
    let run = run_script(
        args![
            "--size",
            "8MiB",
            "--rate",
            "200mbit",
            "--kill-restart",
            "--timeout",
            180,
            "--ns-prefix",
            prefix
        ],
        tmp.path(),
    );
    let left = namespaces.existing();
    assert_eq!(
        run.status.code(),
        Some(0),
        "script failed\n{}",
        run.describe()
    );
    assert!(
        run.stdout
            .contains("verified: all five files match the original (cmp)")
            && run.stdout.contains("summary: 5/5 files verified; 8.0 MiB"),
        "not every file verified\n{}",
        run.describe()
    );
    assert!(
        run.stdout.contains("shaping: tbf 200mbit") || run.stdout.contains("shaping: htb 200mbit"),
        "no shaping line\n{}",
        run.describe()
    );
    let restart = run
        .stdout
        .lines()
        .find(|l| l.starts_with("restart: peer 3 killed (SIGKILL)"))
        .unwrap_or_else(|| panic!("no restart line\n{}", run.describe()));
    assert!(
        restart.contains("restarted on the same folder"),
        "{restart}\n{}",
        run.describe()
    );
    assert!(
        run.stdout.contains("(restarted; resuming: "),
        "the restarted peer did not resume from its folder\n{}",
        run.describe()
    );
    assert!(
        left.is_empty(),
        "namespaces left behind: {left:?}\n{}",
        run.describe()
    );
    let work_left: Vec<_> = fs::read_dir(tmp.path())
        .unwrap()
        .filter_map(Result::ok)
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|n| n.starts_with("ringswarm-netns."))
        .collect();
    assert!(
        work_left.is_empty(),
        "work folder not removed: {work_left:?}\n{}",
        run.describe()
    );
}

/// Runs `bash scripts/bench-shaped.sh args…` (through `prefix`, e.g. setpriv, when given) and
/// returns its exit code, stdout and stderr. Only the cheap paths are run here: help, a bad
/// option, no root; none of them makes a namespace or a file.
fn bench_shaped(prefix: &[&str], args: &[&str]) -> (Option<i32>, String, String) {
    let mut argv: Vec<&str> = prefix.to_vec();
    argv.extend(["bash", "scripts/bench-shaped.sh"]);
    argv.extend(args);
    let out = Command::new(argv[0])
        .args(&argv[1..])
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .stdin(Stdio::null())
        .output()
        .unwrap_or_else(|e| panic!("running {argv:?}: {e}"));
    (
        out.status.code(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[test]
fn bench_shaped_help_and_bad_options() {
    let (code, out, err) = bench_shaped(&[], &["--help"]);
    assert_eq!(code, Some(0), "--help failed: {err}");
    assert!(
        out.contains("Usage: scripts/bench-shaped.sh") && out.contains("T* = max(F / u_s"),
        "--help does not give the usage and the bound:\n{out}"
    );
    for (args, says) in [
        (&["--bogus"][..], "unknown option --bogus"),
        (&["--only", "ring,ftp"][..], "unknown contender 'ftp'"),
        (
            &["--slow", "9:25mbit"][..],
            "--slow: receiver 9 does not exist",
        ),
        (&["--rate", "100"][..], "--rate: expected a tc rate"),
        (&["--hosts"][..], "--hosts needs a value"),
    ] {
        let (code, _, err) = bench_shaped(&[], args);
        assert_eq!(code, Some(2), "{args:?} should be a usage error: {err}");
        assert!(
            err.contains(says) && err.contains("--help"),
            "{args:?}: {err}"
        );
    }
}

#[test]
fn bench_shaped_without_root_says_so() {
    let euid = fs::read_to_string("/proc/self/status")
        .unwrap_or_default()
        .lines()
        .find_map(|l| l.strip_prefix("Uid:").map(str::to_string))
        .and_then(|l| l.split_whitespace().nth(1).map(str::to_string))
        .unwrap_or_default();
    // As root, drop to nobody for this one run (setpriv, util-linux).
    let prefix: &[&str] = if euid != "0" {
        &[]
    } else if Command::new("setpriv").arg("--version").output().is_ok() {
        &[
            "setpriv",
            "--reuid=65534",
            "--regid=65534",
            "--clear-groups",
        ]
    } else {
        return skip("root, and no setpriv to run the script as another user");
    };
    let (code, out, err) = bench_shaped(prefix, &["--size", "1MiB"]);
    assert_eq!(code, Some(1), "stdout:\n{out}\nstderr:\n{err}");
    assert!(
        err.contains("bench-shaped.sh: error: needs root"),
        "no clear message: {err}"
    );
}
