//! A scripted stand-in for Prometheus's instant-query API: it answers a query
//! with the memory series the test has set, stamped now, and counts queries. A
//! query that is one selector gets only the series its label matchers select, as
//! from a real Prometheus (so a benchmark pays for what the operator asks, not
//! for every series set); any other expression gets every series. For
//! controller tests and benchmarks that need to steer usage exactly; the real
//! adapter is tested against a real [`crate::PromServer`].

use std::{
    collections::BTreeMap,
    net::Ipv4Addr,
    sync::{Arc, Mutex, PoisonError},
};

use axum::{Form, Json, Router, extract::State, http::StatusCode, routing::get};
use promql_parser::{
    label::Matchers,
    parser::{self, Expr},
};
use serde::Deserialize;
use serde_json::{Value, json};

use crate::{Error, Result};

/// Resident and limit bytes per (namespace, pod).
type Series = BTreeMap<(String, String), (f64, f64)>;

/// A running scripted Prometheus; clones share it.
#[derive(Clone, Debug, Default)]
pub struct ScriptedPrometheus {
    series: Arc<Mutex<Series>>,
    queries: Arc<Mutex<u64>>,
    url: String,
}

impl ScriptedPrometheus {
    /// Serves `/api/v1/query` on a free loopback port in the current tokio runtime.
    pub async fn start() -> Result<ScriptedPrometheus> {
        let listener = tokio::net::TcpListener::bind((Ipv4Addr::LOCALHOST, 0))
            .await
            .map_err(Error::Port)?;
        let address = listener.local_addr().map_err(Error::Port)?;
        let scripted = ScriptedPrometheus {
            url: format!("http://{address}"),
            ..ScriptedPrometheus::default()
        };
        let app = Router::new()
            .route("/api/v1/query", get(query).post(query))
            .with_state(scripted.clone());
        tokio::spawn(axum::serve(listener, app).into_future());
        Ok(scripted)
    }

    /// The base URL, such as `http://127.0.0.1:9090`.
    pub fn url(&self) -> String {
        self.url.clone()
    }

    /// From now on, `pod` in `namespace` reports `resident` of `limit` bytes.
    pub fn set(&self, namespace: &str, pod: &str, resident: f64, limit: f64) {
        lock(&self.series).insert((namespace.to_owned(), pod.to_owned()), (resident, limit));
    }

    /// From now on, no pod reports anything.
    pub fn clear(&self) {
        lock(&self.series).clear();
    }

    /// Queries answered so far.
    pub fn queries(&self) -> u64 {
        *lock(&self.queries)
    }
}

/// The form of `/api/v1/query`, in the URL (GET, which axum's `Form` reads) or the body (POST).
#[derive(Deserialize)]
struct QueryForm {
    query: String,
}

/// A matrix with the two series the shortener exports per pod that the query selects, one
/// sample each; `bad_data` for a query that does not parse.
async fn query(
    State(scripted): State<ScriptedPrometheus>,
    Form(form): Form<QueryForm>,
) -> (StatusCode, Json<Value>) {
    *lock(&scripted.queries) += 1;
    let matchers = match parser::parse(&form.query) {
        Ok(Expr::VectorSelector(selector)) => Some(selector.matchers),
        Ok(Expr::MatrixSelector(matrix)) => Some(matrix.vs.matchers),
        Ok(_) => None,
        Err(error) => {
            let body = json!({"status": "error", "errorType": "bad_data", "error": error});
            return (StatusCode::BAD_REQUEST, Json(body));
        }
    };
    let now = jiff::Timestamp::now().as_millisecond() as f64 / 1000.0;
    let mut result = Vec::new();
    for ((namespace, pod), (resident, limit)) in lock(&scripted.series).iter() {
        for (name, value) in [
            ("shortener_memory_resident_bytes", resident),
            ("shortener_memory_limit_bytes", limit),
        ] {
            let labels = [("__name__", name), ("namespace", namespace), ("pod", pod)];
            if matchers.as_ref().is_some_and(|m| !selects(m, &labels)) {
                continue;
            }
            result.push(json!({
                "metric": {"__name__": name, "pod": pod, "namespace": namespace},
                "values": [[now, value.to_string()]]
            }));
        }
    }
    let body = json!({"status": "success", "data": {"resultType": "matrix", "result": result}});
    (StatusCode::OK, Json(body))
}

/// Whether a series with `labels` (any other label being empty) satisfies every matcher, or
/// every matcher of one of the `or` groups.
fn selects(matchers: &Matchers, labels: &[(&str, &str)]) -> bool {
    let value = |name: &str| {
        labels
            .iter()
            .find(|(label, _)| *label == name)
            .map_or("", |(_, value)| value)
    };
    let all =
        |group: &[promql_parser::label::Matcher]| group.iter().all(|m| m.is_match(value(&m.name)));
    all(&matchers.matchers)
        && (matchers.or_matchers.is_empty() || matchers.or_matchers.iter().any(|g| all(g)))
}

fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(PoisonError::into_inner)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn answers_with_the_series_set_and_counts_queries() {
        let scripted = ScriptedPrometheus::start().await.unwrap();
        scripted.set("shop", "web-a", 32.0, 64.0);
        let body: Value = reqwest::get(format!("{}/api/v1/query?query=x", scripted.url()))
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        assert_eq!(body["data"]["result"].as_array().unwrap().len(), 2);
        assert_eq!(body["data"]["result"][0]["metric"]["pod"], "web-a");
        assert_eq!(scripted.queries(), 1);
    }

    #[tokio::test]
    async fn a_selector_gets_only_the_series_its_matchers_select() {
        let scripted = ScriptedPrometheus::start().await.unwrap();
        for (namespace, pod) in [("shop", "web-a"), ("shop", "web-b"), ("other", "web-a")] {
            scripted.set(namespace, pod, 32.0, 64.0);
        }
        let client = reqwest::Client::new();
        let ask = |query: &str| {
            client
                .post(format!("{}/api/v1/query", scripted.url()))
                .form(&[("query", query)])
                .send()
        };
        let answer: Value = ask(r#"{__name__=~"shortener_memory_resident_bytes",namespace="shop",pod=~"web-b|web-c"}[45s]"#)
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        let series = answer["data"]["result"].as_array().unwrap();
        assert_eq!(series.len(), 1, "{answer}");
        assert_eq!(series[0]["metric"]["pod"], "web-b");
        assert_eq!(series[0]["metric"]["namespace"], "shop");

        let refused = ask("{namespace=").await.unwrap();
        assert_eq!(refused.status(), reqwest::StatusCode::BAD_REQUEST);
        let refused: Value = refused.json().await.unwrap();
        assert_eq!(refused["errorType"], "bad_data");
    }
}
