//! Name validation shared by the store and the API.

/// Checks that `name` is a DNS-1123 label: at most 63 characters of `a-z`, `0-9` and `-`, starting and
/// ending with an alphanumeric.
///
/// # Errors
/// A message a person can act on, naming the rule that failed.
pub fn dns1123_label(name: &str) -> Result<(), String> {
    if name.is_empty() {
        return Err("a name is required".into());
    }
    if name.len() > 63 {
        return Err(format!("{name:?} is {} characters long; at most 63 are allowed", name.len()));
    }
    let ok_chars = name.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-');
    let ends_ok = |b: Option<u8>| b.is_some_and(|b| b.is_ascii_lowercase() || b.is_ascii_digit());
    if !ok_chars || !ends_ok(name.bytes().next()) || !ends_ok(name.bytes().last()) {
        return Err(format!(
            "{name:?} is not a valid name: a DNS-1123 label must consist of lower case alphanumeric \
             characters or '-', and must start and end with an alphanumeric character (e.g. 'my-name')"
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::dns1123_label;

    #[test]
    fn accepts_labels_and_rejects_the_rest() {
        for ok in ["a", "demo", "c-m-12ab", "x".repeat(63).as_str()] {
            assert!(dns1123_label(ok).is_ok(), "{ok}");
        }
        for bad in ["", "Demo", "-a", "a-", "a_b", "a.b", "x".repeat(64).as_str(), "ü"] {
            assert!(dns1123_label(bad).is_err(), "{bad}");
        }
    }
}
