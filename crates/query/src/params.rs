//! Parameters of a read: which predictions, which window, which encoding.

use driftline_core::time::now_ms;
use driftline_store::{Selection, Window};
use serde::Deserialize;

use crate::{Encoding, Error};

/// Query parameters of `GET /api/v1/read_metrics`.
#[derive(Debug, Clone, Default, Deserialize)]
pub struct WindowParams {
    /// Select one deployment.
    pub model_deployment_crn: Option<String>,
    /// Select one model build.
    pub model_build_crn: Option<String>,
    /// Select one model.
    pub model_crn: Option<String>,
    /// Window start, inclusive, ms since the epoch; default 0.
    pub start_timestamp_ms: Option<String>,
    /// Window end, exclusive, ms since the epoch; default now.
    pub end_timestamp_ms: Option<String>,
    /// `json` (default) or `ndjson`.
    pub format: Option<String>,
}

/// A validated read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReadRequest {
    /// Which predictions.
    pub selection: Selection,
    /// Which start times.
    pub window: Window,
    /// How to encode the answer.
    pub encoding: Encoding,
}

impl WindowParams {
    /// Validates the parameters of a read of predictions.
    pub fn into_read(self) -> Result<ReadRequest, Error> {
        let window = self.window()?;
        let encoding = self.encoding()?;
        let chosen: Vec<(&'static str, String)> = [
            ("model_deployment_crn", self.model_deployment_crn),
            ("model_build_crn", self.model_build_crn),
            ("model_crn", self.model_crn),
        ]
        .into_iter()
        .filter_map(|(name, value)| value.filter(|v| !v.is_empty()).map(|v| (name, v)))
        .collect();
        for (name, crn) in &chosen {
            check_crn(name, crn)?;
        }
        let selection = match chosen.as_slice() {
            [("model_deployment_crn", crn)] => Selection::Deployment(crn.clone()),
            [("model_build_crn", crn)] => Selection::Build(crn.clone()),
            [("model_crn", crn)] => Selection::Model(crn.clone()),
            [] => {
                return Err(Error::Param {
                    param: "model_deployment_crn",
                    rule: "is required (or model_build_crn, or model_crn): name what to read".into(),
                })
            }
            _ => {
                return Err(Error::Param {
                    param: chosen[1].0,
                    rule: format!("cannot be combined with {}; select by exactly one CRN", chosen[0].0),
                })
            }
        };
        Ok(ReadRequest { selection, window, encoding })
    }

    /// The encoding asked for: `json` (default) or `ndjson`.
    pub fn encoding(&self) -> Result<Encoding, Error> {
        match self.format.as_deref() {
            None | Some("json") => Ok(Encoding::Json),
            Some("ndjson") => Ok(Encoding::Ndjson),
            Some("arrow") => Ok(Encoding::Arrow),
            Some(other) => Err(Error::Param {
                param: "format",
                rule: format!("`{}` is not a format; use json, ndjson or arrow", other.escape_default()),
            }),
        }
    }

    /// The deployment a read of aggregate metrics names.
    pub fn deployment(&self) -> Result<String, Error> {
        let crn = self
            .model_deployment_crn
            .clone()
            .filter(|c| !c.is_empty())
            .ok_or(Error::Param { param: "model_deployment_crn", rule: "is required; name the deployment".into() })?;
        check_crn("model_deployment_crn", &crn)?;
        Ok(crn)
    }

    /// Validates the time window: start defaults to 0, end to now, end not before start.
    pub fn window(&self) -> Result<Window, Error> {
        let start_ms = millis("start_timestamp_ms", self.start_timestamp_ms.as_deref())?.unwrap_or(0);
        let end_ms = millis("end_timestamp_ms", self.end_timestamp_ms.as_deref())?.unwrap_or_else(now_ms);
        if end_ms < start_ms {
            return Err(Error::Param {
                param: "end_timestamp_ms",
                rule: format!("{end_ms} is before start_timestamp_ms {start_ms}; the end must not be before the start"),
            });
        }
        Ok(Window { start_ms, end_ms })
    }
}

/// A CRN as a parameter: no control characters (`%00` and the like), as events cannot hold them.
fn check_crn(param: &'static str, crn: &str) -> Result<(), Error> {
    if crn.chars().any(char::is_control) {
        return Err(Error::Param {
            param,
            rule: "contains a control character (such as %00), which no CRN has; send the CRN as plain text".into(),
        });
    }
    Ok(())
}

fn millis(param: &'static str, value: Option<&str>) -> Result<Option<i64>, Error> {
    match value.map(str::trim).filter(|v| !v.is_empty()) {
        None => Ok(None),
        Some(v) => v.parse::<i64>().map(Some).map_err(|_| Error::Param {
            param,
            rule: format!("`{v}` is not an integer; send milliseconds since the Unix epoch"),
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn params(pairs: &[(&str, &str)]) -> WindowParams {
        let q: String = pairs.iter().map(|(k, v)| format!("{k}={v}")).collect::<Vec<_>>().join("&");
        serde_json::from_value(serde_json::Value::Object(
            pairs.iter().map(|(k, v)| ((*k).to_owned(), serde_json::Value::String((*v).to_owned()))).collect(),
        ))
        .unwrap_or_else(|e| panic!("{q}: {e}"))
    }

    #[test]
    fn defaults_and_selection() {
        let r = params(&[("model_deployment_crn", "d")]).into_read().unwrap();
        assert_eq!(r.selection, Selection::Deployment("d".into()));
        assert_eq!(r.window.start_ms, 0);
        assert!(r.window.end_ms > 1_700_000_000_000);
        assert_eq!(r.encoding, Encoding::Json);
        let r =
            params(&[("model_crn", "m"), ("start_timestamp_ms", "5"), ("end_timestamp_ms", "9"), ("format", "ndjson")])
                .into_read()
                .unwrap();
        assert_eq!(
            (r.selection, r.window, r.encoding),
            (Selection::Model("m".into()), Window { start_ms: 5, end_ms: 9 }, Encoding::Ndjson)
        );
    }

    #[test]
    fn errors_name_the_parameter() {
        let err = |p: WindowParams| match p.into_read() {
            Err(Error::Param { param, rule }) => (param, rule),
            other => panic!("expected a parameter error, got {other:?}"),
        };
        assert_eq!(err(params(&[])).0, "model_deployment_crn");
        assert_eq!(err(params(&[("model_crn", "m"), ("model_build_crn", "b")])).0, "model_crn");
        assert_eq!(err(params(&[("model_crn", "m"), ("start_timestamp_ms", "yesterday")])).0, "start_timestamp_ms");
        assert_eq!(
            err(params(&[("model_crn", "m"), ("start_timestamp_ms", "9"), ("end_timestamp_ms", "5")])).0,
            "end_timestamp_ms"
        );
        assert!(err(params(&[("model_crn", "m"), ("format", "csv")])).1.contains("json, ndjson or arrow"));
        assert!(err(params(&[("model_crn", "m\u{0}")])).1.contains("control character"));
        assert_eq!(err(params(&[("model_deployment_crn", "d\u{1}")])).0, "model_deployment_crn");
    }
}
