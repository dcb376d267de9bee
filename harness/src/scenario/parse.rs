//! Scenario files: TOML text in, a validated `Scenario` out (or an error with line, column,
//! the offending key and what is allowed). serde reads the types (types.rs), check.rs adds
//! what serde cannot express; both errors point at the line of the key.

use std::fmt;
use std::path::Path;

use super::check;
use super::types::Scenario;

/// A scenario that could not be read: where, which key, and what is allowed.
#[derive(Debug)]
pub struct ScenarioError {
    pub file: String,
    pub line: usize,
    pub column: usize,
    pub key: String,
    pub message: String,
}

impl fmt::Display for ScenarioError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}:{}: ", self.file, self.line, self.column)?;
        if !self.key.is_empty() {
            write!(f, "key `{}`: ", self.key)?;
        }
        write!(
            f,
            "{} (every key is described in scenarios/README.md)",
            self.message
        )
    }
}

impl std::error::Error for ScenarioError {}

/// A scenario that cannot be read is a usage error: the file is the command's argument.
impl From<ScenarioError> for crate::Error {
    fn from(e: ScenarioError) -> Self {
        crate::Error::usage(e)
    }
}

/// Reads and validates a scenario file.
pub fn load(path: &Path) -> Result<Scenario, ScenarioError> {
    let text = std::fs::read_to_string(path).map_err(|e| ScenarioError {
        file: path.display().to_string(),
        line: 0,
        column: 0,
        key: String::new(),
        message: format!("cannot read the scenario: {e}"),
    })?;
    parse(&text, &path.display().to_string())
}

/// Parses and validates scenario text; `file` names it in errors.
pub fn parse(text: &str, file: &str) -> Result<Scenario, ScenarioError> {
    let scenario: Scenario = toml::from_str(text).map_err(|e| {
        let span = e.span().unwrap_or(0..0);
        let (line, column) = line_col(text, span.start);
        let key = key_at(text, span);
        ScenarioError {
            file: file.to_string(),
            line,
            column,
            key,
            message: e.message().trim().to_string(),
        }
    })?;
    check::validate(&scenario).map_err(|(key, message)| {
        let (line, column) = locate_key(text, &key);
        ScenarioError {
            file: file.to_string(),
            line,
            column,
            key,
            message,
        }
    })?;
    Ok(scenario)
}

/// The key a TOML error's span points at. A type error spans the value (`files = "many"`),
/// so the key is what stands before `=` on that line; an unknown key spans the key itself.
fn key_at(text: &str, span: std::ops::Range<usize>) -> String {
    let start = span.start.min(text.len());
    let line_start = text[..start].rfind('\n').map_or(0, |i| i + 1);
    if let Some((key, _)) = text[line_start..start].split_once('=') {
        return key.trim().to_string();
    }
    text.get(span)
        .unwrap_or("")
        .split(['=', '\n'])
        .next()
        .unwrap_or("")
        .trim()
        .to_string()
}

/// 1-based line and column of a byte offset.
fn line_col(text: &str, offset: usize) -> (usize, usize) {
    let before = &text[..offset.min(text.len())];
    let line = before.matches('\n').count() + 1;
    let column = before.len() - before.rfind('\n').map_or(0, |i| i + 1) + 1;
    (line, column)
}

/// Finds the first line assigning the last component of a dotted key (best effort, for
/// errors found after parsing).
fn locate_key(text: &str, key: &str) -> (usize, usize) {
    let leaf = key.rsplit('.').next().unwrap_or(key);
    let leaf = leaf.split('[').next().unwrap_or(leaf);
    for (i, line) in text.lines().enumerate() {
        let trimmed = line.trim_start();
        if let Some(rest) = trimmed.strip_prefix(leaf)
            && rest.trim_start().starts_with('=')
        {
            return (i + 1, line.len() - trimmed.len() + 1);
        }
    }
    (1, 1)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_type_error_names_the_key_not_the_value() {
        let text = "name = \"x\"\ndescription = \"d\"\n[[phase]]\nname = \"p\"\nsequence = [\"create\"]\nfiles = \"many\"\n";
        let err = parse(text, "t.toml").unwrap_err().to_string();
        assert!(
            err.starts_with("t.toml:6:9: key `files`: invalid type"),
            "{err}"
        );
    }
}
