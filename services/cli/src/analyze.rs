//! `empathy analyze`: one request to a running EmpathyService, printed for a person
//! or, with --json, in protobuf's canonical JSON mapping.

use std::path::PathBuf;

use anyhow::Context;
use empathy_grpc::v1::{AnalyzeOptions, AnalyzeRequest};

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
    /// Print the AnalyzeResponse as JSON.
    #[arg(long)]
    json: bool,
    /// An opaque id of the person the input is about (a pseudonym, never a name):
    /// feedback on this analysis is stored under it, and `empathy forget --subject`
    /// deletes it.
    #[arg(long, default_value = "")]
    subject: String,
    #[command(flatten)]
    fusion: crate::FusionEndpoint,
    /// Deadline for the whole call, in milliseconds.
    #[arg(long, default_value_t = 30_000)]
    timeout_ms: u64,
}

pub async fn run(args: AnalyzeArgs) -> anyhow::Result<()> {
    if let Some(path) = &args.conversation {
        let options = AnalyzeOptions {
            num_situations: args.situations,
            seed: args.seed,
            ..Default::default()
        };
        let client = args.fusion.connect().await?;
        return crate::conversation::run(client, path, options, &args.subject, args.json).await;
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
        options: Some(AnalyzeOptions {
            num_situations: args.situations,
            seed: args.seed,
            ..Default::default()
        }),
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
        .map_err(|s| {
            anyhow::anyhow!(
                "the server refused the request ({:?}): {}",
                s.code(),
                s.message()
            )
        })?
        .into_inner();
    if args.json {
        println!("{}", serde_json::to_string_pretty(&response)?);
    } else {
        print!("{}", crate::summary::summary(&response));
    }
    Ok(())
}
