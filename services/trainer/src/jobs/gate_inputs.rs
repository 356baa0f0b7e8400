//! What a tenant's job gives the gate beside its corrections: the tenant's own check
//! tolerance and a sample of its recent traffic (issue 13).

use empathy_proto::is_tenant_name;
use empathy_training::finetune::{FinetuneConfig, TrafficExample};

use super::{Settings, Trainer};

/// Newest traffic samples a job compares parent and candidate on.
const TRAFFIC_PER_JOB: usize = 1000;

impl Settings {
    /// The fine-tune settings for `tenant`'s job: its own check tolerance if it has one.
    pub(super) fn finetune_for(&self, tenant: &str) -> FinetuneConfig {
        let mut config = self.finetune.clone();
        if let Some(t) = self.tenant_check_tolerance.get(tenant) {
            config.check_tolerance = *t;
        }
        config
    }
}

impl Trainer {
    /// `tenant`'s newest sampled analyses as the gate reads them; none when the store
    /// cannot give them (the gate then reports that it had no traffic).
    pub(super) fn traffic(&self, tenant: &str) -> Vec<TrafficExample> {
        let samples = match self.store.traffic(tenant, TRAFFIC_PER_JOB) {
            Ok(s) => s,
            Err(e) => {
                tracing::warn!(%tenant, "cannot read the traffic sample: {e:#}");
                return Vec::new();
            }
        };
        samples
            .into_iter()
            .filter_map(|mut s| {
                Some(TrafficExample {
                    text: s.features.remove("text")?.values,
                    lexicon: s.features.remove("lexicon")?.values,
                })
            })
            .collect()
    }
}

/// `--tenant-check-tolerance`'s TENANT=VALUE.
pub fn parse_tenant_tolerance(s: &str) -> Result<(String, f64), String> {
    let (tenant, value) = s
        .split_once('=')
        .ok_or_else(|| format!("{s:?}: expected TENANT=VALUE, e.g. acme=0.05"))?;
    if !is_tenant_name(tenant) {
        return Err(format!(
            "{tenant:?} is not a tenant name (1-64 of a-z, 0-9, '-' and '_')"
        ));
    }
    let value: f64 = value
        .parse()
        .map_err(|_| format!("{value:?} is not a number"))?;
    if !(0.0..=1.0).contains(&value) {
        return Err(format!("{value} is not a tolerance between 0 and 1"));
    }
    Ok((tenant.to_string(), value))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tenant_tolerances_parse_or_say_why_not() {
        assert_eq!(
            parse_tenant_tolerance("acme=0.05"),
            Ok(("acme".to_string(), 0.05))
        );
        for (bad, why) in [
            ("acme", "expected TENANT=VALUE"),
            ("Acme=0.1", "not a tenant name"),
            ("acme=x", "not a number"),
            ("acme=2", "between 0 and 1"),
        ] {
            let err = parse_tenant_tolerance(bad).expect_err(bad);
            assert!(err.contains(why), "{bad}: {err}");
        }
    }
}
