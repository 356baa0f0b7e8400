//! Reply templates end to end: a tenant's bank kept by the real trainer, set with the
//! CLI and ranked by fusion for held-out written turns; templates sent with a request
//! to a fusion without a trainer; the errors a caller sees.

mod support;

use empathy_proto::v1::{
    AnalyzeRequest, ReplyTemplate, SetRepliesRequest, SuggestRepliesRequest, Turn,
};
use support::*;
use tonic::Code;

/// `empathy replies --endpoint <endpoint> <args>`'s standard output.
fn replies(endpoint: &str, args: &[&str]) -> anyhow::Result<String> {
    let out = empathy(&[&["replies", "--endpoint", endpoint][..], args].concat())?;
    Ok(String::from_utf8(out.stdout)?)
}

fn eval_file(name: &str) -> String {
    let eval = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../eval");
    eval.join(name).display().to_string()
}

/// The number after `label` in `empathy replies eval`'s line.
fn share(line: &str, label: &str) -> Option<f64> {
    line.split(label)
        .nth(1)?
        .split_whitespace()
        .next()?
        .trim_end_matches(',')
        .parse()
        .ok()
}

fn turn(text: &str) -> Option<AnalyzeRequest> {
    Some(AnalyzeRequest {
        text: text.into(),
        ..Default::default()
    })
}

#[tokio::test]
async fn a_tenants_bank_is_kept_by_the_trainer_and_ranked_for_each_turn() -> anyhow::Result<()> {
    let system = start_learning_system(&temp_dir("replies"), &[], &[]).await?;
    let mut c = client(&system.fusion).await?;
    let fusion = system.fusion.url();
    let ask = |text: &str| SuggestRepliesRequest {
        turn: turn(text),
        ..Default::default()
    };

    let none = c
        .suggest_replies(ask("Where is my parcel?"))
        .await
        .unwrap_err();
    assert_eq!(none.code(), Code::FailedPrecondition, "{none:?}");
    assert!(none.message().contains("SetReplies"), "{}", none.message());

    let set = replies(&fusion, &["set", &eval_file("replies-bank-examples.jsonl")])?;
    assert_eq!(set.trim(), "33 reply templates set");
    // A bad bank is refused whole, naming the template; the stored one stays.
    let bad = SetRepliesRequest {
        templates: vec![ReplyTemplate {
            id: "shout".into(),
            text: "Calm down.".into(),
            emotions: vec!["rage".into()],
            ..Default::default()
        }],
    };
    let refused = c.set_replies(bad).await.unwrap_err();
    assert_eq!(refused.code(), Code::InvalidArgument);
    assert!(refused.message().contains("\"shout\"") && refused.message().contains("rage"));

    // Held-out turns written with the right template known (eval/README.md).
    let scored = replies(
        &fusion,
        &["eval", "--data", &eval_file("replies-test.jsonl")],
    )?;
    println!("replies-test with the tenant's bank: {scored}");
    let top1 = share(&scored, "top-1").unwrap_or(0.0);
    let top3 = share(&scored, "right in top 3").unwrap_or(0.0);
    assert!(scored.starts_with("70 cases"), "{scored}");
    assert!(top1 >= 0.5 && top3 >= 0.65, "{scored}");

    // One answer read as a caller would.
    let answer = c
        .suggest_replies(SuggestRepliesRequest {
            turn: Some(AnalyzeRequest {
                text: "My husband passed away in March and the account is in his name.".into(),
                context: vec![Turn {
                    speaker: "agent".into(),
                    text: "How can I help today?".into(),
                }],
                ..Default::default()
            }),
            top_k: 5,
            ..Default::default()
        })
        .await?
        .into_inner();
    assert_eq!(answer.bank, "tenant");
    assert!(answer.analysis.is_some_and(|a| !a.analysis_id.is_empty()));
    assert_eq!(answer.suggestions.len(), 5);
    let ids: Vec<&str> = answer
        .suggestions
        .iter()
        .filter_map(|s| s.template.as_ref().map(|t| t.id.as_str()))
        .collect();
    assert_eq!(ids[0], "empathise_loss", "{ids:?}");
    assert!(
        answer
            .suggestions
            .windows(2)
            .all(|w| w[0].score >= w[1].score)
    );
    assert!(answer.suggestions.iter().all(|s| s.why.contains("words")));

    // Another tenant's bank is its own.
    let other = c
        .suggest_replies(as_tenant("globex", ask("Where is my parcel?"))?)
        .await
        .unwrap_err();
    assert_eq!(other.code(), Code::FailedPrecondition);
    assert!(other.message().contains("globex"), "{}", other.message());
    Ok(())
}

#[tokio::test]
async fn templates_sent_with_the_request_need_no_trainer() -> anyhow::Result<()> {
    let encoder = start_encoder(&[]).await?;
    let fusion = start_fusion(&[encoder.url()], &[]).await?;
    let mut c = client(&fusion).await?;
    let template = |id: &str, text: &str, emotions: &[&str]| ReplyTemplate {
        id: id.into(),
        text: text.into(),
        emotions: emotions.iter().map(|e| e.to_string()).collect(),
        ..Default::default()
    };
    let templates = vec![
        template(
            "hours",
            "We're open nine to five, Monday to Saturday.",
            &["neutral"],
        ),
        template(
            "congrats",
            "Congratulations, that's brilliant news!",
            &["joy"],
        ),
        template(
            "sorry_late",
            "I'm sorry your delivery is late; I'm chasing it now.",
            &["anger"],
        ),
    ];
    let ask = |text: &str, top_k: u32| SuggestRepliesRequest {
        turn: turn(text),
        top_k,
        templates: templates.clone(),
    };
    for (text, right) in [
        ("When do you open on Saturdays?", "hours"),
        ("I passed my driving test this morning!", "congrats"),
        (
            "My order was due a week ago and it still hasn't come.",
            "sorry_late",
        ),
    ] {
        let answer = c.suggest_replies(ask(text, 0)).await?.into_inner();
        assert_eq!(answer.bank, "request");
        assert_eq!(answer.suggestions.len(), 3, "top_k 0 means 3");
        let first = answer.suggestions[0]
            .template
            .as_ref()
            .map(|t| t.id.as_str());
        assert_eq!(first, Some(right), "{text}: {:?}", answer.suggestions);
    }

    let too_many = c.suggest_replies(ask("Hi", 51)).await.unwrap_err();
    assert_eq!(too_many.code(), Code::InvalidArgument);
    assert!(
        too_many.message().contains("top_k"),
        "{}",
        too_many.message()
    );
    let no_turn = SuggestRepliesRequest {
        templates: templates.clone(),
        ..Default::default()
    };
    let missing = c.suggest_replies(no_turn).await.unwrap_err();
    assert_eq!(missing.code(), Code::InvalidArgument);
    let set = c
        .set_replies(SetRepliesRequest { templates })
        .await
        .unwrap_err();
    assert_eq!(set.code(), Code::FailedPrecondition);
    assert!(
        set.message().contains("without a trainer"),
        "{}",
        set.message()
    );
    // Still serving.
    analyze_text(&mut c, "Thanks, that helped.").await?;
    Ok(())
}
