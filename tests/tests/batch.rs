//! Batch analysis end to end: the real `empathy` binary reads a file through the real
//! encoder and fusion, writes one answer per line in input order, skips what it cannot
//! read, resumes after being killed mid-write, and splits a job into shards.

mod support;

use std::path::Path;
use std::process::{Child, Command, Output};
use std::time::{Duration, Instant};

use empathy_common::launch::sibling_binary;
use serde_json::Value;
use support::*;

fn batch(endpoint: &str, args: &[&str]) -> anyhow::Result<Output> {
    empathy(&[&["analyze", "--endpoint", endpoint][..], args].concat())
}

/// `empathy analyze --endpoint <endpoint> <args>` started in the background, returned
/// once `output` holds `lines` answers: a run to interrupt.
fn started(endpoint: &str, args: &[&str], output: &Path, lines: usize) -> anyhow::Result<Child> {
    let child = Command::new(sibling_binary("empathy")?)
        .args(["analyze", "--endpoint", endpoint])
        .args(args)
        .stderr(std::process::Stdio::piped())
        .spawn()?;
    let start = Instant::now();
    while std::fs::read_to_string(output).map_or(0, |s| s.lines().count()) < lines {
        anyhow::ensure!(start.elapsed() < Duration::from_secs(120), "no output");
        std::thread::sleep(Duration::from_millis(20));
    }
    Ok(child)
}

fn lines(path: &Path) -> anyhow::Result<Vec<Value>> {
    std::fs::read_to_string(path)?
        .lines()
        .map(|l| Ok(serde_json::from_str(l)?))
        .collect()
}

fn ids(answers: &[Value]) -> Vec<String> {
    answers.iter().map(|a| a["id"].to_string()).collect()
}

fn sentiment(answer: &Value) -> &str {
    answer["analysis"]["sentiment"]["label"]
        .as_str()
        .unwrap_or_default()
}

/// `n` varied sentences as JSONL lines with ids `s0`, `s1`, ...
fn sentences(n: usize) -> String {
    let subjects = ["The delivery", "My new phone", "The hotel room", "Support"];
    let endings = [
        "was late again and nobody called.",
        "works perfectly, I love it.",
        "is booked for Tuesday.",
        "ignored my emails for a week, I am furious.",
        "made my day, thank you so much!",
    ];
    (0..n)
        .map(|i| {
            let text = format!("{} {}", subjects[i % 4], endings[i % 5]);
            format!(
                "{}\n",
                serde_json::json!({"id": format!("s{i}"), "text": text})
            )
        })
        .collect()
}

#[tokio::test]
async fn a_file_is_analysed_in_order_and_bad_lines_are_skipped() -> anyhow::Result<()> {
    let encoder = start_encoder(&[]).await?;
    let fusion = start_fusion(&[encoder.url()], &[]).await?;
    let dir = temp_dir("batch");
    let input = dir.join("in.jsonl");
    let mut text = sentences(40);
    text.push_str("not json\n{\"id\": 7}\n\n{\"text\": \"I hate waiting on hold for hours.\"}\n");
    std::fs::write(&input, text)?;
    let output = dir.join("out.jsonl");
    let out = batch(
        &fusion.url(),
        &["--input", input.to_str().unwrap_or_default()]
            .into_iter()
            .chain(["--output", output.to_str().unwrap_or_default()])
            .collect::<Vec<_>>(),
    )?;
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("line 41 skipped"), "{stderr}");
    assert!(stderr.contains("2 bad lines skipped"), "{stderr}");

    let answers = lines(&output)?;
    let mut expected: Vec<String> = (0..40).map(|i| format!("\"s{i}\"")).collect();
    expected.push("44".into()); // no id: its line number (a blank line before it)
    assert_eq!(ids(&answers), expected);
    assert_eq!(sentiment(&answers[1]), "positive", "{}", answers[1]);
    assert_eq!(sentiment(&answers[3]), "negative", "{}", answers[3]);
    assert_eq!(sentiment(&answers[40]), "negative", "{}", answers[40]);

    let mut summary = output.as_os_str().to_owned();
    summary.push(".summary.json");
    let summary: Value = serde_json::from_str(&std::fs::read_to_string(summary)?)?;
    assert_eq!(summary["analysed"], 41);
    assert_eq!(summary["this_run"]["bad_lines_skipped"], 2);
    let shares: f64 = summary["sentiment_shares"]
        .as_object()
        .into_iter()
        .flatten()
        .filter_map(|(_, v)| v.as_f64())
        .sum();
    assert!((shares - 1.0).abs() < 1e-9, "{summary}");

    // CSV with a header and a time column, and one of two shards.
    let csv = dir.join("in.csv");
    std::fs::write(
        &csv,
        "id,date,text\na,2026-11-30,I love it\nb,2026-11-30,It broke again\n\
         c,2026-12-01T09:00:00Z,I love this so much\nd,2026-12-01,Thanks!\n",
    )?;
    let shard = dir.join("shard.jsonl");
    let args = [
        "--input",
        csv.to_str().unwrap_or_default(),
        "--shard",
        "1/2",
    ];
    let out_args = ["--output", shard.to_str().unwrap_or_default()];
    batch(&fusion.url(), &[&args[..], &out_args[..]].concat())?;
    assert_eq!(ids(&lines(&shard)?), ["\"a\"", "\"c\""]);
    // The report per day: each line keeps its time, the summary and the page have both
    // days, and the words that drove the positive answers.
    let kept = lines(&shard)?;
    assert_eq!(kept[1]["time"], "2026-12-01T09:00:00Z", "{}", kept[1]);
    let mut path = shard.as_os_str().to_owned();
    path.push(".summary.json");
    let report: Value = serde_json::from_str(&std::fs::read_to_string(path)?)?;
    let days: Vec<&String> = report["days"]
        .as_object()
        .into_iter()
        .flatten()
        .map(|(d, _)| d)
        .collect();
    assert_eq!(days, ["2026-11-30", "2026-12-01"], "{report}");
    let positive_words = report["top_words"]["positive"].to_string();
    assert!(positive_words.contains("love"), "{report}");
    let mut page = shard.as_os_str().to_owned();
    page.push(".report.html");
    let page = std::fs::read_to_string(page)?;
    assert!(page.contains("2026-11-30") && page.contains("2026-12-01") && page.contains("<svg"));
    std::fs::remove_dir_all(dir)?;
    Ok(())
}

#[tokio::test]
async fn a_killed_run_resumes_without_loss_or_duplicates() -> anyhow::Result<()> {
    let encoder = start_encoder(&[]).await?;
    let fusion = start_fusion(&[encoder.url()], &[]).await?;
    let dir = temp_dir("batch-resume");
    let input = dir.join("in.jsonl");
    std::fs::write(&input, sentences(300))?;
    let output = dir.join("out.jsonl");
    let args = [
        "--input",
        input.to_str().unwrap_or_default(),
        "--output",
        output.to_str().unwrap_or_default(),
        "--concurrency",
        "2",
    ];
    let mut child = started(&fusion.url(), &args, &output, 20)?;
    child.kill()?;
    child.wait()?;
    // A crash in the middle of a write leaves half a line.
    let mut written = std::fs::read(&output)?;
    let first = written
        .split(|&b| b == b'\n')
        .next()
        .unwrap_or_default()
        .to_vec();
    let before = written.iter().filter(|&&b| b == b'\n').count();
    assert!(before < 300, "the run was not interrupted");
    written.extend_from_slice(&first[..first.len() / 2]);
    std::fs::write(&output, written)?;

    batch(&fusion.url(), &args)?;
    let expected: Vec<String> = (0..300).map(|i| format!("\"s{i}\"")).collect();
    let answers = lines(&output)?;
    assert_eq!(ids(&answers), expected);
    assert!(answers.iter().all(|a| !sentiment(a).is_empty()));
    std::fs::remove_dir_all(dir)?;
    Ok(())
}

#[tokio::test]
async fn a_server_lost_mid_run_stops_it_and_a_rerun_completes() -> anyhow::Result<()> {
    let encoder = start_encoder(&[]).await?;
    let fusion = start_fusion(&[encoder.url()], &[]).await?;
    let dir = temp_dir("batch-lost");
    let input = dir.join("in.jsonl");
    std::fs::write(&input, sentences(600))?;
    let output = dir.join("out.jsonl");
    let files = [
        "--input",
        input.to_str().unwrap_or_default(),
        "--output",
        output.to_str().unwrap_or_default(),
    ];
    let one_at_a_time = [&files[..], &["--concurrency", "1"]].concat();
    let child = started(&fusion.url(), &one_at_a_time, &output, 20)?;
    drop(fusion); // killed
    let out = child.wait_with_output()?;
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "{stderr}");
    assert!(
        stderr.contains("rerun the same command to resume"),
        "{stderr}"
    );
    let answers = lines(&output)?;
    assert!(answers.len() < 600, "the run was not interrupted");
    // Nothing the server did not answer is marked done.
    assert!(answers.iter().all(|a| a.get("analysis").is_some()));

    let fusion = start_fusion(&[encoder.url()], &[]).await?;
    batch(&fusion.url(), &files)?;
    let expected: Vec<String> = (0..600).map(|i| format!("\"s{i}\"")).collect();
    assert_eq!(ids(&lines(&output)?), expected);
    std::fs::remove_dir_all(dir)?;
    Ok(())
}

/// The value after `key:` on its own line of the manifest.
fn manifest_number(manifest: &str, key: &str) -> Option<u32> {
    manifest
        .lines()
        .find_map(|l| l.trim().strip_prefix(key)?.trim().parse().ok())
}

#[tokio::test]
async fn the_kubernetes_job_runs_this_cli_one_shard_per_index() -> anyhow::Result<()> {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../deploy/k8s/batch/batch-job.yaml");
    let manifest = std::fs::read_to_string(path)?;
    let shards = manifest_number(&manifest, "completions:");
    assert!(shards.is_some() && shards == manifest_number(&manifest, "parallelism:"));
    // The container's folded command: the lines after `- >-` up to `resources:`.
    let command: Vec<&str> = manifest
        .lines()
        .skip_while(|l| l.trim() != "- >-")
        .skip(1)
        .take_while(|l| l.trim() != "resources:")
        .flat_map(str::split_whitespace)
        .collect();
    let shards = shards.unwrap_or_default();
    assert!(command.contains(&format!("${{JOB_COMPLETION_INDEX}}/{shards}").as_str()));

    let encoder = start_encoder(&[]).await?;
    let fusion = start_fusion(&[encoder.url()], &[]).await?;
    let dir = temp_dir("batch-k8s");
    std::fs::write(dir.join("input.jsonl"), sentences(12))?;
    // Pod of index 1, with the volume at `dir` and the Service at the test's fusion.
    let data = format!("{}/", dir.display());
    let args: Vec<String> = command
        .iter()
        .skip_while(|w| **w != "empathy")
        .skip(1)
        .map(|w| {
            w.replace("${JOB_COMPLETION_INDEX}", "1")
                .replace("/data/", &data)
                .replace("http://empathy-fusion:50051", &fusion.url())
        })
        .collect();
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    empathy(&args)?;
    let want: Vec<String> = (1..=12u32)
        .filter(|n| n % shards == 1)
        .map(|n| format!("\"s{}\"", n - 1))
        .collect();
    assert_eq!(ids(&lines(&dir.join("out-1.jsonl"))?), want);
    std::fs::remove_dir_all(dir)?;
    Ok(())
}
