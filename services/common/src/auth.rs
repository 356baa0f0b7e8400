//! API keys at the door: a tower layer that looks up what each gRPC method needs (open,
//! a role, or one of our own services over mTLS), checks the caller's key through a
//! [`KeyLookup`] (cached), limits a method's calls per key, and puts the caller's
//! [`Identity`] in the request's extensions for the handlers.

use std::{
    collections::HashMap,
    future::Future,
    pin::Pin,
    sync::{Arc, Mutex},
    task::{Context, Poll},
    time::{Duration, Instant},
};

use empathy_proto::v1::{ApiKey, Role};
use sha2::{Digest, Sha256};
use tonic::Status;

use crate::identity::{DEFAULT_TENANT, Identity, role_name};

/// What a method needs.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Door {
    /// Anyone (health checks).
    Open,
    /// A key with this role or a higher one.
    Role(Role),
    /// Only our own services, by their mTLS client certificate.
    Internal,
}

/// Methods by full path (`/pkg.Service/Method`) or by service prefix (`/pkg.Service/`);
/// a method no rule names needs an admin key (fail closed).
#[derive(Clone, Debug, Default)]
pub struct Policy {
    rules: Vec<(&'static str, Door)>,
    rate_limited: Vec<&'static str>,
}

impl Policy {
    /// Health checks are open in every policy: probes carry no keys.
    pub fn new() -> Policy {
        Policy::default().allow("/grpc.health.v1.Health/", Door::Open)
    }

    pub fn allow(mut self, path: &'static str, door: Door) -> Policy {
        self.rules.push((path, door));
        self
    }

    /// Calls to `path` count against each key's per-minute budget.
    pub fn rate_limit(mut self, path: &'static str) -> Policy {
        self.rate_limited.push(path);
        self
    }

    pub fn door(&self, path: &str) -> Door {
        self.rules
            .iter()
            .find(|(rule, _)| *rule == path || (rule.ends_with('/') && path.starts_with(rule)))
            .map_or(Door::Role(Role::Admin), |(_, door)| *door)
    }
}

/// Where keys are kept: the trainer's store, or (in fusion) the trainer over mTLS.
#[tonic::async_trait]
pub trait KeyLookup: Send + Sync + 'static {
    /// The key whose SHA-256 (lower-case hex) this is, revoked ones included.
    async fn lookup(&self, key_sha256: &str) -> Result<Option<ApiKey>, Status>;
}

/// A new random key and its id. Keys look like `emp_<key id: 16 hex>_<secret: 64 hex>`:
/// the id can be logged and listed, the whole key is shown once.
pub fn new_key() -> (String, String) {
    use rand::RngCore;
    let mut bytes = [0u8; 40];
    rand::rng().fill_bytes(&mut bytes);
    let (id, secret) = (hex::encode(&bytes[..8]), hex::encode(&bytes[8..]));
    (format!("emp_{id}_{secret}"), id)
}

/// The id of a key shaped like [`new_key`]'s.
pub fn key_id(key: &str) -> Option<&str> {
    let mut parts = key.strip_prefix("emp_")?.split('_');
    let (id, secret) = (parts.next()?, parts.next()?);
    (!id.is_empty() && !secret.is_empty() && parts.next().is_none()).then_some(id)
}

/// The SHA-256 of a whole key, as stored and looked up.
pub fn key_sha256(key: &str) -> String {
    hex::encode(Sha256::digest(key.as_bytes()))
}

/// How long a looked-up key is trusted before it is asked again: a revoked key stops
/// working within this time.
const KEY_TTL: Duration = Duration::from_secs(30);
/// Unknown keys are remembered for less, so a key created a moment ago works soon.
const UNKNOWN_TTL: Duration = Duration::from_secs(5);
/// A known key keeps working this long while the key store cannot be reached.
const STALE_GRACE: Duration = Duration::from_secs(600);
const CACHE_ENTRIES: usize = 10_000;

struct Auth {
    policy: Policy,
    keys: Arc<dyn KeyLookup>,
    cache: Mutex<HashMap<String, (Option<ApiKey>, Instant)>>,
    per_minute: u32,
    buckets: Mutex<HashMap<String, (f64, Instant)>>,
}

/// The tower layer; see the module comment.
#[derive(Clone, Default)]
pub struct AuthLayer {
    /// None: no keys (local insecure mode, or a service that only mTLS peers reach).
    auth: Option<Arc<Auth>>,
}

impl AuthLayer {
    /// No keys: every caller is the local admin of tenant `default`.
    pub fn off() -> AuthLayer {
        AuthLayer::default()
    }

    /// `per_minute`: calls each key may make to the policy's rate-limited methods.
    pub fn new(policy: Policy, keys: Arc<dyn KeyLookup>, per_minute: u32) -> AuthLayer {
        AuthLayer {
            auth: Some(Arc::new(Auth {
                policy,
                keys,
                cache: Mutex::default(),
                per_minute: per_minute.max(1),
                buckets: Mutex::default(),
            })),
        }
    }
}

impl<S> tower::Layer<S> for AuthLayer {
    type Service = AuthService<S>;

    fn layer(&self, inner: S) -> AuthService<S> {
        AuthService {
            inner,
            auth: self.auth.clone(),
        }
    }
}

#[derive(Clone)]
pub struct AuthService<S> {
    inner: S,
    auth: Option<Arc<Auth>>,
}

type BoxFuture<T> = Pin<Box<dyn Future<Output = T> + Send>>;

impl<S, B, RB> tower::Service<http::Request<B>> for AuthService<S>
where
    S: tower::Service<http::Request<B>, Response = http::Response<RB>> + Clone + Send + 'static,
    S::Future: Send,
    B: Send + 'static,
    RB: Default,
{
    type Response = S::Response;
    type Error = S::Error;
    type Future = BoxFuture<Result<S::Response, S::Error>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), S::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, mut request: http::Request<B>) -> Self::Future {
        // The clone is not ready; the one that was polled serves this call.
        let clone = self.inner.clone();
        let mut inner = std::mem::replace(&mut self.inner, clone);
        let Some(auth) = self.auth.clone() else {
            return Box::pin(inner.call(request));
        };
        let caller = Caller::of(&request);
        Box::pin(async move {
            match auth.admit(caller).await {
                Ok(identity) => {
                    request.extensions_mut().insert(identity);
                    inner.call(request).await
                }
                Err(status) => Ok(status.into_http()),
            }
        })
    }
}

/// What the door looks at, read before any await (a request body need not be Sync).
struct Caller {
    path: String,
    internal: bool,
    key: Option<String>,
}

impl Caller {
    fn of<B>(request: &http::Request<B>) -> Caller {
        Caller {
            path: request.uri().path().to_string(),
            internal: crate::tls::is_internal_peer(request),
            key: presented_key(request).map(str::to_string),
        }
    }
}

impl Auth {
    async fn admit(&self, caller: Caller) -> Result<Identity, Status> {
        let path = caller.path.as_str();
        let method = path.rsplit('/').next().unwrap_or(path);
        let need = match self.policy.door(path) {
            Door::Open => return Ok(Identity::local()),
            _ if caller.internal => return Ok(internal()),
            Door::Internal => {
                return Err(Status::permission_denied(format!(
                    "{method} is for the engine's own services (mTLS with a certificate \
                     from the deployment's CA); clients call fusion's EmpathyService"
                )));
            }
            Door::Role(role) => role,
        };
        let key = caller.key.as_deref().ok_or_else(|| {
            Status::unauthenticated(
                "this server needs an API key: pass --api-key KEY or set EMPATHY_API_KEY \
                 (gRPC metadata `authorization: Bearer KEY`); an admin creates keys with \
                 `empathy keys create`",
            )
        })?;
        let found = self
            .key(&key_sha256(key))
            .await?
            .filter(|k| !k.revoked)
            .ok_or_else(|| {
                Status::unauthenticated(
                    "the API key is not valid (unknown or revoked); ask an admin for a new \
                     one (`empathy keys create`)",
                )
            })?;
        let role = Role::try_from(found.role).unwrap_or(Role::Unspecified);
        if role < need {
            return Err(Status::permission_denied(format!(
                "this key's role is {}; {method} needs the {} role or a higher one: ask an \
                 admin for such a key",
                role_name(role),
                role_name(need)
            )));
        }
        if self.policy.rate_limited.contains(&path) && !self.take_token(&found.key_id) {
            return Err(Status::resource_exhausted(format!(
                "this key made more than {} {method} calls in the last minute; wait and retry",
                self.per_minute
            )));
        }
        Ok(Identity {
            tenant: found.tenant,
            key_id: found.key_id,
            role,
        })
    }

    /// The key from the cache, else from the store; a store that cannot be reached
    /// leaves recently known keys working.
    async fn key(&self, digest: &str) -> Result<Option<ApiKey>, Status> {
        let cached = self.lock_cache().get(digest).cloned();
        if let Some((key, at)) = &cached {
            let ttl = if key.is_some() { KEY_TTL } else { UNKNOWN_TTL };
            if at.elapsed() < ttl {
                return Ok(key.clone());
            }
        }
        match self.keys.lookup(digest).await {
            Ok(key) => {
                let mut cache = self.lock_cache();
                if cache.len() >= CACHE_ENTRIES {
                    cache.clear();
                }
                cache.insert(digest.to_string(), (key.clone(), Instant::now()));
                Ok(key)
            }
            Err(e) => match cached {
                Some((Some(key), at)) if at.elapsed() < STALE_GRACE => {
                    tracing::warn!(error = %e.message(), "key store unreachable; using a recent answer");
                    Ok(Some(key))
                }
                _ => {
                    tracing::warn!(error = %e.message(), "cannot check an API key");
                    Err(Status::unavailable(
                        "cannot check the API key now (the key store is unreachable); retry \
                         shortly",
                    ))
                }
            },
        }
    }

    fn lock_cache(&self) -> std::sync::MutexGuard<'_, HashMap<String, (Option<ApiKey>, Instant)>> {
        self.cache.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// A token bucket per key: `per_minute` calls, refilled evenly.
    fn take_token(&self, key_id: &str) -> bool {
        let mut buckets = self.buckets.lock().unwrap_or_else(|p| p.into_inner());
        if buckets.len() >= CACHE_ENTRIES {
            buckets.clear();
        }
        let full = f64::from(self.per_minute);
        let (tokens, at) = buckets
            .entry(key_id.to_string())
            .or_insert((full, Instant::now()));
        *tokens = (*tokens + at.elapsed().as_secs_f64() * full / 60.0).min(full);
        *at = Instant::now();
        if *tokens >= 1.0 {
            *tokens -= 1.0;
            true
        } else {
            false
        }
    }
}

/// One of our services, by its client certificate: trusted with every method.
fn internal() -> Identity {
    Identity {
        tenant: DEFAULT_TENANT.into(),
        key_id: "mtls".into(),
        role: Role::Admin,
    }
}

/// `authorization: Bearer KEY` or `x-api-key: KEY`.
fn presented_key<B>(request: &http::Request<B>) -> Option<&str> {
    let headers = request.headers();
    let bearer = headers
        .get(http::header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "));
    bearer
        .or_else(|| headers.get("x-api-key").and_then(|v| v.to_str().ok()))
        .map(str::trim)
        .filter(|k| !k.is_empty())
}

#[cfg(test)]
mod tests {
    use super::*;

    struct Keys(Vec<(String, ApiKey)>);

    #[tonic::async_trait]
    impl KeyLookup for Keys {
        async fn lookup(&self, digest: &str) -> Result<Option<ApiKey>, Status> {
            Ok(self
                .0
                .iter()
                .find(|(d, _)| d == digest)
                .map(|(_, k)| k.clone()))
        }
    }

    fn key(id: &str, role: Role, revoked: bool) -> (String, ApiKey) {
        let secret = format!("emp_{id}_secret");
        let k = ApiKey {
            key_id: id.into(),
            tenant: "acme".into(),
            role: role as i32,
            revoked,
            ..ApiKey::default()
        };
        (key_sha256(&secret), k)
    }

    fn auth(per_minute: u32) -> Auth {
        let policy = Policy::new()
            .allow(
                "/empathy.v1.EmpathyService/Analyze",
                Door::Role(Role::Analyze),
            )
            .allow(
                "/empathy.v1.EmpathyService/Feedback",
                Door::Role(Role::Feedback),
            )
            .allow("/empathy.v1.KeyService/Authenticate", Door::Internal)
            .rate_limit("/empathy.v1.EmpathyService/Feedback");
        let keys = Keys(vec![
            key("an", Role::Analyze, false),
            key("fb", Role::Feedback, false),
            key("old", Role::Admin, true),
        ]);
        Auth {
            policy,
            keys: Arc::new(keys),
            cache: Mutex::default(),
            per_minute,
            buckets: Mutex::default(),
        }
    }

    fn call(path: &str, key: Option<&str>) -> http::Request<()> {
        let mut r = http::Request::builder().uri(format!("http://x{path}"));
        if let Some(k) = key {
            r = r.header("authorization", format!("Bearer {k}"));
        }
        r.body(()).expect("request")
    }

    async fn code(auth: &Auth, path: &str, key: Option<&str>) -> tonic::Code {
        match auth.admit(Caller::of(&call(path, key))).await {
            Ok(_) => tonic::Code::Ok,
            Err(s) => s.code(),
        }
    }

    #[tokio::test]
    async fn each_door_answers_with_the_right_status() {
        use tonic::Code::*;
        let a = auth(100);
        let analyze = "/empathy.v1.EmpathyService/Analyze";
        let feedback = "/empathy.v1.EmpathyService/Feedback";
        assert_eq!(code(&a, "/grpc.health.v1.Health/Check", None).await, Ok);
        assert_eq!(code(&a, analyze, None).await, Unauthenticated);
        assert_eq!(
            code(&a, analyze, Some("emp_zz_guess")).await,
            Unauthenticated
        );
        assert_eq!(
            code(&a, analyze, Some("emp_old_secret")).await,
            Unauthenticated
        );
        assert_eq!(code(&a, analyze, Some("emp_an_secret")).await, Ok);
        assert_eq!(
            code(&a, feedback, Some("emp_an_secret")).await,
            PermissionDenied
        );
        assert_eq!(code(&a, feedback, Some("emp_fb_secret")).await, Ok);
        // Unnamed methods need an admin; internal ones need a certificate.
        let rollback = "/empathy.v1.TrainerService/Rollback";
        assert_eq!(
            code(&a, rollback, Some("emp_fb_secret")).await,
            PermissionDenied
        );
        let authn = "/empathy.v1.KeyService/Authenticate";
        assert_eq!(
            code(&a, authn, Some("emp_fb_secret")).await,
            PermissionDenied
        );
        let who = a
            .admit(Caller::of(&call(analyze, Some("emp_an_secret"))))
            .await
            .ok();
        assert_eq!(
            who.map(|i| (i.tenant, i.key_id)),
            Some(("acme".into(), "an".into()))
        );
    }

    #[tokio::test]
    async fn feedback_is_limited_per_key() {
        let a = auth(2);
        let feedback = "/empathy.v1.EmpathyService/Feedback";
        assert_eq!(
            code(&a, feedback, Some("emp_fb_secret")).await,
            tonic::Code::Ok
        );
        assert_eq!(
            code(&a, feedback, Some("emp_fb_secret")).await,
            tonic::Code::Ok
        );
        let third = a
            .admit(Caller::of(&call(feedback, Some("emp_fb_secret"))))
            .await
            .err();
        assert!(
            third
                .as_ref()
                .is_some_and(|s| s.code() == tonic::Code::ResourceExhausted
                    && s.message().contains("2 Feedback calls")),
            "{third:?}"
        );
    }
}
