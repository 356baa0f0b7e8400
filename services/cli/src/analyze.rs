//! `empathy analyze`: one request to a running EmpathyService, printed for a person
//! or, with --json, in protobuf's canonical JSON mapping.

use std::path::PathBuf;

use anyhow::Context;
use empathy_grpc::v1::{AnalyzeOptions, AnalyzeRequest, InfoRequest, MeaningReading};

#[derive(clap::Args)]
pub struct AnalyzeArgs {
    /// What the person said or wrote.
    #[arg(long, default_value = "")]
    text: String,
    /// A voice clip (WAV, FLAC, MP3, OGG).
    #[arg(long)]
    audio: Option<PathBuf>,
    /// A photo (PNG, JPEG, WebP, BMP).
    #[arg(long)]
    image: Option<PathBuf>,
    /// Imagine this many situations that would explain it (0 = none).
    #[arg(long, default_value_t = 0)]
    situations: u32,
    /// Seed for the situations: the same seed gives the same situations.
    #[arg(long, default_value_t = 0)]
    seed: u64,
    /// A turn said before this one, oldest first, with an optional `Speaker:` prefix
    /// (User, Agent, Assistant, System; none = User): `--context "Agent: It ships on
    /// Monday"`. Repeat for more turns.
    #[arg(long = "context", value_name = "TURN")]
    context: Vec<String>,
    /// A whole conversation, one JSON turn per line (`{"speaker": "agent", "text":
    /// "..."}`): each of the person's turns is analysed with the turns before it, and
    /// the trajectory printed.
    #[arg(long, value_name = "FILE.jsonl", conflicts_with_all = ["text", "audio", "image", "context"])]
    conversation: Option<PathBuf>,
    /// Analyse every line of a file: JSONL (`{"text", "id"?}` per line) or, named
    /// `.csv`, CSV with a header naming a `text` and optionally an `id` column. One
    /// JSON line per input goes to --output, in input order; rerunning the same command
    /// resumes after an interruption.
    #[arg(long, value_name = "FILE.jsonl|FILE.csv", requires = "output",
          conflicts_with_all = ["text", "audio", "image", "context", "conversation", "json"])]
    input: Option<PathBuf>,
    /// Where --input's answers go: `{"id", "analysis"}` or `{"id", "error"}` per line,
    /// and a summary beside it (`OUT.jsonl.summary.json`).
    #[arg(long, value_name = "OUT.jsonl", requires = "input")]
    output: Option<PathBuf>,
    /// The --input field or column holding each input's time (a date, RFC 3339, or
    /// seconds since 1970), for the report's view per day; default: the first of
    /// timestamp, time, date, created_at present.
    #[arg(long, value_name = "NAME", requires = "input")]
    time_field: Option<String>,
    /// Requests in flight for --input.
    #[arg(long, default_value_t = 8, value_parser = clap::value_parser!(u16).range(1..=256))]
    concurrency: u16,
    /// With --input, only lines whose 1-based number n has n % N == I (one shard of a
    /// job spread over N processes).
    #[arg(long, value_name = "I/N", default_value_t = crate::batch::Shard::ALL)]
    shard: crate::batch::Shard,
    /// Print the AnalyzeResponse as JSON.
    #[arg(long)]
    json: bool,
    /// An opaque id of the person the input is about (a pseudonym, never a name):
    /// feedback on this analysis is stored under it, and `empathy forget --subject`
    /// deletes it.
    #[arg(long, default_value = "")]
    subject: String,
    /// Keep this analysis's affect in the subject's trajectory (`empathy trajectory`):
    /// only for a person who opted in.
    #[arg(long, requires = "subject")]
    record_affect: bool,
    /// Whether the server's meaning reader reads this (about 0.2 s a text on 2
    /// cores): `on` asks for it (refused by a server without it), `off` leaves it out,
    /// e.g. for an --input batch at the model's speed. Default: the server's choice.
    #[arg(long, value_enum)]
    meaning_reader: Option<MeaningToggle>,
    #[command(flatten)]
    fusion: crate::FusionEndpoint,
    /// Deadline for the whole call, in milliseconds.
    #[arg(long, default_value_t = 30_000)]
    timeout_ms: u64,
}

/// `--meaning-reader on|off`: a request's own choice of the server's meaning reader.
#[derive(Clone, Copy, Debug, clap::ValueEnum)]
pub enum MeaningToggle {
    On,
    Off,
}

impl MeaningToggle {
    /// As `options.meaning_reading`; no choice is the server's default.
    pub fn reading(choice: Option<MeaningToggle>) -> i32 {
        match choice {
            None => MeaningReading::ServerDefault,
            Some(MeaningToggle::On) => MeaningReading::On,
            Some(MeaningToggle::Off) => MeaningReading::Off,
        }
        .into()
    }
}

/// A batch left to the server's choice, on a server whose reader reads every
/// request, goes at the reader's pace (about 90 times slower): says so, and how to
/// leave it out.
async fn reader_hint(client: &mut crate::Client) {
    let Ok(info) = client.info(InfoRequest::default()).await else {
        return;
    };
    let reads_all = info
        .into_inner()
        .notes
        .iter()
        .any(|n| n.starts_with("meaning: ") && n.contains("every request"));
    if reads_all {
        eprintln!(
            "this server's meaning reader reads every request (about 0.2 s a text, one at a \
             time): add --meaning-reader off to analyse at the model's speed"
        );
    }
}

fn options(args: &AnalyzeArgs) -> AnalyzeOptions {
    AnalyzeOptions {
        num_situations: args.situations,
        seed: args.seed,
        record_affect: args.record_affect,
        meaning_reading: MeaningToggle::reading(args.meaning_reader),
        ..Default::default()
    }
}

pub async fn run(args: AnalyzeArgs) -> anyhow::Result<()> {
    if let Some(path) = &args.conversation {
        let options = options(&args);
        let client = args.fusion.connect().await?;
        return crate::conversation::run(client, path, options, &args.subject, args.json).await;
    }
    if let (Some(input), Some(output)) = (&args.input, &args.output) {
        let batch = crate::batch::Batch {
            input,
            output,
            concurrency: args.concurrency.into(),
            shard: args.shard,
            options: options(&args),
            timeout: std::time::Duration::from_millis(args.timeout_ms),
            time_field: args.time_field.clone(),
        };
        let mut client = args.fusion.connect().await?;
        if args.meaning_reader.is_none() {
            reader_hint(&mut client).await;
        }
        return crate::batch::run(client, batch).await;
    }
    let read = |p: &Option<PathBuf>| -> anyhow::Result<Vec<u8>> {
        match p {
            Some(p) => std::fs::read(p).with_context(|| format!("cannot read {}", p.display())),
            None => Ok(Vec::new()),
        }
    };
    let mut request = tonic::Request::new(AnalyzeRequest {
        text: args.text.clone(),
        audio: read(&args.audio)?.into(),
        image: read(&args.image)?.into(),
        options: Some(options(&args)),
        subject_id: args.subject.clone(),
        context: args
            .context
            .iter()
            .map(|t| crate::conversation::turn(t))
            .collect(),
        ..Default::default()
    });
    request.set_timeout(std::time::Duration::from_millis(args.timeout_ms));
    let mut client = args.fusion.connect().await?;
    let response = client
        .analyze(request)
        .await
        .map_err(crate::refused)?
        .into_inner();
    crate::print(&response, args.json, crate::summary::summary)
}
