//! Scenario 5: PostgreSQL restarted under load. While it is down, creates answer 503 with a
//! clear problem body and a `Retry-After`; once it is back, every pod creates again, and every
//! link that got a 201 resolves on every pod. The operator, seeing memory fine, does nothing.

use std::{
    sync::{Arc, Mutex, PoisonError},
    time::{Duration, Instant},
};

use e2e::{Cluster, Options, eventually, load::psql};
use serde_json::{Value, json};
use tokio_util::sync::CancellationToken;

/// One create and its answer.
#[derive(Clone, Debug)]
struct Answer {
    status: u16,
    url: String,
    code: Option<String>,
    retry_after: Option<String>,
    body: Value,
}

type Answers = Arc<Mutex<Vec<Answer>>>;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_database_restart_under_load_gives_clear_503s_and_loses_no_created_link() {
    let began = Instant::now();
    let cluster = Cluster::start(Options {
        pods: 2,
        own_database: true,
        // Answer 503 soon rather than queue behind a dead server.
        values: vec![("env.SHORTENER_DB_TIMEOUT".into(), "500ms".into())],
        ..Options::default()
    })
    .await;
    cluster.apply_policy("calm", json!({})).await;
    eventually("the policy evaluated", Duration::from_secs(30), || {
        cluster.condition_is("calm", "MetricsAvailable", "True")
    })
    .await;

    // The load: each pod creates links back to back.
    let answers: Answers = Arc::default();
    let stop = CancellationToken::new();
    let mut writers = Vec::new();
    for (pod, url) in cluster.ready_pods() {
        let (http, answers, stop) = (cluster.http.clone(), answers.clone(), stop.clone());
        writers.push(tokio::spawn(create_until(http, pod, url, answers, stop)));
    }
    let created = |answers: &Answers| count(answers, |a| a.status == 201);
    eventually("links created", Duration::from_secs(15), || {
        created(&answers) >= 20
    })
    .await;

    cluster.stop_database().await;
    let stopped = Instant::now();
    let before_outage = answers.lock().unwrap_or_else(PoisonError::into_inner).len();
    // Down for a while, not a blip.
    eventually(
        "503s while PostgreSQL is down",
        Duration::from_secs(15),
        || {
            count(&answers, |a| a.status == 503) >= 10
                && stopped.elapsed() >= Duration::from_secs(3)
        },
    )
    .await;
    cluster.restart_database().await;
    let restarted = answers.lock().unwrap_or_else(PoisonError::into_inner).len();
    let pods: Vec<String> = cluster.ready_pods().into_iter().map(|(p, _)| p).collect();
    eventually("every pod creating again", Duration::from_secs(30), || {
        let answers = answers.lock().unwrap_or_else(PoisonError::into_inner);
        pods.iter().all(|pod| {
            answers[restarted..]
                .iter()
                .any(|a| a.status == 201 && a.url.contains(&format!("/{pod}/")))
        })
    })
    .await;
    stop.cancel();
    for writer in writers {
        writer.await.expect("a writer does not panic");
    }

    let answers = answers
        .lock()
        .unwrap_or_else(PoisonError::into_inner)
        .clone();
    let statuses: Vec<u16> = answers.iter().map(|a| a.status).collect();
    assert!(
        statuses.iter().all(|s| [201, 503].contains(s)),
        "only 201 and 503: {statuses:?}"
    );
    for refused in answers.iter().filter(|a| a.status == 503) {
        assert_eq!(
            refused.body["detail"], "the database is unavailable; retry shortly",
            "{refused:?}"
        );
        assert_eq!(refused.retry_after.as_deref(), Some("1"), "{refused:?}");
    }
    assert!(
        answers[..before_outage]
            .iter()
            .filter(|a| a.status == 201)
            .count()
            >= 20,
        "creates before the outage"
    );

    // Every 201 is durable: in the table, and followed on every pod (the one that did not
    // create it reads it from the database).
    let created: Vec<&Answer> = answers.iter().filter(|a| a.status == 201).collect();
    let stored: usize = psql(&cluster.database_url, "SELECT count(*) FROM links")
        .parse()
        .expect("a count");
    assert_eq!(stored, created.len(), "rows in links");
    for (_, base) in cluster.ready_pods() {
        for answer in &created {
            let code = answer.code.as_deref().expect("a 201 has a code");
            let reply = cluster
                .http
                .get(format!("{base}/{code}"))
                .send()
                .await
                .expect("a redirect");
            assert_eq!(reply.status(), 302, "{code} on {base}");
            assert_eq!(reply.headers()["location"], answer.url.as_str(), "{code}");
        }
    }
    // Memory was never the problem: the operator did nothing.
    assert!(cluster.evicted_pods().is_empty());
    assert!(
        cluster
            .operator_did("patch", "deployments/scale")
            .is_empty()
    );
    assert!(
        cluster.unexpected_exits().is_empty(),
        "{:?}",
        cluster.unexpected_exits()
    );
    eprintln!(
        "scenario 5: {} created, {} refused during the outage; took {:.1} s",
        created.len(),
        statuses.iter().filter(|s| **s == 503).count(),
        began.elapsed().as_secs_f64()
    );
}

/// Creates links through one pod, one after another, until `stop`.
async fn create_until(
    http: reqwest::Client,
    pod: String,
    base: String,
    answers: Answers,
    stop: CancellationToken,
) {
    let mut n = 0;
    while !stop.is_cancelled() {
        n += 1;
        let url = format!("https://example.com/e2e/{pod}/{n}");
        let reply = http
            .post(format!("{base}/api/v1/links"))
            .json(&json!({ "url": url }))
            .send()
            .await;
        let answer = match reply {
            Ok(reply) => {
                let status = reply.status().as_u16();
                let retry_after = reply
                    .headers()
                    .get("retry-after")
                    .and_then(|v| v.to_str().ok())
                    .map(str::to_owned);
                let body: Value = reply.json().await.unwrap_or(Value::Null);
                Answer {
                    status,
                    code: body["code"].as_str().map(str::to_owned),
                    url,
                    retry_after,
                    body,
                }
            }
            Err(error) => Answer {
                status: 0,
                url,
                code: None,
                retry_after: None,
                body: json!({ "error": error.to_string() }),
            },
        };
        answers
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .push(answer);
        // Paced, so the outage is a few dozen refusals rather than thousands.
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

fn count(answers: &Answers, which: impl Fn(&Answer) -> bool) -> usize {
    answers
        .lock()
        .unwrap_or_else(PoisonError::into_inner)
        .iter()
        .filter(|a| which(a))
        .count()
}
