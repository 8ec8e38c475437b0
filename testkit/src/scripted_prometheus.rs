//! A scripted stand-in for Prometheus's instant-query API: it answers every
//! query with the memory series the test has set, stamped now, and counts
//! queries. For controller tests and benchmarks that need to steer usage
//! exactly; the real adapter is tested against a real [`crate::PromServer`].

use std::{
    collections::BTreeMap,
    net::Ipv4Addr,
    sync::{Arc, Mutex, PoisonError},
};

use axum::{Json, Router, extract::State, routing::get};
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

/// A matrix with the two series the shortener exports per pod, one sample each.
async fn query(State(scripted): State<ScriptedPrometheus>) -> Json<Value> {
    *lock(&scripted.queries) += 1;
    let now = jiff::Timestamp::now().as_millisecond() as f64 / 1000.0;
    let mut result = Vec::new();
    for ((namespace, pod), (resident, limit)) in lock(&scripted.series).iter() {
        for (name, value) in [
            ("shortener_memory_resident_bytes", resident),
            ("shortener_memory_limit_bytes", limit),
        ] {
            result.push(json!({
                "metric": {"__name__": name, "pod": pod, "namespace": namespace},
                "values": [[now, value.to_string()]]
            }));
        }
    }
    Json(json!({"status": "success", "data": {"resultType": "matrix", "result": result}}))
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
}
