//! The sustained-negative rule over a subject's affect points, and the per-day view an
//! integrator charts: pure, so that the rule is tested without a system.

use std::collections::BTreeMap;

use empathy_proto::utc_day as day_of;
use empathy_proto::v1::{AffectPoint, AlertRule, DailyAffect};

const DAY_MS: i64 = 86_400_000;

/// The rule with its unset (0) fields at their defaults, or why it cannot be applied.
pub fn with_defaults(rule: Option<AlertRule>) -> Result<AlertRule, String> {
    let r = rule.unwrap_or_default();
    let or = |v: u32, default: u32| if v == 0 { default } else { v };
    let rule = AlertRule {
        window_days: or(r.window_days, 7),
        min_points: or(r.min_points, 5),
        min_days: or(r.min_days, 3),
        max_mean_valence: if r.max_mean_valence == 0.0 {
            -0.2
        } else {
            r.max_mean_valence
        },
        min_negative_share: if r.min_negative_share == 0.0 {
            0.6
        } else {
            r.min_negative_share
        },
    };
    if rule.window_days > 365 {
        return Err(format!(
            "rule.window_days is {}; at most 365",
            rule.window_days
        ));
    }
    if rule.min_days > rule.window_days {
        return Err(format!(
            "rule.min_days ({}) is more than rule.window_days ({})",
            rule.min_days, rule.window_days
        ));
    }
    if !(-1.0..0.0).contains(&rule.max_mean_valence) {
        return Err("rule.max_mean_valence must be in [-1, 0)".into());
    }
    if !(0.0..=1.0).contains(&rule.min_negative_share) {
        return Err("rule.min_negative_share must be in (0, 1]".into());
    }
    Ok(rule)
}

/// Per UTC day, oldest first: analyses, mean valence, share of negative answers.
pub fn daily(points: &[AffectPoint]) -> Vec<DailyAffect> {
    let mut days: BTreeMap<String, Vec<&AffectPoint>> = BTreeMap::new();
    for p in points {
        days.entry(day_of(p.analyzed_unix_ms)).or_default().push(p);
    }
    days.into_iter()
        .map(|(day, ps)| {
            let (valence, negative) = means(&ps);
            DailyAffect {
                day,
                analyses: ps.len() as u32,
                mean_valence: valence,
                negative_share: negative,
            }
        })
        .collect()
}

/// Mean valence and share of negative answers.
fn means(points: &[&AffectPoint]) -> (f32, f32) {
    let n = points.len().max(1) as f32;
    let valence = points.iter().map(|p| p.valence).sum::<f32>() / n;
    let negative = points.iter().filter(|p| p.sentiment == "negative").count() as f32 / n;
    (valence, negative)
}

/// Whether the points of the rule's window (ending `now_ms`) meet it, and in words why.
pub fn judge(points: &[AffectPoint], rule: &AlertRule, now_ms: i64) -> (bool, String) {
    let since = now_ms - i64::from(rule.window_days) * DAY_MS;
    let window: Vec<&AffectPoint> = points
        .iter()
        .filter(|p| p.analyzed_unix_ms >= since)
        .collect();
    let days = window
        .iter()
        .map(|p| day_of(p.analyzed_unix_ms))
        .collect::<std::collections::BTreeSet<_>>()
        .len();
    let (valence, negative) = means(&window);
    let held = format!(
        "the last {} days hold {} analyses on {days} days, mean valence {valence:+.2}, \
         {:.0}% negative",
        rule.window_days,
        window.len(),
        negative * 100.0
    );
    if window.len() < rule.min_points as usize || days < rule.min_days as usize {
        return (
            false,
            format!(
                "{held}: too few to judge (the rule needs {} on {} days)",
                rule.min_points, rule.min_days
            ),
        );
    }
    let alert = valence <= rule.max_mean_valence && negative >= rule.min_negative_share;
    let verdict = if alert {
        "sustained negative: alert"
    } else {
        "not sustained negative"
    };
    (alert, format!("{held}: {verdict}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    const NOW: i64 = 1_780_000_000_000; // 2026-05-28

    fn point(days_ago: f64, valence: f32) -> AffectPoint {
        AffectPoint {
            analysis_id: format!("a{days_ago}"),
            analyzed_unix_ms: NOW - (days_ago * DAY_MS as f64) as i64,
            valence,
            arousal: 0.0,
            sentiment: if valence < -0.1 {
                "negative"
            } else {
                "positive"
            }
            .into(),
        }
    }

    #[test]
    fn days_are_utc_calendar_days() {
        assert_eq!(day_of(0), "1970-01-01");
        assert_eq!(day_of(951_782_400_000), "2000-02-29");
        assert_eq!(day_of(NOW), "2026-05-28");
        assert_eq!(day_of(-1), "1969-12-31");
    }

    #[test]
    fn a_week_of_bad_days_alerts_and_one_bad_afternoon_does_not() {
        let rule = with_defaults(None).unwrap();
        let week: Vec<AffectPoint> = (0..6).map(|d| point(d as f64 + 0.1, -0.6)).collect();
        let (alert, why) = judge(&week, &rule, NOW);
        assert!(alert, "{why}");
        assert!(why.contains("6 analyses on 6 days"), "{why}");
        let afternoon: Vec<AffectPoint> = (0..8).map(|i| point(0.01 * i as f64, -0.9)).collect();
        let (alert, why) = judge(&afternoon, &rule, NOW);
        assert!(!alert && why.contains("too few to judge"), "{why}");
        // Bad days outside the window do not count.
        let old: Vec<AffectPoint> = (0..6).map(|d| point(d as f64 + 10.0, -0.6)).collect();
        assert!(!judge(&old, &rule, NOW).0);
    }

    #[test]
    fn mixed_days_do_not_alert() {
        let rule = with_defaults(None).unwrap();
        let mixed: Vec<AffectPoint> = (0..6)
            .map(|d| point(d as f64 + 0.1, if d % 2 == 0 { -0.6 } else { 0.5 }))
            .collect();
        let (alert, why) = judge(&mixed, &rule, NOW);
        assert!(!alert && why.contains("not sustained"), "{why}");
        let days = daily(&mixed);
        assert_eq!(days.len(), 6);
        assert!(days.windows(2).all(|w| w[0].day < w[1].day));
    }

    #[test]
    fn a_rule_that_cannot_hold_is_refused() {
        let bad = |r: AlertRule| with_defaults(Some(r)).unwrap_err();
        assert!(
            bad(AlertRule {
                max_mean_valence: 0.3,
                ..Default::default()
            })
            .contains("[-1, 0)")
        );
        assert!(
            bad(AlertRule {
                min_days: 9,
                ..Default::default()
            })
            .contains("more than")
        );
        assert!(
            bad(AlertRule {
                window_days: 400,
                ..Default::default()
            })
            .contains("365")
        );
    }
}
