//! The front door: a redirect to a cached link is answered here, before the router.
//!
//! Following a link is nearly all of the traffic, and axum's router (matching the path,
//! recording the matched route, boxing the request through its layers) cost more than
//! the redirect itself: a bare axum handler reached 0.90x nginx's rate on this machine
//! where a bare service reached 1.05x (`docs/service-memory.md`). Everything else,
//! cache misses included, goes through the router unchanged.

use std::{
    convert::Infallible,
    sync::Arc,
    task::{Context, Poll},
    time::Instant,
};

use axum::{
    Router,
    http::{Method, Request, StatusCode},
    response::Response,
    routing::future::RouteFuture,
};
use futures::future::{Either, Ready, ready};
use hyper::body::Incoming;
use tower::Service;

use super::links;
use crate::{cache::CachedLink, metrics::Route, state::AppState};

/// The service the server runs: cached redirects first, the router for the rest.
///
/// It is a `tower` service (for tests and anything that composes services) and a `hyper`
/// one, which the server runs on each connection without an adapter between them: the
/// adapter cloned the whole service for every request.
#[derive(Clone)]
pub struct Front {
    state: Arc<AppState>,
    router: Router,
}

/// A cached redirect at once, or the router's answer in the making.
pub type Answer = Either<Ready<Result<Response, Infallible>>, RouteFuture<Infallible>>;

impl Front {
    pub(super) fn new(state: Arc<AppState>, router: Router) -> Front {
        Front { state, router }
    }

    /// The redirect to a cached link, counted and timed, when `request` asks for one.
    fn cached<B>(&self, request: &Request<B>) -> Option<Answer> {
        if request.method() != Method::GET {
            return None;
        }
        let response = self.follow_cached(request.uri().path(), links::redirect_to)?;
        Some(Either::Left(ready(Ok(response))))
    }

    /// Follows the cached link a `GET` of `path` names, when the cache holds it and it has
    /// not expired: `respond` makes the answer from the link and the redirect status, and the
    /// request is counted and timed as a redirect. The one definition of a cached redirect,
    /// for the answers made here and for those written straight to the socket
    /// (`connections::cached`).
    pub(crate) fn follow_cached<R>(
        &self,
        path: &str,
        respond: impl FnOnce(&CachedLink, StatusCode) -> R,
    ) -> Option<R> {
        let started = Instant::now();
        let link = links::follow_cached(&self.state, path)?;
        let status = self.state.settings.redirect_status;
        let answer = respond(&link, status);
        self.state.metrics.observe_request(
            Route::Redirect,
            status.as_u16(),
            started.elapsed().as_secs_f64(),
        );
        Some(answer)
    }
}

impl<B> Service<Request<B>> for Front
where
    Router: Service<
            Request<B>,
            Response = Response,
            Error = Infallible,
            Future = RouteFuture<Infallible>,
        >,
{
    type Response = Response;
    type Error = Infallible;
    type Future = Answer;

    fn poll_ready(&mut self, _cx: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        // The router is always ready, and so is an answer from the cache.
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, request: Request<B>) -> Answer {
        self.cached(&request)
            .unwrap_or_else(|| Either::Right(self.router.call(request)))
    }
}

impl hyper::service::Service<Request<Incoming>> for Front {
    type Response = Response;
    type Error = Infallible;
    type Future = Answer;

    fn call(&self, request: Request<Incoming>) -> Answer {
        // A router is an `Arc`: cloning it is one atomic add, on the path that misses.
        self.cached(&request)
            .unwrap_or_else(|| Either::Right(self.router.clone().call(request)))
    }
}
