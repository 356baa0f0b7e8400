//! The report beside a batch's output, over all of it (earlier runs included):
//! `OUT.jsonl.summary.json` (counts, sentiment and top-emotion shares overall and per
//! day when the inputs had a time, the lexicon words that drove each sentiment most
//! often, this run's throughput) and `OUT.jsonl.report.html` (the same as a page with
//! inline SVG charts, no script and nothing fetched).

use std::collections::BTreeMap;
use std::io::BufRead;
use std::path::{Path, PathBuf};

use anyhow::Context;
use serde_json::{Value, json};

/// Words listed per sentiment.
const TOP_WORDS: usize = 12;
const SENTIMENTS: [&str; 3] = ["negative", "neutral", "positive"];

/// This run's part, for the report.
pub struct Run {
    pub written: u64,
    pub bad_lines: u64,
    pub seconds: f64,
}

type Counts = BTreeMap<String, u64>;

#[derive(Default)]
struct Tally {
    analysed: u64,
    failed: u64,
    sentiment: Counts,
    emotion: Counts,
    /// Per day: sentiment counts and top-emotion counts.
    days: BTreeMap<String, (Counts, Counts)>,
    /// Per sentiment: how often each lexicon word drove an answer.
    words: BTreeMap<String, Counts>,
}

impl Tally {
    fn add(&mut self, line: &Value) {
        let Some(a) = line.get("analysis") else {
            self.failed += 1;
            return;
        };
        self.analysed += 1;
        let label = |v: &Value| v.as_str().unwrap_or("none").to_string();
        let sentiment = label(&a["sentiment"]["label"]);
        let emotion = label(&a["emotions"]["top"]);
        *self.sentiment.entry(sentiment.clone()).or_default() += 1;
        *self.emotion.entry(emotion.clone()).or_default() += 1;
        if let Some(day) = line.get("time").and_then(day) {
            let (s, e) = self.days.entry(day).or_default();
            *s.entry(sentiment.clone()).or_default() += 1;
            *e.entry(emotion).or_default() += 1;
        }
        let words = self.words.entry(sentiment).or_default();
        for w in a["attributions"].as_array().into_iter().flatten() {
            if w["kind"] == "lexicon"
                && let Some(name) = w["name"].as_str()
            {
                *words.entry(name.to_lowercase()).or_default() += 1;
            }
        }
    }
}

/// The UTC day of a time as inputs give it: text starting with YYYY-MM-DD (a date or
/// RFC 3339), or a number of seconds (or, past 1e11, milliseconds) since 1970.
pub fn day(time: &Value) -> Option<String> {
    match time {
        Value::String(s) => {
            let d = s.get(..10)?;
            let b = d.as_bytes();
            let digits = |r: std::ops::Range<usize>| b[r].iter().all(u8::is_ascii_digit);
            (digits(0..4) && b[4] == b'-' && digits(5..7) && b[7] == b'-' && digits(8..10))
                .then(|| d.to_string())
        }
        Value::Number(n) => {
            let t = n.as_f64()?;
            let ms = if t.abs() < 1e11 { t * 1000.0 } else { t };
            Some(empathy_proto::utc_day(ms as i64))
        }
        _ => None,
    }
}

fn shares(counts: &Counts) -> Value {
    let total = counts.values().sum::<u64>().max(1) as f64;
    counts
        .iter()
        .map(|(k, c)| (k.clone(), json!(*c as f64 / total)))
        .collect()
}

fn top(counts: &Counts) -> Vec<(String, u64)> {
    let mut v: Vec<(String, u64)> = counts.iter().map(|(w, c)| (w.clone(), *c)).collect();
    v.sort_by(|a, b| b.1.cmp(&a.1).then_with(|| a.0.cmp(&b.0)));
    v.truncate(TOP_WORDS);
    v
}

/// Writes the summary and the page beside `output`; returns their paths.
pub fn write(output: &Path, run: &Run) -> anyhow::Result<(PathBuf, PathBuf)> {
    let mut tally = Tally::default();
    let file =
        std::fs::File::open(output).with_context(|| format!("cannot read {}", output.display()))?;
    for line in std::io::BufReader::new(file).lines() {
        tally.add(&serde_json::from_str(&line?)?);
    }
    let days: Value = tally
        .days
        .iter()
        .map(|(day, (s, e))| {
            let n: u64 = s.values().sum();
            (
                day.clone(),
                json!({"analysed": n, "sentiment_shares": shares(s), "top_emotion_shares": shares(e)}),
            )
        })
        .collect();
    let words: Value = tally
        .words
        .iter()
        .map(|(s, counts)| (s.clone(), json!(top(counts))))
        .collect();
    let summary = json!({
        "analysed": tally.analysed,
        "failed": tally.failed,
        "sentiment_shares": shares(&tally.sentiment),
        "top_emotion_shares": shares(&tally.emotion),
        "days": days,
        "top_words": words,
        "this_run": {
            "written": run.written,
            "bad_lines_skipped": run.bad_lines,
            "seconds": run.seconds,
            "per_second": run.written as f64 / run.seconds.max(1e-9),
        },
    });
    let beside = |suffix: &str| {
        let mut p = output.as_os_str().to_owned();
        p.push(suffix);
        PathBuf::from(p)
    };
    let (json_path, html_path) = (beside(".summary.json"), beside(".report.html"));
    std::fs::write(&json_path, serde_json::to_string_pretty(&summary)?)
        .with_context(|| format!("cannot write {}", json_path.display()))?;
    std::fs::write(&html_path, page(output, &tally))
        .with_context(|| format!("cannot write {}", html_path.display()))?;
    Ok((json_path, html_path))
}

const COLOURS: [(&str, &str); 3] = [
    ("negative", "#d9534f"),
    ("neutral", "#9e9e9e"),
    ("positive", "#5cb85c"),
];

/// Escapes text for HTML.
fn esc(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

/// One stacked bar of sentiment shares per row (a day, or "all").
fn sentiment_bars(rows: &[(String, &Counts)]) -> String {
    let (w, row_h, label_w) = (640.0, 24.0, 110.0);
    let h = row_h * rows.len() as f64 + 30.0;
    let mut svg = format!(
        "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"{}\" height=\"{h}\" role=\"img\">",
        w + label_w
    );
    for (i, (name, counts)) in rows.iter().enumerate() {
        let y = i as f64 * row_h;
        let total = counts.values().sum::<u64>().max(1) as f64;
        svg += &format!(
            "<text x=\"0\" y=\"{}\" font-size=\"13\">{} ({})</text>",
            y + 16.0,
            esc(name),
            counts.values().sum::<u64>()
        );
        let mut x = label_w;
        for (label, colour) in COLOURS {
            let share = counts.get(label).copied().unwrap_or(0) as f64 / total;
            let width = share * w;
            svg += &format!(
                "<rect x=\"{x:.1}\" y=\"{y}\" width=\"{width:.1}\" height=\"{}\" fill=\"{colour}\"><title>{label} {:.1}%</title></rect>",
                row_h - 4.0,
                share * 100.0
            );
            x += width;
        }
    }
    let legend_y = h - 8.0;
    for (i, (label, colour)) in COLOURS.iter().enumerate() {
        let x = label_w + i as f64 * 120.0;
        svg += &format!(
            "<rect x=\"{x}\" y=\"{}\" width=\"12\" height=\"12\" fill=\"{colour}\"/><text x=\"{}\" y=\"{legend_y}\" font-size=\"12\">{label}</text>",
            legend_y - 10.0,
            x + 16.0
        );
    }
    svg + "</svg>"
}

fn page(output: &Path, t: &Tally) -> String {
    let mut rows: Vec<(String, &Counts)> = vec![("all".into(), &t.sentiment)];
    rows.extend(t.days.iter().map(|(d, (s, _))| (d.clone(), s)));
    let emotions: String = {
        let total = t.emotion.values().sum::<u64>().max(1) as f64;
        let mut v: Vec<(&String, &u64)> = t.emotion.iter().collect();
        v.sort_by(|a, b| b.1.cmp(a.1));
        v.iter()
            .map(|(e, c)| {
                format!(
                    "<tr><td>{}</td><td>{c}</td><td>{:.1}%</td></tr>",
                    esc(e),
                    **c as f64 / total * 100.0
                )
            })
            .collect()
    };
    let words: String = SENTIMENTS
        .iter()
        .map(|s| {
            let list = t
                .words
                .get(*s)
                .map(|c| {
                    top(c)
                        .iter()
                        .map(|(w, n)| format!("{} ({n})", esc(w)))
                        .collect::<Vec<_>>()
                        .join(", ")
                })
                .unwrap_or_default();
            format!("<tr><td>{s}</td><td>{list}</td></tr>")
        })
        .collect();
    let per_day = if t.days.is_empty() {
        "<p>The inputs had no time, so there is no view per day.</p>"
    } else {
        ""
    };
    format!(
        "<!doctype html><html><head><meta charset=\"utf-8\"><title>empathy batch report</title>\
         <style>body{{font-family:sans-serif;margin:2em}}td{{padding:2px 10px}}</style></head>\
         <body><h1>{}</h1><p>{} analysed, {} failed.</p>\
         <h2>Sentiment, overall and per day</h2>{}{per_day}\
         <h2>Top emotion</h2><table>{emotions}</table>\
         <h2>Words that drove the answers</h2><table>{words}</table></body></html>",
        esc(&output.display().to_string()),
        t.analysed,
        t.failed,
        sentiment_bars(&rows)
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn days_come_from_dates_timestamps_and_epoch_numbers() {
        assert_eq!(day(&json!("2026-11-30")), Some("2026-11-30".into()));
        assert_eq!(
            day(&json!("2026-11-30T23:59:00Z")),
            Some("2026-11-30".into())
        );
        assert_eq!(day(&json!(1_764_460_800)), Some("2025-11-30".into()));
        assert_eq!(day(&json!(1_764_460_800_000i64)), Some("2025-11-30".into()));
        assert_eq!(day(&json!("yesterday")), None);
        assert_eq!(day(&json!("30/11/2026")), None);
    }

    #[test]
    fn a_tally_counts_days_words_and_failures() {
        let mut t = Tally::default();
        let analysis = |s: &str, word: &str| {
            json!({"sentiment": {"label": s}, "emotions": {"top": "joy"},
                   "attributions": [{"kind": "lexicon", "name": word}, {"kind": "modality", "name": "text"}]})
        };
        t.add(&json!({"id": 1, "time": "2026-01-01", "analysis": analysis("positive", "Love")}));
        t.add(&json!({"id": 2, "time": "2026-01-02", "analysis": analysis("positive", "love")}));
        t.add(&json!({"id": 3, "analysis": analysis("negative", "awful")}));
        t.add(&json!({"id": 4, "error": {"code": "InvalidArgument"}}));
        assert_eq!((t.analysed, t.failed), (3, 1));
        assert_eq!(t.days.len(), 2);
        assert_eq!(top(&t.words["positive"]), [("love".to_string(), 2)]);
        let html = page(Path::new("out.jsonl"), &t);
        assert!(
            html.contains("2026-01-01") && html.contains("2026-01-02") && html.contains("<svg")
        );
        assert!(!html.contains("<script"));
    }
}
