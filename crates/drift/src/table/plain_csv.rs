//! A binary classifier's score and label columns straight from a plain CSV file: no quotes, one
//! header row, every line with the header's number of fields. Such a file is read in blocks
//! and each block's lines are split on as many threads as there are cores, only the two
//! columns' cells parsed; polars would tokenise and type every column first. Anything else (a
//! quote anywhere, a byte-order mark, a ragged or empty line, a cell that is not a finite
//! number, a label other than 0 or 1) is not answered here: the caller then reads the file the
//! general way, whose answer (or refusal) is the same as for any other file.

use crate::Error;
use std::io::Read;
use std::path::Path;

/// Bytes read at a time; the lines of each block are split among the threads.
const BLOCK: usize = 32 << 20;

/// The rows with both a score and a label, and how many rows lack one of them (missing
/// cells), from a plain CSV file whose `separator` splits fields; `None` when the file is not
/// plain or not numbers throughout (see the module's comment), or the columns are not both in
/// its header.
pub(crate) fn binary_pairs(path: &Path, separator: u8, score: &str, label: &str) -> Result<Option<Pairs>, Error> {
    let fail = |e: std::io::Error| Error::Read { path: path.display().to_string(), message: e.to_string() };
    let mut file = std::fs::File::open(path).map_err(fail)?;
    let mut buffer = vec![0u8; BLOCK];
    let mut filled = 0;
    let mut header: Option<Layout> = None;
    let mut pairs = Pairs::default();
    loop {
        let read = file.read(&mut buffer[filled..]).map_err(fail)?;
        let at_end = read == 0;
        filled += read;
        if !at_end && filled < buffer.len() {
            continue;
        }
        if memchr::memchr(b'"', &buffer[..filled]).is_some() {
            return Ok(None);
        }
        // Whole lines only; the rest waits for the next block (or ends the file).
        let whole = if at_end {
            filled
        } else {
            match memchr::memrchr(b'\n', &buffer[..filled]) {
                Some(i) => i + 1,
                // A line longer than a block: not a file this reader is for.
                None => return Ok(None),
            }
        };
        let mut lines = &buffer[..whole];
        if header.is_none() {
            let end = memchr::memchr(b'\n', lines).unwrap_or(lines.len());
            let Some(layout) = Layout::of(&lines[..end], separator, score, label) else { return Ok(None) };
            header = Some(layout);
            lines = &lines[(end + 1).min(lines.len())..];
        }
        let layout = header.as_ref().expect("read above");
        if !layout.read_block(lines, &mut pairs) {
            return Ok(None);
        }
        if at_end {
            return Ok(Some(pairs));
        }
        buffer.copy_within(whole..filled, 0);
        filled -= whole;
    }
}

/// What [`binary_pairs`] gives: the kept scores and labels in file order, and the rows.
#[derive(Debug, Default, PartialEq)]
pub(crate) struct Pairs {
    pub(crate) scores: Vec<f64>,
    pub(crate) labels: Vec<bool>,
    /// Data rows in the file.
    pub(crate) rows: usize,
}

/// Where the two columns are among a line's fields.
struct Layout {
    separator: u8,
    fields: usize,
    score: usize,
    label: usize,
}

impl Layout {
    /// From the header line; `None` without both columns, with a repeated name, or with a
    /// byte-order mark (whose handling is the general reader's).
    fn of(line: &[u8], separator: u8, score: &str, label: &str) -> Option<Layout> {
        let line = line.strip_suffix(b"\r").unwrap_or(line);
        if line.starts_with(&[0xEF, 0xBB, 0xBF]) {
            return None;
        }
        let names: Vec<&[u8]> = line.split(|b| *b == separator).collect();
        let find = |name: &str| {
            let mut at = names.iter().enumerate().filter(|(_, n)| **n == name.as_bytes()).map(|(i, _)| i);
            match (at.next(), at.next()) {
                (Some(i), None) => Some(i),
                _ => None,
            }
        };
        Some(Layout { separator, fields: names.len(), score: find(score)?, label: find(label)? })
    }

    /// Adds the rows of whole `lines` (a trailing line without its newline included) to
    /// `pairs`, the lines split among threads; `false` when a line is not plain numbers.
    fn read_block(&self, lines: &[u8], pairs: &mut Pairs) -> bool {
        let threads = std::thread::available_parallelism().map_or(1, |n| n.get());
        let parts = split_lines(lines, threads);
        let read: Vec<Option<Pairs>> = std::thread::scope(|scope| {
            let handles: Vec<_> = parts.iter().map(|part| scope.spawn(move || self.read_lines(part))).collect();
            handles.into_iter().map(|h| h.join().expect("a CSV worker does not panic")).collect()
        });
        for part in read {
            let Some(part) = part else { return false };
            pairs.scores.extend(part.scores);
            pairs.labels.extend(part.labels);
            pairs.rows += part.rows;
        }
        true
    }

    /// The rows of `lines`, or `None` when one is not plain numbers.
    fn read_lines(&self, lines: &[u8]) -> Option<Pairs> {
        let mut pairs = Pairs::default();
        let mut start = 0;
        let ends = memchr::memchr_iter(b'\n', lines)
            .chain((lines.len() > 0 && lines[lines.len() - 1] != b'\n').then_some(lines.len()));
        for end in ends {
            let line = &lines[start..end];
            start = end + 1;
            let line = line.strip_suffix(b"\r").unwrap_or(line);
            let (score, label) = self.cells(line)?;
            pairs.rows += 1;
            let (Some(score), Some(label)) = (parsed(score)?, parsed(label)?) else { continue };
            let label = match label {
                0.0 => false,
                1.0 => true,
                _ => return None,
            };
            pairs.scores.push(score);
            pairs.labels.push(label);
        }
        Some(pairs)
    }

    /// The line's score and label cells; `None` unless it has the header's number of fields.
    fn cells<'a>(&self, line: &'a [u8]) -> Option<(&'a [u8], &'a [u8])> {
        let (mut score, mut label) = (None, None);
        let (mut field, mut start) = (0, 0);
        for end in memchr::memchr_iter(self.separator, line).chain([line.len()]) {
            if field == self.score {
                score = Some(&line[start..end]);
            }
            if field == self.label {
                label = Some(&line[start..end]);
            }
            field += 1;
            start = end + 1;
        }
        if field != self.fields {
            return None;
        }
        Some((score?, label?))
    }
}

/// A cell as a finite number: `Some(None)` when empty, `None` when not a number or not finite.
fn parsed(cell: &[u8]) -> Option<Option<f64>> {
    if cell.is_empty() {
        return Some(None);
    }
    let x: f64 = std::str::from_utf8(cell).ok()?.parse().ok()?;
    x.is_finite().then_some(Some(x))
}

/// `lines` cut into about `parts` pieces of whole lines.
fn split_lines(lines: &[u8], parts: usize) -> Vec<&[u8]> {
    let mut out = Vec::with_capacity(parts);
    let mut rest = lines;
    for i in (1..parts).rev() {
        let target = rest.len() / (i + 1);
        match memchr::memchr(b'\n', &rest[target..]) {
            Some(at) => {
                let (head, tail) = rest.split_at(target + at + 1);
                out.push(head);
                rest = tail;
            }
            None => break,
        }
    }
    out.push(rest);
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn pairs_of(text: &str) -> Option<Pairs> {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("t.csv");
        std::fs::write(&path, text).unwrap();
        binary_pairs(&path, b',', "score", "label").unwrap()
    }

    #[test]
    fn plain_files_give_their_pairs_and_others_are_left_to_the_general_reader() {
        let got = pairs_of("id,score,label\n1,0.25,0\n2,,1\n3,0.75,1\r\n4,0.5,\n5,1e-3,1").unwrap();
        assert_eq!((got.scores, got.labels, got.rows), (vec![0.25, 0.75, 0.001], vec![false, true, true], 5));
        assert_eq!(pairs_of("score,label\n").unwrap(), Pairs::default());
        for not_plain in [
            "score,label\n\"0.5\",1\n",
            "score,label\n0.5,2\n",
            "score,label\n0.5,true\n",
            "score,label\nNaN,1\n",
            "score,label\n 0.5,1\n",
            "score,label\n0.5,1,9\n",
            "score,label\n0.5,1\n\n0.25,0\n",
            "\u{feff}score,label\n0.5,1\n",
            "score,score,label\n0.5,0.5,1\n",
            "scores,label\n0.5,1\n",
        ] {
            assert_eq!(pairs_of(not_plain), None, "{not_plain:?}");
        }
    }

    proptest! {
        /// However the lines fall into threads' parts, the pairs are those of the lines in order.
        #[test]
        fn parts_split_only_between_lines(
            rows in prop::collection::vec((prop::option::of(0.0f64..1.0), prop::option::of(prop::bool::ANY)), 0..200),
            parts in 1usize..6,
        ) {
            let mut text = String::new();
            for (s, l) in &rows {
                text.push_str(&format!("x,{},{}\n", s.map(|s| s.to_string()).unwrap_or_default(), l.map(|l| u8::from(l).to_string()).unwrap_or_default()));
            }
            let layout = Layout { separator: b',', fields: 3, score: 1, label: 2 };
            let mut got = Pairs::default();
            for part in split_lines(text.as_bytes(), parts) {
                let part = layout.read_lines(part).unwrap();
                got.scores.extend(part.scores);
                got.labels.extend(part.labels);
                got.rows += part.rows;
            }
            let kept: Vec<(f64, bool)> = rows.iter().filter_map(|(s, l)| Some(((*s)?, (*l)?))).collect();
            prop_assert_eq!(got.rows, rows.len());
            prop_assert_eq!(got.scores, kept.iter().map(|k| k.0).collect::<Vec<_>>());
            prop_assert_eq!(got.labels, kept.iter().map(|k| k.1).collect::<Vec<_>>());
        }
    }
}
