//! PostgreSQL as the trainer's feedback store, against a real throwaway server: an
//! acknowledged record survives SIGKILL, two trainers share one database, only one
//! of them trains at a time, a job that lost the lock publishes nothing, and TLS is
//! verified.
//!
//! Needs the PostgreSQL server binaries (`scripts/setup` installs the Debian package
//! `postgresql`; they are found in /usr/lib/postgresql/<version>/bin, on PATH, or in
//! `EMPATHY_PG_BIN`) and the trainer binary (cargo build -p empathy-trainer). Without
//! the binaries the tests FAIL, saying so: they never pass without a server. As root,
//! the server runs as the `postgres` user (PostgreSQL refuses to run as root).

mod support;

use std::path::PathBuf;
use std::process::Command;
use std::time::{Duration, Instant};

use empathy_common::launch::sibling_binary;
use empathy_grpc::v1::trainer_service_client::TrainerServiceClient;
use empathy_grpc::v1::{CancelJobRequest, JobState, ListModelsRequest, StartTrainingRequest};
use support::{
    feedback_record, registry_copy, start_trainer_on, stream_feedback_then_kill, temp_dir,
    trainer_client, wait_job,
};
use tonic::Code;
use tonic::transport::Channel;

/// The session advisory lock a trainer holds while it trains (`b"empathy\x01"`; see
/// services/trainer/src/store/postgres.rs).
const TRAINING_LOCK: i64 = 0x656d_7061_7468_7901;

/// A PostgreSQL server in a temp dir, on a free port; stopped (and removed) on drop.
struct PgServer {
    dir: PathBuf,
    bin: PathBuf,
    port: u16,
    /// (uid, gid) of `postgres` when we are root.
    run_as: Option<(String, String)>,
}

fn pg_bin() -> PathBuf {
    if let Some(dir) = std::env::var_os("EMPATHY_PG_BIN").map(PathBuf::from) {
        assert!(
            dir.join("initdb").is_file(),
            "EMPATHY_PG_BIN={} holds no initdb: point it at PostgreSQL's bin directory, or \
             unset it and run scripts/setup",
            dir.display()
        );
        return dir;
    }
    // Debian: /usr/lib/postgresql/<major>/bin; the newest major.
    let mut found: Vec<(u32, PathBuf)> = std::fs::read_dir("/usr/lib/postgresql")
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|e| {
            let major = e.file_name().to_string_lossy().parse::<u32>().ok()?;
            let bin = e.path().join("bin");
            bin.join("initdb").is_file().then_some((major, bin))
        })
        .collect();
    found.sort();
    if let Some((_, bin)) = found.pop() {
        return bin;
    }
    let on_path = std::env::var_os("PATH").and_then(|paths| {
        std::env::split_paths(&paths)
            .find(|p| p.join("initdb").is_file() && p.join("pg_ctl").is_file())
    });
    on_path.unwrap_or_else(|| {
        panic!(
            "no PostgreSQL server binaries (initdb, pg_ctl) in /usr/lib/postgresql/*/bin, on \
             PATH or in EMPATHY_PG_BIN: run scripts/setup (it installs the Debian package \
             `postgresql`) and run the tests again"
        )
    })
}

fn id(args: &[&str]) -> anyhow::Result<String> {
    let out = Command::new("id").args(args).output()?;
    anyhow::ensure!(out.status.success(), "id {args:?} failed");
    Ok(String::from_utf8_lossy(&out.stdout).trim().to_string())
}

fn free_port() -> u16 {
    let l = std::net::TcpListener::bind("127.0.0.1:0").expect("bind a free port");
    l.local_addr().expect("local addr").port()
}

impl PgServer {
    fn start(tag: &str) -> anyhow::Result<PgServer> {
        PgServer::start_with(tag, false)
    }

    /// A server that also takes TLS, with a certificate for 127.0.0.1 from a CA made
    /// here (its certificate in `ca_pem()`).
    fn start_tls(tag: &str) -> anyhow::Result<PgServer> {
        PgServer::start_with(tag, true)
    }

    fn start_with(tag: &str, tls: bool) -> anyhow::Result<PgServer> {
        let bin = pg_bin();
        let dir = temp_dir(&format!("pg-{tag}"));
        let mut ssl_options = String::new();
        if tls {
            write_certificates(&dir)?;
            ssl_options = format!(
                " -c ssl=on -c ssl_cert_file={0}/server.crt -c ssl_key_file={0}/server.key",
                dir.display()
            );
        }
        let run_as = if id(&["-u"])? == "0" {
            let uid = id(&["-u", "postgres"]).map_err(|_| {
                anyhow::anyhow!(
                    "running as root and there is no `postgres` user to run the server as: \
                     run scripts/setup (the postgresql package creates it)"
                )
            })?;
            let gid = id(&["-g", "postgres"])?;
            let chown = Command::new("chown")
                .arg("-R")
                .arg(format!("{uid}:{gid}"))
                .arg(&dir)
                .status()?;
            anyhow::ensure!(chown.success(), "chown {} failed", dir.display());
            Some((uid, gid))
        } else {
            None
        };
        let mut server = PgServer {
            dir,
            bin,
            port: 0,
            run_as,
        };
        server.run(
            "initdb",
            &[
                "-D",
                &server.data(),
                "-U",
                "empathy",
                "-A",
                "trust",
                "-E",
                "UTF8",
                "--locale=C",
                "--no-sync",
                "--no-instructions",
            ],
        )?;
        // A free port can be taken between our probe and the server's bind: try again.
        let mut last = None;
        for _ in 0..3 {
            server.port = free_port();
            let options = format!(
                "-p {} -k {} -c listen_addresses=127.0.0.1 -c max_connections=60{ssl_options}",
                server.port,
                server.dir.display()
            );
            let log = server.dir.join("server.log").display().to_string();
            match server.run(
                "pg_ctl",
                &[
                    "-D",
                    &server.data(),
                    "-l",
                    &log,
                    "-o",
                    &options,
                    "-w",
                    "-t",
                    "60",
                    "start",
                ],
            ) {
                Ok(()) => return Ok(server),
                Err(e) => last = Some(e),
            }
        }
        let log = std::fs::read_to_string(server.dir.join("server.log")).unwrap_or_default();
        Err(last
            .unwrap_or_else(|| anyhow::anyhow!("no attempt"))
            .context(format!(
                "the PostgreSQL server did not start; its log:\n{log}"
            )))
    }

    fn ca_pem(&self) -> PathBuf {
        self.dir.join("ca.pem")
    }

    fn data(&self) -> String {
        self.dir.join("data").display().to_string()
    }

    /// Runs a server program (as `postgres` when we are root) and waits for it.
    fn run(&self, program: &str, args: &[&str]) -> anyhow::Result<()> {
        let path = self.bin.join(program);
        let mut command = match &self.run_as {
            Some((uid, gid)) => {
                let mut c = Command::new("setpriv");
                c.arg(format!("--reuid={uid}"))
                    .arg(format!("--regid={gid}"))
                    .arg("--clear-groups")
                    .arg(&path);
                c
            }
            None => Command::new(&path),
        };
        let out = command.args(args).current_dir(&self.dir).output()?;
        anyhow::ensure!(
            out.status.success(),
            "{program} {args:?} failed ({}): {}{}",
            out.status,
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        Ok(())
    }

    /// A fast restart (open connections are closed), on the same port.
    fn restart(&self) -> anyhow::Result<()> {
        let data = self.data();
        // -l again: without it the server would keep our output pipe open.
        let log = self.dir.join("server.log").display().to_string();
        self.run(
            "pg_ctl",
            &[
                "-D", &data, "-l", &log, "-m", "fast", "-w", "-t", "60", "restart",
            ],
        )
    }

    /// A URL for the trainer (TCP; user `empathy`, trusted).
    fn url(&self) -> String {
        format!("postgres://empathy@127.0.0.1:{}/postgres", self.port)
    }

    /// A direct connection for the test itself.
    async fn connect(&self) -> anyhow::Result<tokio_postgres::Client> {
        let (client, connection) =
            tokio_postgres::connect(&self.url(), tokio_postgres::NoTls).await?;
        tokio::spawn(async move {
            let _ = connection.await;
        });
        Ok(client)
    }
}

/// A CA (`ca.pem`) and a server certificate for 127.0.0.1 signed by it (`server.crt`,
/// `server.key`, mode 0600 as PostgreSQL wants).
fn write_certificates(dir: &std::path::Path) -> anyhow::Result<()> {
    use rcgen::{BasicConstraints, CertificateParams, DnType, IsCa, Issuer, KeyPair};
    use std::os::unix::fs::PermissionsExt;
    let ca_key = KeyPair::generate()?;
    let mut ca = CertificateParams::new(Vec::<String>::new())?;
    ca.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    ca.distinguished_name
        .push(DnType::CommonName, "empathy test CA");
    let ca_cert = ca.self_signed(&ca_key)?;
    let server_key = KeyPair::generate()?;
    let server = CertificateParams::new(vec!["127.0.0.1".to_string()])?
        .signed_by(&server_key, &Issuer::from_params(&ca, &ca_key))?;
    std::fs::write(dir.join("ca.pem"), ca_cert.pem())?;
    std::fs::write(dir.join("server.crt"), server.pem())?;
    let key = dir.join("server.key");
    std::fs::write(&key, server_key.serialize_pem())?;
    std::fs::set_permissions(&key, std::fs::Permissions::from_mode(0o600))?;
    Ok(())
}

impl Drop for PgServer {
    fn drop(&mut self) {
        if self.port != 0 {
            let data = self.data();
            if let Err(e) = self.run("pg_ctl", &["-D", &data, "-m", "immediate", "-w", "stop"]) {
                eprintln!("stopping the test PostgreSQL server: {e:#}");
            }
        }
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

async fn stored_ids(
    db: &tokio_postgres::Client,
) -> anyhow::Result<std::collections::HashSet<String>> {
    Ok(db
        .query("SELECT id FROM feedback", &[])
        .await?
        .iter()
        .map(|r| r.get::<_, String>(0))
        .collect())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn acknowledged_feedback_survives_sigkill_on_postgres() -> anyhow::Result<()> {
    let started = Instant::now();
    let pg = PgServer::start("sigkill")?;
    let dir = temp_dir("pg-sigkill-trainer");
    let models = registry_copy(&dir)?;
    let url = pg.url();
    let mut trainer = start_trainer_on(&models, &url, &[]).await?;

    // Many in flight: 24 clients, each sending as fast as it is answered.
    let acked = stream_feedback_then_kill(&mut trainer, 24, 600).await?;
    assert!(
        acked.len() >= 100,
        "only {} acknowledged before the kill",
        acked.len()
    );

    // Restart on the same database: it serves again.
    let restarted = start_trainer_on(&models, &url, &[]).await?;
    let mut client = trainer_client(&restarted).await?;
    let after = client
        .submit_feedback(feedback_record("after-restart", "neutral", 1))
        .await?
        .into_inner();

    // Count in PostgreSQL itself, not through the trainer.
    let db = pg.connect().await?;
    let stored = stored_ids(&db).await?;
    let lost: Vec<&String> = acked.iter().filter(|id| !stored.contains(*id)).collect();
    println!(
        "PostgreSQL SIGKILL durability: {} acknowledged before the kill, {} of them found \
         after restart, {} lost; {} rows stored in all ({} committed but not acknowledged \
         when the trainer died, 1 after the restart); {:.1} s",
        acked.len(),
        acked.len() - lost.len(),
        lost.len(),
        stored.len(),
        stored.len() - (acked.len() - lost.len()) - 1,
        started.elapsed().as_secs_f64()
    );
    assert!(lost.is_empty(), "acknowledged but lost: {lost:?}");
    assert!(stored.contains(&after.feedback_id));

    // The server restarts under a running trainer: its connections are reopened. A
    // record sent while the old connection is found broken may be refused
    // (UNAVAILABLE: not stored, retry), never acknowledged and lost.
    drop(db);
    pg.restart()?;
    let deadline = Instant::now() + Duration::from_secs(20);
    let mut refused = 0;
    let reconnected = loop {
        match client
            .submit_feedback(feedback_record("after-server-restart", "neutral", 2))
            .await
        {
            Ok(ack) => break ack.into_inner().feedback_id,
            Err(e) if e.code() == Code::Unavailable && Instant::now() < deadline => {
                refused += 1;
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
            Err(e) => panic!("no feedback stored after the server restarted: {e}"),
        }
    };
    let db = pg.connect().await?;
    assert!(stored_ids(&db).await?.contains(&reconnected));
    println!(
        "PostgreSQL restarted: {refused} record(s) refused (UNAVAILABLE) before the trainer reconnected"
    );
    drop(restarted);
    let _ = std::fs::remove_dir_all(&dir);
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn two_trainers_share_a_database_and_train_one_at_a_time() -> anyhow::Result<()> {
    let started = Instant::now();
    let pg = PgServer::start("two")?;
    let dir = temp_dir("pg-two-trainers");
    let (models_a, models_b) = (
        registry_copy(&dir.join("a"))?,
        registry_copy(&dir.join("b"))?,
    );
    let url = pg.url();
    // Started together: both create the schema at once.
    let (a, b) = tokio::join!(
        start_trainer_on(&models_a, &url, &[]),
        start_trainer_on(&models_b, &url, &[])
    );
    let (a, b) = (a?, b?);
    let (mut ca, mut cb) = (trainer_client(&a).await?, trainer_client(&b).await?);

    // Both take feedback into the same table.
    let sends = (0..40).map(|i| {
        let mut c = if i % 2 == 0 { ca.clone() } else { cb.clone() };
        async move {
            c.submit_feedback(feedback_record(&format!("both-{i}"), "positive", i))
                .await
                .map(|r| r.into_inner().feedback_id)
        }
    });
    let ids: Vec<String> = futures::future::join_all(sends)
        .await
        .into_iter()
        .collect::<Result<_, _>>()?;
    let db = pg.connect().await?;
    let stored = stored_ids(&db).await?;
    assert!(
        ids.iter().all(|id| stored.contains(id)),
        "a record from one of the trainers is missing"
    );
    println!(
        "two trainers: {} records from A and B, all {} in the one table",
        ids.len(),
        stored.len()
    );

    // The lock held elsewhere (here, by the test): neither trainer may train.
    let held: bool = db
        .query_one("SELECT pg_try_advisory_lock($1)", &[&TRAINING_LOCK])
        .await?
        .get(0);
    assert!(held, "the test could not take the training lock");
    for c in [&mut ca, &mut cb] {
        let err = c
            .start_training(StartTrainingRequest::default())
            .await
            .expect_err("StartTraining while another holds the lock");
        assert_eq!(err.code(), Code::FailedPrecondition, "{}", err.message());
        assert!(
            err.message().contains("another trainer is training"),
            "{}",
            err.message()
        );
    }
    db.execute("SELECT pg_advisory_unlock($1)", &[&TRAINING_LOCK])
        .await?;

    // A real job on A: B is refused while it runs, and may train once it has ended.
    let job = ca
        .start_training(StartTrainingRequest {
            reason: "postgres e2e".into(),
            ..Default::default()
        })
        .await?
        .into_inner();
    let refused = cb.start_training(StartTrainingRequest::default()).await;
    let taken: bool = db
        .query_one("SELECT pg_try_advisory_lock($1)", &[&TRAINING_LOCK])
        .await?
        .get(0);
    let _ = ca
        .cancel_job(CancelJobRequest {
            job_id: job.job_id.clone(),
        })
        .await;
    let end = wait_job(&mut ca, &job.job_id).await?;
    println!(
        "A's job ended {:?}: {}; B while it ran: {:?}",
        end.state(),
        end.message,
        refused
            .as_ref()
            .map_err(|e| e.message().to_string())
            .map(|_| "started")
    );
    let err = refused.map(|_| ()).expect_err(&format!(
        "B started a job while A's ran (unless A's ended first: {:?} {})",
        end.state(),
        end.message
    ));
    assert_eq!(err.code(), Code::FailedPrecondition, "{}", err.message());
    assert!(
        err.message().contains("another trainer is training"),
        "{}",
        err.message()
    );
    assert!(!taken, "A's job did not hold the training lock");
    assert!(
        matches!(
            end.state(),
            JobState::Cancelled | JobState::Rejected | JobState::Published | JobState::Failed
        ),
        "{end:?}"
    );
    // A recorded its job in the shared database.
    let recorded: i64 = db
        .query_one("SELECT COUNT(*) FROM jobs WHERE id = $1", &[&job.job_id])
        .await?
        .get(0);
    assert_eq!(recorded, 1, "A's job is not in the jobs table");

    // A released the lock once its job was recorded: B may start now.
    let deadline = Instant::now() + Duration::from_secs(10);
    let job_b = loop {
        match cb.start_training(StartTrainingRequest::default()).await {
            Ok(j) => break j.into_inner(),
            Err(e) if e.code() == Code::FailedPrecondition && Instant::now() < deadline => {
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
            Err(e) => panic!("B cannot train after A's job ended: {e}"),
        }
    };
    let _ = cb
        .cancel_job(CancelJobRequest {
            job_id: job_b.job_id.clone(),
        })
        .await;
    let end_b = wait_job(&mut cb, &job_b.job_id).await?;
    println!(
        "B's job ended {:?}: {}; {:.1} s",
        end_b.state(),
        end_b.message,
        started.elapsed().as_secs_f64()
    );
    drop((a, b));
    let _ = std::fs::remove_dir_all(&dir);
    Ok(())
}

/// The registry's versions and which one serves.
async fn versions(
    trainer: &mut TrainerServiceClient<Channel>,
) -> anyhow::Result<Vec<(String, bool)>> {
    Ok(trainer
        .list_models(ListModelsRequest::default())
        .await?
        .into_inner()
        .versions
        .into_iter()
        .map(|v| (v.version, v.serving))
        .collect())
}

/// What the trainer printed when it stopped at startup on `database` (it must not start).
fn trainer_startup_error(models: &std::path::Path, database: &str) -> anyhow::Result<String> {
    let output = Command::new(sibling_binary("empathy-trainer")?)
        .args(["--assets", &support::assets().display().to_string()])
        .arg("--models")
        .arg(models)
        .arg("--database")
        .arg(database)
        .output()?;
    anyhow::ensure!(
        !output.status.success(),
        "the trainer started on {database}"
    );
    Ok(format!(
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    )
    .trim()
    .to_string())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn the_trainer_speaks_tls_and_verifies_the_servers_certificate() -> anyhow::Result<()> {
    let pg = PgServer::start_tls("tls")?;
    let dir = temp_dir("pg-tls");
    let models = registry_copy(&dir)?;

    // A CA it does not trust: refused at startup, saying what to do.
    let refused = trainer_startup_error(&models, &format!("{}?sslmode=require", pg.url()))?;
    println!("untrusted certificate: {refused}");
    assert!(refused.contains("did not verify"), "{refused}");
    assert!(refused.contains("sslrootcert="), "{refused}");

    // Trusting the CA, libpq's way: the trainer stores feedback over TLS, as PostgreSQL
    // itself reports for each of the trainer's sessions.
    let url = format!(
        "{}?sslmode=verify-full&sslrootcert={}",
        pg.url(),
        pg.ca_pem().display()
    );
    let trainer = start_trainer_on(&models, &url, &[]).await?;
    let mut client = trainer_client(&trainer).await?;
    let ack = client
        .submit_feedback(feedback_record("over-tls", "positive", 1))
        .await?
        .into_inner();
    let db = pg.connect().await?;
    assert!(stored_ids(&db).await?.contains(&ack.feedback_id));
    let sessions: Vec<bool> = db
        .query(
            "SELECT s.ssl FROM pg_stat_ssl s JOIN pg_stat_activity a USING (pid) \
             WHERE a.application_name = 'empathy-trainer'",
            &[],
        )
        .await?
        .iter()
        .map(|r| r.get(0))
        .collect();
    println!("the trainer's sessions, encrypted: {sessions:?}");
    assert!(!sessions.is_empty(), "no trainer session on the server");
    assert!(sessions.iter().all(|&ssl| ssl), "a session without TLS");
    drop(trainer);
    let _ = std::fs::remove_dir_all(&dir);
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_job_that_loses_the_training_lock_publishes_nothing() -> anyhow::Result<()> {
    let pg = PgServer::start("lost-lock")?;
    let dir = temp_dir("pg-lost-lock");
    let models = registry_copy(&dir)?;
    let trainer = start_trainer_on(&models, &pg.url(), &[]).await?;
    let mut client = trainer_client(&trainer).await?;
    for i in 0..40 {
        let sentiment = ["positive", "negative"][i % 2];
        client
            .submit_feedback(feedback_record(&format!("lost-{i}"), sentiment, i))
            .await?;
    }
    let before = versions(&mut client).await?;

    // The job holds the lock from StartTraining on; its connection is cut while it
    // fine-tunes (as a network failure or a DBA would), which frees the lock for others.
    let job = client
        .start_training(StartTrainingRequest {
            reason: "lost lock e2e".into(),
            ..Default::default()
        })
        .await?
        .into_inner();
    let db = pg.connect().await?;
    let cut: i64 = db
        .query_one(
            "SELECT COUNT(pg_terminate_backend(pid)) FROM pg_locks WHERE locktype = 'advisory' \
             AND granted AND classid = $1 AND objid = $2",
            &[&((TRAINING_LOCK >> 32) as u32), &(TRAINING_LOCK as u32)],
        )
        .await?
        .get(0);
    assert_eq!(
        cut, 1,
        "no session held the training lock while the job ran"
    );
    let end = wait_job(&mut client, &job.job_id).await?;
    println!(
        "job after its lock was lost: {:?}: {}",
        end.state(),
        end.message
    );
    assert_eq!(end.state(), JobState::Failed, "{}", end.message);
    assert!(
        end.message.contains("training lock was lost"),
        "{}",
        end.message
    );
    assert!(end.published_version.is_empty());
    assert_eq!(versions(&mut client).await?, before, "the registry changed");
    let through: i64 = db
        .query_one("SELECT through_seq FROM jobs WHERE id = $1", &[&job.job_id])
        .await?
        .get(0);
    assert_eq!(through, 0, "the failed job marked feedback as trained");

    // The trainer is fine: the next job takes the lock on a new connection.
    let next = client
        .start_training(StartTrainingRequest::default())
        .await?
        .into_inner();
    let _ = client
        .cancel_job(CancelJobRequest {
            job_id: next.job_id.clone(),
        })
        .await;
    wait_job(&mut client, &next.job_id).await?;
    drop(trainer);
    let _ = std::fs::remove_dir_all(&dir);
    Ok(())
}

#[test]
fn an_unreachable_database_is_a_clear_error_without_the_password() -> anyhow::Result<()> {
    let dir = temp_dir("pg-unreachable");
    let port = free_port(); // released: nothing listens there
    let text = trainer_startup_error(
        &dir.join("models"),
        &format!("postgres://empathy:s3cret-pw@127.0.0.1:{port}/feedback"),
    )?;
    println!("unreachable database: {text}");
    assert!(
        text.contains(&format!(
            "cannot connect to the feedback database postgres://empathy:***@127.0.0.1:{port}/feedback"
        )),
        "{text}"
    );
    assert!(
        !text.contains("s3cret-pw"),
        "the password was printed: {text}"
    );
    let _ = std::fs::remove_dir_all(&dir);
    Ok(())
}
