//! `-o jsonpath=TEMPLATE`: kubectl's JSONPath templates over what a command prints as JSON.
//!
//! A template is text with `{…}` blocks, as kubectl reads it:
//! - a path — `{.metadata.name}`, `{.data[*].id}`, `{.data[0]}`, `{.data[-1]}`, `{.data[1:3]}`,
//!   `{.metadata.labels['app.kubernetes.io/name']}`, `{.status.conditions[?(@.type=="Ready")].status}`
//!   (`==` or `!=` against a quoted string, a number, `true`/`false`; `<`, `<=`, `>`, `>=` against a
//!   number; `[?(@.x)]` for "has x"); `\.` in a field name is a dot of the name;
//! - `{range PATH}…{end}`, the blocks between repeated for each value PATH selects (paths inside are
//!   relative to that value; `$` names the whole document);
//! - a string literal, `{"\n"}` or `{"\t"}`.
//!
//! Several values of one block print separated by a space; strings print bare, anything else as
//! compact JSON; a path that selects nothing prints nothing (kubectl's default,
//! `--allow-missing-template-keys`). Lists are `{"data":[…]}`, as `-o json` shows them.

use std::fmt;

use serde_json::Value;

/// A parsed template.
#[derive(Clone, PartialEq, Eq)]
pub struct JsonPath {
    source: String,
    nodes: Vec<Node>,
}

impl fmt::Debug for JsonPath {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "JsonPath({:?})", self.source)
    }
}

#[derive(Clone, Debug, PartialEq, Eq)]
enum Node {
    Text(String),
    Path(Path),
    Range(Path, Vec<Node>),
}

/// Steps from the current value (or from the document, `absolute`).
#[derive(Clone, Debug, PartialEq, Eq)]
struct Path {
    absolute: bool,
    steps: Vec<Step>,
}

#[derive(Clone, Debug, PartialEq, Eq)]
enum Step {
    Field(String),
    /// `.*` or `[*]`: every element or member.
    All,
    Index(i64),
    Slice(Option<i64>, Option<i64>),
    Filter(Filter),
}

#[derive(Clone, Debug, PartialEq, Eq)]
struct Filter {
    path: Path,
    test: Option<(Op, Value)>,
}

/// A filter's comparison.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Op {
    Eq,
    Ne,
    Lt,
    Le,
    Gt,
    Ge,
}

impl JsonPath {
    /// Parses a template.
    ///
    /// # Errors
    /// Where the template is malformed, in words.
    pub fn parse(source: &str) -> Result<Self, String> {
        let mut stack: Vec<(Option<Path>, Vec<Node>)> = vec![(None, Vec::new())];
        let mut rest = source;
        while !rest.is_empty() {
            let Some(open) = rest.find('{') else {
                push_text(&mut stack, rest);
                break;
            };
            push_text(&mut stack, &rest[..open]);
            let close = block_end(&rest[open..]).ok_or_else(|| format!("unclosed {{ in {source:?}"))?;
            let inner = rest[open + 1..open + close].trim();
            rest = &rest[open + close + 1..];
            if inner == "end" {
                let (Some(path), nodes) = stack.pop().expect("the stack holds the top level") else {
                    return Err(format!("{{end}} without {{range}} in {source:?}"));
                };
                stack.last_mut().expect("a range is inside the top level").1.push(Node::Range(path, nodes));
            } else if let Some(path) = inner.strip_prefix("range ") {
                stack.push((Some(parse_path(path.trim())?), Vec::new()));
            } else if inner.starts_with('"') || inner.starts_with('\'') {
                let (text, after) = quoted(inner)?;
                if !after.trim().is_empty() {
                    return Err(format!("unexpected {after:?} after a string in {{{inner}}}"));
                }
                push_text(&mut stack, &text);
            } else {
                let node = Node::Path(parse_path(inner)?);
                stack.last_mut().expect("never empty").1.push(node);
            }
        }
        match stack.pop() {
            Some((None, nodes)) if stack.is_empty() => Ok(JsonPath { source: source.to_owned(), nodes }),
            _ => Err(format!("{{range}} without {{end}} in {source:?}")),
        }
    }

    /// The template applied to `doc`.
    pub fn render(&self, doc: &Value) -> String {
        let mut out = String::new();
        render(&self.nodes, doc, doc, &mut out);
        out
    }
}

fn push_text(stack: &mut [(Option<Path>, Vec<Node>)], text: &str) {
    if !text.is_empty() {
        stack.last_mut().expect("never empty").1.push(Node::Text(text.to_owned()));
    }
}

/// The characters of `s` outside quoted text (`'…'` or `"…"`, `\` escaping inside), with their offsets.
fn unquoted(s: &str) -> impl Iterator<Item = (usize, char)> + '_ {
    let (mut quote, mut escaped) = (None::<char>, false);
    s.char_indices().filter(move |&(_, c)| match quote {
        Some(_) if escaped => {
            escaped = false;
            false
        }
        Some(_) if c == '\\' => {
            escaped = true;
            false
        }
        Some(q) => {
            if c == q {
                quote = None;
            }
            false
        }
        None if c == '"' || c == '\'' => {
            quote = Some(c);
            false
        }
        None => true,
    })
}

/// The offset of the `}` closing the block `s` opens, skipping quoted text.
fn block_end(s: &str) -> Option<usize> {
    unquoted(s).skip(1).find(|&(_, c)| c == '}').map(|(i, _)| i)
}

/// A quoted string at the start of `s` (its escapes decoded), and what follows it.
fn quoted(s: &str) -> Result<(String, &str), String> {
    let q = s.chars().next().ok_or("an empty string")?;
    let mut out = String::new();
    let mut chars = s.char_indices().skip(1);
    while let Some((i, c)) = chars.next() {
        match c {
            '\\' => match chars.next().map(|(_, c)| c) {
                Some('n') => out.push('\n'),
                Some('t') => out.push('\t'),
                Some('r') => out.push('\r'),
                Some(c) => out.push(c),
                None => break,
            },
            c if c == q => return Ok((out, &s[i + 1..])),
            c => out.push(c),
        }
    }
    Err(format!("unterminated string {s:?}"))
}

fn parse_path(s: &str) -> Result<Path, String> {
    let (absolute, mut rest) = match s.as_bytes().first() {
        Some(b'$') => (true, &s[1..]),
        Some(b'@') => (false, &s[1..]),
        Some(b'.' | b'[') => (false, s),
        _ => return Err(format!("{s:?} is not a JSONPath: it starts with `.`, `[`, `$` or `@`")),
    };
    let mut steps = Vec::new();
    while !rest.is_empty() {
        if let Some(after) = rest.strip_prefix('.') {
            if after.starts_with('.') {
                return Err(format!("recursive descent (`..`) is not supported in {s:?}"));
            }
            // A field name ends at `.` or `[`, but not at an escaped `\.` (`app\.kubernetes\.io/name`).
            let mut end = after.len();
            let mut escaped = false;
            for (i, c) in after.char_indices() {
                match c {
                    '\\' if !escaped => escaped = true,
                    '.' | '[' if !escaped => {
                        end = i;
                        break;
                    }
                    _ => escaped = false,
                }
            }
            match &after[..end] {
                "" if after.starts_with('[') || after.is_empty() => {}
                "" => return Err(format!("an empty field name in {s:?}")),
                "*" => steps.push(Step::All),
                name => steps.push(Step::Field(name.replace("\\.", "."))),
            }
            rest = &after[end..];
        } else if rest.starts_with('[') {
            let close = block_end_bracket(rest).ok_or_else(|| format!("unclosed [ in {s:?}"))?;
            steps.push(parse_bracket(rest[1..close].trim(), s)?);
            rest = &rest[close + 1..];
        } else {
            return Err(format!("unexpected {rest:?} in {s:?}"));
        }
    }
    Ok(Path { absolute, steps })
}

/// The offset of the `]` closing the bracket `s` opens, skipping quoted text and nested brackets.
fn block_end_bracket(s: &str) -> Option<usize> {
    let mut depth = 0usize;
    for (i, c) in unquoted(s) {
        match c {
            '[' => depth += 1,
            ']' => {
                depth = depth.saturating_sub(1);
                if depth == 0 {
                    return Some(i);
                }
            }
            _ => {}
        }
    }
    None
}

fn parse_bracket(inner: &str, whole: &str) -> Result<Step, String> {
    let int = |t: &str| -> Result<Option<i64>, String> {
        let t = t.trim();
        if t.is_empty() {
            return Ok(None);
        }
        t.parse().map(Some).map_err(|_| format!("[{inner}] is not an index in {whole:?}"))
    };
    if inner == "*" {
        Ok(Step::All)
    } else if inner.starts_with('\'') || inner.starts_with('"') {
        let (name, after) = quoted(inner)?;
        if !after.trim().is_empty() {
            return Err(format!("[{inner}] names one field in {whole:?}"));
        }
        Ok(Step::Field(name))
    } else if let Some(filter) = inner.strip_prefix('?') {
        let body = filter
            .trim()
            .strip_prefix('(')
            .and_then(|f| f.strip_suffix(')'))
            .ok_or_else(|| format!("a filter is [?(…)] in {whole:?}"))?
            .trim();
        parse_filter(body, whole).map(Step::Filter)
    } else if let Some((from, to)) = inner.split_once(':') {
        Ok(Step::Slice(int(from)?, int(to)?))
    } else {
        Ok(Step::Index(int(inner)?.ok_or_else(|| format!("[] is empty in {whole:?}"))?))
    }
}

/// The first comparison operator of `body` outside quotes, and where it is.
fn operator(body: &str) -> Option<(usize, &'static str)> {
    const OPS: [&str; 7] = ["==", "!=", "<=", ">=", "=~", "<", ">"];
    unquoted(body).find_map(|(i, _)| OPS.into_iter().find(|op| body[i..].starts_with(op)).map(|op| (i, op)))
}

fn parse_filter(body: &str, whole: &str) -> Result<Filter, String> {
    let Some((at, op)) = operator(body) else {
        return Ok(Filter { path: parse_path(body)?, test: None });
    };
    let op = match op {
        "==" => Op::Eq,
        "!=" => Op::Ne,
        "<" => Op::Lt,
        "<=" => Op::Le,
        ">" => Op::Gt,
        ">=" => Op::Ge,
        _ => return Err(format!("regular expressions (=~) are not supported in {whole:?}")),
    };
    let (left, right) = (body[..at].trim(), body[at + op_len(op)..].trim());
    if !left.starts_with('@') {
        return Err(format!("a filter compares a path from @ in {whole:?}"));
    }
    let value = if right.starts_with('"') || right.starts_with('\'') {
        let (text, after) = quoted(right)?;
        if !after.trim().is_empty() {
            return Err(format!("unexpected {:?} after the value in {whole:?}", after.trim()));
        }
        Value::String(text)
    } else {
        serde_json::from_str(right)
            .map_err(|_| format!("{right:?} is not a value to compare in {whole:?}"))?
    };
    if !matches!(op, Op::Eq | Op::Ne) && !value.is_number() {
        return Err(format!("<, <=, > and >= compare numbers in {whole:?}"));
    }
    Ok(Filter { path: parse_path(left)?, test: Some((op, value)) })
}

fn op_len(op: Op) -> usize {
    match op {
        Op::Lt | Op::Gt => 1,
        _ => 2,
    }
}

fn render(nodes: &[Node], root: &Value, here: &Value, out: &mut String) {
    for node in nodes {
        match node {
            Node::Text(t) => out.push_str(t),
            Node::Path(p) => {
                for (i, v) in select(p, root, here).into_iter().enumerate() {
                    if i > 0 {
                        out.push(' ');
                    }
                    match v {
                        Value::String(s) => out.push_str(s),
                        other => out.push_str(&other.to_string()),
                    }
                }
            }
            Node::Range(p, body) => {
                for v in select(p, root, here) {
                    render(body, root, v, out);
                }
            }
        }
    }
}

fn select<'v>(path: &Path, root: &'v Value, here: &'v Value) -> Vec<&'v Value> {
    let mut current = vec![if path.absolute { root } else { here }];
    for step in &path.steps {
        let mut next = Vec::new();
        for v in current {
            apply(step, root, v, &mut next);
        }
        current = next;
    }
    current
}

fn apply<'v>(step: &Step, root: &'v Value, v: &'v Value, next: &mut Vec<&'v Value>) {
    match (step, v) {
        (Step::Field(name), Value::Object(m)) => next.extend(m.get(name)),
        (Step::All, Value::Array(a)) => next.extend(a),
        (Step::All, Value::Object(m)) => next.extend(m.values()),
        (Step::Index(i), Value::Array(a)) => next.extend(position(*i, a.len()).and_then(|i| a.get(i))),
        (Step::Slice(from, to), Value::Array(a)) => {
            let clamp = |i: i64| {
                usize::try_from(if i < 0 { i + a.len() as i64 } else { i }).unwrap_or(0).min(a.len())
            };
            let (from, to) = (from.map_or(0, clamp), to.map_or(a.len(), clamp));
            if from < to {
                next.extend(&a[from..to]);
            }
        }
        (Step::Filter(f), Value::Array(a)) => next.extend(a.iter().filter(|item| f.keeps(root, item))),
        _ => {}
    }
}

fn position(i: i64, len: usize) -> Option<usize> {
    let i = if i < 0 { i.checked_add(i64::try_from(len).ok()?)? } else { i };
    usize::try_from(i).ok().filter(|i| *i < len)
}

impl Filter {
    fn keeps(&self, root: &Value, item: &Value) -> bool {
        let found = select(&self.path, root, item);
        let number = |v: &Value| v.as_f64();
        match &self.test {
            None => !found.is_empty(),
            // As kubectl: an item without the field is not compared at all.
            Some(_) if found.is_empty() => false,
            Some((Op::Eq, value)) => found.contains(&value),
            Some((Op::Ne, value)) => !found.contains(&value),
            Some((op, value)) => found.iter().any(|v| match (number(v), number(value)) {
                (Some(a), Some(b)) => match op {
                    Op::Lt => a < b,
                    Op::Le => a <= b,
                    Op::Gt => a > b,
                    _ => a >= b,
                },
                _ => false,
            }),
        }
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn doc() -> Value {
        json!({"data": [
            {"id": "a", "metadata": {"labels": {"app.kubernetes.io/name": "web"}},
             "status": {"conditions": [{"type": "Ready", "status": "True"}, {"type": "Connected", "status": "False"}]},
             "n": 1},
            {"id": "b", "metadata": {"labels": {}}, "status": {"conditions": [{"type": "Ready", "status": "False"}]}, "n": 2},
        ]})
    }

    fn run(t: &str) -> String {
        JsonPath::parse(t).unwrap_or_else(|e| panic!("{t}: {e}")).render(&doc())
    }

    #[test]
    fn fields_indices_slices_and_wildcards_select_as_kubectl_does() {
        assert_eq!(run("{.data[*].id}"), "a b");
        assert_eq!(run("{.data[0].id}"), "a");
        assert_eq!(run("{.data[-1].id}"), "b");
        assert_eq!(run("{.data[5].id}"), "");
        assert_eq!(run("{.data[0:1].id}"), "a");
        assert_eq!(run("{.data[1:].n}"), "2");
        assert_eq!(run("{$.data[0].n}"), "1");
        assert_eq!(run("{.data[0].metadata.labels['app.kubernetes.io/name']}"), "web");
        assert_eq!(run("{.data[0].status.conditions[0]}"), r#"{"status":"True","type":"Ready"}"#);
        assert_eq!(run("ids: {.data[*].id}!"), "ids: a b!");
        assert_eq!(run("{.missing.deeper}"), "");
    }

    #[test]
    fn filters_pick_by_equality_inequality_or_presence() {
        assert_eq!(run(r#"{.data[0].status.conditions[?(@.type=="Ready")].status}"#), "True");
        assert_eq!(run(r#"{.data[*].status.conditions[?(@.type == 'Ready')].status}"#), "True False");
        assert_eq!(run(r#"{.data[0].status.conditions[?(@.type!="Ready")].type}"#), "Connected");
        assert_eq!(run("{.data[?(@.n==2)].id}"), "b");
        assert_eq!(run("{.data[?(@.metadata.labels.*)].id}"), "a");
        assert_eq!(run("{.data[?(@.n>1)].id}"), "b");
        assert_eq!(run("{.data[?(@.n<=1)].id}"), "a");
        assert_eq!(run(r#"{.data[?(@.id!='x==y')].id}"#), "a b", "an operator inside quotes is the value's");
        assert_eq!(run(r#"{.data[?(@.missing!="x")].id}"#), "", "items without the field are not compared");
        assert_eq!(run(r"{.data[0].metadata.labels.app\.kubernetes\.io/name}"), "web");
    }

    #[test]
    fn ranges_repeat_their_body_for_each_value() {
        assert_eq!(run(r#"{range .data[*]}{.id}{"\t"}{.n}{"\n"}{end}"#), "a\t1\nb\t2\n");
        assert_eq!(
            run(r#"{range .data[*]}{.id}:{range .status.conditions[*]}{.type},{end};{end}"#),
            "a:Ready,Connected,;b:Ready,;"
        );
    }

    #[test]
    fn malformed_templates_are_refused_with_the_reason() {
        for (bad, says) in [
            ("{.data", "unclosed {"),
            ("{range .data[*]}{.id}", "without {end}"),
            ("{end}", "without {range}"),
            ("{data}", "is not a JSONPath"),
            ("{.data[x]}", "is not an index"),
            ("{..id}", "recursive descent"),
            ("{.data[?(@.n==)]}", "is not a value"),
            (r#"{"abc}"#, "unclosed {"),
            ("{.data[?(@.id=~/a/)]}", "regular expressions"),
            (r#"{.data[?(@.id>"a")]}"#, "compare numbers"),
            (r#"{.data[?(@.id=="a" junk)]}"#, "unexpected"),
        ] {
            let e = JsonPath::parse(bad).expect_err(bad);
            assert!(e.contains(says), "{bad}: {e}");
        }
    }
}
