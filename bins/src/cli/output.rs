//! Printing: tables for people, JSON and YAML for programs.

use serde_json::Value;

use super::error::CliError;
use super::jsonpath::JsonPath;

/// The `-o` flag.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub enum Format {
    /// Aligned columns.
    #[default]
    Table,
    /// JSON: `{"data":[…]}` for lists, the object for one.
    Json,
    /// YAML, the same shape as JSON.
    Yaml,
    /// `jsonpath=TEMPLATE`: kubectl's JSONPath template over the JSON form.
    JsonPath(JsonPath),
}

impl Format {
    /// What `-o` takes, for its help.
    pub const VALUES: &'static str = "table, json, yaml or jsonpath=TEMPLATE";

    /// Parses `-o`'s value: `table`, `json`, `yaml`, or `jsonpath=TEMPLATE` (also `jsonpath='…'`).
    ///
    /// # Errors
    /// What is wrong with the value, in words.
    pub fn parse(s: &str) -> Result<Self, String> {
        match s {
            "table" | "wide" => Ok(Format::Table),
            "json" => Ok(Format::Json),
            "yaml" => Ok(Format::Yaml),
            _ => match s.split_once('=') {
                Some(("jsonpath", template)) => {
                    let template =
                        template.strip_prefix('\'').and_then(|t| t.strip_suffix('\'')).unwrap_or(template);
                    if template.is_empty() {
                        return Err("jsonpath= needs a template, e.g. jsonpath='{.data[*].id}'".into());
                    }
                    JsonPath::parse(template).map(Format::JsonPath)
                }
                _ => Err(format!("{s:?} is not an output format: use {}", Self::VALUES)),
            },
        }
    }

    /// Whether this is the table people read (not a format for programs).
    pub fn is_table(&self) -> bool {
        *self == Format::Table
    }
}

/// Renders rows under headers with two spaces between columns.
pub(crate) fn table(headers: &[&str], rows: &[Vec<String>]) -> String {
    let mut widths: Vec<usize> = headers.iter().map(|h| h.len()).collect();
    for row in rows {
        for (w, cell) in widths.iter_mut().zip(row) {
            *w = (*w).max(cell.chars().count());
        }
    }
    let line = |cells: Vec<&str>| {
        let mut s = String::new();
        for (i, (cell, w)) in cells.iter().zip(&widths).enumerate() {
            if i + 1 == cells.len() {
                s.push_str(cell);
            } else {
                s.push_str(&format!("{cell:<w$}  "));
            }
        }
        s.trim_end().to_owned()
    };
    let mut out = line(headers.to_vec());
    for row in rows {
        out.push('\n');
        out.push_str(&line(row.iter().map(String::as_str).collect()));
    }
    out.push('\n');
    out
}

/// JSON or YAML text of a value.
///
/// # Errors
/// [`CliError::Http`] if the value cannot be encoded (it always can for JSON values).
pub(crate) fn structured(format: &Format, value: &Value) -> Result<String, CliError> {
    match format {
        Format::Yaml => {
            serde_saphyr::to_string(value).map_err(|e| CliError::Http(format!("encoding YAML: {e}")))
        }
        Format::JsonPath(template) => Ok(template.render(value)),
        Format::Table | Format::Json => {
            serde_json::to_string_pretty(value).map(|s| s + "\n").map_err(|e| CliError::Http(e.to_string()))
        }
    }
}

/// How long ago, kubectl style: `45s`, `12m`, `5h`, `3d`.
pub(crate) fn age(created: Option<jiff::Timestamp>) -> String {
    let Some(created) = created else { return "<unknown>".into() };
    let secs = (jiff::Timestamp::now() - created).get_seconds().max(0);
    match secs {
        s if s < 120 => format!("{s}s"),
        s if s < 2 * 3600 => format!("{}m", s / 60),
        s if s < 2 * 86400 => format!("{}h", s / 3600),
        s => format!("{}d", s / 86400),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn table_aligns_columns() {
        let t = table(
            &["NAME", "STATE"],
            &[vec!["demo".into(), "active".into()], vec!["a-long-name".into(), "waiting".into()]],
        );
        assert_eq!(t, "NAME         STATE\ndemo         active\na-long-name  waiting\n");
    }

    #[test]
    fn output_formats_parse_as_kubectl_spells_them() {
        assert_eq!(Format::parse("json"), Ok(Format::Json));
        assert_eq!(Format::parse("table"), Ok(Format::Table));
        let Ok(Format::JsonPath(t)) = Format::parse("jsonpath='{.id}'") else { panic!("jsonpath") };
        assert_eq!(t.render(&serde_json::json!({"id": "c-1"})), "c-1");
        assert!(Format::parse("jsonpath=").unwrap_err().contains("needs a template"));
        assert!(Format::parse("xml").unwrap_err().contains("not an output format"));
        assert!(Format::parse("jsonpath={.a").unwrap_err().contains("unclosed"));
    }

    #[test]
    fn ages() {
        let now = jiff::Timestamp::now();
        assert_eq!(age(Some(now - jiff::SignedDuration::from_secs(30))), "30s");
        assert_eq!(age(Some(now - jiff::SignedDuration::from_hours(50))), "2d");
        assert_eq!(age(None), "<unknown>");
    }
}
