//! Markdown tables: a header and rows of cells in, the pipe table out. Every table the
//! harness writes (results summary, gate report, chaos summary, tune and sweep summaries,
//! capacity report) goes through here, so they all look alike: `| a | b |`, a `|---|`
//! alignment row (left-aligned, as GitHub renders it by default), an empty cell as `| |`
//! (or `|  |` for the tables that always wrote it so: `Table::spaced_empty_cells`).

/// One markdown table, built row by row.
#[derive(Debug, Clone, Default)]
pub struct Table {
    header: Vec<String>,
    rows: Vec<Vec<String>>,
    spaced_empty: bool,
}

impl Table {
    pub fn new<S: AsRef<str>>(header: impl IntoIterator<Item = S>) -> Self {
        Table {
            header: header.into_iter().map(|h| h.as_ref().to_string()).collect(),
            rows: Vec::new(),
            spaced_empty: false,
        }
    }

    /// Renders an empty cell as `|  |`, a space either side like any other cell, instead of
    /// `| |`. The tune and sweep summaries and report.md wrote their tables so before they
    /// came here; this keeps their bytes.
    pub fn spaced_empty_cells(mut self) -> Self {
        self.spaced_empty = true;
        self
    }

    /// Appends a row; its cells are rendered as given (missing ones are not padded).
    pub fn row<S: Into<String>>(&mut self, cells: impl IntoIterator<Item = S>) -> &mut Self {
        self.rows.push(cells.into_iter().map(Into::into).collect());
        self
    }

    pub fn is_empty(&self) -> bool {
        self.rows.is_empty()
    }

    /// The header line and the alignment line, each ending in a newline.
    pub fn head(&self) -> String {
        let mut out = self.line(&self.header);
        out.push('|');
        out.push_str(&"---|".repeat(self.header.len()));
        out.push('\n');
        out
    }

    /// The whole table: head, then one line per row, every line ending in a newline.
    pub fn render(&self) -> String {
        let mut out = self.head();
        for row in &self.rows {
            out.push_str(&self.line(row));
        }
        out
    }

    /// `| a | b |` and a newline; an empty cell is `| |` (`|  |` if spaced).
    fn line(&self, cells: &[String]) -> String {
        let mut out = String::from("|");
        for cell in cells {
            if self.spaced_empty || !cell.is_empty() {
                out.push(' ');
                out.push_str(cell);
            }
            out.push_str(" |");
        }
        out.push('\n');
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_table_renders_header_alignment_and_rows() {
        let mut t = Table::new(["syncer", "p99 ms", "note"]);
        t.row(["ours", "1.5", ""]).row(["theirs", "9", "slow"]);
        assert_eq!(
            t.render(),
            "| syncer | p99 ms | note |\n|---|---|---|\n| ours | 1.5 | |\n| theirs | 9 | slow |\n"
        );
        assert_eq!(Table::new(["a"]).render(), "| a |\n|---|\n");
    }

    #[test]
    fn spaced_empty_cells_keep_a_space_either_side() {
        let mut t = Table::new(["a", "b"]).spaced_empty_cells();
        t.row(["x", ""]);
        assert_eq!(t.render(), "| a | b |\n|---|---|\n| x |  |\n");
    }
}
