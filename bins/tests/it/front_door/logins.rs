//! Rows 6 and 8: password checks are bounded (a flood of logins is refused at once and memory stays
//! flat; parallel guesses cannot outrun the throttle), and the throttle slows the attacker, not the
//! user they target.

use std::net::IpAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use serde_json::{Value, json};

use super::raw::loopback;
use crate::common::{ADMIN_PASSWORD, Api, ServerProc};

/// A client whose connections come from `from`.
fn client_from(server: &ServerProc, from: IpAddr) -> reqwest::Client {
    reqwest::Client::builder()
        .tls_certs_only(reqwest::Certificate::from_pem_bundle(server.ca_pem().as_bytes()).unwrap())
        .local_address(from)
        .timeout(Duration::from_secs(120))
        .build()
        .unwrap()
}

struct Outcome {
    code: u16,
    retry_after: Option<String>,
    body: Value,
    took: Duration,
}

async fn login(http: &reqwest::Client, url: &str, username: &str, password: &str) -> Outcome {
    let started = Instant::now();
    let resp = http
        .post(format!("{url}/v3-public/localProviders/local?action=login"))
        .json(&json!({"username": username, "password": password}))
        .send()
        .await
        .expect("login request");
    let took = started.elapsed();
    let code = resp.status().as_u16();
    let retry_after = resp.headers().get("retry-after").map(|v| v.to_str().unwrap().to_owned());
    let body = resp.json().await.unwrap_or(Value::Null);
    Outcome { code, retry_after, body, took }
}

/// A `VmHWM`/`VmRSS`-style field of `/proc/<pid>/status`, in MiB.
fn proc_mib(pid: u32, field: &str) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    let line = status.lines().find(|l| l.starts_with(field)).unwrap();
    line.split_whitespace().nth(1).unwrap().parse::<u64>().unwrap() / 1024
}

/// Clients that have each opened their connection already (a `/ping`), so the logins that follow
/// reach the server together instead of trickling in behind TLS handshakes.
async fn warmed_clients(server: &ServerProc, addrs: impl Iterator<Item = IpAddr>) -> Vec<reqwest::Client> {
    let mut set = tokio::task::JoinSet::new();
    for ip in addrs {
        let (http, url) = (client_from(server, ip), server.url.clone());
        set.spawn(async move {
            assert_eq!(http.get(format!("{url}/ping")).send().await.unwrap().status(), 200);
            http
        });
    }
    set.join_all().await
}

/// Sends one login per client at the same moment.
async fn together(
    clients: Vec<reqwest::Client>,
    url: &str,
    who: impl Fn(usize) -> (String, String),
) -> Vec<Outcome> {
    let start = Arc::new(tokio::sync::Barrier::new(clients.len()));
    let mut set = tokio::task::JoinSet::new();
    for (i, http) in clients.into_iter().enumerate() {
        let (start, url, (user, pw)) = (start.clone(), url.to_owned(), who(i));
        set.spawn(async move {
            start.wait().await;
            login(&http, &url, &user, &pw).await
        });
    }
    set.join_all().await
}

fn median(mut v: Vec<Duration>) -> Duration {
    v.sort();
    v.get(v.len() / 2).copied().unwrap_or_default()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_login_flood_is_refused_at_once_and_memory_stays_bounded() {
    let dir = tempfile::tempdir().unwrap();
    let flags = ["--password-hash-workers", "2", "--password-hash-queue", "4"];
    let server = ServerProc::start(&dir.path().join("data"), 0, Some(ADMIN_PASSWORD), &flags);
    let pid = server.child.id();
    // Each login from its own address and for its own unknown user: the throttle has nothing to
    // count, only the bound on password checks holds.
    let n = 300;
    let clients =
        warmed_clients(&server, (0..n).map(|i| loopback(6 + (i / 250) as u8, (i % 250) as u8 + 1))).await;
    let before = proc_mib(pid, "VmRSS");
    let outcomes =
        together(clients, &server.url, |i| (format!("nobody-{i}"), "a-guessed-password".into())).await;
    let peak = proc_mib(pid, "VmHWM");

    let refused: Vec<&Outcome> = outcomes.iter().filter(|o| o.code == 429).collect();
    let checked = outcomes.iter().filter(|o| o.code == 401).count();
    let fast = median(refused.iter().map(|o| o.took).collect());
    eprintln!(
        "{n} parallel logins: {checked} checked (401), {} refused (429, median {fast:?}); \
         RSS {before} MiB before, peak {peak} MiB",
        refused.len()
    );
    assert_eq!(checked + refused.len(), n, "every login is a 401 or a 429");
    assert!(refused.len() >= n / 2, "most of the flood is refused: {} of {n}", refused.len());
    for o in &refused {
        assert_eq!(o.body["reason"], "TooManyRequests", "{}", o.body);
        assert_eq!(o.retry_after.as_deref(), Some("1"), "{}", o.body);
    }
    assert!(fast < Duration::from_secs(2), "refusals are immediate, not queued: median {fast:?}");
    assert!(peak < 200, "the server's peak RSS was {peak} MiB during the flood");
    // The server is still there for the real admin.
    Api::new(&server).logged_in("admin", ADMIN_PASSWORD).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn parallel_guesses_cannot_outrun_the_throttle() {
    let dir = tempfile::tempdir().unwrap();
    // A queue deep enough that no guess is refused for load: every 429 is the throttle's.
    let flags = ["--password-hash-queue", "64"];
    let server = ServerProc::start(&dir.path().join("data"), 0, Some(ADMIN_PASSWORD), &flags);
    let clients = warmed_clients(&server, (0..40).map(|_| loopback(7, 1))).await;
    let began = std::time::Instant::now();
    let outcomes = together(clients, &server.url, |i| ("admin".into(), format!("guess-number-{i}"))).await;
    let burst = began.elapsed();
    let checked = outcomes.iter().filter(|o| o.code == 401).count();
    let throttled: Vec<&Outcome> = outcomes.iter().filter(|o| o.code == 429).collect();
    eprintln!("40 parallel guesses in {burst:?}: {checked} checked, {} throttled", throttled.len());
    // Five failures lock the pair out for 1 s, each further one doubles it: j checks past the five
    // take at least 2^j - 1 s, however the guesses are spread (a loaded machine spreads them).
    let allowed = 5 + (burst.as_secs_f64() + 1.0).log2().floor() as usize;
    assert!(
        checked <= allowed,
        "{checked} passwords were checked in {burst:?}; the throttle allows {allowed} (5, then doubling lockouts)"
    );
    assert_eq!(checked + throttled.len(), 40);
    for o in throttled {
        assert!(o.body["message"].as_str().unwrap().contains("too many failed logins"), "{}", o.body);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_attacker_locks_out_only_themselves() {
    let dir = tempfile::tempdir().unwrap();
    let server = ServerProc::start(&dir.path().join("data"), 0, Some(ADMIN_PASSWORD), &[]);
    let attacker = client_from(&server, loopback(8, 1));
    for i in 0..50 {
        let o = login(&attacker, &server.url, "admin", &format!("guess-number-{i}")).await;
        assert!(matches!(o.code, 401 | 429), "{}", o.body);
    }
    // The attacker's address is locked out for admin, even with the right password …
    let o = login(&attacker, &server.url, "admin", ADMIN_PASSWORD).await;
    assert_eq!(o.code, 429, "{}", o.body);
    // … the admin, elsewhere, is not.
    let admin = client_from(&server, loopback(0, 1));
    let o = login(&admin, &server.url, "admin", ADMIN_PASSWORD).await;
    assert_eq!(o.code, 201, "the admin logs in at once from their own address: {}", o.body);
    assert!(o.took < Duration::from_secs(5), "{:?}", o.took);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_success_does_not_reset_the_attackers_address() {
    let dir = tempfile::tempdir().unwrap();
    let server = ServerProc::start(&dir.path().join("data"), 0, Some(ADMIN_PASSWORD), &[]);
    let admin = Api::new(&server).logged_in("admin", ADMIN_PASSWORD).await;
    let mallory = json!({"spec": {"username": "mallory", "password": "mallory-password-1"}});
    assert_eq!(admin.post("/v3/users", &mallory).await.code, 201);

    // 19 failures from one address, each for another username (no per-user limit is reached) …
    let attacker = client_from(&server, loopback(8, 2));
    for i in 0..19 {
        let o = login(&attacker, &server.url, &format!("victim-{i}"), "a-guessed-password").await;
        assert_eq!(o.code, 401, "{}", o.body);
    }
    // … then the attacker logs in to their own account from the same address, which must not wipe
    // the address's count …
    assert_eq!(login(&attacker, &server.url, "mallory", "mallory-password-1").await.code, 201);
    // … so the 20th failure locks the address out. That first lockout lasts a second from the latest
    // failure — less than a login's round trip on a loaded machine — and each failure past the limit
    // doubles it, so one of the next few tries meets it; a count the success had reset would need 19.
    assert_eq!(login(&attacker, &server.url, "victim-19", "a-guessed-password").await.code, 401);
    let mut refused = None;
    for i in 20..24 {
        let o = login(&attacker, &server.url, &format!("victim-{i}"), "a-guessed-password").await;
        if o.code == 429 {
            refused = Some(o);
            break;
        }
        assert_eq!(o.code, 401, "{}", o.body);
    }
    let o = refused.expect("the address is locked out after 20 failures");
    assert!(o.body["message"].as_str().unwrap().contains("too many failed logins"), "{}", o.body);
}
