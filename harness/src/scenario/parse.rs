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
    let start = boundary(text, span.start);
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

/// `at`, moved back to the end of the text or the start of its character: the reader's spans
/// are not ours to trust with a slice.
fn boundary(text: &str, at: usize) -> usize {
    let mut at = at.min(text.len());
    while !text.is_char_boundary(at) {
        at -= 1;
    }
    at
}

/// 1-based line and column of a byte offset.
fn line_col(text: &str, offset: usize) -> (usize, usize) {
    let before = &text[..boundary(text, offset)];
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

    /// Found by `prop_scenario_error_position_never_panics`: a span inside a character
    /// panicked on slicing.
    #[test]
    fn a_span_inside_a_character_gives_a_position() {
        assert_eq!(line_col("é", 1), (1, 1));
        assert_eq!(key_at("x = é", 5..6), "x");
    }

    mod prop {
        use proptest::prelude::*;

        use super::super::*;

        fn shipped() -> Vec<String> {
            let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../scenarios");
            let mut texts: Vec<String> = std::fs::read_dir(dir)
                .unwrap()
                .map(|e| e.unwrap().path())
                .filter(|p| p.extension().is_some_and(|x| x == "toml"))
                .filter(|p| {
                    !p.file_name()
                        .unwrap()
                        .to_string_lossy()
                        .starts_with("chaos")
                })
                .map(|p| std::fs::read_to_string(p).unwrap())
                .collect();
            texts.sort();
            texts
        }

        const VALUES: &[&str] = &[
            "0",
            "1",
            "-1",
            "9223372036854775807",
            "-9223372036854775808",
            "1e308",
            "-0.0",
            "nan",
            "inf",
            "-inf",
            "0.5",
            "true",
            "\"\"",
            "\"x\"",
            "\"create\"",
            "\"syncer\"",
            "\"zipf\"",
            "[]",
            "[\"create\", \"create\"]",
            "[\"mkdir\"]",
            "{}",
            "{ create = 0 }",
            "{ create = 4294967295, delete = 4294967295 }",
            "\"\\u0000\"",
            "\"é\"",
        ];

        /// One edit of a shipped scenario: a value replaced, a line removed or repeated, a
        /// table header added, or the text cut.
        #[derive(Debug, Clone)]
        enum Edit {
            Value(usize, &'static str),
            Remove(usize),
            Repeat(usize),
            Table(usize, &'static str),
            Cut(usize),
        }

        fn edit() -> impl Strategy<Value = Edit> {
            let at = any::<usize>();
            let tables = proptest::sample::select(
                &["[[phase]]", "[[sut]]", "[tree]", "[slo]", "[phase]", "[["][..],
            );
            prop_oneof![
                4 => (at, proptest::sample::select(VALUES)).prop_map(|(i, v)| Edit::Value(i, v)),
                1 => at.prop_map(Edit::Remove),
                1 => at.prop_map(Edit::Repeat),
                1 => (at, tables).prop_map(|(i, t)| Edit::Table(i, t)),
                1 => at.prop_map(Edit::Cut),
            ]
        }

        fn apply(text: &str, edits: &[Edit]) -> String {
            let mut lines: Vec<String> = text.lines().map(String::from).collect();
            for e in edits {
                if lines.is_empty() {
                    break;
                }
                let n = lines.len();
                match *e {
                    Edit::Value(i, v) => {
                        let line = &mut lines[i % n];
                        if let Some((key, _)) = line.split_once('=') {
                            *line = format!("{key}= {v}");
                        }
                    }
                    Edit::Remove(i) => {
                        lines.remove(i % n);
                    }
                    Edit::Repeat(i) => lines.insert(i % n, lines[i % n].clone()),
                    Edit::Table(i, t) => lines.insert(i % (n + 1), t.to_string()),
                    Edit::Cut(i) => {
                        let joined = lines.join("\n");
                        let mut at = i % (joined.len() + 1);
                        while !joined.is_char_boundary(at) {
                            at -= 1;
                        }
                        lines = joined[..at].lines().map(String::from).collect();
                    }
                }
            }
            lines.join("\n")
        }

        fn placed(text: &str) -> Result<(), TestCaseError> {
            if let Err(e) = parse(text, "t.toml") {
                prop_assert!(e.line <= text.lines().count() + 1, "{}", e);
                prop_assert!(e.to_string().starts_with("t.toml:"));
                prop_assert!(!e.message.is_empty());
            }
            Ok(())
        }

        proptest! {
            #![proptest_config(crate::prop::config(256))]

            #[test]
            fn prop_scenario_any_text_never_panics(text in any::<String>()) {
                placed(&text)?;
            }

            /// Every shipped scenario, edited: accepted, or refused with a line inside it.
            #[test]
            fn prop_scenario_edited_file_never_panics(
                which in any::<proptest::sample::Index>(),
                edits in proptest::collection::vec(edit(), 1..5),
            ) {
                let texts = shipped();
                placed(&apply(&texts[which.index(texts.len())], &edits))?;
            }

            /// Spans are the TOML reader's: any one gives a position and a key.
            #[test]
            fn prop_scenario_error_position_never_panics(
                text in "\\PC{0,40}",
                a in 0usize..64,
                b in 0usize..64,
            ) {
                let (line, column) = line_col(&text, a);
                prop_assert!(line >= 1 && column >= 1);
                key_at(&text, a..b);
                locate_key(&text, &text);
            }
        }
    }
}
