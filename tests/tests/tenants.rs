//! Tenant lines end to end (issue 13), as an integrator tries them: analyse sentences of
//! a domain the base never saw, correct the wrong answers through fusion, retrain that
//! tenant's line, and check what changed for whom. Tenants come from the
//! `x-empathy-tenant` header (insecure local mode; with API keys the key decides).
//!
//! The domain sentences are `eval/domains/*.jsonl`, written for this and never trained
//! on by the base. Needs the binaries, a trained model and the corpus embedding cache
//! (as tests/tests/learning.rs).

mod support;

use std::path::Path;
use std::time::{Duration, Instant};

use empathy_common::launch::Service;
use empathy_grpc::v1::empathy_service_client::EmpathyServiceClient;
use empathy_grpc::v1::trainer_service_client::TrainerServiceClient;
use empathy_grpc::v1::{
    AnalyzeRequest, AnalyzeResponse, FeedbackRequest, JobState, ListModelsRequest, ModelVersion,
    RollbackRequest, StartTrainingRequest,
};
use support::{
    LearningSystem, as_tenant, client, registry_copy, start_fusion, start_learning_system,
    temp_dir, trainer_client, wait_job,
};
use tonic::transport::Channel;

type Fusion = EmpathyServiceClient<Channel>;

/// Corrections a tenant sends: the thirty.
const CORRECTIONS: usize = 30;

/// The whole system on a private copy of the registry, and clients of it.
struct System {
    fusion: Fusion,
    trainer: TrainerServiceClient<Channel>,
    models: std::path::PathBuf,
    _services: LearningSystem,
}

async fn system(name: &str, trainer_args: &[&str]) -> anyhow::Result<System> {
    // Every analysis in the traffic sample, so that runs agree (the default samples a
    // fifth at random).
    let fusion_args = ["--model-poll-s", "1", "--traffic-sample", "1"];
    let services = start_learning_system(&temp_dir(name), trainer_args, &fusion_args).await?;
    Ok(System {
        fusion: client(&services.fusion).await?,
        trainer: trainer_client(&services.trainer).await?,
        models: services.models.clone(),
        _services: services,
    })
}

/// `(text, label)` of a domain file.
fn domain(name: &str) -> anyhow::Result<Vec<(String, String)>> {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join(format!("../eval/domains/{name}.jsonl"));
    let text = std::fs::read_to_string(&path)?;
    text.lines()
        .filter(|l| !l.trim().is_empty())
        .map(|l| {
            let v: serde_json::Value = serde_json::from_str(l)?;
            let field = |k: &str| v[k].as_str().map(str::to_string);
            Ok((
                field("text").ok_or_else(|| anyhow::anyhow!("no text: {l}"))?,
                field("label").ok_or_else(|| anyhow::anyhow!("no label: {l}"))?,
            ))
        })
        .collect()
}

async fn analyze(fusion: &mut Fusion, tenant: &str, text: &str) -> anyhow::Result<AnalyzeResponse> {
    let request = AnalyzeRequest {
        text: text.into(),
        ..Default::default()
    };
    Ok(fusion
        .analyze(as_tenant(tenant, request)?)
        .await?
        .into_inner())
}

fn label(r: &AnalyzeResponse) -> String {
    r.sentiment
        .as_ref()
        .map_or(String::new(), |s| s.label.clone())
}

/// Every answer's label and scores, and the versions that gave them.
async fn answers(
    fusion: &mut Fusion,
    tenant: &str,
    texts: &[String],
) -> anyhow::Result<Vec<(String, Vec<u32>, String)>> {
    let mut out = Vec::new();
    for t in texts {
        let r = analyze(fusion, tenant, t).await?;
        let scores = r
            .sentiment
            .as_ref()
            .map(|s| s.scores.iter().map(|x| x.score.to_bits()).collect())
            .unwrap_or_default();
        out.push((label(&r), scores, r.model_version));
    }
    Ok(out)
}

/// Analyses `texts` as `tenant` and corrects each to its label; returns how many
/// corrections were stored.
async fn correct(
    fusion: &mut Fusion,
    tenant: &str,
    texts: &[(String, String)],
) -> anyhow::Result<usize> {
    let mut stored = 0;
    for (text, label) in texts {
        let analysis_id = analyze(fusion, tenant, text).await?.analysis_id;
        let request = FeedbackRequest {
            analysis_id,
            sentiment: label.clone(),
            ..Default::default()
        };
        let r = fusion
            .feedback(as_tenant(tenant, request)?)
            .await?
            .into_inner();
        stored += usize::from(r.stored);
    }
    Ok(stored)
}

/// Retrains `tenant`'s line; returns the job's end and, if it published, the seconds
/// from the start until fusion answered the tenant with the new version.
async fn retrain(
    s: &mut System,
    tenant: &str,
    probe: &str,
) -> anyhow::Result<(empathy_grpc::v1::TrainingJob, Option<f64>)> {
    let started = Instant::now();
    let job = s
        .trainer
        .start_training(StartTrainingRequest {
            reason: "test".into(),
            tenant: tenant.into(),
        })
        .await?
        .into_inner();
    assert_eq!(job.tenant, tenant);
    let end = wait_job(&mut s.trainer, &job.job_id).await?;
    println!("{tenant}'s job: {:?}: {}", end.state(), end.message);
    if end.state() != JobState::Published {
        return Ok((end, None));
    }
    let deadline = Instant::now() + Duration::from_secs(60);
    while analyze(&mut s.fusion, tenant, probe).await?.model_version != end.published_version {
        anyhow::ensure!(
            Instant::now() < deadline,
            "fusion never served {}",
            end.published_version
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    Ok((end, Some(started.elapsed().as_secs_f64())))
}

fn share_right(got: &[(String, Vec<u32>, String)], truth: &[(String, String)]) -> f64 {
    let right = got.iter().zip(truth).filter(|(g, t)| g.0 == t.1).count();
    right as f64 / truth.len().max(1) as f64
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn corrections_teach_one_tenant_its_domain_and_no_one_else() -> anyhow::Result<()> {
    let mut s = system("tenants-teach", &[]).await?;
    let clinic = domain("clinic")?;
    let texts: Vec<String> = clinic.iter().map(|(t, _)| t.clone()).collect();
    let before = answers(&mut s.fusion, "clinic", &texts).await?;
    let base = before[0].2.clone();
    // Another tenant and the default one ask about the same sentences and others.
    let mut probes: Vec<String> = domain("film")?
        .into_iter()
        .map(|(t, _)| t)
        .take(40)
        .collect();
    probes.extend(texts.iter().take(40).cloned());
    let other_before = answers(&mut s.fusion, "globex", &probes).await?;
    let default_before = answers(&mut s.fusion, "default", &probes).await?;

    // The clinic corrects its first thirty wrong answers, in file order.
    let wrong: Vec<usize> = (0..clinic.len())
        .filter(|&i| before[i].0 != clinic[i].1)
        .collect();
    let corrected: Vec<usize> = wrong.iter().copied().take(CORRECTIONS).collect();
    let rest: Vec<usize> = (0..clinic.len())
        .filter(|i| !corrected.contains(i))
        .collect();
    assert_eq!(
        corrected.len(),
        CORRECTIONS,
        "the base got too few clinic sentences wrong"
    );
    let pick = |ix: &[usize]| ix.iter().map(|&i| clinic[i].clone()).collect::<Vec<_>>();
    let stored = correct(&mut s.fusion, "clinic", &pick(&corrected)).await?;
    assert_eq!(stored, CORRECTIONS);

    let (end, seconds) = retrain(&mut s, "clinic", &texts[0]).await?;
    assert_eq!(end.state(), JobState::Published, "{}", end.message);
    assert!(
        end.published_version.starts_with("clinic/"),
        "{}",
        end.published_version
    );
    println!(
        "from the job's start to the new version serving: {:.1} s",
        seconds.unwrap_or(0.0)
    );

    let after = answers(&mut s.fusion, "clinic", &texts).await?;
    let (c_before, c_after) = (
        share_right(&pick_of(&before, &corrected), &pick(&corrected)),
        share_right(&pick_of(&after, &corrected), &pick(&corrected)),
    );
    let (r_before, r_after) = (
        share_right(&pick_of(&before, &rest), &pick(&rest)),
        share_right(&pick_of(&after, &rest), &pick(&rest)),
    );
    println!(
        "clinic: corrected sentences right {c_before:.3} -> {c_after:.3}; the other {} \
         sentences {r_before:.3} -> {r_after:.3}",
        rest.len()
    );
    assert!(
        c_after >= 0.7,
        "only {c_after:.3} of the corrected sentences are right now"
    );
    assert!(
        r_after > r_before,
        "the rest of the domain did not improve: {r_before} -> {r_after}"
    );
    assert!(after.iter().all(|a| a.2 == end.published_version));

    // Nothing changed for anyone else: same labels, same scores, same version.
    assert_eq!(
        answers(&mut s.fusion, "globex", &probes).await?,
        other_before
    );
    assert_eq!(
        answers(&mut s.fusion, "default", &probes).await?,
        default_before
    );
    assert!(other_before.iter().all(|a| a.2 == base));

    // A pin of another tenant's version is not found; of one's own, served.
    let pinned = |tenant: &str| {
        let mut r = AnalyzeRequest {
            text: texts[0].clone(),
            ..Default::default()
        };
        r.options.get_or_insert_default().model_version = end.published_version.clone();
        as_tenant(tenant, r)
    };
    let err = s
        .fusion
        .analyze(pinned("globex")?)
        .await
        .expect_err("another tenant's version");
    assert_eq!(err.code(), tonic::Code::NotFound, "{}", err.message());
    s.fusion.analyze(pinned("clinic")?).await?;
    Ok(())
}

fn pick_of<T: Clone>(all: &[T], ix: &[usize]) -> Vec<T> {
    ix.iter().map(|&i| all[i].clone()).collect()
}

/// Versions of `tenant`'s line (empty: the base line) the trainer lists.
async fn versions(s: &mut System, tenant: &str) -> anyhow::Result<Vec<ModelVersion>> {
    let request = ListModelsRequest {
        tenant: tenant.into(),
    };
    Ok(s.trainer.list_models(request).await?.into_inner().versions)
}

/// Automatic training starts at 45 pending corrections of a tenant: more than the
/// first poisoned batch, so the test starts that job itself.
const TRAIN_AFTER: usize = 45;

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn poisoned_feedback_stays_in_its_tenant_and_the_rollback_holds() -> anyhow::Result<()> {
    let mut s = system(
        "tenants-poison",
        &["--train-after", &TRAIN_AFTER.to_string()],
    )
    .await?;
    let film = domain("film")?;
    let texts: Vec<String> = film.iter().map(|(t, _)| t.clone()).collect();
    let victim_before = answers(&mut s.fusion, "victim", &texts).await?;
    let base = victim_before[0].2.clone();
    let base_pointer = std::fs::read_to_string(s.models.join("serving")).ok();
    let base_versions = versions(&mut s, "").await?;

    // Mallory marks clear positive and negative reviews as their opposite.
    let flipped: Vec<(String, String)> = film
        .iter()
        .filter(|(_, l)| l != "neutral")
        .map(|(t, l)| {
            let opposite = if l == "positive" {
                "negative"
            } else {
                "positive"
            };
            (t.clone(), opposite.to_string())
        })
        .collect();
    correct(&mut s.fusion, "mallory", &flipped[..40]).await?;
    let (end, _) = retrain(&mut s, "mallory", &texts[0]).await?;

    // Whatever mallory's line became, no one else's answers and no base moved.
    assert_eq!(
        answers(&mut s.fusion, "victim", &texts).await?,
        victim_before
    );
    assert_eq!(
        std::fs::read_to_string(s.models.join("serving")).ok(),
        base_pointer
    );
    assert_eq!(versions(&mut s, "").await?, base_versions);
    if end.state() != JobState::Published {
        println!("the gate refused mallory's flipped labels: {}", end.message);
        return Ok(());
    }

    // An admin rolls mallory's line back to the base version; fusion follows.
    s.trainer
        .rollback(RollbackRequest {
            version: base.clone(),
            tenant: "mallory".into(),
            base: false,
        })
        .await?;
    let deadline = Instant::now() + Duration::from_secs(30);
    while analyze(&mut s.fusion, "mallory", &texts[0])
        .await?
        .model_version
        != base
    {
        anyhow::ensure!(
            Instant::now() < deadline,
            "fusion kept serving mallory's line"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    // The rollback holds: enough new poison to start automatic training starts none
    // for mallory, while the same amount from another tenant does start its job.
    let mallory_lines = versions(&mut s, "mallory").await?;
    correct(&mut s.fusion, "mallory", &flipped[40..40 + TRAIN_AFTER]).await?;
    correct(&mut s.fusion, "probe", &flipped[40..40 + TRAIN_AFTER]).await?;
    let deadline = Instant::now() + Duration::from_secs(120);
    while versions(&mut s, "probe").await?.len() < 2 {
        anyhow::ensure!(
            Instant::now() < deadline,
            "the probe tenant's automatic job never published"
        );
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    assert_eq!(versions(&mut s, "mallory").await?, mallory_lines);
    assert_eq!(
        analyze(&mut s.fusion, "mallory", &texts[0])
            .await?
            .model_version,
        base
    );
    assert_eq!(
        answers(&mut s.fusion, "victim", &texts).await?,
        victim_before
    );
    Ok(())
}

/// A registry with `n` tenant lines, each a copy of the base version renamed as that
/// tenant's `v0001` (what a trainer would have published, without training each).
fn registry_with_lines(name: &str, n: usize) -> anyhow::Result<std::path::PathBuf> {
    let models = registry_copy(&temp_dir(name))?;
    let base = std::fs::read_dir(&models)?
        .filter_map(|e| e.ok())
        .map(|e| e.path())
        .find(|p| p.join("manifest.json").exists())
        .ok_or_else(|| anyhow::anyhow!("no base version in {}", models.display()))?;
    for i in 0..n {
        let line = models.join(format!("tenants/t{i}"));
        let version = line.join("v0001");
        std::fs::create_dir_all(&version)?;
        for f in std::fs::read_dir(&base)? {
            let f = f?;
            std::fs::copy(f.path(), version.join(f.file_name()))?;
        }
        let manifest = version.join("manifest.json");
        let mut m: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(&manifest)?)?;
        m["version"] = format!("t{i}/v0001").into();
        std::fs::write(&manifest, serde_json::to_string_pretty(&m)?)?;
        std::fs::write(line.join("serving"), format!("t{i}/v0001\n"))?;
    }
    Ok(models)
}

/// A line of fusion's Prometheus page, as a number.
async fn metric(service: &Service, name: &str) -> anyhow::Result<f64> {
    let addr = service
        .metrics_addr
        .as_deref()
        .ok_or_else(|| anyhow::anyhow!("no metrics"))?;
    let page = support::metrics_page(addr).await?;
    page.lines()
        .find(|l| l.starts_with(name) && l[name.len()..].starts_with([' ', '{']))
        .and_then(|l| l.rsplit(' ').next())
        .and_then(|n| n.parse().ok())
        .ok_or_else(|| anyhow::anyhow!("{name} not on the metrics page"))
}

fn rss_bytes(service: &Service) -> anyhow::Result<u64> {
    let pid = service
        .child
        .id()
        .ok_or_else(|| anyhow::anyhow!("{} has exited", service.name))?;
    let status = std::fs::read_to_string(format!("/proc/{pid}/status"))?;
    let kib: u64 = status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.split_whitespace().next())
        .and_then(|v| v.parse().ok())
        .ok_or_else(|| anyhow::anyhow!("no VmRSS for {pid}"))?;
    Ok(kib * 1024)
}

/// Info as each tenant loads that tenant's line; returns the versions named.
async fn info_as_each(fusion: &mut Fusion, tenants: usize) -> anyhow::Result<Vec<String>> {
    let mut versions = Vec::new();
    for i in 0..tenants {
        let request = as_tenant(&format!("t{i}"), empathy_grpc::v1::InfoRequest {})?;
        versions.push(fusion.info(request).await?.into_inner().model_version);
    }
    Ok(versions)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn many_tenant_lines_share_one_fusion_within_its_memory_budget() -> anyhow::Result<()> {
    const TENANTS: usize = 60;
    let models = registry_with_lines("tenants-memory", TENANTS)?;
    let models_arg = models.display().to_string();
    let expected: Vec<String> = (0..TENANTS).map(|i| format!("t{i}/v0001")).collect();
    let start = |mib: &'static str| {
        let models_arg = models_arg.clone();
        async move {
            let args = [
                "--model",
                models_arg.as_str(),
                "--tenant-models-mib",
                mib,
                "--metrics-listen",
                "127.0.0.1:0",
            ];
            start_fusion(&[support::dead_endpoint()], &args).await
        }
    };

    // Room for all: every line stays loaded; what each costs in resident memory.
    let roomy = start("1024").await?;
    let mut api = client(&roomy).await?;
    api.info(as_tenant("nobody", empathy_grpc::v1::InfoRequest {})?)
        .await?;
    let before = rss_bytes(&roomy)?;
    assert_eq!(info_as_each(&mut api, TENANTS).await?, expected);
    let per_line = rss_bytes(&roomy)?.saturating_sub(before) as f64 / TENANTS as f64;
    let counted = metric(&roomy, "empathy_tenant_models_bytes").await? / TENANTS as f64;
    println!(
        "one tenant line: {:.0} KiB resident ({:.0} KiB of files counted against the \
         budget): about {:.0} lines per GiB",
        per_line / 1024.0,
        counted / 1024.0,
        f64::from(1u32 << 30) / per_line.max(counted)
    );
    assert_eq!(
        metric(&roomy, "empathy_tenant_models_loaded").await?,
        TENANTS as f64
    );

    // A budget of 8 MiB holds about a dozen: the least recently used are dropped and
    // loaded again when asked for, and every tenant still gets its own line.
    let tight = start("8").await?;
    let mut api = client(&tight).await?;
    for _ in 0..2 {
        assert_eq!(info_as_each(&mut api, TENANTS).await?, expected);
    }
    let loaded = metric(&tight, "empathy_tenant_models_loaded").await?;
    let bytes = metric(&tight, "empathy_tenant_models_bytes").await?;
    assert!(bytes <= 8.0 * 1024.0 * 1024.0, "{bytes} bytes loaded");
    assert!(loaded >= 1.0 && loaded < TENANTS as f64, "{loaded} loaded");
    assert!(metric(&tight, "empathy_tenant_model_evictions_total").await? > 0.0);
    // A tenant without a line is served the base.
    let base = api
        .info(as_tenant("nobody", empathy_grpc::v1::InfoRequest {})?)
        .await?;
    assert!(!base.into_inner().model_version.contains('/'));
    Ok(())
}
