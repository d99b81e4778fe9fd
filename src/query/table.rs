//! The directory's answers as text for a terminal: the file table of `peer list` and `peer
//! search`, the source table of `peer locate`. Every string from the owner goes through
//! [`display_name`], so a name cannot drive the terminal.

use std::fmt::Write as _;

use crate::directory::{FileInfo, Locations};
use crate::manifest::display_name;
use crate::units::human_size;

/// The width of `s` once shown by [`display_name`], in characters.
fn shown_width(s: &str) -> usize {
    display_name(s).to_string().chars().count()
}

/// A table of files, one per line, with a header. Every string from the owner goes through
/// [`display_name`]: a name cannot drive the terminal.
/// `more` files left out of the answer are mentioned on a last line.
pub fn files_table(files: &[FileInfo], more: u32) -> String {
    let name_w = files
        .iter()
        .map(|f| shown_width(&f.name))
        .max()
        .unwrap_or(4)
        .max(4);
    let mut out = format!(
        "{:>3}  {:<name_w$}  {:>10}  {:>7}  {:>8}  {:>7}  BLAKE3\n",
        "ID", "NAME", "SIZE", "CHUNKS", "COMPLETE", "PARTIAL"
    );
    for f in files {
        let _ = writeln!(
            out,
            "{:>3}  {:<name_w$}  {:>10}  {:>7}  {:>8}  {:>7}  {}",
            f.id,
            display_name(&f.name),
            human_size(f.size),
            f.chunks,
            f.complete_sources,
            f.partial_sources,
            display_name(&f.hash)
        );
    }
    if more > 0 {
        let _ = writeln!(out, "… and {more} more files (the answer is cut at 1 MiB)");
    }
    out
}

/// The file, then one line per source: address, role, how many chunks, which.
pub fn locations_table(loc: &Locations) -> String {
    let Some(f) = &loc.file else {
        let message = loc.message.as_deref().unwrap_or("no such file");
        return format!("{}\n", display_name(message));
    };
    let mut out = format!(
        "file {} {} ({}, {} chunks, blake3 {}): {} complete and {} partial sources\n",
        f.id,
        display_name(&f.name),
        human_size(f.size),
        f.chunks,
        display_name(&f.hash),
        f.complete_sources,
        f.partial_sources
    );
    let addr_w = loc
        .sources
        .iter()
        .map(|s| shown_width(&s.addr))
        .max()
        .unwrap_or(6)
        .max(6);
    let _ = writeln!(
        out,
        "{:<addr_w$}  {:<6}  {:>13}  CHUNK IDS",
        "SOURCE", "ROLE", "CHUNKS"
    );
    for s in &loc.sources {
        let held = format!("{}/{}", s.count, f.chunks);
        let _ = writeln!(
            out,
            "{:<addr_w$}  {:<6}  {:>13}  {}",
            display_name(&s.addr),
            display_name(&s.role),
            held,
            ranges_text(&s.chunks.0, 12)
        );
    }
    if loc.more_sources > 0 {
        let _ = writeln!(out, "… and {} more sources", loc.more_sources);
    }
    out
}

/// `0-99,150,152-160`, cut after `max` ranges with `… (N more ranges)`.
fn ranges_text(ranges: &[[u32; 2]], max: usize) -> String {
    if ranges.is_empty() {
        return "none".into();
    }
    let mut parts: Vec<String> = ranges
        .iter()
        .take(max)
        .map(|&[a, b]| {
            if a == b {
                a.to_string()
            } else {
                format!("{a}-{b}")
            }
        })
        .collect();
    if ranges.len() > max {
        parts.push(format!("… ({} more ranges)", ranges.len() - max));
    }
    parts.join(",")
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Names with escape sequences, newlines or right-to-left overrides, from a hostile
    /// owner, reach the terminal escaped, and the table stays aligned.
    #[test]
    fn hostile_names_are_printed_escaped() {
        let file = |id, name: &str| FileInfo {
            id,
            name: name.into(),
            size: 10,
            chunk_size: 2,
            chunks: 5,
            hash: "ab".into(),
            complete_sources: 1,
            partial_sources: 0,
        };
        let files = [
            file(1, "a\x1b]0;pwned\x07\x1b[2Jb"),
            file(2, "fake\nline"),
            file(3, "evil\u{202e}vkm.exe"),
        ];
        let table = files_table(&files, 0);
        for bad in ['\x1b', '\x07', '\u{202e}'] {
            assert!(!table.contains(bad), "{table:?}");
        }
        assert_eq!(table.lines().count(), 4, "one line per file: {table}");
        assert!(table.contains("evil\\u{202e}vkm.exe"), "{table}");
        let widths: Vec<_> = table.lines().skip(1).map(|l| l.chars().count()).collect();
        assert!(widths.windows(2).all(|w| w[0] == w[1]), "{table}");
        let loc = Locations {
            file: Some(file(2, "x\u{2066}y")),
            message: None,
            sources: Vec::new(),
            more_sources: 3,
        };
        let text = locations_table(&loc);
        assert!(text.ends_with("… and 3 more sources\n"), "{text}");
        assert!(
            text.contains("x\\u{2066}y") && !text.contains('\u{2066}'),
            "{text}"
        );
    }

    #[test]
    fn ranges_read_well() {
        assert_eq!(ranges_text(&[], 3), "none");
        assert_eq!(ranges_text(&[[0, 9], [12, 12]], 3), "0-9,12");
        assert_eq!(
            ranges_text(&[[0, 0], [2, 2], [4, 4], [6, 6]], 2),
            "0,2,… (2 more ranges)"
        );
    }
}
