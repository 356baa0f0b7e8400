//! `empathy trajectory`: one opted-in subject's affect per day, and whether the
//! sustained-negative rule is met (fusion's SubjectTrajectory).

use empathy_grpc::v1::{AlertRule, SubjectTrajectoryRequest, SubjectTrajectoryResponse};

#[derive(clap::Args)]
pub struct TrajectoryArgs {
    /// The subject's pseudonym, as its analyses were sent (`--subject ID --record-affect`).
    #[arg(long)]
    subject: String,
    /// Show the last this many days.
    #[arg(long, default_value_t = 30)]
    days: u32,
    /// The rule: over the last N days...
    #[arg(long, default_value_t = 7)]
    window_days: u32,
    /// ...at least this many analyses...
    #[arg(long, default_value_t = 5)]
    min_points: u32,
    /// ...on at least this many days...
    #[arg(long, default_value_t = 3)]
    min_days: u32,
    /// ...with a mean valence at most this...
    #[arg(long, default_value_t = -0.2, allow_hyphen_values = true)]
    max_valence: f32,
    /// ...and at least this share of negative answers.
    #[arg(long, default_value_t = 0.6)]
    min_negative_share: f32,
    /// Print the SubjectTrajectoryResponse as JSON.
    #[arg(long)]
    json: bool,
    #[command(flatten)]
    fusion: crate::FusionEndpoint,
}

pub async fn run(args: TrajectoryArgs) -> anyhow::Result<()> {
    let mut client = args.fusion.connect().await?;
    let request = SubjectTrajectoryRequest {
        subject_id: args.subject.clone(),
        days: args.days,
        rule: Some(AlertRule {
            window_days: args.window_days,
            min_points: args.min_points,
            min_days: args.min_days,
            max_mean_valence: args.max_valence,
            min_negative_share: args.min_negative_share,
        }),
    };
    let response = client
        .subject_trajectory(request)
        .await
        .map_err(|s| anyhow::anyhow!("{}: {}", s.code(), s.message()))?
        .into_inner();
    crate::print(&response, args.json, table)
}

fn table(r: &SubjectTrajectoryResponse) -> String {
    let mut out = String::from("day         analyses  valence  negative\n");
    for d in &r.days {
        out += &format!(
            "{}  {:>8}  {:>+7.2}  {:>7.0}%\n",
            d.day,
            d.analyses,
            d.mean_valence,
            d.negative_share * 100.0
        );
    }
    let flag = if r.alert { "ALERT: " } else { "" };
    out += &format!("{flag}{}\n", r.summary);
    out
}
