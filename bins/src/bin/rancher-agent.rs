//! `rancher-agent`: the cluster agent (written with the tunnel; this is a placeholder).

fn main() -> std::process::ExitCode {
    eprintln!("rancher-agent: not implemented yet");
    std::process::ExitCode::from(2)
}
