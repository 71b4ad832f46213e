//! `COPY … FROM STDIN (FORMAT csv)` data: rows serialised straight into one buffer, with no
//! string per row.

use std::io::Write;

use driftline_core::Prediction;

/// Runs `statement` (a `COPY … FROM STDIN`) with `data` as its input; returns the rows copied.
pub(super) async fn copy_in(
    tx: &mut sqlx::Transaction<'_, sqlx::Postgres>,
    statement: &str,
    data: &[u8],
) -> sqlx::Result<u64> {
    let mut copy = tx.copy_in_raw(statement).await?;
    copy.send(data).await?;
    copy.finish().await
}

/// Appends `s` as a quoted CSV field: quotes doubled. Validation has already refused NUL
/// characters, which no text column can hold.
pub(super) fn csv_quoted(out: &mut Vec<u8>, s: &[u8]) {
    out.push(b'"');
    let _ = QuotedField(out).write_all(s);
    out.push(b'"');
}

/// Writes into a CSV buffer as one quoted field's inside, doubling quotes on the way, so JSON is
/// serialised straight into the `COPY` data without an intermediate string.
pub(super) struct QuotedField<'a>(pub(super) &'a mut Vec<u8>);

impl Write for QuotedField<'_> {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        let mut rest = buf;
        while let Some(i) = rest.iter().position(|&b| b == b'"') {
            self.0.extend_from_slice(&rest[..=i]);
            self.0.push(b'"');
            rest = &rest[i + 1..];
        }
        self.0.extend_from_slice(rest);
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// One prediction as a CSV line for `COPY predictions … (FORMAT csv)`.
pub(super) fn prediction_row(out: &mut Vec<u8>, p: &Prediction, received_at_ms: i64) {
    let _ = write!(out, "{},", p.uuid);
    csv_quoted(out, p.model_crn.as_bytes());
    out.push(b',');
    csv_quoted(out, p.model_build_crn.as_bytes());
    out.push(b',');
    csv_quoted(out, p.model_deployment_crn.as_bytes());
    let _ = write!(out, ",{},{},\"", p.start_timestamp_ms, p.end_timestamp_ms);
    let _ = QuotedField(out).write_all(p.metrics.as_str().as_bytes());
    let _ = writeln!(out, "\",{received_at_ms}");
}

/// One prediction's claim as a CSV line for `COPY prediction_ids … (FORMAT csv)`.
pub(super) fn claim_row(out: &mut Vec<u8>, p: &Prediction) {
    let _ = write!(out, "{},", p.uuid);
    csv_quoted(out, p.model_deployment_crn.as_bytes());
    let _ = writeln!(out, ",{}", p.start_timestamp_ms);
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    /// Reads one quoted CSV field back as Postgres does: doubled quotes become one.
    fn unquote(field: &[u8]) -> Option<Vec<u8>> {
        let inner = field.strip_prefix(b"\"")?.strip_suffix(b"\"")?;
        let mut out = Vec::with_capacity(inner.len());
        let mut i = 0;
        while i < inner.len() {
            if inner[i] == b'"' {
                if inner.get(i + 1) != Some(&b'"') {
                    return None;
                }
                i += 1;
            }
            out.push(inner[i]);
            i += 1;
        }
        Some(out)
    }

    proptest! {
        /// Quoting through the writer, in any split of the input, reads back as the input.
        #[test]
        fn quoted_fields_read_back(text in any::<String>(), split in any::<prop::sample::Index>()) {
            let bytes = text.as_bytes();
            let at = split.index(bytes.len() + 1);
            let mut whole = Vec::new();
            csv_quoted(&mut whole, bytes);
            let mut pieces = vec![b'"'];
            QuotedField(&mut pieces).write_all(&bytes[..at]).unwrap();
            QuotedField(&mut pieces).write_all(&bytes[at..]).unwrap();
            pieces.push(b'"');
            prop_assert_eq!(&whole, &pieces);
            prop_assert_eq!(unquote(&whole), Some(bytes.to_vec()));
        }
    }
}
