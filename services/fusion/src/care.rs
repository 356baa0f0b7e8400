//! Affect over time for care settings: an analysis sent with `record_affect` adds a
//! point to its subject's trajectory (kept by the trainer, so Forget and the retention
//! reach it), and `SubjectTrajectory` reads the points back per day with the
//! integrator's sustained-negative rule applied.

mod rule;

use std::time::Duration;

use empathy_proto::now_unix_ms as now_ms;
use empathy_proto::v1::{
    AffectPoint, AnalyzeResponse, ReadAffectRequest, SubjectAffect, SubjectTrajectoryRequest,
    SubjectTrajectoryResponse,
};
use tonic::Status;

use crate::trainer_link::TrainerLink;

/// Longest wait for the trainer to keep a point: the analysis is answered regardless.
const RECORD_TIMEOUT: Duration = Duration::from_secs(2);
const DAY_MS: i64 = 86_400_000;
/// Longest history one call reads.
const MAX_DAYS: u32 = 3650;

/// Keeps `response`'s affect for `subject_id`; a note for the answer if it could not.
pub async fn record(
    trainer: Option<&TrainerLink>,
    tenant: &str,
    subject_id: &str,
    response: &AnalyzeResponse,
) -> Option<String> {
    let Some(trainer) = trainer else {
        return Some(
            "affect not recorded: this server runs without a trainer, which keeps \
             trajectories"
                .into(),
        );
    };
    let affect = SubjectAffect {
        tenant: tenant.to_string(),
        subject_id: subject_id.to_string(),
        points: vec![AffectPoint {
            analysis_id: response.analysis_id.clone(),
            analyzed_unix_ms: now_ms(),
            valence: response.valence,
            arousal: response.arousal,
            sentiment: response
                .sentiment
                .as_ref()
                .map(|s| s.label.clone())
                .unwrap_or_default(),
        }],
    };
    match tokio::time::timeout(RECORD_TIMEOUT, trainer.record_affect(affect)).await {
        Ok(Ok(())) => None,
        Ok(Err(s)) => Some(format!("affect not recorded: {}", s.message())),
        Err(_) => Some("affect not recorded: the trainer did not answer in time".into()),
    }
}

pub async fn trajectory(
    trainer: Option<&TrainerLink>,
    tenant: &str,
    request: SubjectTrajectoryRequest,
) -> Result<SubjectTrajectoryResponse, Status> {
    if request.subject_id.is_empty() {
        return Err(Status::invalid_argument(
            "subject_id is empty: say whose trajectory to read",
        ));
    }
    let days = match request.days {
        0 => 30,
        d if d <= MAX_DAYS => d,
        d => {
            return Err(Status::invalid_argument(format!(
                "days is {d}; read at most {MAX_DAYS}"
            )));
        }
    };
    let rule = rule::with_defaults(request.rule).map_err(Status::invalid_argument)?;
    let trainer = trainer.ok_or_else(|| {
        Status::failed_precondition(
            "this server runs without a trainer, which keeps the subjects' trajectories",
        )
    })?;
    let now = now_ms();
    let since = now - i64::from(days.max(rule.window_days)) * DAY_MS;
    let points = trainer
        .read_affect(ReadAffectRequest {
            tenant: tenant.to_string(),
            subject_id: request.subject_id,
            since_unix_ms: since,
        })
        .await?;
    let (alert, summary) = rule::judge(&points, &rule, now);
    let shown_since = now - i64::from(days) * DAY_MS;
    let points: Vec<AffectPoint> = points
        .into_iter()
        .filter(|p| p.analyzed_unix_ms >= shown_since)
        .collect();
    Ok(SubjectTrajectoryResponse {
        days: rule::daily(&points),
        points,
        alert,
        rule: Some(rule),
        summary,
    })
}
