//! The tables, written once for both backends. SQLite and PostgreSQL spell three
//! column types differently; `Dialect` names each difference.

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Dialect {
    Sqlite,
    Postgres,
}

impl Dialect {
    /// `feedback.seq`: a key the database hands out in increasing order.
    fn seq_key(self) -> &'static str {
        match self {
            // AUTOINCREMENT: never reuses the seq of a deleted row.
            Dialect::Sqlite => "INTEGER PRIMARY KEY AUTOINCREMENT",
            Dialect::Postgres => "BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY",
        }
    }

    /// A 64-bit integer: SQLite's INTEGER holds 64 bits, PostgreSQL's only 32.
    fn int64(self) -> &'static str {
        match self {
            Dialect::Sqlite => "INTEGER",
            Dialect::Postgres => "BIGINT",
        }
    }

    /// Raw bytes.
    fn bytes(self) -> &'static str {
        match self {
            Dialect::Sqlite => "BLOB",
            Dialect::Postgres => "BYTEA",
        }
    }

    /// Creates the `feedback`, `jobs`, `meta`, `api_keys`, `tenant_pause`, `traffic`,
    /// `affect` and `reply_banks` tables unless they exist.
    pub(super) fn schema(self) -> String {
        let (seq_key, int64, bytes) = (self.seq_key(), self.int64(), self.bytes());
        format!(
            "
CREATE TABLE IF NOT EXISTS feedback (
    seq              {seq_key},
    id               TEXT NOT NULL UNIQUE,
    received_unix_ms {int64} NOT NULL,
    analysis_id      TEXT NOT NULL,
    model_version    TEXT NOT NULL,
    sentiment        TEXT NOT NULL,
    emotion          TEXT NOT NULL,
    rating           INTEGER NOT NULL,
    note             TEXT NOT NULL,
    text             TEXT NOT NULL,
    -- The whole FeedbackRecord (features included) as protobuf.
    record           {bytes} NOT NULL,
    tenant           TEXT NOT NULL DEFAULT '',
    key_id           TEXT NOT NULL DEFAULT '',
    subject_id       TEXT NOT NULL DEFAULT '',
    -- 1: kept for inspection, never trained on (PurgeFeedback without delete).
    quarantined      INTEGER NOT NULL DEFAULT 0
);
CREATE TABLE IF NOT EXISTS jobs (
    id               TEXT PRIMARY KEY,
    state            TEXT NOT NULL,
    reason           TEXT NOT NULL,
    message          TEXT NOT NULL,
    published        TEXT NOT NULL,
    metrics          TEXT NOT NULL,
    started_unix_ms  {int64} NOT NULL,
    ended_unix_ms    {int64} NOT NULL,
    through_seq      {int64} NOT NULL
);
CREATE TABLE IF NOT EXISTS meta (
    key   TEXT PRIMARY KEY,
    value {int64} NOT NULL
);
CREATE TABLE IF NOT EXISTS api_keys (
    key_id           TEXT PRIMARY KEY,
    key_sha256       TEXT NOT NULL UNIQUE,
    tenant           TEXT NOT NULL,
    role             TEXT NOT NULL,
    label            TEXT NOT NULL,
    created_unix_ms  {int64} NOT NULL,
    revoked_unix_ms  {int64} NOT NULL
);
-- One row per tenant whose automatic training is paused (after a rollback of its line).
CREATE TABLE IF NOT EXISTS tenant_pause (
    tenant           TEXT PRIMARY KEY,
    reason           TEXT NOT NULL,
    since_unix_ms    {int64} NOT NULL
);
-- Fusion's sample of each tenant's analyses: a TrafficSample (features, no text) each,
-- the newest few thousand per tenant (`tenants::TRAFFIC_KEEP`).
CREATE TABLE IF NOT EXISTS traffic (
    analysis_id      TEXT PRIMARY KEY,
    tenant           TEXT NOT NULL,
    subject_id       TEXT NOT NULL,
    received_unix_ms {int64} NOT NULL,
    sample           {bytes} NOT NULL
);
-- Opted-in subjects' affect over time: an AffectPoint (protobuf) per analysis.
CREATE TABLE IF NOT EXISTS affect (
    analysis_id      TEXT PRIMARY KEY,
    tenant           TEXT NOT NULL,
    subject_id       TEXT NOT NULL,
    analyzed_unix_ms {int64} NOT NULL,
    point            {bytes} NOT NULL
);
-- Each tenant's reply templates: a TenantReplies (protobuf), replaced whole.
CREATE TABLE IF NOT EXISTS reply_banks (
    tenant           TEXT PRIMARY KEY,
    bank             {bytes} NOT NULL,
    updated_unix_ms  {int64} NOT NULL
);
"
        )
    }

    /// Run after `schema` (and `ADDED_COLUMNS`): indexes on the added columns.
    pub(super) fn indexes(self) -> &'static str {
        "CREATE INDEX IF NOT EXISTS feedback_subject ON feedback (subject_id);
CREATE INDEX IF NOT EXISTS feedback_received ON feedback (received_unix_ms);
CREATE INDEX IF NOT EXISTS feedback_tenant ON feedback (tenant, seq);
CREATE INDEX IF NOT EXISTS traffic_tenant ON traffic (tenant, received_unix_ms);
CREATE INDEX IF NOT EXISTS traffic_subject ON traffic (subject_id);
CREATE INDEX IF NOT EXISTS affect_subject ON affect (tenant, subject_id, analyzed_unix_ms);
CREATE INDEX IF NOT EXISTS affect_analyzed ON affect (analyzed_unix_ms);"
    }

    /// Run after `schema` and `ADDED_COLUMNS` (issue 13): records stored before
    /// tenants had lines become the "default" tenant's; the one `trained_through` mark
    /// becomes one per tenant; the one pause (table `training_pause`) becomes the
    /// default tenant's. Running it again changes nothing.
    pub(super) fn migrate_to_tenants(self) -> String {
        let int64 = self.int64();
        format!(
            "
UPDATE feedback SET tenant = 'default' WHERE tenant = '';
INSERT INTO meta (key, value)
    SELECT DISTINCT 'trained_through/' || tenant,
           (SELECT value FROM meta WHERE key = 'trained_through')
    FROM feedback WHERE EXISTS (SELECT 1 FROM meta WHERE key = 'trained_through')
    ON CONFLICT (key) DO NOTHING;
DELETE FROM meta WHERE key = 'trained_through';
CREATE TABLE IF NOT EXISTS training_pause (
    id               INTEGER PRIMARY KEY,
    reason           TEXT NOT NULL,
    since_unix_ms    {int64} NOT NULL
);
INSERT INTO tenant_pause (tenant, reason, since_unix_ms)
    SELECT 'default', reason, since_unix_ms FROM training_pause WHERE 1 = 1
    ON CONFLICT (tenant) DO NOTHING;
DROP TABLE training_pause;
"
        )
    }
}

/// Columns added to `feedback` after databases were first created (issue 12), with
/// their definitions: a database made before them gets them on open (`ALTER TABLE`),
/// old rows read as tenant "" and not quarantined.
pub(super) const ADDED_COLUMNS: [(&str, &str); 4] = [
    ("tenant", "TEXT NOT NULL DEFAULT ''"),
    ("key_id", "TEXT NOT NULL DEFAULT ''"),
    ("subject_id", "TEXT NOT NULL DEFAULT ''"),
    ("quarantined", "INTEGER NOT NULL DEFAULT 0"),
];

#[cfg(test)]
mod tests {
    use super::Dialect;

    /// Each column's name, table by table.
    fn columns(schema: &str) -> Vec<&str> {
        schema
            .lines()
            .map(str::trim)
            .filter(|l| !l.is_empty() && !l.starts_with("--") && !l.starts_with(')'))
            .filter_map(|l| l.split_whitespace().next())
            .collect()
    }

    #[test]
    fn the_dialects_differ_only_in_column_types() {
        let (sqlite, postgres) = (Dialect::Sqlite.schema(), Dialect::Postgres.schema());
        assert_eq!(columns(&sqlite), columns(&postgres));
        assert_eq!(sqlite.lines().count(), postgres.lines().count());
        for schema in [&sqlite, &postgres] {
            assert!(!schema.contains(['{', '}']), "{schema}");
        }
        assert!(sqlite.contains("seq              INTEGER PRIMARY KEY AUTOINCREMENT,"));
        assert!(postgres.contains("record           BYTEA NOT NULL,"));
    }

    /// A new database and a migrated one end with the same columns.
    #[test]
    fn added_columns_are_in_the_new_schema() {
        let schema = Dialect::Sqlite.schema();
        for (name, definition) in super::ADDED_COLUMNS {
            let padded = format!("{name:<16} {definition}");
            assert!(schema.contains(&padded), "{padded}");
        }
    }
}
