//! Care settings end to end: analyses of an opted-in subject kept as its affect
//! trajectory by the real trainer, read back per day with the sustained-negative rule,
//! private to the tenant, and deleted by Forget.

mod support;

use empathy_grpc::v1::empathy_service_client::EmpathyServiceClient;
use empathy_proto::v1::{
    AlertRule, AnalyzeOptions, AnalyzeRequest, ForgetRequest, SubjectTrajectoryRequest,
};
use support::*;
use tonic::{Code, transport::Channel};

const LOW: [&str; 5] = [
    "I feel hopeless and exhausted, nothing is getting any better.",
    "Another awful night, I cried for hours and hate how I feel.",
    "I'm so lonely and sad, everything is terrible today.",
    "I am miserable and scared, this pain is unbearable.",
    "Worst week ever, I feel worthless and angry at everything.",
];
const HIGH: [&str; 5] = [
    "I feel wonderful today, thank you so much for your help!",
    "Had a lovely walk with my daughter, I'm really happy.",
    "Great news, the new medicine works and I feel amazing.",
    "I love this group, everyone has been so kind to me.",
    "Slept well and feel great, what a beautiful morning!",
];

async fn analyse(
    c: &mut EmpathyServiceClient<Channel>,
    subject: &str,
    texts: &[&str],
    record: bool,
) -> anyhow::Result<()> {
    for text in texts {
        let r = c
            .analyze(AnalyzeRequest {
                text: text.to_string(),
                subject_id: subject.into(),
                options: Some(AnalyzeOptions {
                    record_affect: record,
                    ..Default::default()
                }),
                ..Default::default()
            })
            .await?
            .into_inner();
        assert!(
            !r.notes.iter().any(|n| n.contains("affect not recorded")),
            "{:?}",
            r.notes
        );
    }
    Ok(())
}

fn ask(subject: &str, min_days: u32) -> SubjectTrajectoryRequest {
    SubjectTrajectoryRequest {
        subject_id: subject.into(),
        days: 0,
        rule: Some(AlertRule {
            min_days,
            ..Default::default()
        }),
    }
}

#[tokio::test]
async fn an_opted_in_subjects_affect_is_kept_judged_and_forgotten() -> anyhow::Result<()> {
    let system = start_learning_system(&temp_dir("care"), &[], &[]).await?;
    let mut c = client(&system.fusion).await?;

    analyse(&mut c, "p-low", &LOW, true).await?;
    analyse(&mut c, "p-high", &HIGH, true).await?;
    // Not opted in for these: they are not kept.
    analyse(&mut c, "p-high", &LOW[..3], false).await?;

    let low = c.subject_trajectory(ask("p-low", 1)).await?.into_inner();
    assert_eq!(low.points.len(), 5);
    assert_eq!(low.days.len(), 1);
    assert!(low.alert, "{}", low.summary);
    assert!(low.days[0].mean_valence < -0.2, "{:?}", low.days);
    let high = c.subject_trajectory(ask("p-high", 1)).await?.into_inner();
    assert_eq!(high.points.len(), 5, "only the opted-in analyses");
    assert!(!high.alert, "{}", high.summary);
    // The default rule wants three different days: one bad day is not sustained.
    let one_day = c.subject_trajectory(ask("p-low", 0)).await?.into_inner();
    assert!(!one_day.alert && one_day.summary.contains("too few to judge"));
    assert_eq!(one_day.rule.map(|r| r.min_days), Some(3));

    // Another tenant does not see them.
    let other = c
        .subject_trajectory(as_tenant("globex", ask("p-low", 1))?)
        .await?
        .into_inner();
    assert!(other.points.is_empty());

    // Mistakes a caller can make, answered clearly.
    let no_subject = c
        .analyze(AnalyzeRequest {
            text: "Hello".into(),
            options: Some(AnalyzeOptions {
                record_affect: true,
                ..Default::default()
            }),
            ..Default::default()
        })
        .await
        .unwrap_err();
    assert_eq!(no_subject.code(), Code::InvalidArgument);
    assert!(no_subject.message().contains("subject_id"));
    let mut bad_rule = ask("p-low", 1);
    bad_rule.rule = Some(AlertRule {
        max_mean_valence: 0.5,
        ..Default::default()
    });
    let refused = c.subject_trajectory(bad_rule).await.unwrap_err();
    assert_eq!(refused.code(), Code::InvalidArgument);

    // The CLI's view.
    let fusion = system.fusion.url();
    let args = [
        "trajectory",
        "--subject",
        "p-low",
        "--min-days",
        "1",
        "--endpoint",
        &fusion,
    ];
    let shown = String::from_utf8(empathy(&args)?.stdout)?;
    assert!(shown.contains("ALERT: "), "{shown}");

    // Forgetting the subject deletes its trajectory.
    let forgot = trainer_client(&system.trainer)
        .await?
        .forget(ForgetRequest {
            subject_id: "p-low".into(),
        })
        .await?
        .into_inner();
    assert_eq!(forgot.affect_points_deleted, 5);
    let gone = c.subject_trajectory(ask("p-low", 1)).await?.into_inner();
    assert!(gone.points.is_empty() && !gone.alert);
    Ok(())
}

#[tokio::test]
async fn without_a_trainer_the_answer_says_the_affect_was_not_kept() -> anyhow::Result<()> {
    let encoder = start_encoder(&[]).await?;
    let fusion = start_fusion(&[encoder.url()], &[]).await?;
    let mut c = client(&fusion).await?;
    let r = c
        .analyze(AnalyzeRequest {
            text: "I feel low today.".into(),
            subject_id: "p1".into(),
            options: Some(AnalyzeOptions {
                record_affect: true,
                ..Default::default()
            }),
            ..Default::default()
        })
        .await?
        .into_inner();
    assert!(r.sentiment.is_some());
    assert!(
        r.notes.iter().any(|n| n.contains("affect not recorded")),
        "{:?}",
        r.notes
    );
    let none = c.subject_trajectory(ask("p1", 1)).await.unwrap_err();
    assert_eq!(none.code(), Code::FailedPrecondition);
    Ok(())
}
