//! The node agent's node work, end to end: a real server (in-process, with an imported cluster:
//! node agents join built and imported clusters alike), the real `rancher-agent --node` binary,
//! plans sent through the server's tunnel with `rancher::server::node_plans`, and real programs run by it
//! (`python3 -m http.server`, `sleep`). Kill tests: the node agent is SIGKILLed and restarted, its
//! process is SIGKILLed; a plan outside the allowed roots is refused.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Arc;
use std::time::Duration;

use base64::Engine;
use rancher::server::Server;
use rancher::server::node_plans::{NodePlanError, node_status, send_plan};
use rancher_core::store::MemoryStore;
use rancher_provision::plan::{HealthCheck, NodePlan, NodeStatus, PlanFile, PlanProcess, ProcessStatus};
use rancher_tunnel::TunnelServer;
use serde_json::json;
use std::os::unix::fs::PermissionsExt;
use tokio_util::sync::CancellationToken;

use crate::import_support::*;

const NODE_KEY: &str = "rk:node-1";

/// Kills the plan's processes when the test ends, also on panic: those the node agent recorded and
/// every pid the test saw (a failed adoption leaves the earlier ones unrecorded). A pid is killed
/// only while its command line is still one of the test's programs.
struct KillPlanProcesses {
    state_dir: PathBuf,
    seen: std::sync::Mutex<Vec<u32>>,
}

impl KillPlanProcesses {
    fn seen(&self, st: &NodeStatus) {
        self.seen.lock().unwrap().extend(st.processes.iter().filter_map(|p| p.pid));
    }
}

impl Drop for KillPlanProcesses {
    fn drop(&mut self) {
        let mut pids = self.seen.lock().unwrap_or_else(|e| e.into_inner()).clone();
        let recorded = std::fs::read_to_string(self.state_dir.join("processes.json")).unwrap_or_default();
        if let Ok(serde_json::Value::Object(records)) = serde_json::from_str(&recorded) {
            pids.extend(records.values().filter_map(|r| r["pid"].as_u64()).map(|p| p as u32));
        }
        for pid in pids {
            let cmdline = std::fs::read(format!("/proc/{pid}/cmdline")).unwrap_or_default();
            let cmdline = String::from_utf8_lossy(&cmdline);
            if cmdline.contains("http.server") || cmdline.starts_with("/usr/bin/sleep") {
                let _ = Command::new("kill").arg("-KILL").arg(pid.to_string()).status();
            }
        }
    }
}

fn start_node_agent(env: &AgentEnv, dir: &Path, roots: &[&Path], log: &str) -> Proc {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_rancher-agent"));
    cmd.args(["--node", "--node-name", "node-1", "--state-dir"])
        .arg(dir.join("state"))
        .env("RUST_LOG", "info")
        .env("HOME", dir)
        .env_remove("KUBECONFIG")
        .env_remove("KUBERNETES_SERVICE_HOST")
        .env("CATTLE_SERVER", &env.server)
        .env("CATTLE_CA_CHECKSUM", &env.checksum)
        .env("CATTLE_TOKEN", &env.token);
    for r in roots {
        cmd.arg("--plan-root").arg(r);
    }
    Proc::spawn(cmd, &dir.join(log))
}

fn b64(s: &str) -> String {
    base64::engine::general_purpose::STANDARD.encode(s)
}

fn proc_alive(pid: u32) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .is_ok_and(|s| !matches!(s[s.rfind(')').unwrap() + 1..].split_whitespace().next(), Some("Z" | "X")))
}

fn process<'a>(s: &'a NodeStatus, name: &str) -> &'a ProcessStatus {
    s.processes.iter().find(|p| p.name == name).unwrap_or_else(|| panic!("no {name} in {s:?}"))
}

/// Waits until the node's status satisfies `f`; returns it.
async fn status_until(
    tunnel: &TunnelServer,
    cleanup: &KillPlanProcesses,
    what: &str,
    f: impl Fn(&NodeStatus) -> bool,
) -> NodeStatus {
    let deadline = tokio::time::Instant::now() + WAIT;
    let mut last;
    loop {
        let status = node_status(tunnel, NODE_KEY).await;
        if let Ok(s) = &status {
            cleanup.seen(s);
        }
        match status {
            Ok(s) if f(&s) => return s,
            Ok(s) => last = Some(format!("{s:#?}")),
            Err(e) => last = Some(e.to_string()),
        }
        assert!(tokio::time::Instant::now() < deadline, "timed out waiting until {what}; last: {last:?}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

async fn session(tunnel: &TunnelServer) {
    eventually(WAIT, "the node agent's session", || {
        let up = tunnel.has_session(NODE_KEY);
        async move { up.then_some(()) }
    })
    .await;
}

fn plan(revision: &str, root: &Path, web_port: u16, sleep_secs: &str) -> NodePlan {
    let file = |rel: &str, content: &str, mode: u32| PlanFile {
        path: root.join(rel).to_str().unwrap().to_owned(),
        content: b64(content),
        mode,
    };
    NodePlan {
        revision: revision.into(),
        files: vec![
            file("etc/node/config.yaml", "port: 1\n", 0o644),
            file("etc/node/ssl/node-key.pem", "-----BEGIN PRIVATE KEY-----\nxx\n", 0o600),
            file("www/index.html", "hello from the plan\n", 0o644),
        ],
        processes: vec![
            PlanProcess {
                name: "web".into(),
                binary: "/usr/bin/python3".into(),
                args: ["-m", "http.server", "--bind", "127.0.0.1", "--directory"]
                    .iter()
                    .map(|s| s.to_string())
                    .chain([root.join("www").to_str().unwrap().to_owned(), web_port.to_string()])
                    .collect(),
                env: [("PYTHONUNBUFFERED".to_string(), "1".to_string())].into(),
                health: Some(HealthCheck::Tcp { address: format!("127.0.0.1:{web_port}") }),
            },
            PlanProcess {
                name: "sleeper".into(),
                binary: "/usr/bin/sleep".into(),
                args: vec![sleep_secs.into()],
                ..Default::default()
            },
        ],
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_node_agent_applies_plans_keeps_processes_running_and_adopts_them_after_a_restart() {
    install_crypto();
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("root");
    let cleanup = KillPlanProcesses { state_dir: dir.path().join("state"), seen: Default::default() };
    let server = Server::builder()
        .data_dir(dir.path().join("server"))
        .store(Arc::new(MemoryStore::new()))
        .https_listen("127.0.0.1:0".parse().unwrap())
        .bootstrap_password(ADMIN_PASSWORD)
        .build()
        .await
        .unwrap();
    let url = server.url();
    let reg = server.registration();
    let stop_server = CancellationToken::new();
    let s = stop_server.clone();
    let running = tokio::spawn(server.run(async move { s.cancelled().await }));

    let bearer = login(&url).await;
    let created = insecure_client()
        .post(format!("{url}/v3/clusters"))
        .bearer_auth(&bearer)
        .json(&json!({"metadata": {"name": "rk"}, "spec": {"importedConfig": {}}}))
        .send()
        .await
        .unwrap();
    assert_eq!(created.status().as_u16(), 201, "{}", created.text().await.unwrap());
    let crt: serde_json::Value = insecure_client()
        .get(format!("{url}/v3/clusterregistrationtokens/rk:default-token"))
        .bearer_auth(&bearer)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let env = AgentEnv {
        server: url.clone(),
        checksum: reg.ca_checksum().to_owned(),
        token: crt["status"]["token"].as_str().unwrap().to_owned(),
    };
    let tunnel = reg.tunnel();
    let roots = [root.as_path(), Path::new("/usr/bin")];

    // --- The first plan: files written with their modes, both processes running and healthy.
    let mut agent = start_node_agent(&env, dir.path(), &roots, "agent-1.log");
    session(tunnel).await;
    let web_port = free_port();
    send_plan(tunnel, NODE_KEY, &plan("r1", &root, web_port, "1000")).await.unwrap();
    let st = status_until(tunnel, &cleanup, "r1 is applied and healthy", |s| {
        s.is_healthy("r1") && s.processes.len() == 2 && s.processes.iter().all(|p| p.running)
    })
    .await;
    let mode = |rel: &str| std::fs::metadata(root.join(rel)).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode("etc/node/ssl/node-key.pem"), 0o600, "key files are 0600");
    assert_eq!(mode("etc/node/config.yaml"), 0o644);
    let page =
        reqwest::get(format!("http://127.0.0.1:{web_port}/index.html")).await.unwrap().text().await.unwrap();
    assert_eq!(page, "hello from the plan\n", "the process serves the plan's file");
    let web_pid = process(&st, "web").pid.unwrap();
    let sleeper_pid = process(&st, "sleeper").pid.unwrap();
    assert_eq!((process(&st, "web").restarts, process(&st, "sleeper").restarts), (0, 0));
    assert!(dir.path().join("state/logs/web.log").exists(), "its output goes to its log");

    // --- SIGKILL of the node agent leaves the processes running; the next one adopts them.
    agent.signal("KILL");
    agent.exit_within(WAIT).await.expect("the node agent dies on SIGKILL");
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert!(proc_alive(web_pid) && proc_alive(sleeper_pid), "the processes outlive the node agent");
    agent = start_node_agent(&env, dir.path(), &roots, "agent-2.log");
    session(tunnel).await;
    let st =
        status_until(tunnel, &cleanup, "the restarted node agent reports r1 healthy", |s| s.is_healthy("r1"))
            .await;
    assert_eq!(
        process(&st, "web").pid,
        Some(web_pid),
        "adopted, not started again: {st:#?}\n{}\n{}",
        agent.log_text(),
        std::fs::read_to_string(dir.path().join("state/processes.json")).unwrap_or_default()
    );
    assert_eq!(process(&st, "sleeper").pid, Some(sleeper_pid), "{}", agent.log_text());
    assert_eq!(process(&st, "web").restarts, 0);
    assert!(agent.log_text().contains("adopted a process"), "{}", agent.log_text());

    // --- An adopted process that dies is restarted (it is not our child: found dead through /proc).
    Command::new("kill").arg("-KILL").arg(web_pid.to_string()).status().unwrap();
    let st = status_until(tunnel, &cleanup, "web restarted and healthy again", |s| {
        let w = process(s, "web");
        w.restarts == 1 && w.pid.is_some_and(|p| p != web_pid) && w.healthy
    })
    .await;
    let web_pid = process(&st, "web").pid.unwrap();
    let last = process(&st, "web").last_error.clone().unwrap_or_default();
    assert!(last.contains("exited"), "the death is reported: {last:?}");
    assert_eq!(process(&st, "sleeper").pid, Some(sleeper_pid), "the other process is untouched");

    // --- A changed plan restarts only the process whose spec changed.
    send_plan(tunnel, NODE_KEY, &plan("r2", &root, web_port, "1001")).await.unwrap();
    let st = status_until(tunnel, &cleanup, "r2 applied", |s| {
        s.is_healthy("r2") && process(s, "sleeper").pid.is_some_and(|p| p != sleeper_pid)
    })
    .await;
    assert_eq!(process(&st, "web").pid, Some(web_pid), "web's spec did not change: {st:#?}");
    assert_eq!(process(&st, "web").restarts, 1);
    assert!(!proc_alive(sleeper_pid), "the old sleeper was stopped");
    let sleeper_pid = process(&st, "sleeper").pid.unwrap();

    // --- A plan with a file outside the allowed roots is refused; nothing of it is written.
    let mut bad = plan("r3", &root, web_port, "1002");
    bad.files.push(PlanFile {
        path: root.join("etc/node/new.yaml").to_str().unwrap().into(),
        content: b64("x"),
        mode: 0o644,
    });
    let outside = dir.path().join("outside/evil.conf");
    bad.files.push(PlanFile { path: outside.to_str().unwrap().into(), content: b64("x"), mode: 0o644 });
    let err = send_plan(tunnel, NODE_KEY, &bad).await.unwrap_err();
    assert!(matches!(err, NodePlanError::Refused { status: 422, .. }), "{err}");
    assert!(err.to_string().contains(outside.to_str().unwrap()), "{err}");
    let st = node_status(tunnel, NODE_KEY).await.unwrap();
    assert!(st.error.as_deref().unwrap_or_default().contains(outside.to_str().unwrap()), "{st:#?}");
    assert_eq!(st.applied_revision, "r2");
    assert!(!outside.exists() && !root.join("etc/node/new.yaml").exists(), "nothing of it is written");
    assert_eq!(process(&st, "sleeper").pid, Some(sleeper_pid));
    // A relative path and a ".." path are refused too.
    bad.files.truncate(3);
    bad.files.push(PlanFile { path: format!("{}/../x", root.display()), content: b64("x"), mode: 0o644 });
    let err = send_plan(tunnel, NODE_KEY, &bad).await.unwrap_err();
    assert!(err.to_string().contains("\"..\""), "{err}");

    // --- SIGTERM: the node agent exits cleanly and leaves the processes running.
    agent.signal("TERM");
    let exit = agent.exit_within(WAIT).await.expect("the node agent stops on SIGTERM");
    assert!(exit.success(), "{exit}");
    assert!(proc_alive(web_pid) && proc_alive(sleeper_pid), "SIGTERM does not stop the plan's processes");

    stop_server.cancel();
    running.await.unwrap().unwrap();
}
