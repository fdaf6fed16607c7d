//! The tiny shell run by `pods/exec` and `pods/attach`: echo, cat, env/printenv, exit N, hostname,
//! true/false, pwd, whoami, sleep, and `sh -c "a; b && c"` scripts or an interactive `sh` on stdin.

use std::collections::BTreeMap;
use std::time::Duration;

use bytes::Bytes;
use tokio::sync::mpsc;

/// Output of the shell, by stream.
#[derive(Debug)]
pub(crate) enum Output {
    Stdout(Bytes),
    Stderr(Bytes),
}

/// What the process sees: environment and host name.
#[derive(Debug, Clone)]
pub(crate) struct Process {
    pub(crate) env: BTreeMap<String, String>,
    pub(crate) hostname: String,
}

struct Io<'a> {
    stdin: &'a mut Option<mpsc::Receiver<Bytes>>,
    out: &'a mpsc::Sender<Output>,
}

impl Io<'_> {
    async fn stdout(&self, s: impl Into<Bytes>) {
        let _ = self.out.send(Output::Stdout(s.into())).await;
    }
    async fn stderr(&self, s: impl Into<Bytes>) {
        let _ = self.out.send(Output::Stderr(s.into())).await;
    }
}

/// Splits a command line into words, honouring quotes and backslashes and expanding `$VAR`/`$?`.
fn words(line: &str, env: &BTreeMap<String, String>, last: i32) -> Vec<String> {
    let mut out = vec![];
    let mut cur = String::new();
    let mut has = false;
    let mut chars = line.chars().peekable();
    let expand = |chars: &mut std::iter::Peekable<std::str::Chars<'_>>, cur: &mut String| {
        if chars.peek() == Some(&'?') {
            chars.next();
            cur.push_str(&last.to_string());
            return;
        }
        let braced = chars.peek() == Some(&'{');
        if braced {
            chars.next();
        }
        let mut name = String::new();
        while let Some(&c) = chars.peek() {
            if c.is_ascii_alphanumeric() || c == '_' {
                name.push(c);
                chars.next();
            } else {
                break;
            }
        }
        if braced && chars.peek() == Some(&'}') {
            chars.next();
        }
        if name.is_empty() && !braced {
            cur.push('$');
        } else {
            cur.push_str(env.get(&name).map(String::as_str).unwrap_or(""));
        }
    };
    while let Some(c) = chars.next() {
        match c {
            '\'' => {
                has = true;
                for c in chars.by_ref() {
                    if c == '\'' {
                        break;
                    }
                    cur.push(c);
                }
            }
            '"' => {
                has = true;
                while let Some(c) = chars.next() {
                    match c {
                        '"' => break,
                        '\\' => {
                            if let Some(n) = chars.next() {
                                cur.push(n);
                            }
                        }
                        '$' => expand(&mut chars, &mut cur),
                        c => cur.push(c),
                    }
                }
            }
            '\\' => {
                has = true;
                if let Some(n) = chars.next() {
                    cur.push(n);
                }
            }
            '$' => {
                has = true;
                expand(&mut chars, &mut cur);
            }
            c if c.is_whitespace() => {
                if has || !cur.is_empty() {
                    out.push(std::mem::take(&mut cur));
                    has = false;
                }
            }
            c => cur.push(c),
        }
    }
    if has || !cur.is_empty() {
        out.push(cur);
    }
    out
}

/// Splits a script into (connector, command) pairs on `;`, `&&`, `||` and newlines (outside quotes).
fn statements(script: &str) -> Vec<(String, String)> {
    let mut out = vec![];
    let (mut cur, mut quote, mut conn) = (String::new(), None::<char>, String::from(";"));
    let mut chars = script.chars().peekable();
    while let Some(c) = chars.next() {
        match (c, quote) {
            ('\'' | '"', None) => {
                quote = Some(c);
                cur.push(c);
            }
            (q, Some(open)) if q == open => {
                quote = None;
                cur.push(c);
            }
            (';' | '\n', None) => {
                out.push((std::mem::replace(&mut conn, ";".into()), std::mem::take(&mut cur)))
            }
            ('&', None) if chars.peek() == Some(&'&') => {
                chars.next();
                out.push((std::mem::replace(&mut conn, "&&".into()), std::mem::take(&mut cur)));
            }
            ('|', None) if chars.peek() == Some(&'|') => {
                chars.next();
                out.push((std::mem::replace(&mut conn, "||".into()), std::mem::take(&mut cur)));
            }
            _ => cur.push(c),
        }
    }
    out.push((conn, cur));
    out.into_iter().filter(|(_, c)| !c.trim().is_empty()).collect()
}

enum Flow {
    Continue(i32),
    Exit(i32),
}

async fn builtin(argv: &[String], p: &Process, io: &mut Io<'_>) -> Flow {
    let Some(cmd) = argv.first() else { return Flow::Continue(0) };
    let cmd = cmd.rsplit('/').next().unwrap_or(cmd);
    let args = &argv[1..];
    match cmd {
        "echo" => {
            let (newline, args) = match args.first().map(String::as_str) {
                Some("-n") => (false, &args[1..]),
                _ => (true, args),
            };
            let mut s = args.join(" ");
            if newline {
                s.push('\n');
            }
            io.stdout(s).await;
            Flow::Continue(0)
        }
        "cat" if args.is_empty() || args == ["-"] => {
            let mut rx = io.stdin.take();
            if let Some(r) = rx.as_mut() {
                while let Some(b) = r.recv().await {
                    io.stdout(b).await;
                }
            }
            *io.stdin = rx;
            Flow::Continue(0)
        }
        "cat" => {
            let mut code = 0;
            for f in args {
                match f.as_str() {
                    "/etc/hostname" => io.stdout(format!("{}\n", p.hostname)).await,
                    _ => {
                        io.stderr(format!("cat: {f}: No such file or directory\n")).await;
                        code = 1;
                    }
                }
            }
            Flow::Continue(code)
        }
        "env" | "printenv" if args.is_empty() => {
            let s: String = p.env.iter().map(|(k, v)| format!("{k}={v}\n")).collect();
            io.stdout(s).await;
            Flow::Continue(0)
        }
        "printenv" => {
            let mut code = 0;
            for a in args {
                match p.env.get(a) {
                    Some(v) => io.stdout(format!("{v}\n")).await,
                    None => code = 1,
                }
            }
            Flow::Continue(code)
        }
        "exit" => Flow::Exit(args.first().and_then(|a| a.parse::<i32>().ok()).unwrap_or(0) & 0xff),
        "hostname" => {
            io.stdout(format!("{}\n", p.hostname)).await;
            Flow::Continue(0)
        }
        "true" | ":" => Flow::Continue(0),
        "false" => Flow::Continue(1),
        "pwd" => {
            io.stdout("/\n").await;
            Flow::Continue(0)
        }
        "whoami" => {
            io.stdout("root\n").await;
            Flow::Continue(0)
        }
        "sleep" => {
            let secs = args.first().and_then(|a| a.parse::<f64>().ok()).unwrap_or(0.0).clamp(0.0, 3600.0);
            tokio::time::sleep(Duration::from_secs_f64(secs)).await;
            Flow::Continue(0)
        }
        "sh" | "bash" | "ash" => Flow::Continue(Box::pin(shell(args, p, io)).await),
        other => {
            io.stderr(format!("sh: 1: {other}: not found\n")).await;
            Flow::Continue(127)
        }
    }
}

async fn script(text: &str, p: &Process, io: &mut Io<'_>, last: &mut i32) -> Option<i32> {
    for (conn, stmt) in statements(text) {
        let skip = (conn == "&&" && *last != 0) || (conn == "||" && *last == 0);
        if skip {
            continue;
        }
        let argv = words(&stmt, &p.env, *last);
        match builtin(&argv, p, io).await {
            Flow::Continue(c) => *last = c,
            Flow::Exit(c) => return Some(c),
        }
    }
    None
}

/// `sh [-c script]`: runs the script, or reads commands from stdin line by line.
async fn shell(args: &[String], p: &Process, io: &mut Io<'_>) -> i32 {
    let mut last = 0;
    if let Some(pos) = args.iter().position(|a| a == "-c") {
        let text = args.get(pos + 1).cloned().unwrap_or_default();
        return script(&text, p, io, &mut last).await.unwrap_or(last);
    }
    let Some(mut rx) = io.stdin.take() else { return 0 };
    let mut buf = Vec::new();
    let result = loop {
        let Some(chunk) = rx.recv().await else {
            if !buf.is_empty() {
                let line = String::from_utf8_lossy(&buf).into_owned();
                if let Some(c) = script(&line, p, io, &mut last).await {
                    break c;
                }
            }
            break last;
        };
        buf.extend_from_slice(&chunk);
        let mut exit = None;
        while let Some(nl) = buf.iter().position(|b| *b == b'\n' || *b == b'\r') {
            let line: Vec<u8> = buf.drain(..=nl).collect();
            let line = String::from_utf8_lossy(&line).into_owned();
            if let Some(c) = script(&line, p, io, &mut last).await {
                exit = Some(c);
                break;
            }
        }
        if let Some(c) = exit {
            break c;
        }
    };
    *io.stdin = Some(rx);
    result
}

/// Runs `command` (argv) with optional stdin, sending output to `out`. Returns the exit code.
pub(crate) async fn run(
    command: &[String],
    p: &Process,
    mut stdin: Option<mpsc::Receiver<Bytes>>,
    out: mpsc::Sender<Output>,
) -> i32 {
    let mut io = Io { stdin: &mut stdin, out: &out };
    if command.is_empty() {
        return shell(&[], p, &mut io).await;
    }
    match builtin(command, p, &mut io).await {
        Flow::Continue(c) | Flow::Exit(c) => c,
    }
}

/// The `Status` sent on the error channel when the command ends.
pub(crate) fn exit_status(command: &[String], code: i32) -> serde_json::Value {
    if code == 0 {
        return serde_json::json!({"metadata": {}, "status": "Success"});
    }
    serde_json::json!({
        "metadata": {},
        "status": "Failure",
        "message": format!("command terminated with non-zero exit code: error executing command [{}], exit code {code}", command.join(" ")),
        "reason": "NonZeroExitCode",
        "details": {"causes": [{"reason": "ExitCode", "message": code.to_string()}]},
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    async fn run_collect(cmd: &[&str], input: Option<&str>) -> (String, String, i32) {
        let p = Process { env: [("FOO".to_string(), "bar".to_string())].into(), hostname: "pod-1".into() };
        let (tx, mut rx) = mpsc::channel(64);
        let stdin = input.map(|s| {
            let (itx, irx) = mpsc::channel(4);
            let s = s.to_string();
            tokio::spawn(async move {
                let _ = itx.send(Bytes::from(s)).await;
            });
            irx
        });
        let cmd: Vec<String> = cmd.iter().map(|s| s.to_string()).collect();
        let code = run(&cmd, &p, stdin, tx).await;
        let (mut o, mut e) = (String::new(), String::new());
        while let Ok(m) = rx.try_recv() {
            match m {
                Output::Stdout(b) => o.push_str(&String::from_utf8_lossy(&b)),
                Output::Stderr(b) => e.push_str(&String::from_utf8_lossy(&b)),
            }
        }
        (o, e, code)
    }

    #[tokio::test]
    async fn commands_and_scripts() {
        assert_eq!(run_collect(&["echo", "hi"], None).await, ("hi\n".into(), "".into(), 0));
        assert_eq!(run_collect(&["sh", "-c", "echo \"$FOO\"; exit 3"], None).await.0, "bar\n");
        assert_eq!(run_collect(&["sh", "-c", "false && echo no || echo yes"], None).await.0, "yes\n");
        assert_eq!(run_collect(&["sh", "-c", "exit 3"], None).await.2, 3);
        assert_eq!(run_collect(&["hostname"], None).await.0, "pod-1\n");
        assert_eq!(run_collect(&["nope"], None).await.2, 127);
        assert_eq!(run_collect(&["cat"], Some("abc")).await.0, "abc");
        assert_eq!(
            run_collect(&["sh"], Some("echo one\nexit 4\necho never\n")).await,
            ("one\n".into(), "".into(), 4)
        );
    }
}
