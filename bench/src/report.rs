//! Benchmark output files: CSV tables of serde rows, and a markdown document
//! builder with tables. Benchmark-specific modules decide what goes in them.

use std::fmt;
use std::fs;
use std::io;
use std::path::{Path, PathBuf};

use serde::Serialize;

use crate::stats::Interval;

/// Failure to write an output file.
#[derive(Debug)]
pub enum ReportError {
    /// Creating a directory or writing a file failed.
    Io {
        /// File or directory.
        path: PathBuf,
        /// The underlying error.
        source: io::Error,
    },
    /// Serialising a CSV row failed.
    Csv {
        /// CSV file.
        path: PathBuf,
        /// The underlying error.
        source: csv::Error,
    },
    /// Drawing a plot failed.
    Plot {
        /// SVG file.
        path: PathBuf,
        /// The backend's message.
        message: String,
    },
}

impl fmt::Display for ReportError {
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ReportError::Io { path, source } => {
                write!(formatter, "writing {} failed: {source}", path.display())
            }
            ReportError::Csv { path, source } => {
                write!(formatter, "writing CSV {} failed: {source}", path.display())
            }
            ReportError::Plot { path, message } => {
                write!(formatter, "drawing {} failed: {message}", path.display())
            }
        }
    }
}

impl std::error::Error for ReportError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            ReportError::Io { source, .. } => Some(source),
            ReportError::Csv { source, .. } => Some(source),
            ReportError::Plot { .. } => None,
        }
    }
}

/// Creates `directory` and its parents.
///
/// # Errors
/// [`ReportError::Io`] when the directory cannot be created.
pub fn create_directory(directory: &Path) -> Result<(), ReportError> {
    fs::create_dir_all(directory).map_err(|source| ReportError::Io {
        path: directory.to_path_buf(),
        source,
    })
}

/// Writes `rows` to `path` as CSV with a header row taken from the field
/// names of `T`.
///
/// # Errors
/// [`ReportError::Csv`] when the file cannot be created or a row cannot be
/// serialised (CSV rows must be flat: no nested structs or sequences).
pub fn write_csv<T: Serialize>(path: &Path, rows: &[T]) -> Result<(), ReportError> {
    let csv_error = |source| ReportError::Csv {
        path: path.to_path_buf(),
        source,
    };
    let mut writer = csv::Writer::from_path(path).map_err(csv_error)?;
    for row in rows {
        writer.serialize(row).map_err(csv_error)?;
    }
    writer.flush().map_err(|source| ReportError::Io {
        path: path.to_path_buf(),
        source,
    })
}

/// A markdown table built row by row.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct MarkdownTable {
    headers: Vec<String>,
    rows: Vec<Vec<String>>,
}

impl MarkdownTable {
    /// Creates a table with these column headers. Columns after the first are
    /// right-aligned, since they mostly hold numbers.
    pub fn new<S: Into<String>>(headers: impl IntoIterator<Item = S>) -> Self {
        MarkdownTable {
            headers: headers.into_iter().map(Into::into).collect(),
            rows: Vec::new(),
        }
    }

    /// Appends a row. Missing cells render empty and extra cells are dropped.
    pub fn push_row<S: Into<String>>(&mut self, cells: impl IntoIterator<Item = S>) {
        let mut row: Vec<String> = cells.into_iter().map(Into::into).collect();
        row.resize(self.headers.len(), String::new());
        self.rows.push(row);
    }

    /// Returns whether the table has no rows.
    pub fn is_empty(&self) -> bool {
        self.rows.is_empty()
    }

    /// Renders the table as GitHub-flavoured markdown.
    pub fn render(&self) -> String {
        let escape = |cell: &str| cell.replace('|', "\\|");
        let mut text = String::new();
        let header: Vec<String> = self.headers.iter().map(|cell| escape(cell)).collect();
        text.push_str(&format!("| {} |\n", header.join(" | ")));
        let rule: Vec<&str> = (0..self.headers.len())
            .map(|column| if column == 0 { "---" } else { "---:" })
            .collect();
        text.push_str(&format!("| {} |\n", rule.join(" | ")));
        for row in &self.rows {
            let cells: Vec<String> = row.iter().map(|cell| escape(cell)).collect();
            text.push_str(&format!("| {} |\n", cells.join(" | ")));
        }
        text
    }
}

/// A markdown document built section by section.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct MarkdownDocument {
    text: String,
}

impl MarkdownDocument {
    /// Creates an empty document.
    pub fn new() -> Self {
        Self::default()
    }

    /// Appends a heading of `level` (1 for `#`).
    pub fn heading(&mut self, level: usize, title: &str) {
        self.text
            .push_str(&format!("{} {title}\n\n", "#".repeat(level.max(1))));
    }

    /// Appends a paragraph.
    pub fn paragraph(&mut self, text: &str) {
        self.text.push_str(text.trim_end());
        self.text.push_str("\n\n");
    }

    /// Appends a bulleted list.
    pub fn bullets<S: AsRef<str>>(&mut self, items: impl IntoIterator<Item = S>) {
        for item in items {
            self.text.push_str(&format!("- {}\n", item.as_ref()));
        }
        self.text.push('\n');
    }

    /// Appends a fenced code block.
    pub fn code_block(&mut self, code: &str) {
        self.text
            .push_str(&format!("```\n{}\n```\n\n", code.trim_end()));
    }

    /// Appends a table; an empty table appends `empty_note` instead.
    pub fn table(&mut self, table: &MarkdownTable, empty_note: &str) {
        if table.is_empty() {
            self.paragraph(empty_note);
        } else {
            self.text.push_str(&table.render());
            self.text.push('\n');
        }
    }

    /// Appends an image link.
    pub fn image(&mut self, caption: &str, file_name: &str) {
        self.text
            .push_str(&format!("![{caption}]({file_name})\n\n"));
    }

    /// The document so far.
    pub fn as_str(&self) -> &str {
        &self.text
    }

    /// Writes the document to `path`.
    ///
    /// # Errors
    /// [`ReportError::Io`] when the file cannot be written.
    pub fn write(&self, path: &Path) -> Result<(), ReportError> {
        fs::write(path, &self.text).map_err(|source| ReportError::Io {
            path: path.to_path_buf(),
            source,
        })
    }
}

/// Formats an interval as "estimate [low, high]" with `decimals` places.
pub fn format_interval(interval: &Interval, decimals: usize) -> String {
    format!(
        "{:.*} [{:.*}, {:.*}]",
        decimals, interval.estimate, decimals, interval.low, decimals, interval.high
    )
}

/// Formats an optional interval, or "n/a".
pub fn format_optional_interval(interval: Option<&Interval>, decimals: usize) -> String {
    interval.map_or_else(|| "n/a".to_string(), |interval| format_interval(interval, decimals))
}

/// Formats a ratio interval as a signed percentage change, as
/// "+12.3% [+10.1%, +14.0%]".
pub fn format_relative_change(ratio: &Interval) -> String {
    let percent = |ratio: f64| format!("{:+.1}%", (ratio - 1.0) * 100.0);
    format!(
        "{} [{}, {}]",
        percent(ratio.estimate),
        percent(ratio.low),
        percent(ratio.high)
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn table_renders_aligned_columns() {
        let mut table = MarkdownTable::new(["mode", "ticks"]);
        table.push_row(["weak", "12"]);
        table.push_row(["a|b"]);
        assert_eq!(
            table.render(),
            "| mode | ticks |\n| --- | ---: |\n| weak | 12 |\n| a\\|b |  |\n"
        );
    }

    #[test]
    fn document_falls_back_for_empty_table() {
        let mut document = MarkdownDocument::new();
        document.heading(2, "Faults");
        document.table(&MarkdownTable::new(["fault"]), "No faults.");
        assert_eq!(document.as_str(), "## Faults\n\nNo faults.\n\n");
    }

    #[test]
    fn intervals_format_with_decimals() {
        let interval = Interval {
            estimate: 1.5,
            low: 1.25,
            high: 1.75,
        };
        assert_eq!(format_interval(&interval, 2), "1.50 [1.25, 1.75]");
        assert_eq!(format_optional_interval(None, 1), "n/a");
        let ratio = Interval {
            estimate: 1.1,
            low: 0.95,
            high: 1.2,
        };
        assert_eq!(format_relative_change(&ratio), "+10.0% [-5.0%, +20.0%]");
    }

    #[test]
    fn csv_has_header_and_rows() {
        #[derive(Serialize)]
        struct Row {
            mode: &'static str,
            ticks: u64,
        }
        let directory = std::env::temp_dir().join(format!("bench-report-test-{}", std::process::id()));
        create_directory(&directory).expect("temporary directory");
        let path = directory.join("rows.csv");
        write_csv(
            &path,
            &[
                Row { mode: "weak", ticks: 3 },
                Row { mode: "strong", ticks: 4 },
            ],
        )
        .expect("CSV written");
        let text = fs::read_to_string(&path).expect("CSV readable");
        assert_eq!(text, "mode,ticks\nweak,3\nstrong,4\n");
        fs::remove_dir_all(&directory).expect("temporary directory removed");
    }
}
