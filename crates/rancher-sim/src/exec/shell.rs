//! The tiny shell run by `pods/exec` and `pods/attach`: `sh -c "a; b && c || d"` scripts or an
//! interactive `sh` on stdin, pipes (`a | b`), redirections (`>`, `>>`, `<`, `2>/dev/null`,
//! `2>&1`), `$VAR`/`$?` expansion, `VAR=value` and `cd`, over the pod's in-memory filesystem.
//! The commands themselves are in `commands.rs`.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};

use bytes::Bytes;
use tokio::sync::mpsc;

use super::commands;
use super::fs::{self, Fs};

/// Output of the shell, by stream.
#[derive(Debug)]
pub(crate) enum Output {
    Stdout(Bytes),
    Stderr(Bytes),
}

/// What the process sees: environment, host name, the pod's files and its main process.
#[derive(Debug, Clone)]
pub(crate) struct Process {
    pub(crate) env: BTreeMap<String, String>,
    pub(crate) hostname: String,
    pub(crate) fs: Arc<Mutex<Fs>>,
    /// The container's command line (PID 1 in `ps`).
    pub(crate) main: String,
}

/// Where a command's output goes.
pub(crate) enum Sink {
    Stdout,
    Stderr,
    Buf(Vec<u8>),
    Null,
}

/// Where a command's input comes from: the session's stdin, a pipe or file, or nothing.
pub(crate) enum Input {
    Stream,
    Buf(Vec<u8>),
}

/// Whether the script goes on after a command.
pub(crate) enum Flow {
    Continue(i32),
    Exit(i32),
}

/// A running shell: its variables, working directory and last exit code.
pub(crate) struct Sh<'a> {
    pub(crate) p: &'a Process,
    pub(crate) env: BTreeMap<String, String>,
    pub(crate) cwd: String,
    pub(crate) last: i32,
    tx: mpsc::Sender<Output>,
    stdin: &'a mut Option<mpsc::Receiver<Bytes>>,
}

/// One command's view: the shell, its input and where stdout and stderr go.
pub(crate) struct Ctx<'s, 'a> {
    pub(crate) sh: &'s mut Sh<'a>,
    pub(crate) input: Input,
    pub(crate) out: Sink,
    pub(crate) err: Sink,
    /// `2>&1`: stderr goes wherever stdout goes.
    pub(crate) err_to_out: bool,
}

impl Ctx<'_, '_> {
    async fn put(tx: &mpsc::Sender<Output>, sink: &mut Sink, b: Bytes) {
        match sink {
            Sink::Stdout => drop(tx.send(Output::Stdout(b)).await),
            Sink::Stderr => drop(tx.send(Output::Stderr(b)).await),
            Sink::Buf(v) => v.extend_from_slice(&b),
            Sink::Null => {}
        }
    }
    pub(crate) async fn stdout(&mut self, s: impl Into<Bytes>) {
        Self::put(&self.sh.tx, &mut self.out, s.into()).await;
    }
    pub(crate) async fn stderr(&mut self, s: impl Into<Bytes>) {
        let sink = if self.err_to_out { &mut self.out } else { &mut self.err };
        Self::put(&self.sh.tx, sink, s.into()).await;
    }
    /// All of stdin (waits for the client to close it).
    pub(crate) async fn read_all(&mut self) -> Vec<u8> {
        match &mut self.input {
            Input::Buf(b) => std::mem::take(b),
            Input::Stream => {
                let mut all = vec![];
                if let Some(rx) = self.sh.stdin.as_mut() {
                    while let Some(b) = rx.recv().await {
                        all.extend_from_slice(&b);
                    }
                }
                all
            }
        }
    }
    /// Copies stdin to stdout as it arrives (`cat`).
    pub(crate) async fn copy_input(&mut self) {
        if let Input::Buf(b) = &mut self.input {
            let b = std::mem::take(b);
            self.stdout(b).await;
            return;
        }
        let Some(mut rx) = self.sh.stdin.take() else { return };
        while let Some(b) = rx.recv().await {
            self.stdout(b).await;
        }
        *self.sh.stdin = Some(rx);
    }
    /// Locks the pod's filesystem for one short, synchronous step.
    pub(crate) fn fs(&self) -> std::sync::MutexGuard<'_, Fs> {
        fs::lock(&self.sh.p.fs)
    }
    /// An absolute path for `path` from the working directory.
    pub(crate) fn path(&self, path: &str) -> String {
        fs::resolve(&self.sh.cwd, path)
    }
}

// ---- parsing ----

/// A word of a command line and whether any of it was quoted or expanded (then it is never an
/// operator such as `>`).
struct Word {
    text: String,
    literal: bool,
}

/// Splits a command line into words, honouring quotes and backslashes and expanding `$VAR`/`$?`.
fn words(line: &str, env: &BTreeMap<String, String>, last: i32) -> Vec<Word> {
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
                    out.push(Word { text: std::mem::take(&mut cur), literal: has });
                    has = false;
                }
            }
            c => cur.push(c),
        }
    }
    if has || !cur.is_empty() {
        out.push(Word { text: cur, literal: has });
    }
    out
}

/// Splits a script into (connector, command) pairs on `;`, `&&`, `||` and newlines (outside
/// quotes), dropping `#` comments.
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
            ('#', None) if cur.is_empty() || cur.ends_with(char::is_whitespace) => {
                while chars.peek().is_some_and(|c| *c != '\n') {
                    chars.next();
                }
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

/// Splits one statement into the stages of a pipeline on `|` (outside quotes).
fn pipeline(stmt: &str) -> Vec<String> {
    let (mut out, mut cur, mut quote) = (vec![], String::new(), None::<char>);
    for c in stmt.chars() {
        match (c, quote) {
            ('\'' | '"', None) => quote = Some(c),
            (q, Some(open)) if q == open => quote = None,
            ('|', None) => {
                out.push(std::mem::take(&mut cur));
                continue;
            }
            _ => {}
        }
        cur.push(c);
    }
    out.push(cur);
    out
}

/// A redirection of one simple command.
enum Redirect {
    Out { path: String, append: bool },
    In(String),
    ErrNull,
    ErrToOut,
}

/// Separates `>`, `>>`, `<`, `2>/dev/null` and `2>&1` from the arguments.
fn redirects(ws: Vec<Word>) -> Result<(Vec<String>, Vec<Redirect>), String> {
    let (mut args, mut reds) = (vec![], vec![]);
    let mut it = ws.into_iter();
    while let Some(w) = it.next() {
        if w.literal {
            args.push(w.text);
            continue;
        }
        let t = w.text.as_str();
        let (op, rest) = if let Some(r) = t.strip_prefix("2>&1") {
            ("2>&1", r)
        } else if let Some(r) = t.strip_prefix("2>") {
            ("2>", r)
        } else if let Some(r) = t.strip_prefix(">>").or(t.strip_prefix("1>>")) {
            (">>", r)
        } else if let Some(r) = t.strip_prefix('>').or(t.strip_prefix("1>")) {
            (">", r)
        } else if let Some(r) = t.strip_prefix('<') {
            ("<", r)
        } else {
            args.push(w.text);
            continue;
        };
        if op == "2>&1" {
            reds.push(Redirect::ErrToOut);
            continue;
        }
        let target = if rest.is_empty() {
            it.next().map(|w| w.text).ok_or("syntax error: redirection without a file")?
        } else {
            rest.to_string()
        };
        reds.push(match op {
            "2>" if target == "/dev/null" => Redirect::ErrNull,
            "2>" => return Err("only 2>/dev/null and 2>&1 are supported".into()),
            ">" | ">>" => Redirect::Out { path: target, append: op == ">>" },
            _ => Redirect::In(target),
        });
    }
    Ok((args, reds))
}

fn assignment(w: &str) -> Option<(&str, &str)> {
    let (k, v) = w.split_once('=')?;
    let valid = !k.is_empty()
        && k.chars().all(|c| c.is_ascii_alphanumeric() || c == '_')
        && !k.starts_with(|c: char| c.is_ascii_digit());
    valid.then_some((k, v))
}

// ---- running ----

impl<'a> Sh<'a> {
    fn new(p: &'a Process, tx: mpsc::Sender<Output>, stdin: &'a mut Option<mpsc::Receiver<Bytes>>) -> Self {
        let cwd = "/".to_string();
        Sh { p, env: p.env.clone(), cwd, last: 0, tx, stdin }
    }

    /// A subshell (`sh -c`): the same files and streams, a copy of the variables.
    pub(crate) async fn subshell(&mut self, args: &[String]) -> i32 {
        let mut sub = Sh {
            p: self.p,
            env: self.env.clone(),
            cwd: self.cwd.clone(),
            last: 0,
            tx: self.tx.clone(),
            stdin: &mut *self.stdin,
        };
        Box::pin(sub.shell(args)).await
    }

    /// Runs a script; `Some(code)` when it ran `exit`.
    async fn script(&mut self, text: &str) -> Option<i32> {
        for (conn, stmt) in statements(text) {
            if (conn == "&&" && self.last != 0) || (conn == "||" && self.last == 0) {
                continue;
            }
            match self.statement(&stmt).await {
                Flow::Continue(c) => self.last = c,
                Flow::Exit(c) => return Some(c),
            }
        }
        None
    }

    /// One pipeline: every stage but the last writes into a buffer the next one reads.
    async fn statement(&mut self, stmt: &str) -> Flow {
        let stages = pipeline(stmt);
        let n = stages.len();
        let mut input = Input::Stream;
        for (i, stage) in stages.iter().enumerate() {
            let last = i + 1 == n;
            let out = if last { Sink::Stdout } else { Sink::Buf(vec![]) };
            let (flow, out) =
                self.simple(stage, std::mem::replace(&mut input, Input::Buf(vec![])), out).await;
            if last {
                return flow;
            }
            if let Sink::Buf(b) = out {
                input = Input::Buf(b);
            }
        }
        Flow::Continue(0)
    }

    /// One command with its redirections and `VAR=value` prefixes; returns the sink it wrote to.
    async fn simple(&mut self, text: &str, input: Input, out: Sink) -> (Flow, Sink) {
        let (argv, reds) = match redirects(words(text, &self.env, self.last)) {
            Ok(x) => x,
            Err(e) => {
                let _ = self.tx.send(Output::Stderr(Bytes::from(format!("sh: {e}\n")))).await;
                return (Flow::Continue(2), out);
            }
        };
        let mut ctx = Ctx { sh: self, input, out, err: Sink::Stderr, err_to_out: false };
        let mut file_out = None;
        for r in reds {
            match r {
                Redirect::ErrNull => ctx.err = Sink::Null,
                Redirect::ErrToOut => ctx.err_to_out = true,
                Redirect::Out { path, append } => {
                    file_out = Some((ctx.path(&path), path, append));
                    ctx.out = Sink::Buf(vec![]);
                }
                Redirect::In(path) => {
                    let p = ctx.path(&path);
                    let data = ctx.fs().read(&p).map(<[u8]>::to_vec);
                    match data {
                        Ok(d) => ctx.input = Input::Buf(d),
                        Err(e) => {
                            ctx.stderr(format!("sh: cannot open {path}: {e}\n")).await;
                            return (Flow::Continue(1), ctx.out);
                        }
                    }
                }
            }
        }
        let split = argv.iter().position(|a| assignment(a).is_none()).unwrap_or(argv.len());
        let (assigns, argv) = argv.split_at(split);
        let saved = ctx.sh.env.clone();
        for a in assigns {
            if let Some((k, v)) = assignment(a) {
                ctx.sh.env.insert(k.to_string(), v.to_string());
            }
        }
        let flow = if argv.is_empty() {
            Flow::Continue(0)
        } else {
            let flow = commands::run(&mut ctx, argv).await;
            // Prefix assignments hold for that one command only.
            if !assigns.is_empty() {
                ctx.sh.env = saved;
            }
            flow
        };
        let Some((abs, shown, append)) = file_out else { return (flow, ctx.out) };
        let data = match std::mem::replace(&mut ctx.out, Sink::Null) {
            Sink::Buf(b) => b,
            _ => vec![],
        };
        let written = ctx.fs().write(&abs, &data, append);
        if let Err(e) = written {
            ctx.stderr(format!("sh: cannot create {shown}: {e}\n")).await;
            return (Flow::Continue(2), ctx.out);
        }
        (flow, ctx.out)
    }

    /// `sh [-c script]`: runs the script, or reads commands from stdin line by line.
    async fn shell(&mut self, args: &[String]) -> i32 {
        if let Some(pos) = args.iter().position(|a| a == "-c") {
            let text = args.get(pos + 1).cloned().unwrap_or_default();
            return self.script(&text).await.unwrap_or(self.last);
        }
        let Some(mut rx) = self.stdin.take() else { return 0 };
        let mut buf = Vec::new();
        let result = loop {
            let Some(chunk) = rx.recv().await else {
                if !buf.is_empty() {
                    let line = String::from_utf8_lossy(&buf).into_owned();
                    if let Some(c) = self.script(&line).await {
                        break c;
                    }
                }
                break self.last;
            };
            buf.extend_from_slice(&chunk);
            let mut exit = None;
            while let Some(nl) = buf.iter().position(|b| *b == b'\n' || *b == b'\r') {
                let line: Vec<u8> = buf.drain(..=nl).collect();
                let line = String::from_utf8_lossy(&line).into_owned();
                if let Some(c) = self.script(&line).await {
                    exit = Some(c);
                    break;
                }
            }
            if let Some(c) = exit {
                break c;
            }
        };
        *self.stdin = Some(rx);
        result
    }
}

/// Runs `command` (argv) with optional stdin, sending output to `out`. Returns the exit code.
pub(crate) async fn run(
    command: &[String],
    p: &Process,
    mut stdin: Option<mpsc::Receiver<Bytes>>,
    out: mpsc::Sender<Output>,
) -> i32 {
    let mut sh = Sh::new(p, out, &mut stdin);
    if command.is_empty() {
        return sh.shell(&[]).await;
    }
    let mut ctx =
        Ctx { sh: &mut sh, input: Input::Stream, out: Sink::Stdout, err: Sink::Stderr, err_to_out: false };
    match commands::run(&mut ctx, command).await {
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
        let p = Process {
            env: [("FOO".to_string(), "bar".to_string())].into(),
            hostname: "pod-1".into(),
            fs: Arc::new(Mutex::new(Fs::seeded("pod-1", "default", "10.0.0.1"))),
            main: "nginx".into(),
        };
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

    async fn sh(script: &str) -> (String, String, i32) {
        run_collect(&["sh", "-c", script], None).await
    }

    #[tokio::test]
    async fn commands_and_scripts() {
        assert_eq!(run_collect(&["echo", "hi"], None).await, ("hi\n".into(), "".into(), 0));
        assert_eq!(sh("echo \"$FOO\"; exit 3").await.0, "bar\n");
        assert_eq!(sh("false && echo no || echo yes").await.0, "yes\n");
        assert_eq!(sh("exit 3").await.2, 3);
        assert_eq!(run_collect(&["hostname"], None).await.0, "pod-1\n");
        let (_, err, code) = run_collect(&["nope"], None).await;
        assert_eq!(code, 127);
        assert!(err.contains("nope: command not found"), "{err}");
        assert_eq!(run_collect(&["cat"], Some("abc")).await.0, "abc");
        assert_eq!(
            run_collect(&["sh"], Some("echo one\nexit 4\necho never\n")).await,
            ("one\n".into(), "".into(), 4)
        );
    }

    #[tokio::test]
    async fn pipes_redirections_and_files() {
        assert_eq!(sh("printf_missing 2>/dev/null; echo $?").await.0, "127\n");
        assert_eq!(sh("echo a > /tmp/f; echo b >> /tmp/f; cat /tmp/f | wc -l").await.0, "2\n");
        assert_eq!(sh("cat /etc/os-release | grep ^ID= | head -n 1").await.0, "ID=rancher-sim\n");
        assert_eq!(sh("mkdir -p /data/x && cd /data && touch x/y && ls x && pwd").await.0, "y\n/data\n");
        assert_eq!(sh("rm /nothing; echo $?").await.0, "1\n");
        assert_eq!(sh("cat /nothing 2>&1 | grep -c 'No such file'").await.0, "1\n");
        assert_eq!(sh("X=1; echo $X; Y=2 printenv Y; echo \"[$Y]\"").await.0, "1\n2\n[]\n");
        assert_eq!(sh("grep -q nomatch /etc/hostname").await.2, 1);
        assert_eq!(sh("echo one two three | wc -w").await.0, "3\n");
        assert_eq!(sh("cat < /etc/hostname").await.0, "pod-1\n");
        assert_eq!(sh("uname -s; id -u; whoami").await.0, "Linux\n0\nroot\n");
        assert!(sh("ps").await.0.contains("nginx"));
        assert_eq!(sh("ls /proc").await.2, 2);
        assert_eq!(sh("echo hi > /nodir/f").await.2, 2);
    }
}
