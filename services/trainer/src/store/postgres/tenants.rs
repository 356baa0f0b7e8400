//! The PostgreSQL side of `store::tenants` and `store::replies`: per-tenant pending
//! counts, pauses, the traffic sample, affect trajectories and reply banks, on the reader session (the writer's counts on its own connection).

use ::postgres::GenericClient;

use super::super::affect::{INSERT_AFFECT, READ_AFFECT};
use super::super::replies::{CLEAR_REPLIES, GET_REPLIES, SET_REPLIES};
use super::super::tenants::{
    CLEAR_PAUSE, GET_PAUSE, INSERT_TRAFFIC, PENDING, READ_TRAFFIC, SET_PAUSE, TRIM_TRAFFIC,
};
use super::{AnalysisRow, Pause, Pending, Postgres, get, no_nul};

/// A row of a table keyed by analysis (traffic, affect): id, tenant, subject, time and
/// protobuf, owned and without NUL for the session's thread.
type Keyed = (String, String, String, i64, Vec<u8>);

fn keyed(r: &AnalysisRow) -> Keyed {
    let text = |s: &str| no_nul(s.to_string());
    (
        text(&r.analysis_id),
        text(&r.tenant),
        text(&r.subject_id),
        r.unix_ms,
        r.bytes.clone(),
    )
}

/// Runs `sql` (an INSERT of the five columns that skips rows already there) for each
/// row; how many were new.
fn insert_all(
    tx: &mut ::postgres::Transaction<'_>,
    sql: &str,
    rows: &[Keyed],
) -> Result<u64, ::postgres::Error> {
    let mut inserted = 0;
    for (id, tenant, subject, at, bytes) in rows {
        inserted += tx.execute(sql, &[id, tenant, subject, at, bytes])?;
    }
    Ok(inserted)
}

/// Pending records per tenant, on any connection or in a transaction.
pub(super) fn pending(c: &mut impl GenericClient) -> Result<Pending, ::postgres::Error> {
    c.query(PENDING, &[])?
        .iter()
        .map(|r| Ok((get::<String>(r, 0)?, get::<i64>(r, 1)? as u64)))
        .collect()
}

impl Postgres {
    pub(super) fn set_tenant_pause(
        &self,
        tenant: &str,
        pause: Option<&Pause>,
    ) -> anyhow::Result<()> {
        let (tenant, pause) = (no_nul(tenant.to_string()), pause.cloned());
        self.session.call(move |c| {
            match pause {
                Some(p) => c.execute(SET_PAUSE, &[&tenant, &no_nul(p.reason), &p.since_unix_ms])?,
                None => c.execute(CLEAR_PAUSE, &[&tenant])?,
            };
            Ok(())
        })
    }

    pub(super) fn tenant_pause(&self, tenant: &str) -> anyhow::Result<Option<Pause>> {
        let tenant = no_nul(tenant.to_string());
        self.session.call(move |c| {
            c.query_opt(GET_PAUSE, &[&tenant])?
                .map(|r| {
                    Ok(Pause {
                        reason: get(&r, 0)?,
                        since_unix_ms: get(&r, 1)?,
                    })
                })
                .transpose()
        })
    }

    pub(super) fn set_tenant_replies(
        &self,
        tenant: &str,
        bank: Option<(&[u8], i64)>,
    ) -> anyhow::Result<()> {
        let tenant = no_nul(tenant.to_string());
        let bank = bank.map(|(bytes, at)| (bytes.to_vec(), at));
        self.session.call(move |c| {
            match &bank {
                Some((bytes, at)) => c.execute(SET_REPLIES, &[&tenant, bytes, at])?,
                None => c.execute(CLEAR_REPLIES, &[&tenant])?,
            };
            Ok(())
        })
    }

    pub(super) fn tenant_replies(&self, tenant: &str) -> anyhow::Result<Option<Vec<u8>>> {
        let tenant = no_nul(tenant.to_string());
        self.session.call(move |c| {
            c.query_opt(GET_REPLIES, &[&tenant])?
                .map(|r| get(&r, 0))
                .transpose()
        })
    }

    pub(super) fn insert_affect_rows(&self, rows: &[AnalysisRow]) -> anyhow::Result<u64> {
        let rows: Vec<Keyed> = rows.iter().map(keyed).collect();
        self.session.call(move |c| {
            let mut tx = c.transaction()?;
            let inserted = insert_all(&mut tx, INSERT_AFFECT, &rows)?;
            tx.commit()?;
            Ok(inserted)
        })
    }

    pub(super) fn affect_rows(
        &self,
        tenant: &str,
        subject_id: &str,
        since_unix_ms: i64,
        limit: i64,
    ) -> anyhow::Result<Vec<(String, Vec<u8>)>> {
        let (tenant, subject) = (no_nul(tenant.to_string()), no_nul(subject_id.to_string()));
        self.session.call(move |c| {
            c.query(READ_AFFECT, &[&tenant, &subject, &since_unix_ms, &limit])?
                .iter()
                .map(|r| Ok((get(r, 0)?, get(r, 1)?)))
                .collect()
        })
    }

    pub(super) fn insert_traffic(&self, rows: &[AnalysisRow], keep: i64) -> anyhow::Result<u64> {
        let rows: Vec<Keyed> = rows.iter().map(keyed).collect();
        self.session.call(move |c| {
            let mut tx = c.transaction()?;
            let inserted = insert_all(&mut tx, INSERT_TRAFFIC, &rows)?;
            let tenants: std::collections::BTreeSet<&String> = rows.iter().map(|r| &r.1).collect();
            for tenant in tenants {
                tx.execute(TRIM_TRAFFIC, &[tenant, &keep])?;
            }
            tx.commit()?;
            Ok(inserted)
        })
    }

    pub(super) fn traffic_rows(
        &self,
        tenant: &str,
        limit: i64,
    ) -> anyhow::Result<Vec<(String, Vec<u8>)>> {
        let tenant = no_nul(tenant.to_string());
        self.session.call(move |c| {
            c.query(READ_TRAFFIC, &[&tenant, &limit])?
                .iter()
                .map(|r| Ok((get(r, 0)?, get(r, 1)?)))
                .collect()
        })
    }
}
