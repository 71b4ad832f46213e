//! `docker-compose.yml` cannot be started here (no container engine), so it is checked as far
//! as a parser and the real binary can: its structure, its health checks and dependencies, and
//! that every driftline command and `DRIFTLINE_*` variable in it is one the binary accepts.

use std::collections::BTreeSet;
use std::process::Command;

use serde_yaml::Value;

fn compose() -> Value {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/../../docker-compose.yml");
    serde_yaml::from_str(&std::fs::read_to_string(path).unwrap()).expect("docker-compose.yml is valid YAML")
}

fn help(subcommand: &str) -> String {
    let out = Command::new(env!("CARGO_BIN_EXE_driftline")).args([subcommand, "--help"]).output().unwrap();
    assert!(out.status.success());
    String::from_utf8(out.stdout).unwrap()
}

#[test]
fn compose_file_is_complete_and_consistent() {
    let doc = compose();
    let services = doc["services"].as_mapping().expect("services");
    let names: BTreeSet<&str> = services.keys().map(|k| k.as_str().unwrap()).collect();
    for needed in ["kafka", "postgres", "serve", "ingest"] {
        assert!(names.contains(needed), "service {needed} is missing");
    }
    // Kafka runs in KRaft mode: no ZooKeeper anywhere.
    let kafka_env = &doc["services"]["kafka"]["environment"];
    assert!(kafka_env["KAFKA_PROCESS_ROLES"].as_str().unwrap().contains("controller"));
    assert!(!names.iter().any(|n| n.contains("zookeeper")));

    for (name, service) in services {
        let name = name.as_str().unwrap();
        let long_running = service["restart"].as_str() != Some("no");
        if long_running {
            let test = &service["healthcheck"]["test"];
            assert!(test.is_sequence() && test[0].as_str().is_some(), "{name} has a health check");
        }
        if let Some(deps) = service["depends_on"].as_mapping() {
            for (dep, condition) in deps {
                let dep = dep.as_str().unwrap();
                assert!(names.contains(dep), "{name} depends on unknown service {dep}");
                let condition = condition["condition"].as_str().unwrap();
                assert!(
                    ["service_healthy", "service_started", "service_completed_successfully"].contains(&condition),
                    "{name}: unknown condition {condition}"
                );
                if condition == "service_healthy" {
                    assert!(services.get(dep).unwrap()["healthcheck"].is_mapping(), "{dep} needs a health check");
                }
            }
        }
    }

    // The driftline services run commands and variables the binary knows.
    for (service, subcommand) in [("serve", "serve"), ("ingest", "ingest")] {
        let s = &doc["services"][service];
        let command: Vec<&str> = s["command"].as_sequence().unwrap().iter().map(|v| v.as_str().unwrap()).collect();
        assert_eq!(command[0], subcommand);
        let out = Command::new(env!("CARGO_BIN_EXE_driftline")).args(&command).arg("--help").output().unwrap();
        assert!(out.status.success(), "{service}: `driftline {}` is refused", command.join(" "));
        let help = help(subcommand);
        for (key, _) in s["environment"].as_mapping().unwrap() {
            let key = key.as_str().unwrap();
            if key.starts_with("DRIFTLINE_") && key != "DRIFTLINE_LOG" {
                // `env: NAME=` normally, `env: NAME]` where the value is hidden; a variable read
                // only from the environment (the admin key) is named in its flag's help.
                let known = help.contains(&format!("env: {key}="))
                    || help.contains(&format!("env: {key}]"))
                    || help.contains(&format!("variable {key}"));
                assert!(known, "{service}: `{key}` is not a variable of driftline {subcommand}");
            }
        }
    }
    // The ingest metrics port is the one published and health-checked.
    let ingest = &doc["services"]["ingest"];
    assert!(ingest["command"].as_sequence().unwrap().iter().any(|v| v.as_str() == Some("0.0.0.0:9898")));
    assert!(ingest["healthcheck"]["test"]
        .as_sequence()
        .unwrap()
        .iter()
        .any(|v| v.as_str().unwrap().contains(":9898/")));
}
