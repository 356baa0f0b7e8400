//! `empathy suggest`: which of the tenant's recent analyses to label next (fusion's
//! SuggestLabels), as a table for a person or, with --json, in protobuf's JSON mapping.

use empathy_grpc::v1::{SuggestLabelsRequest, SuggestLabelsResponse};

#[derive(clap::Args)]
pub struct SuggestArgs {
    /// How many, best first (1-200).
    #[arg(short, long, default_value_t = 20, value_parser = clap::value_parser!(u32).range(1..=200))]
    n: u32,
    /// Print the SuggestLabelsResponse as JSON.
    #[arg(long)]
    json: bool,
    #[command(flatten)]
    fusion: crate::FusionEndpoint,
}

pub async fn run(args: SuggestArgs) -> anyhow::Result<()> {
    let mut client = args.fusion.connect().await?;
    let response = client
        .suggest_labels(SuggestLabelsRequest { limit: args.n })
        .await
        .map_err(|s| anyhow::anyhow!("{}: {}", s.code(), s.message()))?
        .into_inner();
    crate::print(&response, args.json, table)
}

/// Characters of each text shown.
const TEXT_CHARS: usize = 40;

/// One line per suggestion, the text cut to fit and the reason last (it runs long).
fn table(r: &SuggestLabelsResponse) -> String {
    use std::fmt::Write;
    if r.suggestions.is_empty() {
        return "nothing to suggest: the server holds no uncorrected analysis with text of \
                this tenant (it forgets them after --recent-max-age-s)\n"
            .into();
    }
    let mut s = String::new();
    let _ = writeln!(
        s,
        "{:<36}  {:>5}  {:<9} {:>4}  {:<TEXT_CHARS$}  why",
        "analysis", "score", "sentiment", "conf", "text"
    );
    for x in &r.suggestions {
        let _ = writeln!(
            s,
            "{:<36}  {:>5.2}  {:<9} {:>4.2}  {:<TEXT_CHARS$}  {}",
            x.analysis_id,
            x.score,
            x.sentiment,
            x.confidence,
            cut(&x.text),
            x.why
        );
    }
    let _ = writeln!(
        s,
        "label one: empathy feedback ANALYSIS --sentiment negative|neutral|positive"
    );
    s
}

/// `text` on one line, at most TEXT_CHARS characters ("..." where it was cut).
fn cut(text: &str) -> String {
    let flat: String = text.split_whitespace().collect::<Vec<_>>().join(" ");
    if flat.chars().count() <= TEXT_CHARS {
        return flat;
    }
    let kept: String = flat.chars().take(TEXT_CHARS - 3).collect();
    format!("{kept}...")
}

#[cfg(test)]
mod tests {
    use clap::Parser;
    use empathy_grpc::v1::LabelSuggestion;

    use super::*;

    #[test]
    fn long_texts_are_cut_to_one_line() {
        assert_eq!(cut("so\ntired   today"), "so tired today");
        let long = "é".repeat(100);
        let c = cut(&long);
        assert_eq!(c.chars().count(), TEXT_CHARS);
        assert!(c.ends_with("..."));
    }

    #[test]
    fn a_table_row_per_suggestion() {
        let r = SuggestLabelsResponse {
            suggestions: vec![LabelSuggestion {
                analysis_id: "3f2c".into(),
                text: "the waiting room was packed again".into(),
                sentiment: "positive".into(),
                confidence: 0.41,
                score: 0.97,
                why: "the model is unsure: positive 0.41 vs negative 0.38".into(),
                ..LabelSuggestion::default()
            }],
        };
        let t = table(&r);
        let row = t.lines().nth(1).unwrap_or_default();
        assert!(row.starts_with("3f2c "), "{t}");
        assert!(
            row.contains("  0.97  positive  0.41  the waiting room"),
            "{t}"
        );
        assert!(row.ends_with("positive 0.41 vs negative 0.38"), "{t}");
        assert!(table(&SuggestLabelsResponse::default()).starts_with("nothing to suggest"));
    }

    #[derive(Parser)]
    struct Suggest {
        #[command(flatten)]
        args: SuggestArgs,
    }

    #[test]
    fn n_is_from_1_to_200() {
        let parse = |args: &[&str]| {
            Suggest::try_parse_from(std::iter::once("suggest").chain(args.iter().copied()))
                .map(|s| (s.args.n, s.args.fusion.tenant.field()))
        };
        assert_eq!(parse(&[]).ok(), Some((20, String::new())));
        assert_eq!(
            parse(&["-n", "5", "--tenant", "acme"]).ok(),
            Some((5, "acme".into()))
        );
        assert!(parse(&["--n", "0"]).is_err());
        assert!(parse(&["--n", "201"]).is_err());
    }
}
