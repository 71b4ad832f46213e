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
    // Two buffers: the next block is read while the lines of the current one are split.
    let (mut current, mut next) = (vec![0u8; BLOCK], vec![0u8; BLOCK]);
    let (mut filled, mut at_end) = fill(&mut file, &mut current, 0).map_err(fail)?;
    let mut layout: Option<Layout> = None;
    let mut pairs = Pairs::default();
    loop {
        if memchr::memchr(b'"', &current[..filled]).is_some() {
            return Ok(None);
        }
        // Whole lines only; the rest starts the next block.
        let whole = if at_end {
            filled
        } else {
            match memchr::memrchr(b'\n', &current[..filled]) {
                Some(i) => i + 1,
                // A line longer than a block: not a file this reader is for.
                None => return Ok(None),
            }
        };
        let mut lines = &current[..whole];
        if layout.is_none() {
            let end = memchr::memchr(b'\n', lines).unwrap_or(lines.len());
            let Some(found) = Layout::of(&lines[..end], separator, score, label) else { return Ok(None) };
            layout = Some(found);
            lines = &lines[(end + 1).min(lines.len())..];
        }
        let layout = layout.as_ref().expect("read above");
        let rest = filled - whole;
        next[..rest].copy_from_slice(&current[whole..filled]);
        let (read, parts) = std::thread::scope(|scope| {
            let parsing = scope.spawn(|| layout.read_block(lines));
            let read = if at_end { Ok((rest, true)) } else { fill(&mut file, &mut next, rest) };
            (read, parsing.join().expect("a CSV worker does not panic"))
        });
        let Some(block) = parts else { return Ok(None) };
        pairs.scores.extend(block.scores);
        pairs.labels.extend(block.labels);
        pairs.rows += block.rows;
        if at_end {
            return Ok(Some(pairs));
        }
        (filled, at_end) = read.map_err(fail)?;
        std::mem::swap(&mut current, &mut next);
    }
}

/// Reads into `buffer` after its first `from` bytes until it is full or the file ends; the
/// bytes it holds, and whether the file ended.
fn fill(file: &mut std::fs::File, buffer: &mut [u8], from: usize) -> std::io::Result<(usize, bool)> {
    let mut filled = from;
    while filled < buffer.len() {
        match file.read(&mut buffer[filled..])? {
            0 => return Ok((filled, true)),
            n => filled += n,
        }
    }
    Ok((filled, false))
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

    /// The rows of whole `lines` (a last line without its newline included), the lines split
    /// among threads; `None` when a line is not plain numbers.
    fn read_block(&self, lines: &[u8]) -> Option<Pairs> {
        let threads = std::thread::available_parallelism().map_or(1, |n| n.get());
        let parts = split_lines(lines, threads);
        let read: Vec<Option<Pairs>> = std::thread::scope(|scope| {
            let handles: Vec<_> = parts.iter().map(|part| scope.spawn(move || self.read_lines(part))).collect();
            handles.into_iter().map(|h| h.join().expect("a CSV worker does not panic")).collect()
        });
        let mut pairs = Pairs::default();
        for part in read {
            let part = part?;
            pairs.scores.extend(part.scores);
            pairs.labels.extend(part.labels);
            pairs.rows += part.rows;
        }
        Some(pairs)
    }

    /// The rows of `lines`, or `None` when one is not plain numbers. One pass over the bytes:
    /// the text is checked as UTF-8 once, then cut at separators and newlines (ASCII, so every
    /// cell is whole text).
    fn read_lines(&self, lines: &[u8]) -> Option<Pairs> {
        let text = std::str::from_utf8(lines).ok()?;
        let bytes = text.as_bytes();
        let mut pairs = Pairs::default();
        let (mut field, mut start) = (0, 0);
        let (mut score, mut label) = (0..0, 0..0);
        // A last line without a newline ends at the end of the text.
        let ends_open = bytes.last().is_some_and(|b| *b != b'\n');
        for (at, byte) in bytes.iter().copied().chain(ends_open.then_some(b'\n')).enumerate() {
            if byte != self.separator && byte != b'\n' {
                continue;
            }
            let mut end = at;
            if byte == b'\n' && end > start && bytes[end - 1] == b'\r' {
                end -= 1;
            }
            if field == self.score {
                score = start..end;
            }
            if field == self.label {
                label = start..end;
            }
            field += 1;
            start = at + 1;
            if byte == b'\n' {
                if field != self.fields {
                    return None;
                }
                field = 0;
                pairs.rows += 1;
                let (Some(score), Some(label)) = (parsed(&text[score.clone()])?, parsed(&text[label.clone()])?) else {
                    continue;
                };
                let label = match label {
                    0.0 => false,
                    1.0 => true,
                    _ => return None,
                };
                pairs.scores.push(score);
                pairs.labels.push(label);
            }
        }
        Some(pairs)
    }
}

/// A cell as a finite number: `Some(None)` when empty, `None` when not a number or not finite.
fn parsed(cell: &str) -> Option<Option<f64>> {
    if cell.is_empty() {
        return Some(None);
    }
    let x: f64 = cell.parse().ok()?;
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
