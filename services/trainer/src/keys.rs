//! `empathy.v1.KeyService`: API keys with a tenant and a role, stored as hashes in the
//! feedback database; and the lookup both doors (this trainer's, fusion's through
//! `Authenticate`) check keys with.

use std::path::Path;

use anyhow::Context;
use empathy_common::{
    auth::{KeyLookup, key_sha256},
    identity::{DEFAULT_TENANT, role_name},
};
use empathy_grpc::v1::{
    ApiKey, AuthenticateRequest, CreateKeyRequest, CreateKeyResponse, ListKeysRequest,
    ListKeysResponse, RevokeKeyRequest, Role, key_service_server::KeyService,
};
use tonic::{Request, Response, Status};

use crate::store::{FeedbackStore, keys::KeyRow, now_ms};

#[derive(Clone)]
pub struct Keys {
    store: FeedbackStore,
}

impl Keys {
    pub fn new(store: FeedbackStore) -> Keys {
        Keys { store }
    }

    async fn blocking<R: Send + 'static>(
        &self,
        what: &'static str,
        f: impl FnOnce(&FeedbackStore) -> anyhow::Result<R> + Send + 'static,
    ) -> Result<R, Status> {
        let store = self.store.clone();
        tokio::task::spawn_blocking(move || f(&store))
            .await
            .map_err(|e| empathy_common::status::internal(what, e))?
            .map_err(|e| {
                tracing::error!("{what}: {e:#}");
                Status::unavailable(format!(
                    "{what}: the key store cannot be read or written now"
                ))
            })
    }
}

/// A new random key and its row (tenant and role checked by the caller).
fn new_key(tenant: &str, role: Role, label: &str) -> (String, KeyRow) {
    let (key, id) = empathy_common::auth::new_key();
    let row = KeyRow {
        key_id: id,
        key_sha256: key_sha256(&key),
        tenant: tenant.to_string(),
        role: role_name(role).to_string(),
        label: label.to_string(),
        created_unix_ms: now_ms(),
        revoked_unix_ms: 0,
    };
    (key, row)
}

/// A tenant name: 1-64 of a-z, 0-9, '-', '_' (it names directories and metrics later).
pub(crate) fn check_tenant(tenant: &str) -> Result<(), Status> {
    if empathy_proto::is_tenant_name(tenant) {
        Ok(())
    } else {
        Err(Status::invalid_argument(
            "tenant must be 1-64 characters of a-z, 0-9, '-' and '_'",
        ))
    }
}

/// Makes sure the admin key in `path` (written by `empathy up --secure`) is stored, so
/// the first admin can create the others.
pub fn ensure_admin_key(store: &FeedbackStore, path: &Path) -> anyhow::Result<()> {
    let key = std::fs::read_to_string(path)
        .with_context(|| format!("cannot read the admin key {}", path.display()))?;
    let key = key.trim();
    let id = empathy_common::auth::key_id(key)
        .with_context(|| format!("{} does not hold an empathy key (emp_...)", path.display()))?;
    let row = KeyRow {
        key_id: id.to_string(),
        key_sha256: key_sha256(key),
        tenant: DEFAULT_TENANT.into(),
        role: role_name(Role::Admin).into(),
        label: "bootstrap admin (empathy up --secure)".into(),
        created_unix_ms: now_ms(),
        revoked_unix_ms: 0,
    };
    if store.insert_key(&row)? {
        tracing::info!(key_id = id, "stored the bootstrap admin key");
    }
    Ok(())
}

#[tonic::async_trait]
impl KeyService for Keys {
    async fn create_key(
        &self,
        request: Request<CreateKeyRequest>,
    ) -> Result<Response<CreateKeyResponse>, Status> {
        let req = request.into_inner();
        let tenant = req.tenant.trim().to_string();
        check_tenant(&tenant)?;
        let role = Role::try_from(req.role)
            .ok()
            .filter(|r| *r != Role::Unspecified)
            .ok_or_else(|| Status::invalid_argument("role must be analyze, feedback or admin"))?;
        empathy_common::status::check_len("label", &req.label, 200)?;
        let (key, row) = new_key(&tenant, role, req.label.trim());
        let stored = row.clone();
        if !self
            .blocking("storing the key", move |s| s.insert_key(&stored))
            .await?
        {
            return Err(Status::aborted("a key with that id exists; try again"));
        }
        tracing::info!(key_id = %row.key_id, %tenant, role = role_name(role), "key created");
        Ok(Response::new(CreateKeyResponse {
            key: Some(row.to_proto()),
            secret: key,
        }))
    }

    async fn revoke_key(
        &self,
        request: Request<RevokeKeyRequest>,
    ) -> Result<Response<ApiKey>, Status> {
        let id = request.into_inner().key_id.trim().to_string();
        empathy_common::status::check_len("key_id", &id, 64)?;
        let lookup = id.clone();
        let key = self
            .blocking("revoking the key", move |s| s.revoke_key(&lookup))
            .await?
            .ok_or_else(|| Status::not_found("no key with that id (`empathy keys list`)"))?;
        tracing::info!(key_id = %id, "key revoked");
        Ok(Response::new(key.to_proto()))
    }

    async fn list_keys(
        &self,
        request: Request<ListKeysRequest>,
    ) -> Result<Response<ListKeysResponse>, Status> {
        let tenant = request.into_inner().tenant.trim().to_string();
        let keys = self
            .blocking("listing keys", move |s| s.keys(&tenant))
            .await?;
        Ok(Response::new(ListKeysResponse {
            keys: keys.iter().map(KeyRow::to_proto).collect(),
        }))
    }

    async fn authenticate(
        &self,
        request: Request<AuthenticateRequest>,
    ) -> Result<Response<ApiKey>, Status> {
        let digest = request.into_inner().key_sha256;
        self.lookup(&digest)
            .await?
            .map(Response::new)
            .ok_or_else(|| Status::not_found("no such key"))
    }
}

#[tonic::async_trait]
impl KeyLookup for Keys {
    async fn lookup(&self, key_sha256: &str) -> Result<Option<ApiKey>, Status> {
        let digest = key_sha256.to_string();
        let row = self
            .blocking("checking a key", move |s| s.key_by_sha256(&digest))
            .await?;
        Ok(row.map(|r| r.to_proto()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_are_random_and_only_their_hash_is_kept() {
        let (a, row) = new_key("acme", Role::Feedback, "ci");
        let (b, _) = new_key("acme", Role::Feedback, "ci");
        assert_ne!(a, b);
        assert!(a.starts_with(&format!("emp_{}_", row.key_id)), "{a}");
        assert_eq!(a.len(), 4 + 16 + 1 + 64);
        assert_eq!(row.key_sha256, key_sha256(&a));
        assert!(
            !format!("{row:?}").contains(&a[21..]),
            "the secret is not stored"
        );
    }

    #[test]
    fn tenants_are_plain_names() {
        assert!(check_tenant("acme-health_2").is_ok());
        for bad in ["", "Acme", "a b", "../x", &"x".repeat(65)] {
            assert!(check_tenant(bad).is_err(), "{bad:?}");
        }
    }
}
