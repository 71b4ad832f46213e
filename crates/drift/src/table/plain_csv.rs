//! A binary classifier's score and label columns straight from a plain CSV file: no quotes, one
//! header row, every line with the header's number of fields. The file is cut into one byte range
//! per core; each thread reads its own range in blocks (positioned reads, so the copy out of the
//! page cache is shared among the cores too), takes the lines that start in it, parses only the
//! two columns' cells, and puts each row straight into its own [`BinaryPart`] (its class's score
//! key, the loss sums, the confusion counts); polars would tokenise and type every column first,
//! and the rows would then be copied into pairs. Anything else (a quote anywhere, a byte-order
//! mark, a ragged or empty line, a cell that is not a finite number, a label other than 0 or 1)
//! is not answered here: the caller then reads the file the general way, whose answer (or
//! refusal) is the same as for any other file.

use crate::stats::performance::BinaryPart;
use crate::Error;
use std::ops::Range;
use std::os::unix::fs::FileExt;
use std::path::Path;

/// Bytes each thread reads at a time; a line longer than that is not for this reader.
const BLOCK: usize = 16 << 20;

/// What [`binary_parts`] gives: the rows with both a score and a label in one part per
/// thread, and how many data rows the file has (the rest lack one of the two cells).
#[derive(Debug, Default)]
pub(crate) struct Parts {
    pub(crate) parts: Vec<BinaryPart>,
    pub(crate) rows: usize,
}

/// The rows of a plain CSV file whose `separator` splits fields, read into parts, a score at or
/// above `threshold` predicting class 1; `None` when the file is not plain or not numbers
/// throughout (see the module's comment), or the columns are not both in its header.
pub(crate) fn binary_parts(
    path: &Path,
    separator: u8,
    score: &str,
    label: &str,
    threshold: f64,
) -> Result<Option<Parts>, Error> {
    let fail = |e: std::io::Error| Error::Read { path: path.display().to_string(), message: e.to_string() };
    let file = std::fs::File::open(path).map_err(fail)?;
    let len = file.metadata().map_err(fail)?.len();
    let threads = std::thread::available_parallelism().map_or(1, |n| n.get());
    binary_parts_of(&file, len, threads, BLOCK, separator, score, label, threshold).map_err(fail)
}

/// [`binary_parts`] of an open file of `len` bytes, on `threads` threads reading `block` bytes
/// at a time.
#[allow(clippy::too_many_arguments)]
fn binary_parts_of(
    file: &std::fs::File,
    len: u64,
    threads: usize,
    block: usize,
    separator: u8,
    score: &str,
    label: &str,
    threshold: f64,
) -> std::io::Result<Option<Parts>> {
    let mut head = vec![0u8; block.min(len as usize)];
    let filled = read_full(file, &mut head, 0)?;
    let Some(end) = memchr::memchr(b'\n', &head[..filled]) else {
        // A header only, or a first line longer than a block.
        if (filled as u64) < len || memchr::memchr(b'"', &head[..filled]).is_some() {
            return Ok(None);
        }
        let parts = (0..threads.max(1)).map(|_| BinaryPart::default()).collect();
        return Ok(Layout::of(&head[..filled], separator, score, label, threshold).map(|_| Parts { parts, rows: 0 }));
    };
    if memchr::memchr(b'"', &head[..end]).is_some() {
        return Ok(None);
    }
    let Some(layout) = Layout::of(&head[..end], separator, score, label, threshold) else { return Ok(None) };
    drop(head);
    let data = end as u64 + 1..len;
    let threads = threads.max(1);
    let span = (data.end - data.start).div_ceil(threads as u64).max(1);
    let ranges: Vec<Range<u64>> = (0..threads as u64)
        .map(|i| (data.start + i * span).min(data.end)..(data.start + (i + 1) * span).min(data.end))
        .collect();
    let read: Vec<std::io::Result<Option<(BinaryPart, usize)>>> = std::thread::scope(|scope| {
        let layout = &layout;
        let handles: Vec<_> =
            ranges.into_iter().map(|range| scope.spawn(move || layout.read_range(file, range, len, block))).collect();
        handles.into_iter().map(|h| h.join().expect("a CSV worker does not panic")).collect()
    });
    let mut out = Parts::default();
    for r in read {
        let Some((part, rows)) = r? else { return Ok(None) };
        out.parts.push(part);
        out.rows += rows;
    }
    Ok(Some(out))
}

/// Reads into `buffer` from byte `at` of `file` until it is full or the file ends; the bytes read.
fn read_full(file: &std::fs::File, buffer: &mut [u8], at: u64) -> std::io::Result<usize> {
    let mut filled = 0;
    while filled < buffer.len() {
        match file.read_at(&mut buffer[filled..], at + filled as u64)? {
            0 => break,
            n => filled += n,
        }
    }
    Ok(filled)
}

/// Where the two columns are among a line's fields.
struct Layout {
    separator: u8,
    fields: usize,
    score: usize,
    label: usize,
    threshold: f64,
}

impl Layout {
    /// From the header line; `None` without both columns, with a repeated name, or with a
    /// byte-order mark (whose handling is the general reader's).
    fn of(line: &[u8], separator: u8, score: &str, label: &str, threshold: f64) -> Option<Layout> {
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
        Some(Layout { separator, fields: names.len(), score: find(score)?, label: find(label)?, threshold })
    }

    /// The rows of the lines of `file` (`len` bytes) that start in `range`, read `block` bytes at
    /// a time into one part; with how many, or `None` when the file is not plain numbers there.
    /// A line starts at the range's first byte when the byte before it is a newline; the last
    /// line taken may run past the range's end.
    fn read_range(
        &self,
        file: &std::fs::File,
        range: Range<u64>,
        len: u64,
        block: usize,
    ) -> std::io::Result<Option<(BinaryPart, usize)>> {
        let mut part = BinaryPart::default();
        let mut rows = 0;
        if range.is_empty() {
            return Ok(Some((part, rows)));
        }
        let mut buffer = vec![0u8; block];
        // Read from the byte before the range: a newline there means a line starts with it.
        let mut at = range.start - 1;
        let mut kept = 0;
        let mut first = true;
        loop {
            let filled = kept + read_full(file, &mut buffer[kept..], at + kept as u64)?;
            let at_end = at + filled as u64 >= len;
            let text = &buffer[..filled];
            if memchr::memchr(b'"', &text[kept..]).is_some() {
                return Ok(None);
            }
            let mut from = 0;
            if first {
                // Skip the line begun in the range before, up to its newline.
                match memchr::memchr(b'\n', text) {
                    Some(i) => from = i + 1,
                    None if at_end => return Ok(Some((part, rows))),
                    None => return Ok(None),
                }
                first = false;
            }
            // The lines starting before the range's end: up to the newline at or after its last
            // byte, or the end of the file.
            let last = (range.end - 1).saturating_sub(at) as usize;
            if from > last {
                // The first line starting after the range's start starts after its end too.
                return Ok(Some((part, rows)));
            }
            let (upto, done) = match memchr::memchr(b'\n', &text[from.max(last).min(filled)..]) {
                Some(i) if last < filled => (from.max(last) + i + 1, true),
                _ if at_end => (filled, true),
                _ => match memchr::memrchr(b'\n', &text[from..]) {
                    Some(i) => (from + i + 1, false),
                    // A line begun after the first skipped one: carried into the next block.
                    None if from > 0 => (from, false),
                    // A line longer than a block: not a file this reader is for.
                    None => return Ok(None),
                },
            };
            if from < upto {
                let Some(n) = self.read_lines(&text[from..upto], &mut part) else { return Ok(None) };
                rows += n;
            }
            if done {
                return Ok(Some((part, rows)));
            }
            buffer.copy_within(upto..filled, 0);
            kept = filled - upto;
            at += upto as u64;
        }
    }

    /// Reads the rows of `lines` into `part`; how many, or `None` when one is not plain
    /// numbers. The text is checked as UTF-8 once, then cut at separators and newlines found
    /// eight bytes at a time (ASCII, so every cell is whole text).
    fn read_lines(&self, lines: &[u8], part: &mut BinaryPart) -> Option<usize> {
        simdutf8::basic::from_utf8(lines).ok()?;
        let mut cursor = Cursor { field: 0, start: 0, score: 0..0, label: 0..0, rows: 0 };
        let (separators, newlines) = (repeat(self.separator), repeat(b'\n'));
        let (first, last) = (self.score.min(self.label), self.score.max(self.label));
        let mut words = lines.chunks_exact(8);
        for (w, word) in words.by_ref().enumerate() {
            let word = u64::from_le_bytes(word.try_into().expect("eight bytes"));
            let ends = zero_bytes(word ^ newlines);
            let seps = zero_bytes(word ^ separators);
            if ends == 0 {
                // No line ends here: when none of the word's separators starts or ends one of the
                // two columns' cells, they are only counted, all at once.
                let k = seps.count_ones() as usize;
                if cursor.field + k < first || cursor.field > last {
                    cursor.field += k;
                    continue;
                }
            }
            let mut marks = seps | ends;
            while marks != 0 {
                let at = w * 8 + (marks.trailing_zeros() / 8) as usize;
                let newline = ends & marks & marks.wrapping_neg() != 0;
                marks &= marks - 1;
                // A separator between fields neither column starts or ends at is only counted.
                if !newline && (cursor.field + 1 < first || cursor.field > last) {
                    cursor.field += 1;
                    continue;
                }
                cursor.mark(self, lines, at, newline, part)?;
            }
        }
        let tail = lines.len() - words.remainder().len();
        for (at, byte) in words.remainder().iter().enumerate() {
            if *byte == self.separator || *byte == b'\n' {
                cursor.mark(self, lines, tail + at, *byte == b'\n', part)?;
            }
        }
        // A last line without a newline ends at the end of the text.
        if lines.last().is_some_and(|b| *b != b'\n') {
            cursor.mark(self, lines, lines.len(), true, part)?;
        }
        Some(cursor.rows)
    }
}

/// Where [`Layout::read_lines`] is in its lines.
struct Cursor {
    /// The field being read, and where it starts.
    field: usize,
    start: usize,
    /// The current line's score and label cells, once passed.
    score: Range<usize>,
    label: Range<usize>,
    rows: usize,
}

impl Cursor {
    /// A separator (or, when `newline`, a line's end) at byte `at` of `lines`: ends a field,
    /// and with a line's end reads the row; `None` when the line is not plain numbers.
    #[inline]
    fn mark(&mut self, layout: &Layout, lines: &[u8], at: usize, newline: bool, part: &mut BinaryPart) -> Option<()> {
        let mut end = at;
        if newline && end > self.start && lines[end - 1] == b'\r' {
            end -= 1;
        }
        if self.field == layout.score {
            self.score = self.start..end;
        }
        if self.field == layout.label {
            self.label = self.start..end;
        }
        self.field += 1;
        self.start = at + 1;
        if !newline {
            return Some(());
        }
        if self.field != layout.fields {
            return None;
        }
        self.field = 0;
        self.rows += 1;
        let label = match &lines[self.label.clone()] {
            b"0" => Some(false),
            b"1" => Some(true),
            other => match cell_value(other)? {
                None => None,
                Some(0.0) => Some(false),
                Some(1.0) => Some(true),
                Some(_) => return None,
            },
        };
        if let (Some(score), Some(label)) = (cell_value(&lines[self.score.clone()])?, label) {
            part.push(score, label, score >= layout.threshold);
        }
        Some(())
    }
}

/// `byte` in each of a word's eight bytes.
fn repeat(byte: u8) -> u64 {
    u64::from(byte) * 0x0101_0101_0101_0101
}

/// The high bit of each zero byte of `x` set, every other bit clear (exact: no carry crosses
/// a byte, since each byte's low seven bits plus 0x7F stay within it).
fn zero_bytes(x: u64) -> u64 {
    const LOW7: u64 = 0x7F7F_7F7F_7F7F_7F7F;
    !(((x & LOW7) + LOW7) | x | LOW7)
}

/// A cell as a finite number: `Some(None)` when empty, `None` when not a plain number (digits,
/// a point, a sign, an exponent; no `inf`, `nan` or leading `+`) or not finite.
fn cell_value(cell: &[u8]) -> Option<Option<f64>> {
    let Some(&first) = cell.first() else { return Some(None) };
    if !(first.is_ascii_digit() || first == b'-' || first == b'.') {
        return None;
    }
    if let Some(x) = short_decimal(cell) {
        return Some(Some(x));
    }
    let x: f64 = fast_float2::parse(cell).ok()?;
    x.is_finite().then_some(Some(x))
}

/// A short plain decimal (`-`, digits, a point, digits; at most 15 digits, at least one
/// after any point) as the nearest `f64`: its digits as an integer below 2^53 divided by a power
/// of ten that is exact, which IEEE division rounds correctly (Clinger's fast path); `None` for
/// anything else, which the full parser reads.
fn short_decimal(cell: &[u8]) -> Option<f64> {
    const POW10: [f64; 16] = [1e0, 1e1, 1e2, 1e3, 1e4, 1e5, 1e6, 1e7, 1e8, 1e9, 1e10, 1e11, 1e12, 1e13, 1e14, 1e15];
    let (negative, digits) = match cell.split_first()? {
        (b'-', rest) => (true, rest),
        _ => (false, cell),
    };
    if digits.is_empty() || digits.len() > 16 {
        return None;
    }
    let (mut mantissa, mut count, mut fraction, mut point) = (0u64, 0usize, 0usize, false);
    for &b in digits {
        match b {
            b'0'..=b'9' => {
                mantissa = mantissa * 10 + u64::from(b - b'0');
                count += 1;
                fraction += usize::from(point);
            }
            b'.' if !point => point = true,
            _ => return None,
        }
    }
    if count == 0 || count > 15 || (point && fraction == 0) {
        return None;
    }
    let x = mantissa as f64 / POW10[fraction];
    Some(if negative { -x } else { x })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::stats::performance::{assert_same_binary, binary, binary_of_parts, Binary};
    use proptest::prelude::*;

    /// The metrics of a file's rows read into parts (threshold 0.5), and its data rows.
    fn scored(text: &str) -> Option<(Binary, usize)> {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("t.csv");
        std::fs::write(&path, text).unwrap();
        let read = binary_parts(&path, b',', "score", "label", 0.5).unwrap()?;
        Some((binary_of_parts(read.parts, Some(0.5), false).0, read.rows))
    }

    #[test]
    fn plain_files_give_their_rows_and_others_are_left_to_the_general_reader() {
        let (got, rows) = scored("id,score,label\n1,0.25,0\n2,,1\n3,0.75,1.0\r\n4,0.5,\n5,1e-3,1").unwrap();
        assert_eq!(rows, 5);
        assert_same_binary(&got, &binary(&[0.25, 0.75, 0.001], &[false, true, true], 0.5));
        let (empty, rows) = scored("score,label\n").unwrap();
        assert_eq!((empty.rows, rows), (0, 0));
        for not_plain in [
            "score,label\n\"0.5\",1\n",
            "score,label\n0.5,2\n",
            "score,label\n0.5,true\n",
            "score,label\nNaN,1\n",
            "score,label\ninf,1\n",
            "score,label\n+0.5,1\n",
            "score,label\n 0.5,1\n",
            "score,label\n0.5x,1\n",
            "score,label\n0.5,1,9\n",
            "score,label\n0.5\n",
            "score,label\n0.5,1\n\n0.25,0\n",
            "\u{feff}score,label\n0.5,1\n",
            "score,score,label\n0.5,0.5,1\n",
            "scores,label\n0.5,1\n",
        ] {
            assert!(scored(not_plain).is_none(), "{not_plain:?}");
        }
    }

    proptest! {
        /// The short path gives the full parser's value, bit for bit, or leaves the cell to it.
        #[test]
        fn short_decimals_parse_as_the_full_parser_does(
            sign in prop::bool::ANY,
            whole in "[0-9]{0,9}",
            fraction in prop::option::of("[0-9]{0,9}"),
        ) {
            let text = format!("{}{whole}{}", if sign { "-" } else { "" }, fraction.map(|f| format!(".{f}")).unwrap_or_default());
            let full: Option<f64> = fast_float2::parse(text.as_bytes()).ok();
            if let Some(short) = short_decimal(text.as_bytes()) {
                let full = full.expect("the full parser reads what the short path reads");
                prop_assert_eq!(short.to_bits(), full.to_bits(), "{}", text);
            }
            // Plain decimals of up to 15 digits take the short path.
            let digits = text.bytes().filter(u8::is_ascii_digit).count();
            let plain = digits > 0 && digits <= 15 && !text.ends_with('.') && !text.starts_with("-.") && !text.starts_with('.');
            if plain {
                prop_assert!(short_decimal(text.as_bytes()).is_some(), "{}", text);
            }
        }
    }

    #[test]
    fn eight_bytes_at_a_time_find_every_separator_and_newline() {
        for byte in 0..=255u8 {
            for at in 0..8 {
                let mut word = [b'a'; 8];
                word[at] = byte;
                let found = zero_bytes(u64::from_le_bytes(word) ^ repeat(b','));
                let expected = if byte == b',' { 0x80u64 << (8 * at) } else { 0 };
                assert_eq!(found, expected, "byte {byte} at {at}");
            }
        }
        // Every byte a separator, and none.
        assert_eq!(zero_bytes(repeat(b',') ^ repeat(b',')), 0x8080_8080_8080_8080);
        assert_eq!(zero_bytes(repeat(b'\n') ^ repeat(b',')), 0);
    }

    /// The parts of `text` read from a file by `threads` threads, `block` bytes at a time.
    fn read_in_ranges(text: &str, threads: usize, block: usize) -> Option<Parts> {
        let mut file = tempfile::tempfile().unwrap();
        std::io::Write::write_all(&mut file, text.as_bytes()).unwrap();
        binary_parts_of(&file, text.len() as u64, threads, block, b',', "score", "label", 0.5).unwrap()
    }

    #[test]
    fn ranges_smaller_than_a_line_and_more_threads_than_lines() {
        let text = "x,score,label\na,0.25,0\nbb,0.75,1\nccc,0.5,1";
        for threads in 1..12 {
            for block in [16, 17, 24, 64] {
                let read = read_in_ranges(text, threads, block).unwrap();
                assert_eq!(read.rows, 3, "{threads} threads, {block}-byte blocks");
                assert_eq!(read.parts.iter().map(BinaryPart::rows).sum::<usize>(), 3);
            }
        }
        assert!(read_in_ranges(text, 2, 8).is_none(), "a line longer than a block is left to the general reader");
        assert_eq!(read_in_ranges("x,score,label\n", 3, 16).unwrap().rows, 0);
        assert_eq!(read_in_ranges("x,score,label", 3, 16).unwrap().rows, 0);
        assert!(read_in_ranges("x,score,label\na,0.25,0\nb,\"0.5\",1\n", 2, 16).is_none(), "a quote anywhere");
    }

    proptest! {
        /// However the file falls into threads' ranges and blocks, the metrics are those of the
        /// kept rows, each line read once.
        #[test]
        fn ranges_split_only_between_lines(
            rows in prop::collection::vec((prop::option::of(0.0f64..1.0), prop::option::of(prop::bool::ANY), "[a-z0-9]{0,11}"), 0..200),
            threads in 1usize..6,
            block in 64usize..256,
            crlf in prop::bool::ANY,
            last_newline in prop::bool::ANY,
        ) {
            let mut text = String::from("x,score,label\n");
            for (s, l, x) in &rows {
                let s = s.map(|s| s.to_string()).unwrap_or_default();
                let l = l.map(|l| u8::from(l).to_string()).unwrap_or_default();
                text.push_str(&format!("{x},{s},{l}{}\n", if crlf { "\r" } else { "" }));
            }
            if !last_newline {
                text.pop();
            }
            let read = read_in_ranges(&text, threads, block).expect("a plain file");
            prop_assert_eq!(read.rows, rows.len());
            let kept: Vec<(f64, bool)> = rows.iter().filter_map(|(s, l, _)| Some(((*s)?, (*l)?))).collect();
            let (scores, labels): (Vec<f64>, Vec<bool>) = kept.into_iter().unzip();
            assert_same_binary(&binary_of_parts(read.parts, Some(0.5), false).0, &binary(&scores, &labels, 0.5));
        }
    }
}
