//! `empathy analyze --input FILE --output OUT.jsonl`: every line of a file through
//! Analyze, `--concurrency` requests in flight, answers written in input order, one JSON
//! line each. `--shard I/N` keeps the lines whose 1-based number `n` has `n % N == I`.
//! Rerunning the same command resumes: the ids already in the output are skipped, and a
//! last line that a crash left half-written is cut off first.

mod report;

use std::collections::HashSet;
use std::fmt;
use std::io::{BufRead, Write};
use std::path::Path;
use std::str::FromStr;
use std::time::{Duration, Instant};

use anyhow::Context;
use empathy_grpc::v1::{AnalyzeOptions, AnalyzeRequest};
use futures::StreamExt;
use serde_json::{Value, json};
use tonic::Code;

/// `--shard I/N`: this process handles the lines with `line_number % N == I` (0-based I).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Shard {
    pub index: u64,
    pub count: u64,
}

impl Shard {
    /// The whole input: one shard of one.
    pub const ALL: Shard = Shard { index: 0, count: 1 };

    /// Whether this shard processes the input line numbered `line_number` (1-based).
    pub fn takes(&self, line_number: u64) -> bool {
        line_number % self.count == self.index
    }
}

impl FromStr for Shard {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let (i, n) = s
            .split_once('/')
            .ok_or_else(|| format!("shard '{s}': expected I/N, e.g. 0/4"))?;
        let index: u64 = i
            .trim()
            .parse()
            .map_err(|_| format!("shard '{s}': I is not a number"))?;
        let count: u64 = n
            .trim()
            .parse()
            .map_err(|_| format!("shard '{s}': N is not a number"))?;
        if count == 0 || index >= count {
            return Err(format!("shard '{s}': need 0 <= I < N"));
        }
        Ok(Shard { index, count })
    }
}

impl fmt::Display for Shard {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.index, self.count)
    }
}

/// The ids in the complete lines of an output file read back, each as its JSON text
/// without quotes for strings (so that input ids and line numbers compare), and the
/// length of those lines: what follows the last newline is a line cut short by a crash,
/// to be truncated away before appending. Reads a line at a time (outputs get large).
pub fn written_ids(mut output: impl BufRead) -> Result<(HashSet<String>, u64), String> {
    let (mut ids, mut complete, mut line) = (HashSet::new(), 0u64, Vec::new());
    for i in 1.. {
        line.clear();
        let n = output
            .read_until(b'\n', &mut line)
            .map_err(|e| e.to_string())?;
        if line.last() != Some(&b'\n') {
            break; // the end, or a half-written line
        }
        let value: Value =
            serde_json::from_slice(&line).map_err(|e| format!("output line {i}: {e}"))?;
        let id = value
            .get("id")
            .ok_or_else(|| format!("output line {i}: no id"))?;
        ids.insert(id_key(id));
        complete += n as u64;
    }
    Ok((ids, complete))
}

/// What `empathy analyze` needs for a batch run.
pub struct Batch<'a> {
    pub input: &'a Path,
    pub output: &'a Path,
    pub concurrency: usize,
    pub shard: Shard,
    pub options: AnalyzeOptions,
    pub timeout: Duration,
    /// The field (JSONL) or column (CSV) holding each input's time; None: the first of
    /// `TIME_FIELDS` present.
    pub time_field: Option<String>,
}

/// Where an input's time is looked for when no --time-field is given.
const TIME_FIELDS: [&str; 4] = ["timestamp", "time", "date", "created_at"];

/// The input's items, each with its line number, or why that line cannot be read.
type Items = Box<dyn Iterator<Item = (u64, Result<Item, String>)>>;

/// One input line: its id (the input's `id`, else its line number) and its text.
struct Item {
    id: Value,
    text: String,
    /// When it was written, as the input gave it (copied to the output line).
    time: Option<Value>,
}

/// The id as resuming compares it: strings without quotes, numbers as written.
fn id_key(id: &Value) -> String {
    match id {
        Value::String(s) => s.clone(),
        other => other.to_string(),
    }
}

/// Runs the batch; prints progress on stderr and the summary's path at the end.
pub async fn run(client: crate::Client, batch: Batch<'_>) -> anyhow::Result<()> {
    let done = resume(batch.output)?;
    let mut out = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(batch.output)
        .with_context(|| format!("cannot write {}", batch.output.display()))?;
    let skipped_bad = std::cell::Cell::new(0u64);
    let items =
        read_items(batch.input, batch.time_field.as_deref())?.filter_map(
            |(line, item)| match item {
                Ok(item) if batch.shard.takes(line) && !done.contains(&id_key(&item.id)) => {
                    Some(item)
                }
                Ok(_) => None,
                Err(why) => {
                    eprintln!("line {line} skipped: {why}");
                    skipped_bad.set(skipped_bad.get() + 1);
                    None
                }
            },
        );
    let answers = futures::stream::iter(items)
        .map(|item| analyze(client.clone(), item, &batch))
        .buffered(batch.concurrency);
    futures::pin_mut!(answers);
    let (start, mut last_report, mut written) = (Instant::now(), Instant::now(), 0u64);
    while let Some(line) = answers.next().await {
        writeln!(out, "{}", line?)?;
        out.flush()?;
        written += 1;
        if last_report.elapsed() >= Duration::from_secs(1) {
            last_report = Instant::now();
            let rate = written as f64 / start.elapsed().as_secs_f64();
            eprintln!("{written} analysed ({rate:.1}/s)");
        }
    }
    let (seconds, skipped_bad) = (start.elapsed().as_secs_f64(), skipped_bad.get());
    let run = report::Run {
        written,
        bad_lines: skipped_bad,
        seconds,
    };
    let (summary, page) = report::write(batch.output, &run)?;
    eprintln!(
        "{written} analysed in {seconds:.1} s ({:.1}/s), {} already there, {skipped_bad} bad \
         lines skipped; summary in {}, report in {}",
        written as f64 / seconds.max(1e-9),
        done.len(),
        summary.display(),
        page.display()
    );
    Ok(())
}

/// The ids an earlier run of the same command wrote to `output`, after cutting off a
/// half-written last line.
fn resume(output: &Path) -> anyhow::Result<HashSet<String>> {
    let Ok(file) = std::fs::File::open(output) else {
        return Ok(HashSet::new());
    };
    let size = file.metadata()?.len();
    let (ids, complete) = written_ids(std::io::BufReader::new(file))
        .map_err(|why| anyhow::anyhow!("cannot resume from {}: {why}", output.display()))?;
    if complete < size {
        let file = std::fs::OpenOptions::new().write(true).open(output)?;
        file.set_len(complete)?;
    }
    Ok(ids)
}

/// The texts of the readable lines of an input file, as --input reads it (for the
/// encoder baseline of `empathy bench --encoder-batch-file`).
pub fn texts(input: &Path) -> anyhow::Result<Vec<String>> {
    Ok(read_items(input, None)?
        .filter_map(|(_, item)| item.ok().map(|i| i.text))
        .collect())
}

/// The items of a JSONL file (`{"text", "id"?, <time>?}` per line) or, for a `.csv`
/// name, of a CSV file with a header naming a `text` column and optionally `id` and
/// time columns; each with its 1-based line (or record) number, read as the stream asks
/// for them.
fn read_items(input: &Path, time_field: Option<&str>) -> anyhow::Result<Items> {
    let file =
        std::fs::File::open(input).with_context(|| format!("cannot read {}", input.display()))?;
    let is_csv = input
        .extension()
        .is_some_and(|e| e.eq_ignore_ascii_case("csv"));
    let time_fields: Vec<String> = match time_field {
        Some(f) => vec![f.to_string()],
        None => TIME_FIELDS.iter().map(|f| f.to_string()).collect(),
    };
    if !is_csv {
        let lines = std::io::BufReader::new(file).lines().zip(1u64..);
        // Blank lines (a trailing one, say) are no input, not bad input.
        return Ok(Box::new(lines.filter_map(move |(line, n)| match line {
            Ok(l) if l.trim().is_empty() => None,
            Ok(l) => Some((n, json_item(&l, n, &time_fields))),
            Err(e) => Some((n, Err(e.to_string()))),
        })));
    }
    let mut reader = csv::Reader::from_reader(file);
    let headers = reader
        .headers()
        .with_context(|| format!("{} has no CSV header", input.display()))?
        .clone();
    let column = |name: &str| headers.iter().position(|h| h.trim() == name);
    let text =
        column("text").with_context(|| format!("{} has no `text` column", input.display()))?;
    let id = column("id");
    let time = time_fields.iter().find_map(|f| column(f));
    if let (Some(f), None) = (time_field, time) {
        anyhow::bail!("{} has no `{f}` column (--time-field)", input.display());
    }
    let records = reader.into_records().zip(1u64..);
    Ok(Box::new(records.map(move |(record, n)| {
        let item = record.map_err(|e| e.to_string()).and_then(|r| {
            let text = r.get(text).ok_or("no text field")?.to_string();
            let field = |i: Option<usize>| i.and_then(|i| r.get(i)).filter(|s| !s.is_empty());
            let id = field(id).map_or(json!(n), |s| json!(s));
            let time = field(time).map(|s| json!(s));
            Ok(Item { id, text, time })
        });
        (n, item)
    })))
}

fn json_item(line: &str, n: u64, time_fields: &[String]) -> Result<Item, String> {
    let value: Value = serde_json::from_str(line).map_err(|e| format!("not JSON: {e}"))?;
    let text = value["text"]
        .as_str()
        .ok_or("no `text` string")?
        .to_string();
    let id = match &value["id"] {
        Value::Null => json!(n),
        id @ (Value::String(_) | Value::Number(_)) => id.clone(),
        _ => return Err("`id` must be a string or a number".into()),
    };
    let time = time_fields
        .iter()
        .find_map(|f| value.get(f.as_str()).filter(|v| !v.is_null()).cloned());
    Ok(Item { id, text, time })
}

/// One output line: the id and the analysis, or the id and why the service refused
/// this input. A server that is down, overloaded or too slow is tried three more times
/// (0.5, 1, 2 s apart), then the run stops: an error line would mark the input done and
/// a rerun would not try it again.
async fn analyze(client: crate::Client, item: Item, batch: &Batch<'_>) -> anyhow::Result<String> {
    let (mut wait, mut attempts) = (Duration::from_millis(500), 0);
    loop {
        let mut request = tonic::Request::new(AnalyzeRequest {
            text: item.text.clone(),
            options: Some(batch.options.clone()),
            ..Default::default()
        });
        request.set_timeout(batch.timeout);
        let status = match client.clone().analyze(request).await {
            Ok(r) => {
                let mut line = json!({"id": item.id, "analysis": r.into_inner()});
                if let Some(time) = &item.time {
                    line["time"] = time.clone();
                }
                return Ok(line.to_string());
            }
            Err(status) => status,
        };
        // Unknown: the connection broke in the middle of the call.
        let transient = matches!(
            status.code(),
            Code::Unavailable | Code::ResourceExhausted | Code::DeadlineExceeded | Code::Unknown
        );
        if !transient {
            let error =
                json!({"code": format!("{:?}", status.code()), "message": status.message()});
            return Ok(json!({"id": item.id, "error": error}).to_string());
        }
        attempts += 1;
        if attempts > 3 {
            anyhow::bail!(
                "id {}: the server did not answer ({:?}: {}); the run stopped here, rerun \
                 the same command to resume",
                item.id,
                status.code(),
                status.message()
            );
        }
        tokio::time::sleep(wait).await;
        wait *= 2;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shard_parses_and_selects_lines() {
        let shard: Shard = "1/3".parse().unwrap();
        assert_eq!(shard, Shard { index: 1, count: 3 });
        assert_eq!(shard.to_string(), "1/3");
        let taken: Vec<u64> = (1..=9).filter(|&n| shard.takes(n)).collect();
        assert_eq!(taken, vec![1, 4, 7]);
        assert!((1..=5).all(|n| Shard::ALL.takes(n)));
    }

    #[test]
    fn shards_partition_the_input() {
        let shards: Vec<Shard> = (0..4).map(|i| format!("{i}/4").parse().unwrap()).collect();
        for n in 1..=100 {
            assert_eq!(shards.iter().filter(|s| s.takes(n)).count(), 1);
        }
    }

    #[test]
    fn bad_shards_are_refused() {
        for bad in ["", "3", "4/4", "1/0", "a/2", "1/b", "-1/2"] {
            assert!(bad.parse::<Shard>().is_err(), "{bad}");
        }
    }

    #[test]
    fn a_half_written_last_line_is_cut_off() {
        let complete = |written: &[u8]| written_ids(written).map(|(_, len)| len);
        assert_eq!(complete(b""), Ok(0));
        assert_eq!(complete(b"{\"id\":1"), Ok(0));
        assert_eq!(complete(b"{\"id\":1}\n"), Ok(9));
        assert_eq!(complete(b"{\"id\":1}\n{\"id\":2,\"ana"), Ok(9));
    }

    #[test]
    fn written_ids_read_numbers_and_strings() {
        let written = b"{\"id\":3,\"analysis\":{}}\n{\"id\":\"a-1\",\"error\":{}}\n";
        let (ids, _) = written_ids(&written[..]).unwrap();
        assert!(ids.contains("3") && ids.contains("a-1") && ids.len() == 2);
        assert!(written_ids(&b"{\"x\":1}\n"[..]).is_err());
    }
}
