//! The dead-letter topic: every refused message produced again, key and bytes as received, with
//! why and where from in headers.

use driftline_store::DeadLetter;
use rdkafka::error::KafkaError;
use rdkafka::message::{Header, OwnedHeaders};
use rdkafka::producer::{FutureProducer, FutureRecord};

use super::KafkaConfig;

/// Header of a forwarded dead letter that says why it was refused.
pub const REASON_HEADER: &str = "driftline-reason";
/// Header of a forwarded dead letter that says where it was read: `kafka:<topic>/<partition>@<offset>`.
/// The same message forwarded twice (after a crash between forwarding and storing) has the same
/// source, so readers of the dead-letter topic can drop repeats by it.
pub const SOURCE_HEADER: &str = "driftline-source";

/// The producer of the dead-letter topic, when one is configured.
pub(crate) fn producer(config: &KafkaConfig) -> Result<Option<FutureProducer>, crate::Error> {
    let Some(topic) = &config.dead_letter_topic else { return Ok(None) };
    config
        .producer_config()
        .create()
        .map(Some)
        .map_err(|e| crate::Error::Kafka(format!("cannot create the producer of dead-letter topic {topic}: {e}")))
}

/// Produces each dead letter to `topic` and waits for every delivery.
pub(crate) async fn forward(producer: &FutureProducer, topic: &str, letters: &[&DeadLetter]) -> Result<(), KafkaError> {
    let mut deliveries = Vec::with_capacity(letters.len());
    for letter in letters {
        let headers = OwnedHeaders::new_with_capacity(2)
            .insert(Header { key: REASON_HEADER, value: Some(letter.reason.as_bytes()) })
            .insert(Header { key: SOURCE_HEADER, value: Some(letter.source.as_bytes()) });
        let mut record = FutureRecord::<[u8], [u8]>::to(topic).payload(&letter.raw).headers(headers);
        if let Some(key) = &letter.key {
            record = record.key(key);
        }
        deliveries.push(producer.send_result(record).map_err(|(e, _)| e)?);
    }
    for delivery in deliveries {
        match delivery.await {
            Ok(Ok(_)) => {}
            Ok(Err((e, _))) => return Err(e),
            Err(_) => return Err(KafkaError::Canceled),
        }
    }
    Ok(())
}
