//! API keys in the feedback database (so several trainers on one PostgreSQL share
//! them): one row per key, holding its SHA-256, never the key.

use empathy_proto::v1::ApiKey;

use super::FeedbackStore;

/// One stored key.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct KeyRow {
    pub key_id: String,
    pub key_sha256: String,
    pub tenant: String,
    /// "analyze", "feedback" or "admin".
    pub role: String,
    pub label: String,
    pub created_unix_ms: i64,
    /// 0 while the key is valid.
    pub revoked_unix_ms: i64,
}

impl KeyRow {
    pub fn to_proto(&self) -> ApiKey {
        let role = empathy_common::identity::parse_role(&self.role)
            .unwrap_or(empathy_proto::v1::Role::Unspecified);
        ApiKey {
            key_id: self.key_id.clone(),
            tenant: self.tenant.clone(),
            role: role as i32,
            created_unix_ms: self.created_unix_ms,
            revoked: self.revoked_unix_ms != 0,
            label: self.label.clone(),
        }
    }
}

/// The statements, in PostgreSQL's `$N` spelling; SQLite reads the same numbers as
/// `?N` (see [`sqlite_spelling`]).
pub(super) const COLUMNS: &str =
    "key_id, key_sha256, tenant, role, label, created_unix_ms, revoked_unix_ms";
/// Inserts unless a key with that id or hash exists (both dialects know ON CONFLICT).
pub(super) const INSERT: &str = "INSERT INTO api_keys (key_id, key_sha256, tenant, role, \
     label, created_unix_ms, revoked_unix_ms) VALUES ($1, $2, $3, $4, $5, $6, $7) \
     ON CONFLICT DO NOTHING";
pub(super) const REVOKE: &str =
    "UPDATE api_keys SET revoked_unix_ms = $2 WHERE key_id = $1 AND revoked_unix_ms = 0";

pub(super) fn select_where(condition: &str) -> String {
    format!("SELECT {COLUMNS} FROM api_keys WHERE {condition} ORDER BY created_unix_ms, key_id")
}

/// `$N` -> `?N`: SQLite's numbered parameters.
pub(super) fn sqlite_spelling(sql: &str) -> String {
    sql.replace('$', "?")
}

impl FeedbackStore {
    /// Stores a new key; false if one with its id or hash is already stored.
    pub fn insert_key(&self, key: &KeyRow) -> anyhow::Result<bool> {
        self.backend.insert_key(key)
    }

    /// Revokes a key (idempotent); the key as stored afterwards, if it exists.
    pub fn revoke_key(&self, key_id: &str) -> anyhow::Result<Option<KeyRow>> {
        self.backend.revoke_key(key_id, super::now_ms())?;
        Ok(self
            .backend
            .keys_where("key_id = $1", key_id)?
            .into_iter()
            .next())
    }

    /// Every key, or one tenant's ("" = all), oldest first.
    pub fn keys(&self, tenant: &str) -> anyhow::Result<Vec<KeyRow>> {
        if tenant.is_empty() {
            self.backend.keys_where("$1 = $1", "")
        } else {
            self.backend.keys_where("tenant = $1", tenant)
        }
    }

    pub fn key_by_sha256(&self, sha256: &str) -> anyhow::Result<Option<KeyRow>> {
        Ok(self
            .backend
            .keys_where("key_sha256 = $1", sha256)?
            .into_iter()
            .next())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn row(id: &str, tenant: &str) -> KeyRow {
        KeyRow {
            key_id: id.into(),
            key_sha256: format!("sha-{id}"),
            tenant: tenant.into(),
            role: "feedback".into(),
            label: "test".into(),
            created_unix_ms: 1,
            revoked_unix_ms: 0,
        }
    }

    #[test]
    fn keys_are_stored_listed_and_revoked() -> anyhow::Result<()> {
        let dir = std::env::temp_dir().join(format!("empathy-keys-{}", uuid::Uuid::new_v4()));
        let store = FeedbackStore::open(&dir.join("f.sqlite"), 8)?;
        assert!(store.insert_key(&row("a", "acme"))?);
        assert!(store.insert_key(&row("b", "other"))?);
        assert!(
            !store.insert_key(&row("a", "acme"))?,
            "a duplicate id is refused"
        );
        assert_eq!(store.keys("")?.len(), 2);
        assert_eq!(store.keys("acme")?, vec![row("a", "acme")]);
        assert_eq!(
            store.key_by_sha256("sha-b")?.map(|k| k.tenant),
            Some("other".into())
        );
        let revoked = store.revoke_key("a")?.map(|k| k.to_proto());
        assert!(revoked.is_some_and(|k| k.revoked && k.role == 2));
        assert_eq!(store.revoke_key("nope")?, None);
        std::fs::remove_dir_all(&dir)?;
        Ok(())
    }
}
