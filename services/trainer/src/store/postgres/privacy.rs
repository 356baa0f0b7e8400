//! The PostgreSQL side of `store::privacy`: purging or quarantining feedback by filter,
//! and forgetting a subject (its feedback, traffic samples and affect points) in one
//! transaction.

use empathy_proto::v1::FeedbackFilter;

use super::{FILTER, Forgotten, Postgres, TRAINED_INTO, get, no_nul};

impl Postgres {
    pub(super) fn purge_rows(&self, filter: &FeedbackFilter, delete: bool) -> anyhow::Result<u64> {
        let sql = if delete {
            format!("DELETE FROM feedback WHERE {FILTER}")
        } else {
            format!("UPDATE feedback SET quarantined = 1 WHERE {FILTER}")
        };
        let f = filter.clone();
        self.session.call(move |c| {
            c.execute(
                &sql,
                &[
                    &no_nul(f.tenant),
                    &no_nul(f.key_id),
                    &f.from_unix_ms,
                    &f.to_unix_ms,
                    &no_nul(f.model_version),
                    &no_nul(f.subject_id),
                ],
            )
        })
    }

    pub(super) fn forget_subject(&self, subject: &str) -> anyhow::Result<Forgotten> {
        let subject = no_nul(subject.to_string());
        self.session.call(move |c| {
            let mut tx = c.transaction()?;
            tx.execute("DELETE FROM traffic WHERE subject_id = $1", &[&subject])?;
            let affect = tx.execute("DELETE FROM affect WHERE subject_id = $1", &[&subject])?;
            let lowest: Option<i64> = get(
                &tx.query_one(
                    "SELECT MIN(seq) FROM feedback WHERE subject_id = $1",
                    &[&subject],
                )?,
                0,
            )?;
            let Some(lowest) = lowest else {
                tx.commit()?;
                return Ok(Forgotten {
                    affect,
                    ..Forgotten::default()
                });
            };
            let trained_into = tx
                .query(TRAINED_INTO, &[&lowest])?
                .iter()
                .map(|r| get::<String>(r, 0))
                .collect::<Result<_, _>>()?;
            let deleted = tx.execute("DELETE FROM feedback WHERE subject_id = $1", &[&subject])?;
            tx.commit()?;
            Ok(Forgotten {
                deleted,
                trained_into,
                affect,
            })
        })
    }
}
