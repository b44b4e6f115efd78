//! Headless Chromium driven over the DevTools protocol, for tests that use a page as a person
//! does: type into fields, click buttons, wait for what the page shows, take screenshots at a
//! given width. (`chromium.rs` runs the browser's command line, which can only load a page and
//! dump or photograph it.) The browser is Debian's `chromium`, with the same flags; the
//! protocol goes over the WebSocket the browser opens on a loopback port.

use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use base64::Engine;
use futures::{SinkExt, StreamExt};
use serde_json::{json, Value};
use tokio_tungstenite::tungstenite::Message;

use crate::chromium::{artifacts_dir, chromium, FLAGS};

type Socket =
    tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>;

/// One browser with one page.
pub struct Browser {
    child: Child,
    socket: Socket,
    next_id: u64,
    width: u32,
    _profile: tempfile::TempDir,
}

impl Drop for Browser {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Poll `check` every 100 ms until it gives `Some`, for at most `limit`.
async fn poll<T>(limit: Duration, what: &str, mut check: impl FnMut() -> Option<T>) -> T {
    let deadline = Instant::now() + limit;
    loop {
        if let Some(v) = check() {
            return v;
        }
        assert!(Instant::now() < deadline, "{what}: not within {limit:?}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

impl Browser {
    /// Start the browser on `about:blank` and attach to its page.
    pub async fn launch() -> Self {
        let profile = tempfile::tempdir().expect("tempdir");
        let user_data = profile.path().join("profile");
        let stderr = std::fs::File::create(profile.path().join("stderr")).unwrap();
        let mut child = Command::new(chromium())
            .args(FLAGS)
            .arg(format!("--user-data-dir={}", user_data.display()))
            .arg("--remote-debugging-address=127.0.0.1")
            .arg("--remote-debugging-port=0")
            .arg("--window-size=1280,900")
            .arg("about:blank")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(stderr)
            .spawn()
            .expect("start chromium");
        // The browser writes the port it took in the profile.
        let port_file: PathBuf = user_data.join("DevToolsActivePort");
        let port: u16 = poll(Duration::from_secs(30), "chromium's DevTools port", || {
            if let Ok(Some(status)) = child.try_wait() {
                panic!(
                    "chromium exited ({status}): {}",
                    std::fs::read_to_string(profile.path().join("stderr")).unwrap_or_default()
                );
            }
            std::fs::read_to_string(&port_file)
                .ok()
                .and_then(|s| s.lines().next().and_then(|l| l.trim().parse().ok()))
        })
        .await;
        let targets: Value = reqwest::get(format!("http://127.0.0.1:{port}/json/list"))
            .await
            .expect("DevTools target list")
            .json()
            .await
            .unwrap();
        let page = targets
            .as_array()
            .unwrap()
            .iter()
            .find(|t| t["type"] == "page")
            .unwrap_or_else(|| panic!("no page target: {targets}"));
        let ws = page["webSocketDebuggerUrl"].as_str().unwrap();
        let (socket, _) = tokio_tungstenite::connect_async(ws)
            .await
            .expect("DevTools WebSocket");
        let mut browser = Browser {
            child,
            socket,
            next_id: 0,
            width: 1280,
            _profile: profile,
        };
        browser.call("Page.enable", json!({})).await;
        browser.call("Runtime.enable", json!({})).await;
        browser
    }

    /// One protocol command; its `result` (events in between are dropped).
    pub async fn call(&mut self, method: &str, params: Value) -> Value {
        self.next_id += 1;
        let id = self.next_id;
        let msg = json!({ "id": id, "method": method, "params": params }).to_string();
        self.socket
            .send(Message::Text(msg.into()))
            .await
            .expect("send to chromium");
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            let frame = tokio::time::timeout(left, self.socket.next())
                .await
                .unwrap_or_else(|_| panic!("{method}: no answer within 60 s"))
                .unwrap_or_else(|| panic!("{method}: chromium closed the connection"))
                .expect("read from chromium");
            let Message::Text(text) = frame else {
                continue;
            };
            let v: Value = serde_json::from_str(&text).expect("DevTools JSON");
            if v["id"] == id {
                assert!(v.get("error").is_none(), "{method} {params}: {v}");
                return v["result"].clone();
            }
        }
    }

    /// Load `url` and wait for its document to be complete.
    pub async fn goto(&mut self, url: &str) {
        self.call("Page.navigate", json!({ "url": url })).await;
        self.wait_for("document.readyState === 'complete'", "the page loaded")
            .await;
    }

    /// The value of a JavaScript expression (awaited when a promise); panics on an exception.
    pub async fn eval(&mut self, expression: &str) -> Value {
        let r = self
            .call(
                "Runtime.evaluate",
                json!({ "expression": expression, "awaitPromise": true, "returnByValue": true }),
            )
            .await;
        if let Some(e) = r.get("exceptionDetails") {
            panic!("{expression}: {e}");
        }
        r["result"]["value"].clone()
    }

    /// Wait (at most 60 s) until `condition` is truthy in the page; its value.
    pub async fn wait_for(&mut self, condition: &str, what: &str) -> Value {
        self.wait_for_within(condition, what, Duration::from_secs(60))
            .await
    }

    pub async fn wait_for_within(&mut self, condition: &str, what: &str, limit: Duration) -> Value {
        let deadline = Instant::now() + limit;
        loop {
            let v = self.eval(condition).await;
            let truthy = match &v {
                Value::Null => false,
                Value::Bool(b) => *b,
                Value::String(s) => !s.is_empty(),
                Value::Number(n) => n.as_f64() != Some(0.0),
                _ => true,
            };
            if truthy {
                return v;
            }
            if Instant::now() > deadline {
                let text = self
                    .eval("document.body ? document.body.innerText.slice(0, 3000) : ''")
                    .await;
                panic!("{what}: not within {limit:?} ({condition})\npage text:\n{text}");
            }
            tokio::time::sleep(Duration::from_millis(150)).await;
        }
    }

    /// `selector`'s first element, scrolled into view: the middle of its box, once the element
    /// is what a click there would hit (laid out at the current width, not covered, not moving)
    /// and no part of the page is still loading (`aria-busy`: its first data would move the
    /// layout between this reading and the click).
    async fn center(&mut self, selector: &str) -> (f64, f64) {
        let js = format!(
            "(() => {{ if (document.querySelector('[aria-busy=\"true\"]')) return null; \
             const e = document.querySelector({sel}); if (!e) return null; \
             e.scrollIntoView({{block: 'center'}}); const r = e.getBoundingClientRect(); \
             const x = r.left + r.width / 2, y = r.top + r.height / 2; \
             const hit = document.elementFromPoint(x, y); \
             return hit && (hit === e || e.contains(hit)) ? [x, y] : null; }})()",
            sel = Value::from(selector)
        );
        let v = self.wait_for(&js, &format!("{selector} on the page")).await;
        (v[0].as_f64().unwrap(), v[1].as_f64().unwrap())
    }

    /// A real click (mouse pressed and released) on `selector`.
    pub async fn click(&mut self, selector: &str) {
        let (x, y) = self.center(selector).await;
        for kind in ["mouseMoved", "mousePressed", "mouseReleased"] {
            self.call(
                "Input.dispatchMouseEvent",
                json!({ "type": kind, "x": x, "y": y, "button": "left", "clickCount": 1 }),
            )
            .await;
        }
    }

    /// Focus `selector`, clear it, and type `text` into it.
    pub async fn type_into(&mut self, selector: &str, text: &str) {
        self.click(selector).await;
        let sel = Value::from(selector);
        self.eval(&format!(
            "(() => {{ const e = document.querySelector({sel}); e.focus(); e.select && e.select(); }})()"
        ))
        .await;
        self.call("Input.insertText", json!({ "text": text })).await;
    }

    /// Lay the page out `width` CSS pixels wide (a phone below 600).
    pub async fn set_width(&mut self, width: u32) {
        self.width = width;
        self.call(
            "Emulation.setDeviceMetricsOverride",
            json!({ "width": width, "height": 900, "deviceScaleFactor": 1, "mobile": width < 600 }),
        )
        .await;
    }

    /// The whole page at the current width, as `target/ci-artifacts/<name>.png`.
    pub async fn screenshot(&mut self, name: &str) -> PathBuf {
        let height = self
            .eval("Math.min(4000, Math.max(document.documentElement.scrollHeight, 300))")
            .await
            .as_f64()
            .unwrap();
        let shot = self
            .call(
                "Page.captureScreenshot",
                json!({
                    "format": "png",
                    "captureBeyondViewport": true,
                    "clip": { "x": 0, "y": 0, "width": self.width, "height": height, "scale": 1 },
                }),
            )
            .await;
        let png = base64::engine::general_purpose::STANDARD
            .decode(shot["data"].as_str().unwrap())
            .unwrap();
        assert!(png.starts_with(b"\x89PNG\r\n\x1a\n"), "not a PNG");
        let dir = artifacts_dir();
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join(format!("{name}.png"));
        std::fs::write(&path, &png).unwrap();
        path
    }

    /// Screenshots of the current view at 1280 px and at 390 px (a phone), named
    /// `console-<view>-1280.png` and `console-<view>-390.png`; the width goes back to 1280.
    pub async fn screenshots(&mut self, view: &str) {
        for width in [1280, 390] {
            self.set_width(width).await;
            // Laid out again at the new width before the picture.
            self.eval("new Promise(r => requestAnimationFrame(() => requestAnimationFrame(r)))")
                .await;
            let path = self.screenshot(&format!("console-{view}-{width}")).await;
            let size = std::fs::metadata(&path).unwrap().len();
            assert!(size > 3 * 1024, "{}: {size} bytes, blank?", path.display());
        }
        self.set_width(1280).await;
        self.eval("new Promise(r => requestAnimationFrame(() => requestAnimationFrame(r)))")
            .await;
    }
}
