//! A global budget per service: requests in flight and the request bytes they hold.
//! Beyond it a request gets RESOURCE_EXHAUSTED saying what is full and to retry, so a
//! burst cannot take the process past its memory limit (the per-connection limit alone
//! lets many connections in). Health checks are never refused: a busy service is not a
//! dead one.
//!
//! Bytes are counted per gRPC message as its frames arrive: a message holds its bytes
//! until its request ends or, on a stream, until the next message starts (by then the
//! handler has taken it). So a long AnalyzeStream holds one chunk, not all it sent.

use std::{
    pin::Pin,
    sync::{
        Arc,
        atomic::{AtomicBool, AtomicUsize, Ordering},
    },
    task::{Context, Poll},
};

use http_body::{Body as HttpBody, Frame, SizeHint};
use tonic::{Status, body::Body};

const HEALTH: &str = "/grpc.health.v1.Health/";

/// The counters one service shares across all its connections.
#[derive(Debug)]
struct Budget {
    max_requests: usize,
    max_bytes: usize,
    requests: AtomicUsize,
    bytes: AtomicUsize,
}

impl Budget {
    /// Adds `n` to `counter` unless that passes `max`.
    fn try_add(counter: &AtomicUsize, n: usize, max: usize) -> bool {
        counter
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |c| {
                c.checked_add(n).filter(|&total| total <= max)
            })
            .is_ok()
    }

    fn full(&self, what: &str) -> Status {
        Status::resource_exhausted(format!(
            "the server is at its limit of {what} (--max-in-flight {}, --max-in-flight-bytes {}); \
             retry with backoff",
            self.max_requests, self.max_bytes
        ))
    }
}

/// One admitted request: returns its slot and its bytes when the last of the request
/// body, the response body and the handler's future lets go of it.
#[derive(Debug)]
struct Ticket {
    budget: Arc<Budget>,
    held: AtomicUsize,
    /// The request body was cut off for want of bytes.
    refused: AtomicBool,
}

impl Ticket {
    fn hold(&self, add: usize, release: usize) -> Result<(), Status> {
        self.held.fetch_sub(release, Ordering::AcqRel);
        self.budget.bytes.fetch_sub(release, Ordering::AcqRel);
        if !Budget::try_add(&self.budget.bytes, add, self.budget.max_bytes) {
            self.refused.store(true, Ordering::Release);
            return Err(self.refusal());
        }
        self.held.fetch_add(add, Ordering::AcqRel);
        Ok(())
    }

    fn refusal(&self) -> Status {
        self.budget.full("request bytes in flight")
    }

    /// The refusal as gRPC trailers (its message is plain ASCII: no percent-encoding).
    fn refusal_trailers(&self) -> http::HeaderMap {
        let status = self.refusal();
        let mut trailers = http::HeaderMap::new();
        trailers.insert("grpc-status", http::HeaderValue::from(status.code() as i32));
        if let Ok(message) = http::HeaderValue::from_str(status.message()) {
            trailers.insert("grpc-message", message);
        }
        trailers
    }
}

impl Drop for Ticket {
    fn drop(&mut self) {
        let held = *self.held.get_mut();
        self.budget.bytes.fetch_sub(held, Ordering::AcqRel);
        self.budget.requests.fetch_sub(1, Ordering::AcqRel);
    }
}

/// The tower layer `serve` puts in front of every service.
#[derive(Clone, Debug)]
pub struct BudgetLayer {
    budget: Arc<Budget>,
}

impl BudgetLayer {
    pub fn new(max_requests: usize, max_bytes: usize) -> Self {
        Self {
            budget: Arc::new(Budget {
                max_requests,
                max_bytes,
                requests: AtomicUsize::new(0),
                bytes: AtomicUsize::new(0),
            }),
        }
    }
}

impl<S> tower_layer::Layer<S> for BudgetLayer {
    type Service = BudgetService<S>;

    fn layer(&self, inner: S) -> Self::Service {
        BudgetService {
            inner,
            budget: Arc::clone(&self.budget),
        }
    }
}

#[derive(Clone, Debug)]
pub struct BudgetService<S> {
    inner: S,
    budget: Arc<Budget>,
}

type BoxFuture<T> = Pin<Box<dyn Future<Output = T> + Send>>;

impl<S, ResBody> tower_service::Service<http::Request<Body>> for BudgetService<S>
where
    S: tower_service::Service<http::Request<Body>, Response = http::Response<ResBody>>,
    S::Future: Send + 'static,
    ResBody: HttpBody<Data = bytes::Bytes> + Send + 'static,
    ResBody::Error: Into<tonic::codegen::StdError>,
{
    type Response = http::Response<Body>;
    type Error = S::Error;
    type Future = BoxFuture<Result<Self::Response, S::Error>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, req: http::Request<Body>) -> Self::Future {
        if req.uri().path().starts_with(HEALTH) {
            let response = self.inner.call(req);
            return Box::pin(async move { Ok(response.await?.map(Body::new)) });
        }
        let budget = &self.budget;
        if !Budget::try_add(&budget.requests, 1, budget.max_requests) {
            let refused = budget.full("requests in flight").into_http();
            return Box::pin(async move { Ok(refused) });
        }
        let ticket = Arc::new(Ticket {
            budget: Arc::clone(budget),
            held: AtomicUsize::new(0),
            refused: AtomicBool::new(false),
        });
        // Already full of bytes: refuse now rather than after reading the body.
        if budget.bytes.load(Ordering::Acquire) >= budget.max_bytes {
            let refused = budget.full("request bytes in flight").into_http();
            return Box::pin(async move { Ok(refused) });
        }
        let req = req.map(|body| {
            Body::new(Metered {
                inner: body,
                ticket: Arc::clone(&ticket),
                framing: Framing::default(),
            })
        });
        let response = self.inner.call(req);
        Box::pin(async move {
            let response = response.await?;
            Ok(response.map(|body| {
                Body::new(Holding {
                    inner: Body::new(body),
                    ticket,
                })
            }))
        })
    }
}

/// A request body that counts its bytes against the budget and fails with
/// RESOURCE_EXHAUSTED (which tonic passes on as the call's status) beyond it.
struct Metered {
    inner: Body,
    ticket: Arc<Ticket>,
    framing: Framing,
}

impl HttpBody for Metered {
    type Data = bytes::Bytes;
    type Error = Status;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Self::Data>, Self::Error>>> {
        let this = &mut *self;
        let frame = match Pin::new(&mut this.inner).poll_frame(cx) {
            Poll::Ready(Some(Ok(frame))) => frame,
            other => return other,
        };
        if let Some(data) = frame.data_ref() {
            let (add, release) = this.framing.feed(data);
            if let Err(status) = this.ticket.hold(add, release) {
                return Poll::Ready(Some(Err(status)));
            }
        }
        Poll::Ready(Some(Ok(frame)))
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

/// A response body that keeps its request's ticket until it is sent or dropped. If
/// the request was cut off for want of bytes, its status says so even when the
/// handler took the cut-off for the end of a stream and answered OK.
struct Holding {
    inner: Body,
    ticket: Arc<Ticket>,
}

impl HttpBody for Holding {
    type Data = bytes::Bytes;
    type Error = Status;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Self::Data>, Self::Error>>> {
        match Pin::new(&mut self.inner).poll_frame(cx) {
            Poll::Ready(Some(Ok(frame)))
                if frame.is_trailers() && self.ticket.refused.load(Ordering::Acquire) =>
            {
                Poll::Ready(Some(Ok(Frame::trailers(self.ticket.refusal_trailers()))))
            }
            other => other,
        }
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

/// Follows gRPC's length-prefixed messages (1 flag byte, 4 length bytes, the payload)
/// across body frames, to tell when one message ends and the next begins.
#[derive(Debug, Default)]
struct Framing {
    prefix: [u8; 5],
    prefix_seen: usize,
    /// Payload bytes of the current message still to come.
    remaining: usize,
    /// Bytes of the current message seen so far (what the request holds).
    current: usize,
}

impl Framing {
    /// Takes one frame's bytes; returns (bytes to hold, bytes to release): a message
    /// that starts releases the one before it.
    fn feed(&mut self, mut data: &[u8]) -> (usize, usize) {
        let (mut add, mut release) = (0, 0);
        while !data.is_empty() {
            if self.prefix_seen == 5 && self.remaining == 0 {
                release += std::mem::take(&mut self.current);
                self.prefix_seen = 0;
            }
            let n = if self.prefix_seen < 5 {
                let n = (5 - self.prefix_seen).min(data.len());
                self.prefix[self.prefix_seen..self.prefix_seen + n].copy_from_slice(&data[..n]);
                self.prefix_seen += n;
                if self.prefix_seen == 5 {
                    let [_, a, b, c, d] = self.prefix;
                    self.remaining = u32::from_be_bytes([a, b, c, d]) as usize;
                }
                n
            } else {
                let n = self.remaining.min(data.len());
                self.remaining -= n;
                n
            };
            self.current += n;
            add += n;
            data = &data[n..];
        }
        // Net the two: a frame that ends one message and starts the next must not be
        // refused for counting both for a moment.
        let overlap = add.min(release);
        (add - overlap, release - overlap)
    }
}

#[cfg(test)]
mod tests;
