//! `COPY … FROM STDIN (FORMAT binary)` data: rows written straight into one buffer, each field
//! as its length and its bytes, so nothing is quoted on the way out nor parsed as text on the
//! way in (a `uuid` is its 16 bytes, a `bigint` its 8; only the `jsonb` text is parsed, as it
//! must be).

use driftline_core::Prediction;

/// Runs `statement` (a `COPY … FROM STDIN (FORMAT binary)`) with `data` as its input; returns
/// the rows copied.
pub(super) async fn copy_in(
    tx: &mut sqlx::Transaction<'_, sqlx::Postgres>,
    statement: &str,
    data: &[u8],
) -> sqlx::Result<u64> {
    let mut copy = tx.copy_in_raw(statement).await?;
    copy.send(data).await?;
    copy.finish().await
}

/// The `COPY` binary stream: a header, tuples, a trailer.
pub(super) struct BinaryRows(Vec<u8>);

impl BinaryRows {
    /// The signature, no flags, no header extension.
    pub(super) fn with_capacity(bytes: usize) -> Self {
        let mut out = Vec::with_capacity(bytes + 21);
        out.extend_from_slice(b"PGCOPY\n\xff\r\n\0");
        out.extend_from_slice(&0i32.to_be_bytes());
        out.extend_from_slice(&0i32.to_be_bytes());
        BinaryRows(out)
    }

    /// Starts a tuple of `fields` fields.
    fn tuple(&mut self, fields: i16) -> &mut Self {
        self.0.extend_from_slice(&fields.to_be_bytes());
        self
    }

    fn field(&mut self, bytes: &[u8]) -> &mut Self {
        let len = i32::try_from(bytes.len()).expect("a field of an event within the size limits");
        self.0.extend_from_slice(&len.to_be_bytes());
        self.0.extend_from_slice(bytes);
        self
    }

    fn uuid(&mut self, uuid: &uuid::Uuid) -> &mut Self {
        self.field(uuid.as_bytes())
    }

    fn text(&mut self, text: &str) -> &mut Self {
        self.field(text.as_bytes())
    }

    fn int8(&mut self, value: i64) -> &mut Self {
        self.field(&value.to_be_bytes())
    }

    /// `jsonb`'s binary form: format version 1, then the JSON text.
    fn jsonb(&mut self, json: &str) -> &mut Self {
        let len = i32::try_from(json.len() + 1).expect("a field of an event within the size limits");
        self.0.extend_from_slice(&len.to_be_bytes());
        self.0.push(1);
        self.0.extend_from_slice(json.as_bytes());
        self
    }

    /// One prediction, for `COPY predictions (uuid, model_crn, model_build_crn,
    /// model_deployment_crn, start_timestamp_ms, end_timestamp_ms, metrics, received_at_ms)`.
    pub(super) fn prediction(&mut self, p: &Prediction, received_at_ms: i64) {
        self.tuple(8)
            .uuid(&p.uuid)
            .text(&p.model_crn)
            .text(&p.model_build_crn)
            .text(&p.model_deployment_crn)
            .int8(p.start_timestamp_ms)
            .int8(p.end_timestamp_ms)
            .jsonb(p.metrics.as_str())
            .int8(received_at_ms);
    }

    /// One prediction's claim, for `COPY prediction_ids (uuid, model_deployment_crn,
    /// start_timestamp_ms)`.
    pub(super) fn claim(&mut self, p: &Prediction) {
        self.tuple(3).uuid(&p.uuid).text(&p.model_deployment_crn).int8(p.start_timestamp_ms);
    }

    /// The stream with its trailer.
    pub(super) fn finish(mut self) -> Vec<u8> {
        self.0.extend_from_slice(&(-1i16).to_be_bytes());
        self.0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_claim_is_laid_out_as_postgres_reads_it() {
        let p = Prediction {
            uuid: uuid::Uuid::from_u128(0x0102),
            model_crn: "m".into(),
            model_build_crn: "b".into(),
            model_deployment_crn: "dép".into(),
            start_timestamp_ms: 258,
            end_timestamp_ms: 258,
            metrics: serde_json::Map::new().into(),
        };
        let mut rows = BinaryRows::with_capacity(0);
        rows.claim(&p);
        let out = rows.finish();
        let mut expected = b"PGCOPY\n\xff\r\n\0\0\0\0\0\0\0\0\0".to_vec();
        expected.extend_from_slice(&[0, 3, 0, 0, 0, 16]);
        expected.extend_from_slice(&[0; 14]);
        expected.extend_from_slice(&[1, 2, 0, 0, 0, 4]);
        expected.extend_from_slice("dép".as_bytes());
        expected.extend_from_slice(&[0, 0, 0, 8, 0, 0, 0, 0, 0, 0, 1, 2, 0xff, 0xff]);
        assert_eq!(out, expected);
    }
}
