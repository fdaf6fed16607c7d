//! The bench's table: per engine and phase, the provider calls and wall time through the server
//! beside the direct path's, and their ratios.

use std::fmt::Write as _;
use std::time::Duration;

use super::server::ServerRun;
use super::{Calls, Measured};

/// One engine's results.
#[derive(Debug)]
pub struct EngineResult {
    /// The engine's name.
    pub engine: &'static str,
    /// How its counterpart was timed (printed under the table).
    pub timing: String,
    /// Through the server.
    pub server: ServerRun,
    /// With the provider's client alone.
    pub direct: Vec<Measured>,
}

fn calls(c: Calls) -> String {
    format!("{} + {}", c.api, c.token)
}

fn ratio(a: f64, b: f64) -> String {
    if b > 0.0 { format!("{:.2}×", a / b) } else { "-".to_owned() }
}

fn total(phases: &[Measured]) -> (Calls, Duration) {
    phases.iter().fold((Calls::default(), Duration::ZERO), |(c, d), m| {
        (Calls { api: c.api + m.calls.api, token: c.token + m.calls.token }, d + m.wall)
    })
}

fn row(out: &mut String, engine: &str, phase: &str, s: (Calls, Duration), d: (Calls, Duration)) {
    let (sc, dc) = ((s.0.api + s.0.token) as f64, (d.0.api + d.0.token) as f64);
    let _ = writeln!(
        out,
        "| {engine} | {phase} | {} | {:.1} s | {} | {:.1} s | {} | {} |",
        calls(s.0),
        s.1.as_secs_f64(),
        calls(d.0),
        d.1.as_secs_f64(),
        ratio(sc, dc),
        ratio(s.1.as_secs_f64(), d.1.as_secs_f64()),
    );
}

/// The table (Markdown) and the notes under it.
pub fn render(results: &[EngineResult]) -> String {
    let mut out = String::new();
    out.push_str(
        "| engine | phase | server: API + token calls | server time | direct: API + token calls | direct time \
         | calls server/direct | time server/direct |\n|---|---|---|---|---|---|---|---|\n",
    );
    for r in results {
        for (s, d) in r.server.phases.iter().zip(&r.direct) {
            row(&mut out, r.engine, s.phase.name(), (s.calls, s.wall), (d.calls, d.wall));
        }
        row(&mut out, r.engine, "**all**", total(&r.server.phases), total(&r.direct));
    }
    out.push('\n');
    for r in results {
        let _ = writeln!(out, "- {}", r.timing);
        if let Some(create) = r.server.phases.first()
            && let Some(h) = create.handed_over
        {
            let _ = writeln!(
                out,
                "- {} create through the server: the cluster was handed over for the agent's deploy after \
                 {:.1} s; deploy, agent start and connection to Active took the other {:.1} s",
                r.engine,
                h.as_secs_f64(),
                create.wall.saturating_sub(h).as_secs_f64()
            );
        }
        if let Some(create) = r.server.phases.first()
            && let Some(u) = create.user_import
        {
            let _ = writeln!(
                out,
                "- {} create through the server: the server could not reach the endpoint and showed the \
                 import command; the bench, as the user, applied it {:.1} s after the request, {:.1} s \
                 before the cluster was Active",
                r.engine,
                u.as_secs_f64(),
                create.wall.saturating_sub(u).as_secs_f64()
            );
        }
        let b = r.server.between;
        if b.api + b.token > 0 {
            let _ = writeln!(
                out,
                "- {}: the server made {} more calls between phases (cluster idle)",
                r.engine,
                calls(b)
            );
        }
    }
    out
}
