//! The HTTP/JSON door beside gRPC: every unary method of `EmpathyService` as
//! `POST /v1/<kebab-case name>` with the proto3 JSON mapping (`Info` also as `GET`),
//! `GET /health`, `GET /openapi.json`, and the page at `GET /`.
//!
//! Routes and the OpenAPI document are both read off the service's descriptor, so
//! they cannot drift from the proto. Each call goes through fusion's own gRPC stack
//! in process (the same key check, budget, limits and handlers); a gRPC status comes
//! back as the matching HTTP status with a JSON body that carries its message.

mod errors;
mod openapi;
mod page;

use std::sync::Arc;

use axum::{
    Router,
    body::Body,
    extract::State,
    http::{HeaderMap, StatusCode, header},
    response::{IntoResponse, Response},
    routing::{MethodRouter, get, post},
};
use empathy_common::in_process::InProcess;
use empathy_grpc::v1::empathy_service_client::EmpathyServiceClient;
use empathy_proto::v1 as pb;
use futures::StreamExt;
use serde::{Serialize, de::DeserializeOwned};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tonic::Status;

use errors::{error_response, status_response};

type Client = EmpathyServiceClient<InProcess>;

/// Request headers passed on as gRPC metadata: the API key, and the tenant header
/// that a server without keys reads.
const FORWARDED: [&str; 3] = ["authorization", "x-api-key", empathy_proto::TENANT_HEADER];

#[derive(Clone)]
struct Door {
    channel: InProcess,
    max_message_bytes: usize,
    /// Bytes of request bodies being held, all HTTP requests together (the gRPC
    /// side's --max-in-flight-bytes counts only the messages made from them).
    body_bytes: Arc<Semaphore>,
    openapi: Arc<String>,
}

/// The router, for `empathy_common::serve_with_http`.
pub fn router(
    channel: InProcess,
    max_message_bytes: usize,
    max_in_flight_bytes: usize,
) -> anyhow::Result<Router> {
    let service = openapi::service()?;
    let document = openapi::document(&service)?;
    let mut router = Router::new()
        .route("/", get(page::page))
        .route("/health", get(health))
        .route("/openapi.json", get(openapi_json));
    for method in openapi::unary_methods(&service) {
        let name = method.name();
        let handler = handler(name)
            .ok_or_else(|| anyhow::anyhow!("the HTTP door has no handler for {name}"))?;
        router = router.route(&openapi::path(name), handler);
    }
    let router = router
        .fallback(|| async {
            error_response(
                StatusCode::NOT_FOUND,
                "NOT_FOUND",
                "no such route: the API is under /v1 (GET /openapi.json lists it)",
            )
        })
        .method_not_allowed_fallback(|| async {
            error_response(
                StatusCode::METHOD_NOT_ALLOWED,
                "UNIMPLEMENTED",
                "wrong HTTP method: the /v1 methods take POST with a JSON body (Info also GET)",
            )
        });
    Ok(router.with_state(Door {
        channel,
        max_message_bytes,
        body_bytes: Arc::new(Semaphore::new(
            max_in_flight_bytes.min(Semaphore::MAX_PERMITS),
        )),
        openapi: Arc::new(serde_json::to_string_pretty(&document)?),
    }))
}

macro_rules! unary {
    ($method:ident, $request:ty) => {
        |State(door): State<Door>, headers: HeaderMap, body: Body| async move {
            door.call(
                headers,
                body,
                |mut client, request: tonic::Request<$request>| async move {
                    client.$method(request).await
                },
            )
            .await
        }
    };
}

/// The handler of a unary method, by its proto name.
fn handler(rpc: &str) -> Option<MethodRouter<Door>> {
    Some(match rpc {
        "Analyze" => post(unary!(analyze, pb::AnalyzeRequest)),
        "Feedback" => post(unary!(feedback, pb::FeedbackRequest)),
        "Info" => get(unary!(info, pb::InfoRequest)).post(unary!(info, pb::InfoRequest)),
        "ForgetAnalyses" => post(unary!(forget_analyses, pb::ForgetAnalysesRequest)),
        "SuggestLabels" => post(unary!(suggest_labels, pb::SuggestLabelsRequest)),
        "SuggestReplies" => post(unary!(suggest_replies, pb::SuggestRepliesRequest)),
        "SetReplies" => post(unary!(set_replies, pb::SetRepliesRequest)),
        "SubjectTrajectory" => post(unary!(subject_trajectory, pb::SubjectTrajectoryRequest)),
        _ => return None,
    })
}

impl Door {
    fn client(&self) -> Client {
        EmpathyServiceClient::new(self.channel.clone())
            .max_decoding_message_size(usize::MAX)
            .max_encoding_message_size(usize::MAX)
    }

    /// Reads a JSON request, makes the gRPC call, writes its answer or status as JSON.
    async fn call<Req, Resp, F, Fut>(self, headers: HeaderMap, body: Body, rpc: F) -> Response
    where
        Req: DeserializeOwned + Default,
        Resp: Serialize,
        F: FnOnce(Client, tonic::Request<Req>) -> Fut,
        Fut: Future<Output = Result<tonic::Response<Resp>, Status>>,
    {
        // Media travel as base64 in JSON: a third larger than the gRPC message limit.
        let limit = self.max_message_bytes.saturating_mul(4) / 3 + 64 * 1024;
        let (bytes, _held) = match read_body(body, limit, &self.body_bytes).await {
            Ok(read) => read,
            Err(response) => return response,
        };
        let message = if bytes.iter().all(u8::is_ascii_whitespace) {
            Req::default()
        } else {
            match serde_json::from_slice::<Req>(&bytes) {
                Ok(message) => message,
                Err(err) => {
                    return error_response(
                        StatusCode::BAD_REQUEST,
                        "INVALID_ARGUMENT",
                        &format!(
                            "the body is not this method's request in JSON ({err}); \
                             GET /openapi.json describes every request"
                        ),
                    );
                }
            }
        };
        let mut request = tonic::Request::new(message);
        for name in FORWARDED {
            for value in headers.get_all(name) {
                if let Ok(value) = tonic::metadata::MetadataValue::try_from(value.as_bytes()) {
                    request.metadata_mut().append(name, value);
                }
            }
        }
        match rpc(self.client(), request).await {
            Ok(answer) => json(StatusCode::OK, answer.get_ref()),
            Err(status) => status_response(&status),
        }
    }
}

/// The body, if it is at most `limit` bytes, with the permits for its bytes from
/// `budget` (refused with 429 when the bodies in flight hold it all). A larger body is
/// still read to its end (up to four times the limit) before the 413, so that a client
/// that sends all of its body before reading gets the answer rather than a reset.
async fn read_body(
    body: Body,
    limit: usize,
    budget: &Arc<Semaphore>,
) -> Result<(bytes::Bytes, Vec<OwnedSemaphorePermit>), Response> {
    let mut frames = body.into_data_stream();
    let mut kept = Vec::new();
    let mut held = Vec::new();
    let mut total = 0usize;
    let mut over_budget = false;
    while let Some(frame) = frames.next().await {
        let Ok(frame) = frame else {
            return Err(error_response(
                StatusCode::BAD_REQUEST,
                "INVALID_ARGUMENT",
                "the request body could not be read to its end",
            ));
        };
        total = total.saturating_add(frame.len());
        if total <= limit && !over_budget {
            let n = u32::try_from(frame.len()).unwrap_or(u32::MAX);
            match Arc::clone(budget).try_acquire_many_owned(n) {
                Ok(permit) => {
                    held.push(permit);
                    kept.extend_from_slice(&frame);
                }
                // Over the budget: let go of what is held, but read on (discarding),
                // so that a client still writing its body gets the 429, not a reset.
                Err(_) => {
                    over_budget = true;
                    (kept, held) = (Vec::new(), Vec::new());
                }
            }
        } else if total > limit.saturating_mul(4) {
            break;
        }
    }
    if over_budget {
        return Err(error_response(
            StatusCode::TOO_MANY_REQUESTS,
            "RESOURCE_EXHAUSTED",
            "the server is at its limit of request bytes in flight \
             (--max-in-flight-bytes); retry with backoff",
        ));
    }
    if total > limit {
        return Err(error_response(
            StatusCode::PAYLOAD_TOO_LARGE,
            "RESOURCE_EXHAUSTED",
            &format!("the request body is over {limit} bytes (the gRPC limit, in base64)"),
        ));
    }
    Ok((kept.into(), held))
}

fn json(status: StatusCode, body: &impl Serialize) -> Response {
    match serde_json::to_vec(body) {
        Ok(bytes) => (status, [(header::CONTENT_TYPE, "application/json")], bytes).into_response(),
        Err(err) => status_response(&empathy_common::status::internal("writing JSON", err)),
    }
}

/// `GET /health`: the gRPC health of EmpathyService, asked through the same stack.
async fn health(State(door): State<Door>) -> Response {
    let mut client = tonic_health::pb::health_client::HealthClient::new(door.channel);
    let request = tonic_health::pb::HealthCheckRequest {
        service: "empathy.v1.EmpathyService".into(),
    };
    match client.check(request).await {
        Ok(answer) if answer.get_ref().status == 1 => {
            json(StatusCode::OK, &serde_json::json!({"status": "SERVING"}))
        }
        Ok(_) => json(
            StatusCode::SERVICE_UNAVAILABLE,
            &serde_json::json!({"status": "NOT_SERVING"}),
        ),
        Err(status) => status_response(&status),
    }
}

async fn openapi_json(State(door): State<Door>) -> Response {
    (
        [(header::CONTENT_TYPE, "application/json")],
        door.openapi.as_str().to_owned(),
    )
        .into_response()
}
