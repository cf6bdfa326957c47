//! The browser harness the page tests share: Debian's `/usr/bin/chromedriver` driving headless
//! `/usr/bin/chromium` over WebDriver (W3C, JSON over HTTP, spoken here with `awc`), against the
//! real app served in-process on a free loopback port.
//!
//! A missing browser or driver FAILS the test with the command that installs them
//! (`.ci/install-browser.sh`); nothing is skipped. Screenshots go to `target/screenshots/`.
//!
//! ```ignore
//! let server = browser::serve(&gw);                  // pages + API, as the binary mounts them
//! let b = browser::Browser::start(390, 844).await;   // a phone-sized window
//! b.goto(&server.url("/")).await;
//! b.click("#start").await;
//! b.wait_text("h1", "基本信息").await;
//! b.screenshot("citizen-start-phone").await;
//! b.quit().await;
//! ```

// Each test file uses its own part of this module.
#![allow(dead_code)]

use std::net::TcpListener;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use actix_web::{web, App, HttpServer};
use base64::Engine as _;
use platepool_gateway::Gateway;
use serde_json::{json, Value};

pub const CHROMIUM: &str = "/usr/bin/chromium";
pub const CHROMEDRIVER: &str = "/usr/bin/chromedriver";
/// How long `wait…` calls poll before failing the test.
pub const WAIT: Duration = Duration::from_secs(15);
const ELEMENT_KEY: &str = "element-6066-11e4-a52e-4f735466cecf";

/// The app as the binary mounts it (pages, then the API, then the JSON 404), served on a free
/// loopback port by worker threads of its own.
#[derive(Debug)]
pub struct Served {
    pub port: u16,
    handle: actix_web::dev::ServerHandle,
}

impl Served {
    pub fn url(&self, path: &str) -> String {
        format!("http://127.0.0.1:{}{path}", self.port)
    }

    pub async fn stop(self) {
        self.handle.stop(false).await;
    }
}

/// Serves `gw` in this actix system (call from an `#[actix_rt::test]`).
pub fn serve(gw: &Gateway) -> Served {
    let gw = gw.clone();
    let server = HttpServer::new(move || {
        App::new()
            .service(gw.pages_scope(""))
            .service(gw.scope(""))
            .default_service(web::to(platepool_gateway::not_found))
    })
    .workers(1)
    .bind(("127.0.0.1", 0))
    .expect("bind a loopback port");
    let port = server.addrs()[0].port();
    let running = server.run();
    let handle = running.handle();
    actix_rt::spawn(running);
    Served { port, handle }
}

fn free_port() -> u16 {
    TcpListener::bind(("127.0.0.1", 0))
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("a free loopback port")
}

/// Where screenshots are written: `target/screenshots/`.
pub fn screenshot_dir() -> PathBuf {
    let target = std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../target"));
    target.join("screenshots")
}

/// One headless Chromium session.
pub struct Browser {
    client: awc::Client,
    /// `http://127.0.0.1:PORT/session/ID`.
    session: String,
    driver: Child,
    _profile: tempfile::TempDir,
}

impl std::fmt::Debug for Browser {
    /// The session (`awc::Client` has no `Debug`).
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Browser")
            .field("session", &self.session)
            .finish_non_exhaustive()
    }
}

impl Browser {
    /// Starts chromedriver and a fresh headless Chromium whose window is `width`×`height`.
    pub async fn start(width: u32, height: u32) -> Browser {
        for tool in [CHROMIUM, CHROMEDRIVER] {
            assert!(
                std::path::Path::new(tool).exists(),
                "{tool} is missing: the browser tests need Debian's chromium and chromium-driver \
                 (run .ci/install-browser.sh)"
            );
        }
        let port = free_port();
        let driver = Command::new(CHROMEDRIVER)
            .arg(format!("--port={port}"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("chromedriver starts");
        let client = awc::Client::builder()
            .timeout(Duration::from_secs(60))
            .finish();
        let base = format!("http://127.0.0.1:{port}");
        let started = Instant::now();
        loop {
            let ready = match client.get(format!("{base}/status")).send().await {
                Ok(mut res) => res
                    .json::<Value>()
                    .await
                    .is_ok_and(|v| v["value"]["ready"] == true),
                Err(_) => false,
            };
            if ready {
                break;
            }
            assert!(
                started.elapsed() < Duration::from_secs(20),
                "chromedriver did not answer on port {port}"
            );
            actix_rt::time::sleep(Duration::from_millis(50)).await;
        }
        let profile = tempfile::tempdir().expect("profile folder");
        let args = [
            "--headless".to_string(),
            "--no-sandbox".into(),
            "--disable-gpu".into(),
            "--disable-quic".into(),
            "--no-first-run".into(),
            "--disable-background-networking".into(),
            "--disable-component-update".into(),
            "--disable-sync".into(),
            "--disable-dev-shm-usage".into(),
            "--hide-scrollbars".into(),
            "--lang=zh-CN".into(),
            format!("--user-data-dir={}", profile.path().display()),
            format!("--window-size={width},{height}"),
        ];
        let caps = json!({"capabilities": {"alwaysMatch": {
            "browserName": "chrome",
            "goog:chromeOptions": {"binary": CHROMIUM, "args": args},
        }}});
        let mut res = client
            .post(format!("{base}/session"))
            .send_json(&caps)
            .await
            .expect("new WebDriver session");
        let v: Value = res.json().limit(1 << 20).await.expect("session answer");
        let id = v["value"]["sessionId"]
            .as_str()
            .unwrap_or_else(|| panic!("no session: {v}"))
            .to_string();
        let browser = Browser {
            client,
            session: format!("{base}/session/{id}"),
            driver,
            _profile: profile,
        };
        browser.set_size(width, height).await;
        browser
    }

    /// One WebDriver command; panics (fails the test) on a WebDriver error.
    pub async fn cmd(&self, method: &str, path: &str, body: Option<Value>) -> Value {
        match self.try_cmd(method, path, body).await {
            Ok(v) => v,
            Err(e) => panic!("WebDriver {method} {path}: {e}"),
        }
    }

    /// One WebDriver command; a WebDriver error as its JSON.
    pub async fn try_cmd(
        &self,
        method: &str,
        path: &str,
        body: Option<Value>,
    ) -> Result<Value, Value> {
        let url = format!("{}{path}", self.session);
        let req = match method {
            "GET" => self.client.get(url),
            "DELETE" => self.client.delete(url),
            _ => self.client.post(url),
        };
        let mut res = match body {
            Some(b) => req.send_json(&b).await,
            None if method == "POST" => req.send_json(&json!({})).await,
            None => req.send().await,
        }
        .map_err(|e| json!({"error": e.to_string()}))?;
        let ok = res.status().is_success();
        let v: Value = res
            .json()
            .limit(64 << 20)
            .await
            .map_err(|e| json!({"error": e.to_string()}))?;
        if ok {
            Ok(v["value"].clone())
        } else {
            Err(v["value"].clone())
        }
    }

    pub async fn set_size(&self, width: u32, height: u32) {
        self.cmd(
            "POST",
            "/window/rect",
            Some(json!({"width": width, "height": height})),
        )
        .await;
    }

    pub async fn goto(&self, url: &str) {
        self.cmd("POST", "/url", Some(json!({ "url": url }))).await;
    }

    pub async fn refresh(&self) {
        self.cmd("POST", "/refresh", None).await;
    }

    /// Runs `script` (a function body; `arguments` holds `args`) and answers its return value.
    pub async fn exec(&self, script: &str, args: Vec<Value>) -> Value {
        self.cmd(
            "POST",
            "/execute/sync",
            Some(json!({"script": script, "args": args})),
        )
        .await
    }

    /// The first element matching `css`, if any.
    pub async fn find(&self, css: &str) -> Option<String> {
        let v = self
            .try_cmd(
                "POST",
                "/element",
                Some(json!({"using": "css selector", "value": css})),
            )
            .await
            .ok()?;
        v[ELEMENT_KEY].as_str().map(str::to_string)
    }

    /// Polls until `js` (an expression) is truthy; fails the test with `what` after [`WAIT`].
    pub async fn wait_js(&self, js: &str, what: &str) {
        let started = Instant::now();
        let script = format!("return !!({js});");
        loop {
            if self.exec(&script, vec![]).await == Value::Bool(true) {
                return;
            }
            if started.elapsed() > WAIT {
                let shown = self
                    .exec("return document.querySelector('main')?.innerText ?? document.body.innerText", vec![])
                    .await;
                panic!("waited {WAIT:?} for {what} ({js}); the page shows:\n{shown}");
            }
            actix_rt::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// Waits for a visible, enabled element matching `css`; answers its id.
    pub async fn wait(&self, css: &str) -> String {
        let sel = serde_json::to_string(css).unwrap_or_default();
        self.wait_js(
            &format!(
                "(e => e && e.offsetParent !== null && !e.disabled)(document.querySelector({sel}))"
            ),
            &format!("a visible, enabled {css}"),
        )
        .await;
        self.find(css)
            .await
            .unwrap_or_else(|| panic!("{css} went away"))
    }

    /// Waits until some element matching `css` shows `text` (a substring of its text).
    pub async fn wait_text(&self, css: &str, text: &str) {
        let sel = serde_json::to_string(css).unwrap_or_default();
        let t = serde_json::to_string(text).unwrap_or_default();
        self.wait_js(
            &format!("[...document.querySelectorAll({sel})].some(e => e.innerText.includes({t}))"),
            &format!("{css} showing {text:?}"),
        )
        .await;
    }

    /// Waits for `css` to be visible and enabled, then clicks it (as a person would).
    pub async fn click(&self, css: &str) {
        let id = self.wait(css).await;
        self.exec(
            "arguments[0].scrollIntoView({block: 'center'});",
            vec![json!({ ELEMENT_KEY: id })],
        )
        .await;
        self.cmd("POST", &format!("/element/{id}/click"), None)
            .await;
    }

    /// Types `text` into the input `css` (after clearing it).
    pub async fn type_into(&self, css: &str, text: &str) {
        let id = self.wait(css).await;
        self.cmd("POST", &format!("/element/{id}/clear"), None)
            .await;
        self.cmd(
            "POST",
            &format!("/element/{id}/value"),
            Some(json!({ "text": text })),
        )
        .await;
    }

    /// Presses and releases each key of `keys` on whatever has the focus (the physical
    /// keyboard). WebDriver's key codes work too, e.g. "\u{E003}" for Backspace.
    pub async fn keys(&self, keys: &str) {
        let actions: Vec<Value> = keys
            .chars()
            .flat_map(|c| {
                let k = c.to_string();
                [
                    json!({"type": "keyDown", "value": k}),
                    json!({"type": "keyUp", "value": k}),
                ]
            })
            .collect();
        self.cmd(
            "POST",
            "/actions",
            Some(json!({"actions": [{"type": "key", "id": "keyboard", "actions": actions}]})),
        )
        .await;
    }

    /// `innerText` of the first element matching `css` ("" when there is none).
    pub async fn text(&self, css: &str) -> String {
        let sel = serde_json::to_string(css).unwrap_or_default();
        self.exec(
            &format!("return document.querySelector({sel})?.innerText ?? ''"),
            vec![],
        )
        .await
        .as_str()
        .unwrap_or_default()
        .to_string()
    }

    /// `innerText` of every element matching `css`.
    pub async fn texts(&self, css: &str) -> Vec<String> {
        let sel = serde_json::to_string(css).unwrap_or_default();
        let v = self
            .exec(
                &format!("return [...document.querySelectorAll({sel})].map(e => e.innerText)"),
                vec![],
            )
            .await;
        v.as_array()
            .map(|a| {
                a.iter()
                    .map(|x| x.as_str().unwrap_or_default().to_string())
                    .collect()
            })
            .unwrap_or_default()
    }

    /// Writes a PNG of the viewport to `target/screenshots/{name}.png`; answers its path.
    pub async fn screenshot(&self, name: &str) -> PathBuf {
        let v = self.cmd("GET", "/screenshot", None).await;
        let png = base64::engine::general_purpose::STANDARD
            .decode(v.as_str().unwrap_or_default())
            .expect("a base64 PNG");
        assert!(png.starts_with(b"\x89PNG"), "not a PNG");
        let dir = screenshot_dir();
        std::fs::create_dir_all(&dir).expect("screenshot folder");
        let path = dir.join(format!("{name}.png"));
        std::fs::write(&path, png).expect("screenshot written");
        path
    }

    /// Ends the session and the driver.
    pub async fn quit(mut self) {
        let _ = self.try_cmd("DELETE", "", None).await;
        let _ = self.driver.kill();
        let _ = self.driver.wait();
    }
}

impl Drop for Browser {
    /// A test that failed before `quit` still stops its driver (Chromium exits with it).
    fn drop(&mut self) {
        let _ = self.driver.kill();
        let _ = self.driver.wait();
    }
}
