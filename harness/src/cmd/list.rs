//! `harness list`: a folder in, each scenario file in it with the first line of its
//! description out (an invalid one with its error; a `harness chaos` storm file as such).

use std::path::{Path, PathBuf};

use crate::scenario;

/// The scenarios folder could not be listed.
#[derive(Debug, thiserror::Error)]
#[error("cannot read {} ({source}): pass the scenarios folder", dir.display())]
pub struct ListError {
    dir: PathBuf,
    source: std::io::Error,
}

impl From<ListError> for crate::Error {
    fn from(e: ListError) -> Self {
        crate::Error::usage(e)
    }
}

/// The `.toml` files in `dir`, sorted.
fn toml_files(dir: &Path) -> Result<Vec<PathBuf>, ListError> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(dir)
        .map_err(|source| ListError {
            dir: dir.to_path_buf(),
            source,
        })?
        .flatten()
        .map(|e| e.path())
        .filter(|p| p.extension().is_some_and(|x| x == "toml"))
        .collect();
    files.sort();
    Ok(files)
}

/// `harness list`: each scenario file in `dir`, and in its folders one level down (such as
/// `faults/`), with its description.
pub fn list(dir: &Path) -> Result<String, ListError> {
    let mut files = toml_files(dir)?;
    let mut folders: Vec<PathBuf> = std::fs::read_dir(dir)
        .into_iter()
        .flatten()
        .flatten()
        .map(|e| e.path())
        .filter(|p| p.is_dir())
        .collect();
    folders.sort();
    for folder in folders {
        files.extend(toml_files(&folder)?);
    }
    let mut out = String::new();
    for f in files {
        // `kill9` in `faults/` is listed as `faults/kill9`.
        let stem = f
            .strip_prefix(dir)
            .unwrap_or(&f)
            .with_extension("")
            .to_string_lossy()
            .into_owned();
        if let Some(description) = chaos_description(&f) {
            out.push_str(&format!("{stem:<16} (harness chaos) {description}\n"));
            continue;
        }
        match scenario::load(&f) {
            Ok(s) => out.push_str(&format!(
                "{:<16} {}\n",
                s.name,
                s.description.lines().next().unwrap_or("")
            )),
            Err(e) => out.push_str(&format!("{stem:<16} INVALID: {e}\n")),
        }
    }
    Ok(out)
}

/// A random-operation storm file (it has a `[storm]` table): run by `harness chaos`, not
/// `harness run`, so listed as such rather than as an invalid scenario.
fn chaos_description(file: &Path) -> Option<String> {
    let table: toml::Table = std::fs::read_to_string(file).ok()?.parse().ok()?;
    table.get("storm")?.as_table()?;
    let description = table
        .get("description")
        .and_then(toml::Value::as_str)
        .unwrap_or("");
    Some(description.lines().next().unwrap_or("").to_string())
}
