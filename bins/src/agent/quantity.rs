//! Summing Kubernetes resource quantities (`4`, `500m`, `16Gi`, `8029876Ki`, `1e3`) across nodes,
//! exactly, in thousandths of a unit.

use std::collections::BTreeMap;

/// A quantity in thousandths of its unit (`500m` = 500, `2` = 2000, `1Ki` = 1,024,000).
fn parse_milli(q: &str) -> Option<i128> {
    let q = q.trim();
    let split =
        q.find(|c: char| !(c.is_ascii_digit() || c == '.' || c == '+' || c == '-')).unwrap_or(q.len());
    let (number, suffix) = q.split_at(split);
    if number.is_empty() {
        return None;
    }
    let (int_part, frac_part) = number.split_once('.').unwrap_or((number, ""));
    let negative = int_part.starts_with('-');
    let int_digits = int_part.trim_start_matches(['+', '-']);
    if !int_digits.chars().all(|c| c.is_ascii_digit()) || !frac_part.chars().all(|c| c.is_ascii_digit()) {
        return None;
    }
    // value = digits / 10^frac_len, kept as an integer numerator with a power-of-ten denominator.
    let digits: i128 = format!("{int_digits}{frac_part}").parse().ok()?;
    let mut scale10: i32 = -(frac_part.len() as i32);
    let mut factor: i128 = 1;
    match suffix {
        "" => {}
        "m" => scale10 -= 3,
        "k" => scale10 += 3,
        "M" => scale10 += 6,
        "G" => scale10 += 9,
        "T" => scale10 += 12,
        "P" => scale10 += 15,
        "E" => scale10 += 18,
        "Ki" => factor = 1 << 10,
        "Mi" => factor = 1 << 20,
        "Gi" => factor = 1 << 30,
        "Ti" => factor = 1 << 40,
        "Pi" => factor = 1 << 50,
        "Ei" => factor = 1 << 60,
        s if s.starts_with(['e', 'E']) => scale10 += s[1..].parse::<i32>().ok()?,
        _ => return None,
    }
    scale10 += 3; // to thousandths
    let mut v = digits.checked_mul(factor)?;
    if scale10 >= 0 {
        v = v.checked_mul(10i128.checked_pow(scale10 as u32)?)?;
    } else {
        // Kubernetes rounds sub-milli precision up.
        let d = 10i128.checked_pow((-scale10) as u32)?;
        v = (v + d - 1) / d;
    }
    Some(if negative { -v } else { v })
}

/// Formats thousandths the way `kubectl` shows sums: whole units plainly (with a binary suffix when
/// exact and the resource is counted in bytes), otherwise in `m`.
fn format_milli(v: i128, binary: bool) -> String {
    if v % 1000 != 0 {
        return format!("{v}m");
    }
    let units = v / 1000;
    if binary && units != 0 {
        for (suffix, shift) in [("Ei", 60), ("Pi", 50), ("Ti", 40), ("Gi", 30), ("Mi", 20), ("Ki", 10)] {
            let f: i128 = 1 << shift;
            if units % f == 0 {
                return format!("{}{suffix}", units / f);
            }
        }
    }
    units.to_string()
}

/// Sums per-resource quantities over many nodes. Values that do not parse are skipped (and
/// returned by name so the caller can log them).
pub(crate) fn sum<'a, I>(maps: I) -> (BTreeMap<String, String>, Vec<String>)
where
    I: IntoIterator<Item = &'a BTreeMap<String, String>>,
{
    let mut totals: BTreeMap<String, (i128, bool)> = BTreeMap::new();
    let mut bad = Vec::new();
    for map in maps {
        for (name, q) in map {
            match parse_milli(q) {
                Some(v) => {
                    let e = totals.entry(name.clone()).or_insert((0, false));
                    e.0 = e.0.saturating_add(v);
                    e.1 |= q.ends_with('i');
                }
                None => bad.push(format!("{name}={q}")),
            }
        }
    }
    let out = totals.into_iter().map(|(k, (v, binary))| (k, format_milli(v, binary))).collect();
    (out, bad)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_the_forms_nodes_report() {
        assert_eq!(parse_milli("4"), Some(4000));
        assert_eq!(parse_milli("500m"), Some(500));
        assert_eq!(parse_milli("1.5"), Some(1500));
        assert_eq!(parse_milli("1Ki"), Some(1_024_000));
        assert_eq!(parse_milli("2k"), Some(2_000_000));
        assert_eq!(parse_milli("1e3"), Some(1_000_000));
        assert_eq!(parse_milli("0.0001"), Some(1), "sub-milli rounds up");
        assert_eq!(parse_milli("lots"), None);
        assert_eq!(parse_milli("5Xi"), None);
    }

    #[test]
    fn sums_across_nodes_keeping_the_units_readable() {
        let node = |cpu: &str, mem: &str| {
            BTreeMap::from([("cpu".to_owned(), cpu.to_owned()), ("memory".to_owned(), mem.to_owned())])
        };
        let nodes = [node("4", "8Gi"), node("3500m", "8Gi"), node("x", "1024Mi")];
        let (total, bad) = sum(nodes.iter());
        assert_eq!(total["cpu"], "7500m");
        assert_eq!(total["memory"], "17Gi");
        assert_eq!(bad, vec!["cpu=x".to_owned()]);
        let (total, _) = sum([node("2", "1000"), node("2", "24")].iter());
        assert_eq!(total["cpu"], "4");
        assert_eq!(total["memory"], "1024");
    }
}
