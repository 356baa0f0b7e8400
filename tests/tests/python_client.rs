//! The Python client as a Python team meets it: `pip install ./clients/python` into a
//! fresh virtual environment (its stubs generated from our proto at build time), the
//! README's three lines, then its own tests against a real encoder, trainer and fusion.

mod support;

use std::path::Path;

/// `program args` in the workspace root.
fn run(program: &Path, args: &[&str], env: &[(&str, String)]) -> anyhow::Result<(String, String)> {
    support::run(program, args, &support::workspace_root(), env)
}

#[tokio::test(flavor = "multi_thread")]
async fn pip_install_then_the_client_and_its_tests_work_against_a_live_system() -> anyhow::Result<()>
{
    let dir = support::temp_dir("python-client");
    let python = support::python_venv(&dir, &["./clients/python"])?;

    let system = support::start_learning_system(&dir, &[], &["--reflection"]).await?;
    let endpoint = system.fusion.addr.clone();
    // The README's three lines.
    let readme = format!(
        "from empathy_client import Client\n\
         client = Client(\"{endpoint}\")\n\
         print(client.analyze(text=\"I love this\").sentiment.label)\n"
    );
    let (printed, _) = run(&python, &["-c", &readme], &[])?;
    assert_eq!(printed.trim(), "positive");

    // Python's grpcio-reflection client (it asks v1alpha) lists the services.
    run(
        &python,
        &[
            "-m",
            "pip",
            "install",
            "-q",
            "--disable-pip-version-check",
            "grpcio-reflection",
        ],
        &[],
    )?;
    let list = format!(
        "import grpc\n\
         from grpc_reflection.v1alpha.proto_reflection_descriptor_database import \
         ProtoReflectionDescriptorDatabase\n\
         db = ProtoReflectionDescriptorDatabase(grpc.insecure_channel(\"{endpoint}\"))\n\
         print(sorted(db.get_services()))\n\
         print(db.FindFileContainingSymbol(\"empathy.v1.EmpathyService\").name)\n"
    );
    let (listed, _) = run(&python, &["-c", &list], &[])?;
    assert!(listed.contains("'empathy.v1.EmpathyService'"), "{listed}");
    assert!(listed.contains("empathy/v1/empathy.proto"), "{listed}");

    // A fusion whose encoder also reads photos, for the face test.
    let images = support::start_encoder(&["--plugin", "image"]).await?;
    let with_images = support::start_fusion(
        &[images.url()],
        &[
            "--trainer",
            &system.trainer.url(),
            "--model",
            &system.models.display().to_string(),
        ],
    )
    .await?;
    let photo = support::assets().join("photos/astronaut.png");
    let out = run(
        &python,
        &[
            "-m",
            "unittest",
            "discover",
            "-v",
            "-s",
            "clients/python/tests",
        ],
        &[
            ("EMPATHY_ENDPOINT", with_images.addr.clone()),
            ("EMPATHY_TEST_PHOTO", photo.display().to_string()),
        ],
    );
    let _ = std::fs::remove_dir_all(&dir);
    // unittest reports on stderr: every test ran, none skipped.
    let (_, report) = out?;
    println!("{report}");
    assert!(report.contains("Ran 8 tests"), "{report}");
    assert!(report.trim_end().ends_with("OK"), "{report}");
    Ok(())
}
