//! `GET /api/v1/series`: one metric of one deployment over time, from rollups and raw rows,
//! read through the SQL layer's providers.

use axum::extract::rejection::QueryRejection;
use axum::extract::{Query, State};
use axum::Json;
use driftline_rollup::{Series, SeriesQuery, Source};
use driftline_store::{Resolution, Window};
use serde::Deserialize;

use super::AppState;
use crate::auth::{Auth, Read};
use crate::problem::Problem;

/// The query string.
#[derive(Debug, Deserialize)]
pub(crate) struct SeriesParams {
    model_deployment_crn: Option<String>,
    metric: Option<String>,
    start_timestamp_ms: Option<i64>,
    end_timestamp_ms: Option<i64>,
    step: Option<String>,
    quantiles: Option<String>,
    include: Option<String>,
    source: Option<String>,
}

impl SeriesParams {
    fn query(self) -> Result<SeriesQuery, Problem> {
        let deployment = self.model_deployment_crn.filter(|c| !c.is_empty()).ok_or_else(|| {
            Problem::bad_request("model_deployment_crn is required: the deployment whose series to read")
        })?;
        let path = self.metric.filter(|m| !m.is_empty()).ok_or_else(|| {
            Problem::bad_request("metric is required: a dotted path such as input.tenure or @latency_ms")
        })?;
        let step: Resolution = self
            .step
            .as_deref()
            .unwrap_or("1h")
            .parse()
            .map_err(|e: String| Problem::bad_request(format!("step: {e}")))?;
        let source: Source = self
            .source
            .as_deref()
            .unwrap_or("auto")
            .parse()
            .map_err(|e: String| Problem::bad_request(format!("source: {e}")))?;
        let quantiles = match self.quantiles.as_deref() {
            None | Some("") => Vec::new(),
            Some(list) => list
                .split(',')
                .map(|q| {
                    q.trim().parse::<f64>().ok().filter(|q| (0.0..=1.0).contains(q)).ok_or_else(|| {
                        Problem::bad_request(format!(
                            "quantiles: `{q}` is not a rank in [0, 1]; write e.g. 0.5,0.9,0.99"
                        ))
                    })
                })
                .collect::<Result<_, _>>()?,
        };
        if quantiles.len() > 100 {
            return Err(Problem::bad_request("quantiles: ask for at most 100 ranks"));
        }
        let include_sketch = match self.include.as_deref() {
            None | Some("") => false,
            Some("sketch") => true,
            Some(other) => {
                return Err(Problem::bad_request(format!("include: `{other}` is unknown; the one option is sketch")))
            }
        };
        let end = self.end_timestamp_ms.unwrap_or_else(driftline_core::time::now_ms);
        // Without a start: a day of minutes, 30 days of hours, a year of days.
        let start = self.start_timestamp_ms.unwrap_or_else(|| end - default_span(step));
        if end <= start {
            return Err(Problem::bad_request(format!(
                "end_timestamp_ms ({end}) must be after start_timestamp_ms ({start})"
            )));
        }
        Ok(SeriesQuery {
            deployment,
            path,
            window: Window { start_ms: start, end_ms: end },
            step,
            source,
            quantiles,
            include_sketch,
        })
    }
}

/// How far back a series reaches when no start is given.
pub(crate) fn default_span(step: Resolution) -> i64 {
    match step {
        Resolution::Minute => Resolution::Day.ms(),
        Resolution::Hour => 30 * Resolution::Day.ms(),
        Resolution::Day => 365 * Resolution::Day.ms(),
    }
}

pub(crate) async fn get_series(
    State(state): State<AppState>,
    Auth(principal, ..): Auth<Read>,
    params: Result<Query<SeriesParams>, QueryRejection>,
) -> Result<Json<Series>, Problem> {
    let Query(params) = params.map_err(|e| Problem::bad_request(e.body_text()))?;
    let query = params.query()?;
    principal.check_deployment(&query.deployment)?;
    let scope = principal.deployment.clone();
    Ok(Json(driftline_query::series::series(state.store.clone(), scope, &query, state.rollup).await?))
}
