//! Kafka load generator: produces N v1 prediction events to a topic at full speed and prints
//! what it did. Payload size, number of deployments and share of malformed messages are
//! configurable.
//!
//! ```text
//! kafka_load --brokers 127.0.0.1:9092 --topic driftline.events --events 1000000 \
//!            [--payload-bytes 400] [--deployments 10] [--malformed 0.001] [--seed 1]
//! ```
//! The last line of output is machine-readable: `produced=N malformed=M seconds=S`.

use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use rdkafka::config::ClientConfig;
use rdkafka::producer::{BaseProducer, Producer};

struct Options {
    brokers: String,
    topic: String,
    events: u64,
    payload_bytes: usize,
    deployments: u32,
    malformed: f64,
    seed: u64,
}

fn options() -> anyhow::Result<Options> {
    let mut o = Options {
        brokers: "127.0.0.1:9092".into(),
        topic: "driftline.events".into(),
        events: 100_000,
        payload_bytes: 400,
        deployments: 10,
        malformed: 0.0,
        seed: 1,
    };
    let args: Vec<String> = std::env::args().skip(1).collect();
    let mut it = args.iter();
    while let Some(flag) = it.next() {
        let value = it.next().with_context(|| format!("{flag} needs a value"))?;
        match flag.as_str() {
            "--brokers" => o.brokers = value.clone(),
            "--topic" => o.topic = value.clone(),
            "--events" => o.events = value.parse()?,
            "--payload-bytes" => o.payload_bytes = value.parse()?,
            "--deployments" => o.deployments = value.parse::<u32>()?.max(1),
            "--malformed" => o.malformed = value.parse()?,
            "--seed" => o.seed = value.parse()?,
            other => bail!(
                "unknown flag {other}; use --brokers --topic --events --payload-bytes --deployments --malformed --seed"
            ),
        }
    }
    anyhow::ensure!((0.0..=1.0).contains(&o.malformed), "--malformed is a share between 0 and 1");
    Ok(o)
}

/// One prediction event of about `payload_bytes` bytes, or a malformed message.
fn message(rng: &mut StdRng, o: &Options, i: u64, base_ms: i64) -> (String, bool) {
    if rng.random::<f64>() < o.malformed {
        return match i % 3 {
            0 => (format!("{{\"v\":1,\"type\":\"prediction\",\"uuid\":\"broken-{i}\""), true),
            1 => (format!("{{\"v\":1,\"type\":\"prediction\",\"uuid\":\"not-a-uuid-{i}\",\"model_crn\":\"m\",\"model_build_crn\":\"b\",\"model_deployment_crn\":\"d\",\"start_timestamp_ms\":1,\"end_timestamp_ms\":1,\"metrics\":{{}}}}"), true),
            _ => (format!("[{i}]"), true),
        };
    }
    let uuid = uuid::Builder::from_random_bytes(rng.random()).into_uuid();
    let deployment = rng.random_range(0..o.deployments);
    let start = base_ms + (i as i64 % (7 * 86_400_000));
    let mut features = String::new();
    let mut f = 0;
    // Numeric features until the payload reaches the asked size.
    while features.len() + 260 < o.payload_bytes || f == 0 {
        if f > 0 {
            features.push(',');
        }
        features.push_str(&format!("\"f{f}\":{:.4}", rng.random::<f64>() * 100.0));
        f += 1;
    }
    let event = format!(
        r#"{{"v":1,"type":"prediction","uuid":"{uuid}","model_crn":"crn:load:model/m","model_build_crn":"crn:load:build/1","model_deployment_crn":"crn:load:deployment/{deployment}","start_timestamp_ms":{start},"end_timestamp_ms":{},"metrics":{{"input":{{{features}}},"prediction":{:.4}}}}}"#,
        start + 7,
        rng.random::<f64>()
    );
    (event, false)
}

fn main() -> anyhow::Result<()> {
    let o = options()?;
    let producer: BaseProducer = ClientConfig::new()
        .set("bootstrap.servers", &o.brokers)
        .set("linger.ms", "20")
        .set("batch.num.messages", "10000")
        .set("queue.buffering.max.messages", "200000")
        .set("compression.type", "none")
        .set("acks", "all")
        .create()
        .context("creating the producer")?;
    let mut rng = StdRng::seed_from_u64(o.seed);
    let base_ms = 1_700_000_000_000;
    let started = Instant::now();
    let mut malformed = 0u64;
    for i in 0..o.events {
        let (payload, bad) = message(&mut rng, &o, i, base_ms);
        malformed += u64::from(bad);
        driftline_benches::send(&producer, &o.topic, &i.to_string(), &payload)
            .with_context(|| format!("producing message {i}"))?;
    }
    producer.flush(Duration::from_secs(120)).context("flushing the producer")?;
    let seconds = started.elapsed().as_secs_f64();
    println!(
        "{} events ({malformed} malformed) to {} in {seconds:.2} s: {:.0} events/s",
        o.events,
        o.topic,
        o.events as f64 / seconds
    );
    println!("produced={} malformed={malformed} seconds={seconds:.3}", o.events);
    Ok(())
}
