//! A headless Chromium driven over the DevTools protocol: one page that stays open, so a test
//! can watch it change (the dashboard's live feed) instead of dumping a fresh load's DOM.
//!
//! Chromium listens on a port it picks itself (`--remote-debugging-port=0`, written to
//! `DevToolsActivePort` in its profile) on loopback only; the test speaks to the page's target
//! over a websocket, one command at a time, each answer awaited for at most [`CALL_LIMIT`].

use std::net::TcpStream;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use base64::Engine as _;
use serde_json::{Value, json};
use tungstenite::stream::MaybeTlsStream;
use tungstenite::{Message, WebSocket};

use super::{CHROMIUM_FLAGS, CHROMIUM_LIMIT, tail, wait_until};

/// How long one DevTools command may take to be answered.
pub const CALL_LIMIT: Duration = Duration::from_secs(30);

/// A running headless Chromium with one page; killed on drop.
pub struct Browser {
    child: Child,
    ws: WebSocket<MaybeTlsStream<TcpStream>>,
    next_id: u64,
    scratch: tempfile::TempDir,
}

impl Browser {
    /// Starts Chromium (`bin`) on a blank page of `width`×`height` and connects to that page.
    pub fn launch(bin: &Path, width: u32, height: u32) -> Result<Browser, String> {
        let scratch = tempfile::tempdir().map_err(|e| e.to_string())?;
        let profile = scratch.path().join("profile");
        let err_file =
            std::fs::File::create(scratch.path().join("stderr")).map_err(|e| e.to_string())?;
        let mut child = Command::new(bin)
            .args(CHROMIUM_FLAGS)
            .args([
                "--remote-debugging-address=127.0.0.1",
                "--remote-debugging-port=0",
            ])
            .arg(format!("--user-data-dir={}", profile.display()))
            .arg(format!("--window-size={width},{height}"))
            .arg("about:blank")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(err_file)
            .spawn()
            .map_err(|e| format!("{}: {e}", bin.display()))?;
        match connect(&mut child, scratch.path()) {
            Ok(ws) => Ok(Browser {
                child,
                ws,
                next_id: 0,
                scratch,
            }),
            Err(why) => {
                let _ = child.kill();
                let _ = child.wait();
                Err(format!(
                    "{why}; chromium's stderr: {}",
                    stderr(scratch.path())
                ))
            }
        }
    }

    /// Sends one DevTools command and returns its result, skipping the events in between.
    pub fn call(&mut self, method: &str, params: Value) -> Result<Value, String> {
        self.next_id += 1;
        let id = self.next_id;
        let command = json!({ "id": id, "method": method, "params": params });
        self.ws
            .send(Message::text(command.to_string()))
            .map_err(|e| format!("{method}: {e}"))?;
        loop {
            let text = match self.ws.read().map_err(|e| format!("{method}: {e}"))? {
                Message::Text(t) => t,
                _ => continue,
            };
            let answer: Value = serde_json::from_str(&text).map_err(|e| e.to_string())?;
            if answer["id"] != id {
                continue;
            }
            if let Some(error) = answer.get("error") {
                return Err(format!("{method}: {error}"));
            }
            return Ok(answer["result"].clone());
        }
    }

    /// Navigates the page to `url` and waits until it has loaded.
    pub fn goto(&mut self, url: &str) -> Result<(), String> {
        self.call("Page.navigate", json!({ "url": url }))?;
        let mut state = Ok(Value::Null);
        let loaded = wait_until(CHROMIUM_LIMIT, || {
            state = self.eval("location.href !== 'about:blank' && document.readyState");
            state.as_ref().is_ok_and(|s| s == "complete")
        });
        if loaded {
            Ok(())
        } else {
            Err(format!("{url} did not load: {state:?}"))
        }
    }

    /// Evaluates `expression` in the page; its value (as JSON), or the exception it threw.
    pub fn eval(&mut self, expression: &str) -> Result<Value, String> {
        let params = json!({ "expression": expression, "returnByValue": true });
        let result = self.call("Runtime.evaluate", params)?;
        if let Some(thrown) = result.get("exceptionDetails") {
            return Err(format!("{expression}: {thrown}"));
        }
        Ok(result["result"]["value"].clone())
    }

    /// Saves what the page shows now as a PNG at `path`.
    pub fn screenshot(&mut self, path: &Path) -> Result<(), String> {
        let shot = self.call("Page.captureScreenshot", json!({ "format": "png" }))?;
        let png = base64::engine::general_purpose::STANDARD
            .decode(shot["data"].as_str().unwrap_or_default())
            .map_err(|e| format!("screenshot: {e}"))?;
        std::fs::write(path, png).map_err(|e| format!("{}: {e}", path.display()))
    }
}

impl Drop for Browser {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// What Chromium printed on stderr, from its scratch folder (for failure messages).
fn stderr(scratch: &Path) -> String {
    tail(
        &std::fs::read_to_string(scratch.join("stderr")).unwrap_or_default(),
        10,
    )
}

/// Waits for the DevTools port of `child` (started with its profile in `scratch`), finds its
/// page and opens a websocket to it.
fn connect(
    child: &mut Child,
    scratch: &Path,
) -> Result<WebSocket<MaybeTlsStream<TcpStream>>, String> {
    let active = scratch.join("profile").join("DevToolsActivePort");
    let mut port = None;
    let mut exited = false;
    wait_until(CHROMIUM_LIMIT, || {
        port = std::fs::read_to_string(&active)
            .ok()
            .and_then(|t| t.lines().next()?.trim().parse::<u16>().ok());
        exited = child.try_wait().ok().flatten().is_some();
        port.is_some() || exited
    });
    let Some(port) = port.filter(|_| !exited) else {
        return Err(if exited {
            "chromium exited".into()
        } else {
            format!("no DevTools port within {CHROMIUM_LIMIT:?}")
        });
    };
    let text = ureq::get(format!("http://127.0.0.1:{port}/json/list"))
        .call()
        .and_then(|mut r| r.body_mut().read_to_string())
        .map_err(|e| format!("DevTools target list: {e}"))?;
    let list: Value =
        serde_json::from_str(&text).map_err(|e| format!("DevTools target list: {e}: {text}"))?;
    let target = list
        .as_array()
        .and_then(|l| l.iter().find(|t| t["type"] == "page"))
        .and_then(|t| t["webSocketDebuggerUrl"].as_str())
        .ok_or_else(|| format!("no page among the DevTools targets: {list}"))?
        .to_string();
    let (ws, _) = tungstenite::connect(target.as_str()).map_err(|e| format!("{target}: {e}"))?;
    if let MaybeTlsStream::Plain(tcp) = ws.get_ref() {
        tcp.set_read_timeout(Some(CALL_LIMIT))
            .map_err(|e| e.to_string())?;
    }
    Ok(ws)
}
