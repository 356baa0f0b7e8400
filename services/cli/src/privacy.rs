//! Deleting and holding back stored feedback from the command line: `empathy forget
//! --subject ID`, `empathy purge` and `empathy quarantine` (by tenant, key, time range,
//! model version or subject), and `empathy resume` (automatic training after a
//! rollback). Admin calls to the trainer.

use anyhow::{bail, ensure};
use empathy_grpc::v1::{
    FeedbackFilter, ForgetAnalysesRequest, ForgetRequest, PurgeFeedbackRequest,
    ResumeTrainingRequest,
};

use crate::learn::TrainerEndpoint;

#[derive(clap::Args)]
pub struct ForgetArgs {
    /// The subject id the analyses and feedback were sent with.
    #[arg(long)]
    subject: String,
    #[command(flatten)]
    endpoint: TrainerEndpoint,
    /// Fusion, which keeps recent analyses in memory for feedback.
    #[arg(
        long = "fusion",
        env = "EMPATHY_ENDPOINT",
        default_value = "http://127.0.0.1:50051"
    )]
    fusion: String,
}

pub async fn forget(args: ForgetArgs) -> anyhow::Result<()> {
    ensure!(
        !args.subject.trim().is_empty(),
        "--subject is empty: give the id the analyses were sent with"
    );
    let mut client = args.endpoint.connect().await?;
    let done = client
        .forget(ForgetRequest {
            subject_id: args.subject.clone(),
        })
        .await
        .map_err(|s| anyhow::anyhow!("{}: {}", s.code(), s.message()))?
        .into_inner();
    println!(
        "deleted {} stored feedback record(s) of subject {} (text, note, features and \
         any kept inputs) and {} point(s) of its affect trajectory",
        done.feedback_deleted, args.subject, done.affect_points_deleted
    );
    if !done.trained_into.is_empty() {
        println!(
            "model versions trained while they were stored: {} (weights cannot be \
             untrained; roll back past them or retrain if that matters)",
            done.trained_into.join(", ")
        );
    }
    // Fusion's memory of recent analyses holds their features and text too.
    let request = ForgetAnalysesRequest {
        subject_id: args.subject.clone(),
    };
    match crate::connect(&args.fusion).await {
        Ok(mut fusion) => match fusion.forget_analyses(request).await {
            Ok(r) => println!(
                "dropped {} recent analysis(es) of subject {} from fusion's memory at {}",
                r.into_inner().dropped,
                args.subject,
                args.fusion
            ),
            Err(s) => bail!(
                "fusion at {} did not drop the subject's recent analyses ({}: {}); they \
                 expire within its --recent-max-age-s (1 h by default)",
                args.fusion,
                s.code(),
                s.message()
            ),
        },
        Err(e) => bail!(
            "{e:#}: the subject's recent analyses in fusion's memory were not dropped; they \
             expire within its --recent-max-age-s (1 h by default)"
        ),
    }
    Ok(())
}

/// Which stored feedback: every given option must match; at least one is needed.
#[derive(clap::Args)]
pub struct FilterArgs {
    /// The tenant the feedback came from.
    #[arg(long, default_value = "")]
    tenant: String,
    /// The id of the API key that sent it.
    #[arg(long = "key", default_value = "")]
    key_id: String,
    /// Received at or after: a date (2026-05-01, UTC), a time (2026-05-01T13:00:00Z)
    /// or an age (90m, 12h, 7d ago).
    #[arg(long)]
    since: Option<String>,
    /// Received before: as --since.
    #[arg(long)]
    until: Option<String>,
    /// Feedback on analyses by this model version (e.g. v0003).
    #[arg(long = "version", default_value = "")]
    model_version: String,
    /// The subject id it was sent with.
    #[arg(long = "subject", default_value = "")]
    subject_id: String,
    #[command(flatten)]
    endpoint: TrainerEndpoint,
}

impl FilterArgs {
    fn filter(&self, now_ms: i64) -> anyhow::Result<FeedbackFilter> {
        let time = |flag: &str, v: &Option<String>| -> anyhow::Result<i64> {
            v.as_deref().map_or(Ok(0), |v| {
                parse_time(v, now_ms).map_err(|e| anyhow::anyhow!("--{flag} {v:?}: {e}"))
            })
        };
        let filter = FeedbackFilter {
            tenant: self.tenant.clone(),
            key_id: self.key_id.clone(),
            from_unix_ms: time("since", &self.since)?,
            to_unix_ms: time("until", &self.until)?,
            model_version: self.model_version.clone(),
            subject_id: self.subject_id.clone(),
        };
        if filter == FeedbackFilter::default() {
            bail!(
                "say which feedback: give at least one of --tenant, --key, --since, --until, --version, --subject"
            );
        }
        Ok(filter)
    }
}

/// `empathy purge` (delete) or `empathy quarantine` (keep, never train on).
pub async fn purge(args: FilterArgs, delete: bool) -> anyhow::Result<()> {
    let filter = args.filter(empathy_proto::now_unix_ms())?;
    let mut client = args.endpoint.connect().await?;
    let done = client
        .purge_feedback(PurgeFeedbackRequest {
            filter: Some(filter),
            delete,
        })
        .await
        .map_err(|s| anyhow::anyhow!("{}: {}", s.code(), s.message()))?
        .into_inner();
    if delete {
        println!("deleted {} feedback record(s)", done.matched);
    } else {
        println!(
            "quarantined {} feedback record(s): kept, never trained on",
            done.matched
        );
    }
    Ok(())
}

#[derive(clap::Args)]
pub struct ResumeArgs {
    // Whose line's automatic training to resume.
    #[command(flatten)]
    tenant: crate::connection::Tenant,
    #[command(flatten)]
    endpoint: TrainerEndpoint,
}

pub async fn resume(args: ResumeArgs) -> anyhow::Result<()> {
    let mut client = args.endpoint.connect().await?;
    let status = client
        .resume_training(ResumeTrainingRequest {
            tenant: args.tenant.field(),
        })
        .await
        .map_err(|s| anyhow::anyhow!("{}: {}", s.code(), s.message()))?
        .into_inner();
    if status.paused {
        println!("automatic training is still paused: {}", status.reason);
    } else {
        println!("automatic training resumed");
    }
    Ok(())
}

/// Unix milliseconds from an age (`90m`, `12h`, `7d`: that long before `now_ms`), a UTC
/// date (`2026-05-01`) or a UTC time (`2026-05-01T13:00:00Z`, seconds optional).
fn parse_time(s: &str, now_ms: i64) -> Result<i64, String> {
    const FORMS: &str = "give a date (2026-05-01), a UTC time (2026-05-01T13:00:00Z) or an \
                         age (90m, 12h, 7d)";
    let s = s.trim();
    if let Some(unit) = s.chars().last().filter(|c| "smhd".contains(*c))
        && let Ok(n) = s[..s.len() - 1].parse::<i64>()
    {
        let unit_ms = match unit {
            's' => 1_000,
            'm' => 60_000,
            'h' => 3_600_000,
            _ => 86_400_000,
        };
        return n
            .checked_mul(unit_ms)
            .filter(|ms| *ms >= 0)
            .map(|ms| now_ms.saturating_sub(ms))
            .ok_or_else(|| "the age is out of range".to_string());
    }
    let (date, time) = s.split_once('T').unwrap_or((s, ""));
    let number = |x: &str| x.parse::<i64>().map_err(|_| FORMS.to_string());
    let parts: Vec<&str> = date.split('-').collect();
    let [y, m, d] = parts.as_slice() else {
        return Err(FORMS.into());
    };
    let (y, m, d) = (number(y)?, number(m)?, number(d)?);
    if !(1970..=9999).contains(&y) || !(1..=12).contains(&m) || !(1..=31).contains(&d) {
        return Err(FORMS.into());
    }
    let clock: Vec<&str> = if time.is_empty() {
        Vec::new()
    } else {
        time.strip_suffix('Z')
            .ok_or_else(|| format!("a time must be UTC, ending in Z; {FORMS}"))?
            .split(':')
            .collect()
    };
    let (hh, mm, ss) = match clock.as_slice() {
        [] => (0, 0, 0),
        [h, m] => (number(h)?, number(m)?, 0),
        [h, m, s] => (number(h)?, number(m)?, number(s)?),
        _ => return Err(FORMS.into()),
    };
    if hh > 23 || mm > 59 || ss > 59 || hh < 0 || mm < 0 || ss < 0 {
        return Err(FORMS.into());
    }
    let seconds = days_from_civil(y, m, d) * 86_400 + hh * 3600 + mm * 60 + ss;
    Ok(seconds * 1000)
}

/// Days since 1970-01-01 of a proleptic Gregorian date (Howard Hinnant's algorithm).
fn days_from_civil(y: i64, m: i64, d: i64) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let mp = (m + 9) % 12;
    let doy = (153 * mp + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn times_from_dates_and_ages() {
        let now = 1_800_000_000_000;
        assert_eq!(parse_time("1970-01-01", now), Ok(0));
        assert_eq!(parse_time("2026-05-01", now), Ok(1_777_593_600_000));
        assert_eq!(
            parse_time("2026-05-01T13:00:00Z", now),
            Ok(1_777_593_600_000 + 13 * 3_600_000)
        );
        assert_eq!(parse_time("2000-03-01T00:01Z", now), Ok(951_868_860_000));
        assert_eq!(parse_time("7d", now), Ok(now - 7 * 86_400_000));
        assert_eq!(parse_time("90m", now), Ok(now - 90 * 60_000));
        for bad in [
            "yesterday",
            "2026-13-01",
            "2026-05-01T13:00",
            "-5d",
            "2026-05",
        ] {
            assert!(parse_time(bad, now).is_err(), "{bad}");
        }
    }

    #[derive(clap::Parser)]
    struct Purge {
        #[command(flatten)]
        filter: FilterArgs,
    }

    fn filter(args: &[&str]) -> anyhow::Result<FeedbackFilter> {
        let parsed = <Purge as clap::Parser>::try_parse_from(
            std::iter::once("purge").chain(args.iter().copied()),
        )?;
        parsed.filter.filter(5_000)
    }

    #[test]
    fn filters_from_flags_and_an_empty_one_refused() {
        assert!(filter(&[]).is_err());
        let f = filter(&[
            "--tenant",
            "clinic-a",
            "--key",
            "k1",
            "--since",
            "1970-01-01T00:00:01Z",
            "--until",
            "2s",
            "--version",
            "v0003",
            "--subject",
            "p7",
        ])
        .ok();
        assert_eq!(
            f,
            Some(FeedbackFilter {
                tenant: "clinic-a".into(),
                key_id: "k1".into(),
                from_unix_ms: 1_000,
                to_unix_ms: 3_000,
                model_version: "v0003".into(),
                subject_id: "p7".into(),
            })
        );
    }
}
