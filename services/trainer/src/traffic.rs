//! Fusion's sample of each tenant's analyses (`SubmitTraffic`): checked here, stored
//! bounded per tenant (`store::tenants`), and read by a job of that tenant's line to
//! measure how many of the tenant's uncorrected answers a candidate would change.

use empathy_proto::v1::{TrafficBatch, TrafficSample};
use tonic::Status;

/// Most samples in one batch (fusion sends at most 256).
const MAX_BATCH: usize = 1024;
/// Longest analysis or subject id kept.
const MAX_ID_CHARS: usize = 128;
/// Most values in a sample's features (text 384 + lexicon, with room to grow).
const MAX_VALUES: usize = 4096;

/// The batch's samples, or INVALID_ARGUMENT saying what is wrong with which.
pub fn check(batch: TrafficBatch) -> Result<Vec<TrafficSample>, Status> {
    if batch.samples.len() > MAX_BATCH {
        return Err(Status::invalid_argument(format!(
            "{} samples in one batch; send at most {MAX_BATCH}",
            batch.samples.len()
        )));
    }
    for (i, s) in batch.samples.iter().enumerate() {
        check_sample(s).map_err(|why| {
            Status::invalid_argument(format!("traffic sample {i} ({:?}): {why}", s.analysis_id))
        })?;
    }
    Ok(batch.samples)
}

fn check_sample(s: &TrafficSample) -> Result<(), String> {
    if s.analysis_id.trim().is_empty() || s.analysis_id.chars().count() > MAX_ID_CHARS {
        return Err(format!("analysis_id must be 1-{MAX_ID_CHARS} characters"));
    }
    if s.subject_id.chars().count() > MAX_ID_CHARS {
        return Err(format!(
            "subject_id is longer than {MAX_ID_CHARS} characters"
        ));
    }
    if !empathy_proto::is_tenant_name(&s.tenant) {
        return Err("tenant must be 1-64 characters of a-z, 0-9, '-' and '_'".into());
    }
    for name in ["text", "lexicon"] {
        let values = s
            .features
            .get(name)
            .map(|v| v.values.as_slice())
            .ok_or_else(|| format!("the {name:?} features are missing"))?;
        if values.is_empty() || values.len() > MAX_VALUES {
            return Err(format!(
                "the {name:?} features must hold 1-{MAX_VALUES} values"
            ));
        }
        if values.iter().any(|x| !x.is_finite()) {
            return Err(format!("the {name:?} features hold NaN or infinity"));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use empathy_proto::v1::FloatVector;

    fn sample(tenant: &str, text: Vec<f32>) -> TrafficSample {
        TrafficSample {
            analysis_id: "a1".into(),
            tenant: tenant.into(),
            features: [
                ("text".to_string(), FloatVector { values: text }),
                (
                    "lexicon".to_string(),
                    FloatVector {
                        values: vec![0.0; 24],
                    },
                ),
            ]
            .into(),
            ..TrafficSample::default()
        }
    }

    #[test]
    fn bad_samples_are_refused_with_the_reason() {
        let ok = TrafficBatch {
            samples: vec![sample("acme", vec![0.1; 384])],
        };
        assert_eq!(check(ok).map(|s| s.len()).ok(), Some(1));
        for (bad, why) in [
            (sample("Acme!", vec![0.1; 384]), "tenant must be"),
            (sample("acme", vec![f32::NAN; 384]), "NaN"),
            (sample("acme", vec![]), "must hold"),
        ] {
            let err = check(TrafficBatch { samples: vec![bad] }).err();
            let message = err.as_ref().map(|e| e.message().to_string());
            assert!(
                message.as_deref().is_some_and(|m| m.contains(why)),
                "{message:?}"
            );
            assert_eq!(err.map(|e| e.code()), Some(tonic::Code::InvalidArgument));
        }
    }
}
