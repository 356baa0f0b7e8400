//! `empathy replies`: a tenant's reply templates (set), the best ones for a turn
//! (suggest), and how often the right one comes first on written cases (eval).

use std::path::{Path, PathBuf};

use anyhow::{Context, bail};
use empathy_grpc::v1::{
    AnalyzeOptions, AnalyzeRequest, ReplyTemplate, SetRepliesRequest, SuggestRepliesRequest,
    SuggestRepliesResponse, Turn,
};
use serde::Deserialize;

use crate::Client;
use crate::analyze::MeaningToggle;

#[derive(clap::Args)]
pub struct RepliesArgs {
    #[command(subcommand)]
    command: RepliesCommand,
    /// Whether the server's meaning reader reads each turn (as for `empathy analyze`):
    /// `on` asks for it, `off` leaves it out. Default: the server's choice.
    #[arg(long, value_enum, global = true)]
    meaning_reader: Option<MeaningToggle>,
    #[command(flatten)]
    fusion: crate::FusionEndpoint,
}

#[derive(clap::Subcommand)]
enum RepliesCommand {
    /// [admin] Replace the tenant's reply templates with a JSONL file of `{"id", "text",
    /// "emotions"?, "intent"?}` (an empty file removes them).
    Set { bank: PathBuf },
    /// The templates that fit a turn best, with why.
    Suggest {
        /// What the person said.
        #[arg(long)]
        text: String,
        /// A turn said before, oldest first, with an optional `Speaker:` prefix.
        #[arg(long = "context", value_name = "TURN")]
        context: Vec<String>,
        /// Rank this JSONL bank instead of the tenant's.
        #[arg(long, value_name = "FILE.jsonl")]
        bank: Option<PathBuf>,
        /// How many, best first.
        #[arg(short, long, default_value_t = 3)]
        k: u32,
        /// Print the SuggestRepliesResponse as JSON.
        #[arg(long)]
        json: bool,
    },
    /// Top-1 accuracy on written cases, JSONL of `{"id", "context", "text", "right",
    /// "acceptable"}` (see eval/README.md).
    Eval {
        #[arg(long, value_name = "FILE.jsonl")]
        data: PathBuf,
        /// Rank this JSONL bank instead of the tenant's.
        #[arg(long, value_name = "FILE.jsonl")]
        bank: Option<PathBuf>,
        /// Leave the cases' context out (to show what it adds).
        #[arg(long)]
        without_context: bool,
        /// Write each case's ranking (every template's scores) here.
        #[arg(long, value_name = "OUT.jsonl")]
        details: Option<PathBuf>,
    },
}

pub async fn run(args: RepliesArgs) -> anyhow::Result<()> {
    let mut client = args.fusion.connect().await?;
    let reading = MeaningToggle::reading(args.meaning_reader);
    match args.command {
        RepliesCommand::Set { bank } => {
            let templates = read_bank(&bank)?;
            let set = client
                .set_replies(SetRepliesRequest { templates })
                .await
                .map_err(crate::refused)?
                .into_inner();
            println!("{} reply templates set", set.templates);
        }
        RepliesCommand::Suggest {
            text,
            context,
            bank,
            k,
            json,
        } => {
            let context = context
                .iter()
                .map(|t| crate::conversation::turn(t))
                .collect();
            let templates = bank
                .as_deref()
                .map(read_bank)
                .transpose()?
                .unwrap_or_default();
            let turn = turn(text, context, reading);
            let answer = suggest(&mut client, turn, templates, k).await?;
            crate::print(&answer, json, table)?;
        }
        RepliesCommand::Eval {
            data,
            bank,
            without_context,
            details,
        } => {
            let templates = bank
                .as_deref()
                .map(read_bank)
                .transpose()?
                .unwrap_or_default();
            let cases = read_cases(&data)?;
            let how = Ranked {
                templates,
                without_context,
                reading,
            };
            let score = eval(&mut client, cases, &how, details).await?;
            println!("{score}");
        }
    }
    Ok(())
}

/// The request to analyse a turn, the meaning reader as `reading` chooses.
fn turn(text: String, context: Vec<Turn>, reading: i32) -> AnalyzeRequest {
    AnalyzeRequest {
        text,
        context,
        options: Some(AnalyzeOptions {
            meaning_reading: reading,
            ..Default::default()
        }),
        ..Default::default()
    }
}

async fn suggest(
    client: &mut Client,
    turn: AnalyzeRequest,
    templates: Vec<ReplyTemplate>,
    top_k: u32,
) -> anyhow::Result<SuggestRepliesResponse> {
    let request = SuggestRepliesRequest {
        turn: Some(turn),
        top_k,
        templates,
    };
    Ok(client
        .suggest_replies(request)
        .await
        .map_err(crate::refused)?
        .into_inner())
}

fn table(answer: &SuggestRepliesResponse) -> String {
    let mut out = String::new();
    if let Some(a) = &answer.analysis {
        let sentiment = a.sentiment.as_ref().map(|s| s.label.as_str()).unwrap_or("");
        let emotion = a.emotions.as_ref().map(|e| e.top.as_str()).unwrap_or("");
        out += &format!("analysed    {sentiment}, {emotion}\n");
    }
    for (i, s) in answer.suggestions.iter().enumerate() {
        let Some(t) = &s.template else { continue };
        out += &format!(
            "{}. {:<24} {:.3}  {}\n   {}\n",
            i + 1,
            t.id,
            s.score,
            t.text,
            s.why
        );
    }
    out
}

/// The templates of a JSONL bank (blank lines skipped).
fn read_bank(path: &Path) -> anyhow::Result<Vec<ReplyTemplate>> {
    read_jsonl(path, "reply template")
}

#[derive(Deserialize)]
struct Case {
    id: String,
    #[serde(default)]
    context: Vec<Turn>,
    text: String,
    right: String,
    #[serde(default)]
    acceptable: Vec<String>,
}

fn read_cases(path: &Path) -> anyhow::Result<Vec<Case>> {
    read_jsonl(path, "case")
}

fn read_jsonl<T: serde::de::DeserializeOwned>(path: &Path, what: &str) -> anyhow::Result<Vec<T>> {
    let file =
        std::fs::read_to_string(path).with_context(|| format!("cannot read {}", path.display()))?;
    let mut items = Vec::new();
    for (n, line) in file.lines().enumerate() {
        if line.trim().is_empty() {
            continue;
        }
        match serde_json::from_str(line) {
            Ok(item) => items.push(item),
            Err(e) => bail!("{} line {}: not a {what}: {e}", path.display(), n + 1),
        }
    }
    Ok(items)
}

/// Cases whose right template came first, whose first was right or acceptable, and
/// whose right one was among the first three.
#[derive(Default)]
struct Score {
    cases: usize,
    top1: usize,
    top1_acceptable: usize,
    top3: usize,
}

impl std::fmt::Display for Score {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let share = |n: usize| n as f64 / self.cases.max(1) as f64;
        write!(
            f,
            "{} cases: top-1 {:.3} ({}), top-1 right or acceptable {:.3}, right in top 3 {:.3}",
            self.cases,
            share(self.top1),
            self.top1,
            share(self.top1_acceptable),
            share(self.top3)
        )
    }
}

/// How `eval` asks for each case's ranking.
struct Ranked {
    /// The bank to rank (empty: the tenant's).
    templates: Vec<ReplyTemplate>,
    /// Leave each case's context out.
    without_context: bool,
    /// `options.meaning_reading` of each turn.
    reading: i32,
}

async fn eval(
    client: &mut Client,
    cases: Vec<Case>,
    how: &Ranked,
    details: Option<PathBuf>,
) -> anyhow::Result<Score> {
    use std::io::Write;
    let mut details = details
        .map(|p| std::fs::File::create(&p).with_context(|| format!("cannot write {}", p.display())))
        .transpose()?
        .map(std::io::BufWriter::new);
    let mut score = Score::default();
    for case in cases {
        let context = if how.without_context {
            Vec::new()
        } else {
            case.context
        };
        let top_k = if details.is_some() { 50 } else { 3 };
        let turn = turn(case.text, context, how.reading);
        let answer = suggest(client, turn, how.templates.clone(), top_k)
            .await
            .with_context(|| format!("case {}", case.id))?;
        let ids: Vec<&str> = answer
            .suggestions
            .iter()
            .filter_map(|s| s.template.as_ref().map(|t| t.id.as_str()))
            .collect();
        score.cases += 1;
        let first = ids.first().copied().unwrap_or("");
        score.top1 += usize::from(first == case.right);
        score.top1_acceptable +=
            usize::from(first == case.right || case.acceptable.iter().any(|a| a == first));
        score.top3 += usize::from(ids.iter().take(3).any(|id| *id == case.right));
        if let Some(out) = details.as_mut() {
            let line = serde_json::json!({"id": case.id, "right": case.right, "answer": answer});
            writeln!(out, "{line}")?;
        }
    }
    if let Some(mut out) = details {
        out.flush()?;
    }
    Ok(score)
}
