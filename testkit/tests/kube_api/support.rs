//! A plain HTTP client for the fake, and the objects the tests write.

use std::time::Duration;

use reqwest::{Client, Response, StatusCode, header};
use serde_json::{Value, json};
use testkit::FakeApiServer;

/// Everything here is in-process; a line that takes longer than this is never coming.
const PATIENCE: Duration = Duration::from_secs(5);

pub const POLICIES: &str = "/apis/shortener.dev/v1alpha1/namespaces/prod/memorypolicies";
pub const DEPLOYMENTS: &str = "/apis/apps/v1/namespaces/prod/deployments";
pub const PODS: &str = "/api/v1/namespaces/prod/pods";

pub fn policy(name: &str, threshold: u32) -> Value {
    json!({
        "apiVersion": "shortener.dev/v1alpha1",
        "kind": "MemoryPolicy",
        "metadata": { "name": name, "namespace": "prod", "labels": { "app": "web" } },
        "spec": { "threshold": threshold },
    })
}

pub struct Api {
    pub server: FakeApiServer,
    pub client: Client,
}

impl Api {
    pub async fn start() -> Api {
        let server = FakeApiServer::start()
            .await
            .expect("the fake API server starts");
        Api {
            server,
            client: Client::new(),
        }
    }

    pub fn url(&self, path: &str) -> String {
        format!("{}{path}", self.server.url())
    }

    pub async fn send(
        &self,
        method: &str,
        path: &str,
        content_type: &str,
        body: Option<Value>,
    ) -> (StatusCode, Value) {
        let method = method.parse().unwrap();
        let mut request = self.client.request(method, self.url(path));
        if let Some(body) = body {
            request = request
                .header(header::CONTENT_TYPE, content_type)
                .body(body.to_string());
        }
        let response = request.send().await.unwrap();
        let status = response.status();
        (status, response.json().await.unwrap())
    }

    pub async fn call(&self, method: &str, path: &str, body: Option<Value>) -> (StatusCode, Value) {
        self.send(method, path, "application/json", body).await
    }

    pub async fn watch(&self, path_and_query: &str) -> Lines {
        let response = self
            .client
            .get(self.url(path_and_query))
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), StatusCode::OK);
        Lines {
            response,
            buffer: String::new(),
        }
    }
}

/// The events of a watch response, one JSON object per line.
pub struct Lines {
    response: Response,
    buffer: String,
}

impl Lines {
    /// The next event, or `None` once the server ends the stream.
    pub async fn next(&mut self) -> Option<Value> {
        loop {
            if let Some(end) = self.buffer.find('\n') {
                let line: String = self.buffer.drain(..=end).collect();
                return Some(serde_json::from_str(&line).unwrap());
            }
            let chunk = tokio::time::timeout(PATIENCE, self.response.chunk()).await;
            match chunk.expect("a watch line in time").unwrap() {
                Some(bytes) => self.buffer.push_str(std::str::from_utf8(&bytes).unwrap()),
                None => return None,
            }
        }
    }

    /// The next event that is not a bookmark.
    pub async fn next_change(&mut self) -> Value {
        loop {
            let event = self.next().await.expect("the watch is still open");
            if event["type"] != "BOOKMARK" {
                return event;
            }
        }
    }
}

pub fn deployment(replicas: u32) -> Value {
    json!({
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": { "name": "web", "namespace": "prod" },
        "spec": { "replicas": replicas, "selector": { "matchLabels": { "app": "web" } } },
        "status": { "replicas": replicas },
    })
}

pub fn running_pod(name: &str) -> Value {
    json!({
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": { "name": name, "namespace": "prod", "labels": { "app": "web" } },
        "status": { "phase": "Running" },
    })
}
