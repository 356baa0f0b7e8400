//! A channel into a server's own gRPC stack without a socket: the HTTP door (and
//! anything else in the process) makes the very calls a gRPC client makes, through
//! the same API-key check, in-flight budget, size limits and handlers.

use std::convert::Infallible;

use tonic::{body::Body, service::Routes};
use tower::ServiceBuilder;

use crate::{auth::AuthLayer, budget::BudgetLayer};

/// What a tonic client is built on: `EmpathyServiceClient::new(channel.clone())`.
pub type InProcess =
    tower::util::BoxCloneSyncService<http::Request<Body>, http::Response<Body>, Infallible>;

/// `routes` behind `auth` then `budget`, in the order the gRPC server stacks them.
pub fn channel(routes: Routes, auth: AuthLayer, budget: BudgetLayer) -> InProcess {
    InProcess::new(
        ServiceBuilder::new()
            .layer(auth)
            .layer(budget)
            .service(routes),
    )
}
