//! Kubernetes' naming rules for what a cluster.yml names: node names (DNS-1123 subdomains), label keys
//! and values, and host addresses.

use std::net::IpAddr;

/// A DNS-1123 subdomain: at most 253 characters, dot-separated labels of `a-z`, `0-9` and `-`, each
/// starting and ending with an alphanumeric.
pub(crate) fn dns1123_subdomain(s: &str) -> Result<(), String> {
    let label_ok = |l: &str| {
        !l.is_empty()
            && l.len() <= 63
            && l.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
            && !l.starts_with('-')
            && !l.ends_with('-')
    };
    if s.is_empty() || s.len() > 253 || !s.split('.').all(label_ok) {
        return Err(format!(
            "{s:?} is not a DNS-1123 subdomain: lower case alphanumerics, '-' and '.', at most 253 \
             characters, each part starting and ending with an alphanumeric (e.g. 'node-1.example.com')"
        ));
    }
    Ok(())
}

/// The name part of a label key or a label value: up to 63 of alphanumerics, `-`, `_` and `.`, starting
/// and ending with an alphanumeric (a value may also be empty).
fn label_part_ok(s: &str) -> bool {
    let alnum = |b: Option<u8>| b.is_some_and(|b| b.is_ascii_alphanumeric());
    s.len() <= 63
        && s.bytes().all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'))
        && alnum(s.bytes().next())
        && alnum(s.bytes().last())
}

/// A label (or taint) key: `[prefix/]name`, the prefix a DNS-1123 subdomain.
pub(crate) fn label_key(key: &str) -> Result<(), String> {
    let (prefix, name) = match key.split_once('/') {
        Some((p, n)) => (Some(p), n),
        None => (None, key),
    };
    if let Some(p) = prefix {
        dns1123_subdomain(p).map_err(|m| format!("the prefix of {key:?}: {m}"))?;
    }
    if !label_part_ok(name) {
        return Err(format!(
            "{key:?} is not a label key: [prefix/]name, the name at most 63 alphanumerics, '-', '_' or \
             '.', starting and ending with an alphanumeric"
        ));
    }
    Ok(())
}

/// A label (or taint) value: empty, or as the name part of a key.
pub(crate) fn label_value(value: &str) -> Result<(), String> {
    if value.is_empty() || label_part_ok(value) {
        return Ok(());
    }
    Err(format!(
        "{value:?} is not a label value: at most 63 alphanumerics, '-', '_' or '.', starting and ending \
         with an alphanumeric"
    ))
}

/// A host address: an IP address or a DNS name (letters of either case; SSH resolves it).
pub(crate) fn host_address(addr: &str) -> Result<(), String> {
    if addr.is_empty() {
        return Err("an address is required".into());
    }
    if addr.parse::<IpAddr>().is_ok() || dns1123_subdomain(&addr.to_ascii_lowercase()).is_ok() {
        return Ok(());
    }
    Err(format!("{addr:?} is neither an IP address nor a host name"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_keys_values_and_addresses() {
        for ok in ["a", "node-1", "node-1.example.com"] {
            assert!(dns1123_subdomain(ok).is_ok(), "{ok}");
        }
        for bad in ["", "Node", "a..b", "-a", "a_b", "a.", &"x".repeat(254)] {
            assert!(dns1123_subdomain(bad).is_err(), "{bad}");
        }
        for ok in ["app", "example.com/app", "a_b.C-d"] {
            assert!(label_key(ok).is_ok(), "{ok}");
        }
        for bad in ["", "/app", "Example.com/app", "a/b/c", "-a", "a b"] {
            assert!(label_key(bad).is_err(), "{bad}");
        }
        assert!(label_value("").is_ok() && label_value("v1.2_x").is_ok());
        assert!(label_value("a b").is_err() && label_value("-x").is_err());
        for ok in ["10.0.0.1", "::1", "Host-1.example.com"] {
            assert!(host_address(ok).is_ok(), "{ok}");
        }
        for bad in ["", "10.0.0.1:22", "a b", "host_1"] {
            assert!(host_address(bad).is_err(), "{bad}");
        }
    }
}
