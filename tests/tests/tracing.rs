//! One Analyze (text, a face, situations, its affect recorded) is one trace across
//! fusion, the encoder and its plugins, the situation service and the trainer: each
//! service exports its spans over OTLP to a collector in this test, and the caller's
//! `traceparent` is the trace they all join.

mod support;

use std::{
    collections::HashSet,
    sync::{Arc, Mutex},
    time::{Duration, Instant},
};

use empathy_common::launch::{self, sibling_binary};
use empathy_grpc::v1::{AnalyzeOptions, AnalyzeRequest};
use opentelemetry_proto::tonic::{
    collector::trace::v1::{
        ExportTraceServiceRequest, ExportTraceServiceResponse,
        trace_service_server::{TraceService, TraceServiceServer},
    },
    common::v1::any_value::Value,
    trace::v1::Span,
};
use tonic::{Request, Response, Status};

/// Every span exported to it, with the service that exported it.
#[derive(Clone, Default)]
struct Collector {
    spans: Arc<Mutex<Vec<(String, Span)>>>,
}

#[tonic::async_trait]
impl TraceService for Collector {
    async fn export(
        &self,
        request: Request<ExportTraceServiceRequest>,
    ) -> Result<Response<ExportTraceServiceResponse>, Status> {
        let mut spans = self
            .spans
            .lock()
            .map_err(|_| Status::internal("poisoned"))?;
        for resource_spans in request.into_inner().resource_spans {
            let service = resource_spans
                .resource
                .iter()
                .flat_map(|r| &r.attributes)
                .find(|a| a.key == "service.name")
                .and_then(|a| a.value.as_ref()?.value.as_ref())
                .map(|v| match v {
                    Value::StringValue(s) => s.clone(),
                    other => format!("{other:?}"),
                })
                .unwrap_or_default();
            for scope in resource_spans.scope_spans {
                spans.extend(scope.spans.into_iter().map(|s| (service.clone(), s)));
            }
        }
        Ok(Response::new(ExportTraceServiceResponse::default()))
    }
}

const TRACE_ID: &str = "4bf92f3577b34da6a3ce929d0e0e4736";
const CALLER_SPAN: &str = "00f067aa0ba902b7";

#[tokio::test(flavor = "multi_thread")]
async fn one_analyze_is_one_trace_across_every_service() -> anyhow::Result<()> {
    let collector = Collector::default();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let otlp = format!("http://{}", listener.local_addr()?);
    let server = tonic::transport::Server::builder()
        .add_service(TraceServiceServer::new(collector.clone()))
        .serve_with_incoming(tokio_stream::wrappers::TcpListenerStream::new(listener));
    tokio::spawn(server);

    let dir = support::temp_dir("tracing");
    let assets = support::assets().display().to_string();
    let export = ["--otlp-endpoint", otlp.as_str()];
    let encoder = support::start_encoder(&[&["--plugin", "image"][..], &export].concat()).await?;
    let mut situation_args: Vec<String> = vec!["--assets".into(), assets.clone()];
    situation_args.extend(export.map(String::from));
    let situation = launch::spawn(
        &sibling_binary("empathy-situation")?,
        &situation_args,
        Duration::from_secs(120),
    )
    .await?;
    let models = support::registry_copy(&dir)?;
    let database = dir.join("feedback.sqlite").display().to_string();
    let trainer = support::start_trainer_on(&models, &database, &export).await?;
    let models = models.display().to_string();
    let (situations, trainer_url) = (situation.url(), trainer.url());
    let fusion_args = [
        &[
            "--situations",
            &situations,
            "--trainer",
            &trainer_url,
            "--model",
            &models,
        ][..],
        &export,
    ]
    .concat();
    let fusion = support::start_fusion(&[encoder.url()], &fusion_args).await?;

    let mut client = support::client(&fusion).await?;
    let mut request = Request::new(AnalyzeRequest {
        text: "What a day, look at me!".into(),
        image: std::fs::read(support::assets().join("photos/astronaut.png"))?.into(),
        options: Some(AnalyzeOptions {
            num_situations: 1,
            seed: 7,
            record_affect: true,
            deadline_ms: 60_000,
            ..Default::default()
        }),
        subject_id: "traced".into(),
        ..Default::default()
    });
    let traceparent = format!("00-{TRACE_ID}-{CALLER_SPAN}-01");
    request
        .metadata_mut()
        .insert("traceparent", traceparent.parse()?);
    let answer = client.analyze(request).await?.into_inner();
    assert_eq!(answer.faces.len(), 1, "{:?}", answer.modalities_missing);
    assert_eq!(
        answer.situations.len(),
        1,
        "{:?}",
        answer.modalities_missing
    );

    // Spans are exported in batches: wait until every service's are in.
    let wanted = [
        ("empathy-fusion", "/empathy.v1.EmpathyService/Analyze"),
        ("empathy-encoder", "/empathy.v1.EncoderService/Encode"),
        ("empathy-encoder", "plugin text"),
        ("empathy-encoder", "plugin image"),
        ("empathy-situation", "/empathy.v1.SituationService/Generate"),
        ("empathy-situation", "generate situations"),
        ("empathy-trainer", "/empathy.v1.TrainerService/RecordAffect"),
    ];
    let start = Instant::now();
    let trace: Vec<(String, Span)> = loop {
        let trace: Vec<(String, Span)> = collector
            .spans
            .lock()
            .map_err(|_| anyhow::anyhow!("poisoned"))?
            .iter()
            .filter(|(_, s)| hex(&s.trace_id) == TRACE_ID)
            .cloned()
            .collect();
        let names: Vec<String> = trace
            .iter()
            .map(|(s, span)| format!("{s}: {}", span.name))
            .collect();
        let has = |(service, name): &(&str, &str)| {
            trace
                .iter()
                .any(|(s, span)| s == service && span.name == *name)
        };
        if wanted.iter().all(has) {
            break trace;
        }
        anyhow::ensure!(
            start.elapsed() < Duration::from_secs(60),
            "the trace lacks {:?}; it has {names:#?}",
            wanted.iter().filter(|w| !has(w)).collect::<Vec<_>>()
        );
        tokio::time::sleep(Duration::from_millis(250)).await;
    };

    // One tree: fusion's span is the caller's child, every other span has its parent in
    // the trace.
    let ids: HashSet<String> = trace.iter().map(|(_, s)| hex(&s.span_id)).collect();
    for (service, span) in &trace {
        let parent = hex(&span.parent_span_id);
        let root = span.name == "/empathy.v1.EmpathyService/Analyze";
        match root {
            true => assert_eq!(parent, CALLER_SPAN, "{service}: {}", span.name),
            false => assert!(
                ids.contains(&parent),
                "{service}: {} has no parent in the trace",
                span.name
            ),
        }
    }
    let _ = std::fs::remove_dir_all(&dir);
    Ok(())
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}
