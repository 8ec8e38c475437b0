//! Counts and times every request by route and status.
//!
//! A tower layer of its own rather than axum's `middleware::from_fn`, which clones a boxed
//! service and boxes a future for each request: on the redirect path that cost a sixth of
//! the instructions of a request (callgrind, `docs/service-memory.md`).

use std::{
    pin::Pin,
    sync::Arc,
    task::{Context, Poll},
    time::Instant,
};

use axum::{extract::MatchedPath, http::Request, response::Response};
use pin_project_lite::pin_project;
use tower::{Layer, Service};

use crate::metrics::{Metrics, Route};

/// Wraps each route so that its answers are counted and timed.
#[derive(Clone)]
pub struct Track {
    metrics: Arc<Metrics>,
}

impl Track {
    pub fn new(metrics: Arc<Metrics>) -> Self {
        Track { metrics }
    }
}

impl<S> Layer<S> for Track {
    type Service = Tracked<S>;

    fn layer(&self, inner: S) -> Tracked<S> {
        Tracked {
            inner,
            metrics: self.metrics.clone(),
        }
    }
}

/// A route whose answers are counted and timed.
#[derive(Clone)]
pub struct Tracked<S> {
    inner: S,
    metrics: Arc<Metrics>,
}

impl<S, B> Service<Request<B>> for Tracked<S>
where
    S: Service<Request<B>, Response = Response>,
{
    type Response = Response;
    type Error = S::Error;
    type Future = Timed<S::Future>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), S::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, request: Request<B>) -> Self::Future {
        let route = Route::from_matched(
            request
                .extensions()
                .get::<MatchedPath>()
                .map(MatchedPath::as_str),
            request.method(),
        );
        Timed {
            started: Instant::now(),
            answer: self.inner.call(request),
            route,
            metrics: self.metrics.clone(),
        }
    }
}

pin_project! {
    /// A request's answer in the making, and when it was asked for.
    pub struct Timed<F> {
        #[pin]
        answer: F,
        route: Route,
        started: Instant,
        metrics: Arc<Metrics>,
    }
}

impl<F, E> Future for Timed<F>
where
    F: Future<Output = Result<Response, E>>,
{
    type Output = F::Output;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<F::Output> {
        let this = self.project();
        let answer = std::task::ready!(this.answer.poll(cx));
        if let Ok(response) = &answer {
            this.metrics.observe_request(
                *this.route,
                response.status().as_u16(),
                this.started.elapsed().as_secs_f64(),
            );
        }
        Poll::Ready(answer)
    }
}
