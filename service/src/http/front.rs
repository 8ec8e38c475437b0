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
    Router, extract::Request, http::Method, response::Response, routing::future::RouteFuture,
};
use futures::future::{Either, Ready, ready};
use tower::Service;

use super::links;
use crate::{metrics::Route, state::AppState};

/// The service the server runs: cached redirects first, the router for the rest.
#[derive(Clone)]
pub struct Front {
    state: Arc<AppState>,
    router: Router,
}

impl Front {
    pub(super) fn new(state: Arc<AppState>, router: Router) -> Front {
        Front { state, router }
    }
}

impl Service<Request> for Front {
    type Response = Response;
    type Error = Infallible;
    type Future = Either<Ready<Result<Response, Infallible>>, RouteFuture<Infallible>>;

    fn poll_ready(&mut self, _cx: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        // The router is always ready, and so is an answer from the cache.
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, request: Request) -> Self::Future {
        if request.method() == Method::GET {
            let started = Instant::now();
            if let Some(response) = links::redirect_cached(&self.state, request.uri().path()) {
                self.state.metrics.observe_request(
                    Route::Redirect,
                    response.status().as_u16(),
                    started.elapsed().as_secs_f64(),
                );
                return Either::Left(ready(Ok(response)));
            }
        }
        Either::Right(self.router.call(request))
    }
}
