//! A real headless Chromium driven over W3C WebDriver (Debian's `chromium` and `chromium-driver`):
//! enough of the protocol for the console's tests — open a page, find elements by CSS, type, click,
//! read text, wait for something to show, take a screenshot.
//!
//! `chromedriver --port=0` picks its own port and prints it, so two tests never race for one; it
//! runs in its own process group, killed whole (with the browser under it) when the [`Browser`] is
//! dropped.

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use serde_json::{Value, json};

/// The key under which WebDriver names an element.
const ELEMENT: &str = "element-6066-11e4-a52e-4f735466cecf";
/// How long [`Browser::wait_for`] and friends wait by default.
pub const WAIT: Duration = Duration::from_secs(30);

/// One browser session.
pub struct Browser {
    driver: Child,
    http: reqwest::Client,
    session: String,
    _profile: tempfile::TempDir,
}

/// An element of the page.
#[derive(Clone, Debug)]
pub struct Element(String);

impl Browser {
    /// Starts chromedriver and a headless Chromium (window 1280×900, certificates of test CAs
    /// accepted).
    ///
    /// # Panics
    /// When chromedriver is not installed or does not start.
    pub async fn start() -> Browser {
        Self::start_sized(1280, 900).await
    }

    /// As [`Browser::start`], with a window of `width`×`height` (a phone: 390×844).
    ///
    /// # Panics
    /// As [`Browser::start`].
    pub async fn start_sized(width: u32, height: u32) -> Browser {
        use std::os::unix::process::CommandExt;
        let driver_bin = std::env::var("CHROMEDRIVER").unwrap_or_else(|_| "chromedriver".into());
        let mut driver = Command::new(&driver_bin)
            .arg("--port=0")
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .process_group(0)
            .spawn()
            .unwrap_or_else(|e| {
                panic!("{driver_bin} does not start ({e}): apt-get install chromium chromium-driver")
            });
        let stdout = driver.stdout.take().expect("piped");
        let port = tokio::task::spawn_blocking(move || {
            let mut lines = BufReader::new(stdout).lines();
            let port = lines.by_ref().map_while(Result::ok).find_map(|l| {
                l.split("started successfully on port ")
                    .nth(1)
                    .map(|p| p.trim_end_matches('.').parse::<u16>())
            });
            // Keep draining so chromedriver never blocks on a full pipe.
            std::thread::spawn(move || lines.for_each(drop));
            port
        })
        .await
        .expect("reading chromedriver")
        .expect("chromedriver printed its port")
        .expect("a port number");
        let profile = tempfile::tempdir().expect("a profile directory");
        let http = reqwest::Client::builder().timeout(Duration::from_secs(60)).build().expect("client");
        let base = format!("http://127.0.0.1:{port}");
        let caps = json!({"capabilities": {"alwaysMatch": {
            "browserName": "chrome",
            "acceptInsecureCerts": true,
            "goog:chromeOptions": {
                "binary": std::env::var("CHROMIUM").unwrap_or_else(|_| "/usr/bin/chromium".into()),
                "args": [
                    "--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                    "--no-first-run", "--disable-extensions",
                    format!("--window-size={width},{height}"),
                    format!("--user-data-dir={}", profile.path().display()),
                ],
            },
        }}});
        let answer: Value = http
            .post(format!("{base}/session"))
            .json(&caps)
            .send()
            .await
            .expect("chromedriver answers")
            .json()
            .await
            .expect("JSON");
        let session = answer["value"]["sessionId"]
            .as_str()
            .unwrap_or_else(|| panic!("no session: {answer}"))
            .to_owned();
        Browser { driver, http, session: format!("{base}/session/{session}"), _profile: profile }
    }

    async fn call(&self, method: reqwest::Method, path: &str, body: Option<Value>) -> Result<Value, String> {
        let mut req = self.http.request(method, format!("{}{path}", self.session));
        if let Some(b) = body {
            req = req.json(&b);
        }
        let resp = req.send().await.map_err(|e| e.to_string())?;
        let ok = resp.status().is_success();
        let v: Value = resp.json().await.map_err(|e| e.to_string())?;
        if ok { Ok(v["value"].clone()) } else { Err(v["value"].to_string()) }
    }

    /// Opens `url`.
    ///
    /// # Panics
    /// When the browser cannot.
    pub async fn goto(&self, url: &str) {
        self.call(reqwest::Method::POST, "/url", Some(json!({"url": url}))).await.expect("navigate");
    }

    /// The element `css` selects now, if any.
    pub async fn find(&self, css: &str) -> Option<Element> {
        let v = self
            .call(reqwest::Method::POST, "/element", Some(json!({"using": "css selector", "value": css})))
            .await
            .ok()?;
        v[ELEMENT].as_str().map(|id| Element(id.to_owned()))
    }

    /// How many elements `css` selects now.
    pub async fn count(&self, css: &str) -> usize {
        self.call(reqwest::Method::POST, "/elements", Some(json!({"using": "css selector", "value": css})))
            .await
            .ok()
            .and_then(|v| v.as_array().map(Vec::len))
            .unwrap_or(0)
    }

    /// Waits up to `wait` for `css` to select an element.
    ///
    /// # Panics
    /// When none shows within `wait` (with the page's text, to see why).
    pub async fn wait_for(&self, css: &str, wait: Duration) -> Element {
        let deadline = tokio::time::Instant::now() + wait;
        loop {
            if let Some(e) = self.find(css).await {
                return e;
            }
            if tokio::time::Instant::now() > deadline {
                panic!("{css} did not show within {wait:?}; the page says: {}", self.page_text().await);
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// Waits up to `wait` for the text of `css` to satisfy `want`; returns it.
    ///
    /// # Panics
    /// When it does not within `wait`.
    pub async fn wait_text(&self, css: &str, wait: Duration, want: impl Fn(&str) -> bool) -> String {
        let deadline = tokio::time::Instant::now() + wait;
        let mut last = String::new();
        loop {
            if let Some(e) = self.find(css).await {
                last = self.text(&e).await;
                if want(&last) {
                    return last;
                }
            }
            if tokio::time::Instant::now() > deadline {
                panic!("{css} never showed what was waited for within {wait:?}; last: {last:?}");
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// The element's visible text.
    pub async fn text(&self, e: &Element) -> String {
        let path = format!("/element/{}/text", e.0);
        self.call(reqwest::Method::GET, &path, None)
            .await
            .ok()
            .and_then(|v| v.as_str().map(str::to_owned))
            .unwrap_or_default()
    }

    /// The whole page's visible text.
    pub async fn page_text(&self) -> String {
        match self.find("body").await {
            Some(b) => self.text(&b).await,
            None => String::new(),
        }
    }

    /// Types `text` into the element.
    ///
    /// # Panics
    /// When the browser refuses.
    pub async fn type_into(&self, e: &Element, text: &str) {
        let path = format!("/element/{}/value", e.0);
        self.call(reqwest::Method::POST, &path, Some(json!({"text": text}))).await.expect("type");
    }

    /// Clicks the element.
    ///
    /// # Panics
    /// When the browser refuses (the element is hidden or covered).
    pub async fn click(&self, e: &Element) {
        let path = format!("/element/{}/click", e.0);
        self.call(reqwest::Method::POST, &path, Some(json!({}))).await.expect("click");
    }

    /// Runs `script` in the page (`return …` gives a value).
    ///
    /// # Panics
    /// When the script throws.
    pub async fn execute(&self, script: &str) -> Value {
        self.call(reqwest::Method::POST, "/execute/sync", Some(json!({"script": script, "args": []})))
            .await
            .expect("script runs")
    }

    /// A screenshot of the window, as PNG, written to `path`.
    ///
    /// # Panics
    /// When the browser cannot take it or the file cannot be written.
    pub async fn screenshot(&self, path: &Path) {
        use base64::Engine;
        let v = self.call(reqwest::Method::GET, "/screenshot", None).await.expect("screenshot");
        let png = base64::engine::general_purpose::STANDARD.decode(v.as_str().expect("base64")).expect("PNG");
        std::fs::write(path, png).expect("write the screenshot");
    }
}

impl Drop for Browser {
    fn drop(&mut self) {
        // The whole group: chromedriver and the browser it started.
        let group = format!("-{}", self.driver.id());
        let _ = Command::new("kill").args(["-9", "--", &group]).status();
        let _ = self.driver.wait();
    }
}
