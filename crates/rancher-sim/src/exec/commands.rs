//! The everyday commands of the exec shell, each a few lines over the pod's in-memory files:
//! `ls cat echo env printenv export unset pwd cd hostname whoami id date uname ps sleep true false
//! exit mkdir touch rm wc head tail grep which sh`. Messages and exit codes are those of Debian's
//! coreutils and dash; anything else is `command not found` with 127.

use std::time::Duration;

use super::fs::{self, FsError, Node};
use super::shell::{Ctx, Flow};

/// Runs one command; `Flow::Exit` only for `exit`.
pub(crate) async fn run(ctx: &mut Ctx<'_, '_>, argv: &[String]) -> Flow {
    let Some(cmd) = argv.first() else { return Flow::Continue(0) };
    let cmd = cmd.rsplit('/').next().unwrap_or(cmd).to_string();
    let args = &argv[1..];
    let code = match cmd.as_str() {
        "exit" => {
            let code = args.first().and_then(|a| a.parse::<i32>().ok()).unwrap_or(ctx.sh.last);
            return Flow::Exit(code & 0xff);
        }
        "echo" => echo(ctx, args).await,
        "cat" => cat(ctx, args).await,
        "ls" => ls(ctx, args).await,
        "env" | "printenv" => env(ctx, &cmd, args).await,
        "export" => {
            for a in args {
                if let Some((k, v)) = a.split_once('=') {
                    ctx.sh.env.insert(k.to_string(), v.to_string());
                }
            }
            0
        }
        "unset" => {
            for a in args {
                ctx.sh.env.remove(a);
            }
            0
        }
        "pwd" => {
            let cwd = format!("{}\n", ctx.sh.cwd);
            ctx.stdout(cwd).await;
            0
        }
        "cd" => cd(ctx, args).await,
        "hostname" => {
            let h = format!("{}\n", ctx.sh.p.hostname);
            ctx.stdout(h).await;
            0
        }
        "whoami" => {
            ctx.stdout("root\n").await;
            0
        }
        "id" => id(ctx, args).await,
        "date" => date(ctx, args).await,
        "uname" => uname(ctx, args).await,
        "ps" => {
            let rows = format!(
                "PID   USER     TIME  COMMAND\n    1 root      0:00 {}\n   {} root      0:00 ps\n",
                ctx.sh.p.main,
                7 + ctx.sh.env.len()
            );
            ctx.stdout(rows).await;
            0
        }
        "sleep" => {
            let secs = args.first().and_then(|a| a.parse::<f64>().ok()).unwrap_or(0.0).clamp(0.0, 3600.0);
            tokio::time::sleep(Duration::from_secs_f64(secs)).await;
            0
        }
        "true" | ":" => 0,
        "false" => 1,
        "mkdir" | "touch" | "rm" => files(ctx, &cmd, args).await,
        "wc" => wc(ctx, args).await,
        "head" | "tail" => head_tail(ctx, &cmd, args).await,
        "grep" => grep(ctx, args).await,
        "which" => {
            let mut code = 0;
            for a in args {
                if is_command(a) {
                    ctx.stdout(format!("/bin/{a}\n")).await;
                } else {
                    code = 1;
                }
            }
            code
        }
        "sh" | "bash" | "ash" => ctx.sh.subshell(args).await,
        other => {
            ctx.stderr(format!("sh: {other}: command not found\n")).await;
            127
        }
    };
    Flow::Continue(code)
}

fn is_command(name: &str) -> bool {
    const ALL: &[&str] = &[
        "ls", "cat", "echo", "env", "printenv", "pwd", "hostname", "whoami", "id", "date", "uname", "ps",
        "sleep", "true", "false", "mkdir", "touch", "rm", "wc", "head", "tail", "grep", "which", "sh",
    ];
    ALL.contains(&name)
}

/// Splits `-abc` style flags from operands (`--` ends the flags).
fn flags(args: &[String]) -> (String, Vec<String>) {
    let (mut f, mut rest, mut done) = (String::new(), vec![], false);
    for a in args {
        if !done && a == "--" {
            done = true;
        } else if !done && a.len() > 1 && a.starts_with('-') {
            f.push_str(&a[1..]);
        } else {
            rest.push(a.clone());
        }
    }
    (f, rest)
}

async fn echo(ctx: &mut Ctx<'_, '_>, args: &[String]) -> i32 {
    let (newline, args) = match args.first().map(String::as_str) {
        Some("-n") => (false, &args[1..]),
        _ => (true, args),
    };
    let mut s = args.join(" ");
    if newline {
        s.push('\n');
    }
    ctx.stdout(s).await;
    0
}

/// Reads a named file, or stdin for `-`; reports a missing one as `cmd` would.
async fn read_file(ctx: &mut Ctx<'_, '_>, cmd: &str, name: &str) -> Option<Vec<u8>> {
    if name == "-" {
        return Some(ctx.read_all().await);
    }
    let path = ctx.path(name);
    let r = ctx.fs().read(&path).map(<[u8]>::to_vec);
    match r {
        Ok(b) => Some(b),
        Err(e) => {
            ctx.stderr(format!("{cmd}: {name}: {e}\n")).await;
            None
        }
    }
}

/// The inputs of a filter: the named files, or stdin when none are named.
async fn inputs(ctx: &mut Ctx<'_, '_>, cmd: &str, files: &[String]) -> (Vec<(String, Vec<u8>)>, i32) {
    if files.is_empty() {
        return (vec![(String::new(), ctx.read_all().await)], 0);
    }
    let (mut out, mut code) = (vec![], 0);
    for f in files {
        match read_file(ctx, cmd, f).await {
            Some(b) => out.push((f.clone(), b)),
            None => code = if cmd == "grep" { 2 } else { 1 },
        }
    }
    (out, code)
}

async fn cat(ctx: &mut Ctx<'_, '_>, args: &[String]) -> i32 {
    let (_, files) = flags(args);
    if files.is_empty() {
        ctx.copy_input().await;
        return 0;
    }
    let mut code = 0;
    for f in &files {
        match read_file(ctx, "cat", f).await {
            Some(b) => ctx.stdout(b).await,
            None => code = 1,
        }
    }
    code
}

fn long_line(name: &str, node: &Node) -> String {
    let (mode, links, size) = match node {
        Node::Dir => ("drwxr-xr-x", 2, 4096),
        Node::File(b) => ("-rw-r--r--", 1, b.len()),
    };
    let when = jiff::Timestamp::now().to_zoned(jiff::tz::TimeZone::UTC).strftime("%b %e %H:%M").to_string();
    format!("{mode} {links} root root {size:>8} {when} {name}\n")
}

async fn ls(ctx: &mut Ctx<'_, '_>, args: &[String]) -> i32 {
    let (f, mut paths) = flags(args);
    let (long, all) = (f.contains('l'), f.contains('a'));
    if paths.is_empty() {
        paths.push(".".into());
    }
    let many = paths.len() > 1;
    let line = |name: &str, node: &Node| if long { long_line(name, node) } else { format!("{name}\n") };
    let (mut out, mut missing) = (String::new(), vec![]);
    {
        let fs = ctx.fs();
        for (i, p) in paths.iter().enumerate() {
            let abs = fs::resolve(&ctx.sh.cwd, p);
            match fs.get(&abs) {
                None => missing.push(p.clone()),
                Some(node @ Node::File(_)) => out.push_str(&line(p, node)),
                Some(Node::Dir) => {
                    if many {
                        out.push_str(&format!("{}{p}:\n", if i > 0 { "\n" } else { "" }));
                    }
                    if all {
                        out.push_str(&line(".", &Node::Dir));
                        out.push_str(&line("..", &Node::Dir));
                    }
                    for (name, node) in fs.list(&abs).unwrap_or_default() {
                        if all || !name.starts_with('.') {
                            out.push_str(&line(&name, node));
                        }
                    }
                }
            }
        }
    }
    for p in &missing {
        ctx.stderr(format!("ls: cannot access '{p}': {}\n", FsError::NotFound)).await;
    }
    ctx.stdout(out).await;
    if missing.is_empty() { 0 } else { 2 }
}

async fn env(ctx: &mut Ctx<'_, '_>, cmd: &str, args: &[String]) -> i32 {
    if args.is_empty() {
        let s: String = ctx.sh.env.iter().map(|(k, v)| format!("{k}={v}\n")).collect();
        ctx.stdout(s).await;
        return 0;
    }
    if cmd == "env" {
        // `env [NAME=value...] command...`
        let split = args.iter().position(|a| !a.contains('=')).unwrap_or(args.len());
        let saved = ctx.sh.env.clone();
        for a in &args[..split] {
            if let Some((k, v)) = a.split_once('=') {
                ctx.sh.env.insert(k.to_string(), v.to_string());
            }
        }
        let code = if split == args.len() {
            let s: String = ctx.sh.env.iter().map(|(k, v)| format!("{k}={v}\n")).collect();
            ctx.stdout(s).await;
            0
        } else {
            match Box::pin(run(ctx, &args[split..])).await {
                Flow::Continue(c) | Flow::Exit(c) => c,
            }
        };
        ctx.sh.env = saved;
        return code;
    }
    let mut code = 0;
    for a in args {
        match ctx.sh.env.get(a).cloned() {
            Some(v) => ctx.stdout(format!("{v}\n")).await,
            None => code = 1,
        }
    }
    code
}

async fn cd(ctx: &mut Ctx<'_, '_>, args: &[String]) -> i32 {
    let target =
        args.first().cloned().unwrap_or_else(|| ctx.sh.env.get("HOME").cloned().unwrap_or("/".into()));
    let abs = ctx.path(&target);
    if ctx.fs().is_dir(&abs) {
        ctx.sh.cwd = abs.clone();
        ctx.sh.env.insert("PWD".into(), abs);
        0
    } else {
        ctx.stderr(format!("sh: 1: cd: can't cd to {target}\n")).await;
        2
    }
}

async fn id(ctx: &mut Ctx<'_, '_>, args: &[String]) -> i32 {
    let (f, _) = flags(args);
    let s = match (f.contains('u') || f.contains('g') || f.contains('G'), f.contains('n')) {
        (true, true) => "root\n",
        (true, false) => "0\n",
        _ => "uid=0(root) gid=0(root) groups=0(root)\n",
    };
    ctx.stdout(s).await;
    0
}

async fn date(ctx: &mut Ctx<'_, '_>, args: &[String]) -> i32 {
    let now = jiff::Timestamp::now().to_zoned(jiff::tz::TimeZone::UTC);
    let format = args.iter().find_map(|a| a.strip_prefix('+')).unwrap_or("%a %b %e %H:%M:%S %Z %Y");
    match jiff::fmt::strtime::format(format, &now) {
        Ok(s) => {
            ctx.stdout(format!("{s}\n")).await;
            0
        }
        Err(_) => {
            ctx.stderr(format!("date: invalid format '{format}'\n")).await;
            1
        }
    }
}

async fn uname(ctx: &mut Ctx<'_, '_>, args: &[String]) -> i32 {
    let (f, _) = flags(args);
    let host = ctx.sh.p.hostname.clone();
    let fields: Vec<&str> = if f.contains('a') {
        vec!["Linux", &host, "6.1.0-sim", "#1 SMP", "x86_64", "GNU/Linux"]
    } else {
        let mut v = vec![];
        for (c, val) in
            [('s', "Linux"), ('n', host.as_str()), ('r', "6.1.0-sim"), ('m', "x86_64"), ('o', "GNU/Linux")]
        {
            if f.contains(c) {
                v.push(val);
            }
        }
        if v.is_empty() {
            v.push("Linux");
        }
        v
    };
    ctx.stdout(format!("{}\n", fields.join(" "))).await;
    0
}

async fn files(ctx: &mut Ctx<'_, '_>, cmd: &str, args: &[String]) -> i32 {
    let (f, names) = flags(args);
    if names.is_empty() {
        ctx.stderr(format!("{cmd}: missing operand\n")).await;
        return 1;
    }
    let mut code = 0;
    for n in &names {
        let abs = ctx.path(n);
        let r = {
            let mut fs = ctx.fs();
            match cmd {
                "mkdir" => fs.mkdir(&abs, f.contains('p')),
                "touch" => fs.touch(&abs),
                _ => match fs.remove(&abs, f.contains('r') || f.contains('R')) {
                    Err(FsError::NotFound) if f.contains('f') => Ok(()),
                    r => r,
                },
            }
        };
        if let Err(e) = r {
            let msg = match cmd {
                "mkdir" => format!("mkdir: cannot create directory '{n}': {e}\n"),
                "touch" => format!("touch: cannot touch '{n}': {e}\n"),
                _ => format!("rm: cannot remove '{n}': {e}\n"),
            };
            ctx.stderr(msg).await;
            code = 1;
        }
    }
    code
}

async fn wc(ctx: &mut Ctx<'_, '_>, args: &[String]) -> i32 {
    let (f, files) = flags(args);
    let (ins, code) = inputs(ctx, "wc", &files).await;
    let all = f.is_empty();
    let mut out = String::new();
    for (name, b) in &ins {
        let text = String::from_utf8_lossy(b);
        let mut cols = vec![];
        if all || f.contains('l') {
            cols.push(b.iter().filter(|c| **c == b'\n').count());
        }
        if all || f.contains('w') {
            cols.push(text.split_whitespace().count());
        }
        if all || f.contains('c') {
            cols.push(b.len());
        }
        let nums: Vec<String> =
            cols.iter().map(|n| if cols.len() == 1 { n.to_string() } else { format!("{n:>7}") }).collect();
        out.push_str(&nums.join(" "));
        if !name.is_empty() {
            out.push(' ');
            out.push_str(name);
        }
        out.push('\n');
    }
    ctx.stdout(out).await;
    code
}

/// `-n N`, `-nN` or `-N`: the line count of head and tail (10 by default).
fn line_count(args: &[String]) -> Result<(usize, Vec<String>), String> {
    let (mut n, mut rest, mut i) = (10usize, vec![], 0);
    while i < args.len() {
        let a = &args[i];
        let value = if a == "-n" {
            i += 1;
            Some(args.get(i).cloned().ok_or("option requires an argument -- 'n'")?)
        } else if let Some(v) = a.strip_prefix("-n") {
            Some(v.to_string())
        } else if a.len() > 1 && a.starts_with('-') && a[1..].chars().all(|c| c.is_ascii_digit()) {
            Some(a[1..].to_string())
        } else {
            rest.push(a.clone());
            None
        };
        if let Some(v) = value {
            n = v.parse().map_err(|_| format!("invalid number of lines: '{v}'"))?;
        }
        i += 1;
    }
    Ok((n, rest))
}

async fn head_tail(ctx: &mut Ctx<'_, '_>, cmd: &str, args: &[String]) -> i32 {
    let (n, files) = match line_count(args) {
        Ok(x) => x,
        Err(e) => {
            ctx.stderr(format!("{cmd}: {e}\n")).await;
            return 1;
        }
    };
    let (ins, code) = inputs(ctx, cmd, &files).await;
    let many = ins.len() > 1;
    let mut out: Vec<u8> = vec![];
    for (i, (name, b)) in ins.iter().enumerate() {
        if many {
            out.extend_from_slice(format!("{}==> {name} <==\n", if i > 0 { "\n" } else { "" }).as_bytes());
        }
        let lines: Vec<&[u8]> = b.split_inclusive(|c| *c == b'\n').collect();
        let pick = if cmd == "head" {
            &lines[..n.min(lines.len())]
        } else {
            &lines[lines.len().saturating_sub(n)..]
        };
        for l in pick {
            out.extend_from_slice(l);
        }
    }
    ctx.stdout(out).await;
    code
}

/// A simple pattern: a substring, optionally anchored with `^` and `$`.
fn matches(pattern: &str, line: &str, ignore_case: bool) -> bool {
    let (p, l) = if ignore_case {
        (pattern.to_lowercase(), line.to_lowercase())
    } else {
        (pattern.into(), line.into())
    };
    let (start, p) = match p.strip_prefix('^') {
        Some(rest) => (true, rest.to_string()),
        None => (false, p),
    };
    let (end, p) = match p.strip_suffix('$') {
        Some(rest) => (true, rest.to_string()),
        None => (false, p),
    };
    match (start, end) {
        (true, true) => l == p,
        (true, false) => l.starts_with(&p),
        (false, true) => l.ends_with(&p),
        (false, false) => l.contains(&p),
    }
}

async fn grep(ctx: &mut Ctx<'_, '_>, args: &[String]) -> i32 {
    let (f, mut rest) = flags(args);
    if rest.is_empty() {
        ctx.stderr("Usage: grep [OPTION]... PATTERNS [FILE]...\n").await;
        return 2;
    }
    let pattern = rest.remove(0);
    let (ins, mut code) = inputs(ctx, "grep", &rest).await;
    let (invert, count, number, quiet, icase) =
        (f.contains('v'), f.contains('c'), f.contains('n'), f.contains('q'), f.contains('i'));
    let many = ins.len() > 1;
    let mut out = String::new();
    let mut any = false;
    for (name, b) in &ins {
        let text = String::from_utf8_lossy(b);
        let mut hits = 0;
        for (i, line) in text.lines().enumerate() {
            if matches(&pattern, line, icase) != invert {
                hits += 1;
                if !count && !quiet {
                    let prefix = if many { format!("{name}:") } else { String::new() };
                    let num = if number { format!("{}:", i + 1) } else { String::new() };
                    out.push_str(&format!("{prefix}{num}{line}\n"));
                }
            }
        }
        any |= hits > 0;
        if count && !quiet {
            out.push_str(&if many { format!("{name}:{hits}\n") } else { format!("{hits}\n") });
        }
    }
    ctx.stdout(out).await;
    if code == 0 || any {
        code = if any { 0 } else { 1 };
    }
    code
}
