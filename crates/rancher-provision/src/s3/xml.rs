//! Just enough XML for S3's answers (`ListBucketResult`, `Error`): elements, text, entities, CDATA,
//! comments and declarations — no DTDs (refused, so no entity expansion), attributes skipped,
//! namespace prefixes dropped. Inputs are bounded by the caller before they get here.

/// How deep elements may nest; S3's answers use three levels.
const MAX_DEPTH: usize = 32;

/// Why a document is not XML this parser accepts.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("malformed XML at byte {at}: {reason}")]
pub(crate) struct XmlError {
    at: usize,
    reason: String,
}

/// An element: its local name, its child elements and its text (all text nodes joined).
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub(crate) struct Element {
    pub(crate) name: String,
    pub(crate) children: Vec<Element>,
    pub(crate) text: String,
}

impl Element {
    /// The first child named `name`.
    pub(crate) fn child(&self, name: &str) -> Option<&Element> {
        self.children.iter().find(|c| c.name == name)
    }

    /// Every child named `name`, in document order.
    pub(crate) fn children_named<'a>(&'a self, name: &'a str) -> impl Iterator<Item = &'a Element> + 'a {
        self.children.iter().filter(move |c| c.name == name)
    }

    /// The text of the first child named `name`.
    pub(crate) fn child_text(&self, name: &str) -> Option<&str> {
        self.child(name).map(|c| c.text.as_str())
    }
}

fn err(at: usize, reason: impl Into<String>) -> XmlError {
    XmlError { at, reason: reason.into() }
}

/// The local part of a possibly prefixed name (`s3:Key` → `Key`).
fn local(name: &str) -> &str {
    name.rsplit_once(':').map_or(name, |(_, l)| l)
}

/// Appends `raw` with its entity and character references decoded.
fn decode_into(out: &mut String, raw: &str, at: usize) -> Result<(), XmlError> {
    let mut rest = raw;
    while let Some(i) = rest.find('&') {
        out.push_str(&rest[..i]);
        let after = &rest[i + 1..];
        let end = after.find(';').ok_or_else(|| err(at, "an unterminated entity reference"))?;
        let name = &after[..end];
        let c = match name {
            "lt" => '<',
            "gt" => '>',
            "amp" => '&',
            "quot" => '"',
            "apos" => '\'',
            _ => {
                let code = if let Some(hex) = name.strip_prefix("#x").or_else(|| name.strip_prefix("#X")) {
                    u32::from_str_radix(hex, 16).ok()
                } else if let Some(dec) = name.strip_prefix('#') {
                    dec.parse::<u32>().ok()
                } else {
                    return Err(err(at, format!("unknown entity &{name};")));
                };
                code.and_then(char::from_u32)
                    .ok_or_else(|| err(at, format!("bad character reference &{name};")))?
            }
        };
        out.push(c);
        rest = &after[end + 1..];
    }
    out.push_str(rest);
    Ok(())
}

/// Parses a whole document into its root element.
pub(crate) fn parse(doc: &str) -> Result<Element, XmlError> {
    let doc = doc.strip_prefix('\u{feff}').unwrap_or(doc);
    let mut stack: Vec<Element> = Vec::new();
    let mut root: Option<Element> = None;
    let mut pos = 0;
    while pos < doc.len() {
        let rest = &doc[pos..];
        if !rest.starts_with('<') {
            let end = rest.find('<').unwrap_or(rest.len());
            let text = &rest[..end];
            match stack.last_mut() {
                Some(top) => decode_into(&mut top.text, text, pos)?,
                None if text.trim().is_empty() => {}
                None => return Err(err(pos, "text outside the root element")),
            }
            pos += end;
            continue;
        }
        if let Some(body) = rest.strip_prefix("<?") {
            let end = body.find("?>").ok_or_else(|| err(pos, "an unterminated declaration"))?;
            pos += 2 + end + 2;
        } else if let Some(body) = rest.strip_prefix("<!--") {
            let end = body.find("-->").ok_or_else(|| err(pos, "an unterminated comment"))?;
            pos += 4 + end + 3;
        } else if let Some(body) = rest.strip_prefix("<![CDATA[") {
            let end = body.find("]]>").ok_or_else(|| err(pos, "an unterminated CDATA section"))?;
            let top = stack.last_mut().ok_or_else(|| err(pos, "CDATA outside the root element"))?;
            top.text.push_str(&body[..end]);
            pos += 9 + end + 3;
        } else if rest.starts_with("<!") {
            return Err(err(pos, "DTDs are not accepted"));
        } else if let Some(body) = rest.strip_prefix("</") {
            let end = body.find('>').ok_or_else(|| err(pos, "an unterminated end tag"))?;
            let name = local(body[..end].trim_end());
            let open = stack.pop().ok_or_else(|| err(pos, format!("</{name}> closes nothing")))?;
            if open.name != name {
                return Err(err(pos, format!("</{name}> closes <{}>", open.name)));
            }
            close(&mut stack, &mut root, open, pos)?;
            pos += 2 + end + 1;
        } else {
            let (el, self_closing, len) = start_tag(rest, pos)?;
            if self_closing {
                close(&mut stack, &mut root, el, pos)?;
            } else {
                if stack.len() >= MAX_DEPTH {
                    return Err(err(pos, format!("elements nest deeper than {MAX_DEPTH}")));
                }
                stack.push(el);
            }
            pos += len;
        }
    }
    if let Some(open) = stack.last() {
        return Err(err(doc.len(), format!("<{}> is never closed", open.name)));
    }
    root.ok_or_else(|| err(doc.len(), "no root element"))
}

/// Attaches a finished element to its parent, or makes it the root.
fn close(stack: &mut [Element], root: &mut Option<Element>, el: Element, at: usize) -> Result<(), XmlError> {
    match stack.last_mut() {
        Some(parent) => parent.children.push(el),
        None if root.is_none() => *root = Some(el),
        None => return Err(err(at, "a second root element")),
    }
    Ok(())
}

/// A start tag at the beginning of `rest`: the element, whether it closes itself, and its length.
fn start_tag(rest: &str, at: usize) -> Result<(Element, bool, usize), XmlError> {
    let bytes = rest.as_bytes();
    let name_end = rest[1..]
        .find(|c: char| c.is_whitespace() || c == '>' || c == '/')
        .map(|i| i + 1)
        .ok_or_else(|| err(at, "an unterminated start tag"))?;
    let name = local(&rest[1..name_end]);
    if name.is_empty() {
        return Err(err(at, "a tag without a name"));
    }
    // Attributes are skipped, but a quoted value may hold `>` or `/`.
    let mut i = name_end;
    let mut quote: Option<u8> = None;
    while i < bytes.len() {
        let b = bytes[i];
        match quote {
            Some(q) if b == q => quote = None,
            Some(_) => {}
            None if b == b'"' || b == b'\'' => quote = Some(b),
            None if b == b'>' => {
                let self_closing = bytes[i - 1] == b'/';
                let el = Element { name: name.to_owned(), ..Default::default() };
                return Ok((el, self_closing, i + 1));
            }
            None => {}
        }
        i += 1;
    }
    Err(err(at, format!("<{name}> is not terminated")))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_a_list_bucket_result_with_a_namespace_and_entities() {
        let doc = r#"<?xml version="1.0" encoding="UTF-8"?>
<ListBucketResult xmlns="http://s3.amazonaws.com/doc/2006-03-01/">
  <Name>backups</Name><Prefix>etcd/</Prefix><KeyCount>2</KeyCount>
  <IsTruncated>true</IsTruncated>
  <NextContinuationToken>1ueGcxLPRx1Tr/XYExHnhbYLgveDs2J/wm36Hy4vbOwM=</NextContinuationToken>
  <!-- a comment with <tags> -->
  <Contents><Key>etcd/a&amp;b &lt;1&gt;</Key><Size>12</Size><ETag>&quot;9b2cf535f27731c974343645a3985328&quot;</ETag></Contents>
  <Contents><Key><![CDATA[etcd/c<d>]]></Key><Size>0</Size><Owner/></Contents>
</ListBucketResult>"#;
        let root = parse(doc).unwrap();
        assert_eq!(root.name, "ListBucketResult");
        assert_eq!(root.child_text("IsTruncated"), Some("true"));
        let keys: Vec<_> = root.children_named("Contents").filter_map(|c| c.child_text("Key")).collect();
        assert_eq!(keys, ["etcd/a&b <1>", "etcd/c<d>"]);
        assert_eq!(
            root.child("Contents").and_then(|c| c.child_text("ETag")),
            Some("\"9b2cf535f27731c974343645a3985328\"")
        );
        assert!(root.children_named("Contents").nth(1).unwrap().child("Owner").is_some());
    }

    #[test]
    fn decodes_character_references_and_drops_prefixes() {
        let root = parse("<s3:Error a='x>y' b=\"/\"><s3:Code>A&#66;&#x43;</s3:Code></s3:Error>").unwrap();
        assert_eq!(root.name, "Error");
        assert_eq!(root.child_text("Code"), Some("ABC"));
    }

    #[test]
    fn refuses_what_is_not_well_formed() {
        for bad in [
            "",
            "plain text",
            "<a><b></a></b>",
            "<a>",
            "<a></a><b></b>",
            "<a>&bogus;</a>",
            "<a>&#xD800;</a>",
            "<a>& x</a>",
            "</a>",
            "<!DOCTYPE a [<!ENTITY x 'y'>]><a>&x;</a>",
            "<a b='>",
            "<a><!-- never closed </a>",
            "<a><![CDATA[ never closed </a>",
        ] {
            assert!(parse(bad).is_err(), "accepted {bad:?}");
        }
    }

    #[test]
    fn refuses_deep_nesting() {
        let doc = "<a>".repeat(MAX_DEPTH + 1) + &"</a>".repeat(MAX_DEPTH + 1);
        assert!(parse(&doc).unwrap_err().to_string().contains("deeper"));
        let ok = "<a>".repeat(MAX_DEPTH) + &"</a>".repeat(MAX_DEPTH);
        assert!(parse(&ok).is_ok());
    }
}
