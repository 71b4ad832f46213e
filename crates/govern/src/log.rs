//! Reading the governance log and checking a new event against it before it is appended.

use driftline_store::{GovernanceEvent, GovernanceStore, NewGovernanceEvent};

use crate::event::{check_name, Kind, Payload};
use crate::inventory::{Inventory, Status};
use crate::template::Template;
use crate::Error;

/// The whole log, in log order, read a page at a time.
pub async fn read_log(store: &dyn GovernanceStore) -> Result<Vec<GovernanceEvent>, Error> {
    const PAGE: u32 = 10_000;
    let mut events: Vec<GovernanceEvent> = Vec::new();
    loop {
        let after = events.last().map_or(0, |e| e.seq);
        let page = store.governance_events(after, PAGE).await?;
        let done = page.len() < PAGE as usize;
        events.extend(page);
        if done {
            return Ok(events);
        }
    }
}

/// Checks a new event before it is appended: its names, its kind and payload, what the
/// inventory says of its subject (a model is registered once, updated only while registered,
/// deleted only when it exists, builds registered for registered models, evaluations of
/// registered builds), and the template (for a registration or a metadata change).
pub fn check_new(event: &NewGovernanceEvent, inventory: &Inventory, template: Option<&Template>) -> Result<(), Error> {
    check_name("subject", &event.subject)?;
    check_name("actor", &event.actor)?;
    check_name("cluster", &event.cluster)?;
    let kind = Kind::parse(&event.kind)?;
    let payload = Payload::parse(kind, &event.payload)?;
    let crn = &event.subject;
    let current = inventory.models.get(crn).filter(|m| m.status != Status::Unregistered);
    let metadata = match &payload {
        Payload::ModelRegistered(p) => Some(&p.metadata),
        Payload::MetadataUpdated(p) => Some(&p.metadata),
        _ => None,
    };
    let conflict = |message: String| Err(Error::Conflict { message });
    let state = match (kind, current) {
        (Kind::ModelRegistered, Some(m)) if m.status != Status::Deleted => conflict(format!(
            "{crn} is registered already (by {} at {} ms); change its metadata with a metadata.updated event",
            m.registered_by.as_deref().unwrap_or("?"),
            m.registered_at_ms.unwrap_or_default()
        )),
        (Kind::MetadataUpdated, None) => conflict(format!("{crn} is not registered; register it first")),
        (Kind::MetadataUpdated, Some(m)) if m.status == Status::Deleted => {
            conflict(format!("{crn} was deleted; register it again first"))
        }
        (Kind::ModelDeleted, None) => conflict(format!("{crn} is not registered; there is nothing to delete")),
        _ => Ok(()),
    };
    state?;
    if let Payload::DeploymentRetired(p) = &payload {
        let known =
            inventory.owners_of(crn).is_some() || p.model.as_ref().is_some_and(|m| inventory.models.contains_key(m));
        if !known {
            return Err(Error::Invalid {
                field: "payload.model".into(),
                message: format!("{crn} is not a deployment this log knows; name the model it belongs to in `model`"),
            });
        }
    }
    if let Payload::DeploymentEvaluated(p) = &payload {
        let registered = inventory
            .models
            .get(&p.model)
            .filter(|m| m.builds.get(&p.build).is_some_and(|b| b.registered_at_ms.is_some()));
        match registered.map(|m| m.status) {
            None => {
                return conflict(format!(
                    "{} is not a registered build of {}; register the build before evaluating it",
                    p.build, p.model
                ))
            }
            Some(Status::Deleted) => return conflict(format!("{} was deleted; its builds are not evaluated", p.model)),
            Some(_) => {}
        }
    }
    if let Payload::BuildRegistered(p) = &payload {
        match inventory.models.get(&p.model).map(|m| m.status) {
            None | Some(Status::Unregistered) => {
                return conflict(format!("{} is not registered; register the model before its builds", p.model))
            }
            Some(Status::Deleted) => return conflict(format!("{} was deleted; it takes no new builds", p.model)),
            Some(_) => {}
        }
        if inventory.models.values().any(|m| m.builds.get(crn).is_some_and(|b| b.registered_at_ms.is_some())) {
            return conflict(format!("build {crn} is registered already; a new build takes a new CRN"));
        }
    }
    if let (Some(template), Some(metadata)) = (template, metadata) {
        let problems = template.check(metadata);
        if !problems.is_empty() {
            return Err(Error::Template { problems });
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::event::{new_event, Ended, MetadataUpdated, ModelRegistered};
    use crate::stored_for_tests as stored;
    use crate::template::parse_metadata;

    #[test]
    fn registrations_and_updates_follow_the_log_and_the_template() {
        let template = Template::parse("required:\n  owner: string\n", "t").unwrap();
        let good = parse_metadata("owner: ana\n", "m").unwrap();
        let register =
            new_event("crn:m", &Payload::ModelRegistered(ModelRegistered { metadata: good.clone() }), "a", "c", 1);
        let update = new_event("crn:m", &Payload::MetadataUpdated(MetadataUpdated { metadata: good }), "a", "c", 2);
        let empty = Inventory::default();
        check_new(&register, &empty, Some(&template)).unwrap();
        let err = check_new(&update, &empty, Some(&template)).unwrap_err().to_string();
        assert_eq!(err, "crn:m is not registered; register it first");
        let bare = new_event(
            "crn:m",
            &Payload::ModelRegistered(ModelRegistered { metadata: Default::default() }),
            "a",
            "c",
            1,
        );
        let err = check_new(&bare, &empty, Some(&template)).unwrap_err().to_string();
        assert!(err.contains("owner: missing"), "{err}");
        check_new(&bare, &empty, None).unwrap();

        let registered = Inventory::build(&stored(vec![register.clone()]), &[], None).unwrap();
        assert!(matches!(check_new(&register, &registered, None), Err(Error::Conflict { .. })));
        check_new(&update, &registered, Some(&template)).unwrap();
        let deleted_event =
            new_event("crn:m", &Payload::ModelDeleted(Ended { model: None, reason: None }), "a", "c", 3);
        let deleted = Inventory::build(&stored(vec![register.clone(), deleted_event.clone()]), &[], None).unwrap();
        check_new(&register, &deleted, None).unwrap();
        assert!(check_new(&update, &deleted, None).unwrap_err().to_string().contains("was deleted"));
        assert!(check_new(&deleted_event, &empty, None).unwrap_err().to_string().contains("nothing to delete"));

        let build = new_event(
            "crn:m/b1",
            &Payload::BuildRegistered(crate::event::BuildRegistered { model: "crn:m".into(), ..Default::default() }),
            "a",
            "c",
            4,
        );
        assert!(check_new(&build, &empty, None)
            .unwrap_err()
            .to_string()
            .contains("register the model before its builds"));
        check_new(&build, &registered, None).unwrap();
        let built = Inventory::build(&stored(vec![register.clone(), build.clone()]), &[], None).unwrap();
        assert!(check_new(&build, &built, None).unwrap_err().to_string().contains("registered already"));

        let evaluated = |build: &str| {
            let payload = Payload::DeploymentEvaluated(crate::event::DeploymentEvaluated {
                model: "crn:m".into(),
                build: build.into(),
                environment: Some("staging".into()),
                metrics: [("roc_auc".to_string(), 0.91)].into(),
                evaluation_rows: Some(5_000),
                attachments: vec![],
            });
            new_event("crn:m/staging", &payload, "a", "c", 5)
        };
        check_new(&evaluated("crn:m/b1"), &built, None).unwrap();
        let err = check_new(&evaluated("crn:m/b2"), &built, None).unwrap_err().to_string();
        assert_eq!(err, "crn:m/b2 is not a registered build of crn:m; register the build before evaluating it");
        let gone = Inventory::build(&stored(vec![register.clone(), build.clone(), deleted_event]), &[], None).unwrap();
        assert!(check_new(&evaluated("crn:m/b1"), &gone, None).unwrap_err().to_string().contains("was deleted"));

        let retired = |model: Option<&str>| {
            let payload = Payload::DeploymentRetired(Ended { model: model.map(str::to_string), reason: None });
            new_event("crn:m/nowhere", &payload, "a", "c", 6)
        };
        let err = check_new(&retired(None), &built, None).unwrap_err().to_string();
        assert_eq!(
            err,
            "payload.model: crn:m/nowhere is not a deployment this log knows; name the model it belongs to in `model`"
        );
        check_new(&retired(Some("crn:m")), &built, None).unwrap();
        // A deployment the log knows is retired without naming its model.
        let staged =
            Inventory::build(&stored(vec![register.clone(), build.clone(), evaluated("crn:m/b1")]), &[], None).unwrap();
        let mut known = retired(None);
        known.subject = "crn:m/staging".into();
        check_new(&known, &staged, None).unwrap();

        let mut odd = register.clone();
        odd.kind = "model.promoted".into();
        assert!(check_new(&odd, &empty, None).unwrap_err().to_string().starts_with("kind: unknown"));
        odd = register;
        odd.subject = " ".into();
        assert_eq!(check_new(&odd, &empty, None).unwrap_err().to_string(), "subject: must not be empty");
    }
}
