//! Issue 13 end to end: fusion sends its sample of analyses (`--traffic-sample`) to the
//! trainer under the tenant that asked, and `empathy suggest` lists a tenant's own
//! analyses worth labelling until they are corrected. The tenant travels in the
//! `x-empathy-tenant` header (local insecure mode), from tonic and from the CLI.
//!
//! Needs the binaries (cargo build -p empathy-encoder -p empathy-plugin-text
//! -p empathy-fusion -p empathy-trainer -p empathy-cli) and a trained model under
//! assets/models.

mod support;

use std::collections::BTreeMap;
use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use empathy_common::launch::sibling_binary;
use empathy_grpc::v1::{AnalyzeRequest, FeedbackRequest};
use support::{as_tenant, client, start_learning_system, temp_dir};

const TEXTS: [&str; 5] = [
    "The waiting room was packed again and nobody told us anything.",
    "Thank you, the nurse was wonderful with my daughter.",
    "I guess the new appointment system is fine.",
    "Not bad at all, though the parking is a nightmare.",
    "I'm not sure whether to laugh or cry about this bill.",
];

/// The stored traffic samples' analysis ids, per tenant.
fn stored(database: &Path) -> anyhow::Result<BTreeMap<String, Vec<String>>> {
    let conn = rusqlite::Connection::open_with_flags(
        database,
        rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY,
    )?;
    let mut stmt = conn.prepare("SELECT tenant, analysis_id FROM traffic ORDER BY analysis_id")?;
    let mut out: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for row in stmt.query_map([], |r| Ok((r.get::<_, String>(0)?, r.get::<_, String>(1)?)))? {
        let (tenant, id) = row?;
        out.entry(tenant).or_default().push(id);
    }
    Ok(out)
}

/// `empathy <args>` against fusion at `url`; its stdout, or why it failed.
fn empathy(url: &str, args: &[&str]) -> anyhow::Result<String> {
    let out = Command::new(sibling_binary("empathy")?)
        .args(args)
        .args(["--endpoint", url])
        .env_remove("EMPATHY_TENANT")
        .output()?;
    anyhow::ensure!(
        out.status.success(),
        "empathy {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    Ok(String::from_utf8(out.stdout)?)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_tenants_traffic_reaches_the_trainer_and_its_suggestions_are_its_own()
-> anyhow::Result<()> {
    let dir = temp_dir("traffic");
    let system = start_learning_system(&dir, &[], &["--traffic-sample", "1"]).await?;
    let (fusion, database) = (&system.fusion, &system.database);
    let mut api = client(fusion).await?;

    let mut ids: BTreeMap<&str, Vec<String>> = BTreeMap::new();
    for (tenant, texts) in [("clinic-a", &TEXTS[..]), ("default", &TEXTS[..2])] {
        for text in texts {
            let request = AnalyzeRequest {
                text: (*text).into(),
                ..AnalyzeRequest::default()
            };
            let answer = api.analyze(as_tenant(tenant, request)?).await?.into_inner();
            ids.entry(tenant).or_default().push(answer.analysis_id);
        }
    }
    // One more through the CLI's --tenant.
    let cli = empathy(
        &fusion.url(),
        &[
            "analyze", "--tenant", "clinic-a", "--json", "--text", TEXTS[0],
        ],
    )?;
    let cli: serde_json::Value = serde_json::from_str(&cli)?;
    let cli_id = cli["analysisId"].as_str().unwrap_or_default().to_string();
    ids.entry("clinic-a").or_default().push(cli_id.clone());

    // Fewer than a batch: sent within fusion's flush interval (5 s).
    let deadline = Instant::now() + Duration::from_secs(30);
    let mut want: BTreeMap<String, Vec<String>> = ids
        .iter()
        .map(|(t, v)| (t.to_string(), v.clone()))
        .collect();
    want.values_mut().for_each(|v| v.sort());
    let mut got = stored(database)?;
    while got != want && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(500)).await;
        got = stored(database)?;
    }
    assert_eq!(got, want, "the trainer's traffic table, per tenant");

    // Suggestions: clinic-a's own analyses, best first; a corrected one leaves.
    let suggest = |tenant: &str| -> anyhow::Result<Vec<String>> {
        let json = empathy(
            &fusion.url(),
            &["suggest", "--tenant", tenant, "--json", "-n", "50"],
        )?;
        let r: serde_json::Value = serde_json::from_str(&json)?;
        let list = r["suggestions"].as_array().cloned().unwrap_or_default();
        let scores: Vec<f64> = list.iter().filter_map(|s| s["score"].as_f64()).collect();
        anyhow::ensure!(
            scores.windows(2).all(|w| w[0] >= w[1]),
            "not best first: {json}"
        );
        anyhow::ensure!(
            list.iter()
                .all(|s| !s["why"].as_str().unwrap_or_default().is_empty()),
            "a suggestion without a why: {json}"
        );
        let mut ids: Vec<String> = list
            .iter()
            .filter_map(|s| s["analysisId"].as_str().map(str::to_string))
            .collect();
        ids.sort();
        Ok(ids)
    };
    assert_eq!(suggest("clinic-a")?, want["clinic-a"]);
    assert_eq!(suggest("default")?, want["default"]);
    let feedback = FeedbackRequest {
        analysis_id: cli_id.clone(),
        sentiment: "negative".into(),
        ..FeedbackRequest::default()
    };
    api.feedback(as_tenant("clinic-a", feedback)?).await?;
    let left = suggest("clinic-a")?;
    assert!(!left.contains(&cli_id), "a corrected analysis is suggested");
    assert_eq!(left.len(), want["clinic-a"].len() - 1);

    // The table a person reads.
    let table = empathy(&fusion.url(), &["suggest", "--tenant", "default"])?;
    assert!(table.starts_with("analysis "), "{table}");
    assert!(table.contains(&want["default"][0]), "{table}");
    let refused = empathy(&fusion.url(), &["suggest", "--tenant", "Clinic A"]);
    let err = refused.err().map(|e| e.to_string()).unwrap_or_default();
    assert!(err.contains("is not a tenant name"), "{err}");

    drop(system);
    let _ = std::fs::remove_dir_all(&dir);
    Ok(())
}
