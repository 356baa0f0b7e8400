//! Conversations from the command line: `--context "Agent: ..."` turns, and
//! `--conversation FILE.jsonl`, whose person's turns are analysed one by one on an
//! AnalyzeStream with the other side's turns in between.

use std::path::Path;

use anyhow::{Context, bail};
use empathy_grpc::v1::{AnalyzeOptions, AnalyzeRequest, AnalyzeResponse, Turn};
use futures::StreamExt;

use crate::Client;

/// Speakers a `Speaker:` prefix may name, as the API spells them.
const SPEAKERS: [&str; 4] = ["user", "agent", "assistant", "system"];

/// A turn from `"Speaker: text"`; without a known speaker prefix, the person's own.
pub fn turn(raw: &str) -> Turn {
    if let Some((prefix, text)) = raw.split_once(':') {
        let speaker = prefix.trim().to_lowercase();
        if SPEAKERS.contains(&speaker.as_str()) {
            return Turn {
                speaker,
                text: text.trim().to_string(),
            };
        }
    }
    Turn {
        speaker: "user".into(),
        text: raw.trim().to_string(),
    }
}

/// The turns of a conversation file: one `{"speaker", "text"}` object per line (blank
/// lines skipped; no speaker = the person's).
pub fn read_turns(path: &Path) -> anyhow::Result<Vec<Turn>> {
    let file = std::fs::read_to_string(path)
        .with_context(|| format!("cannot read the conversation {}", path.display()))?;
    let mut turns = Vec::new();
    for (n, line) in file
        .lines()
        .enumerate()
        .filter(|(_, l)| !l.trim().is_empty())
    {
        let at = || format!("{} line {}", path.display(), n + 1);
        let value: serde_json::Value =
            serde_json::from_str(line).with_context(|| format!("{}: not JSON", at()))?;
        let field = |name: &str| value.get(name).and_then(serde_json::Value::as_str);
        let Some(text) = field("text") else {
            bail!("{}: a turn needs a \"text\" string", at());
        };
        let (speaker, text) = (field("speaker").unwrap_or_default(), text.to_string());
        let speaker = match speaker.trim().to_lowercase() {
            s if s.is_empty() => "user".to_string(),
            s if SPEAKERS.contains(&s.as_str()) => s,
            s => bail!(
                "{}: speaker {s:?} is not one of {}",
                at(),
                SPEAKERS.join(", ")
            ),
        };
        turns.push(Turn { speaker, text });
    }
    if !turns.iter().any(|t| t.speaker == "user") {
        bail!("{}: no turn of the user to analyse", path.display());
    }
    Ok(turns)
}

/// One stream request per turn of the person, carrying the other side's turns said
/// since the previous one.
fn requests(turns: Vec<Turn>, options: AnalyzeOptions, subject: &str) -> Vec<AnalyzeRequest> {
    let mut requests = Vec::new();
    let mut since = Vec::new();
    for turn in turns {
        if turn.speaker != "user" {
            since.push(turn);
            continue;
        }
        requests.push(AnalyzeRequest {
            text: turn.text,
            context: std::mem::take(&mut since),
            options: Some(options.clone()),
            subject_id: subject.to_string(),
            request_id: format!("turn-{}", requests.len() + 1),
            ..Default::default()
        });
    }
    requests
}

/// Analyses the person's turns of the conversation in `path` and prints each answer.
pub async fn run(
    mut client: Client,
    path: &Path,
    options: AnalyzeOptions,
    subject: &str,
    json: bool,
) -> anyhow::Result<()> {
    let requests = requests(read_turns(path)?, options, subject);
    let texts: Vec<String> = requests.iter().map(|r| r.text.clone()).collect();
    let mut answers = client
        .analyze_stream(futures::stream::iter(requests))
        .await
        .map_err(crate::refused)?
        .into_inner();
    let mut n = 0;
    while let Some(answer) = answers.next().await {
        let answer: AnalyzeResponse = answer.map_err(crate::refused)?;
        if json {
            println!("{}", serde_json::to_string(&answer)?);
        } else {
            let said = texts.get(n).map_or("", String::as_str);
            println!("turn {}  {said}", n + 1);
            print!("{}", crate::summary::summary(&answer));
            println!();
        }
        n += 1;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_known_prefix_names_the_speaker_and_anything_else_is_the_person() {
        let t = turn("Agent: It ships on Monday");
        assert_eq!(
            (t.speaker.as_str(), t.text.as_str()),
            ("agent", "It ships on Monday")
        );
        let t = turn("Note: call back");
        assert_eq!(
            (t.speaker.as_str(), t.text.as_str()),
            ("user", "Note: call back")
        );
        assert_eq!(turn("  fine  ").text, "fine");
    }

    #[test]
    fn each_person_turn_carries_what_the_other_side_said_since() {
        let turns = vec![
            turn("Agent: Hello, how can I help?"),
            turn("User: My order is late"),
            turn("Agent: It ships next month"),
            turn("System: transferred"),
            turn("User: Perfect."),
        ];
        let r = requests(turns, AnalyzeOptions::default(), "s1");
        assert_eq!(r.len(), 2);
        assert_eq!(r[0].context.len(), 1);
        assert_eq!(r[1].text, "Perfect.");
        let since: Vec<&str> = r[1].context.iter().map(|t| t.speaker.as_str()).collect();
        assert_eq!(since, ["agent", "system"]);
        assert_eq!(r[1].subject_id, "s1");
    }
}
