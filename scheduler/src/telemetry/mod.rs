//! Telemetry set-up for the binary: `tracing` to stderr, filtered by `RUST_LOG`
//! (default `info`), human-readable or JSON, each line inside a span carrying its
//! trace id; and, when `OTEL_EXPORTER_OTLP_ENDPOINT` is set, every span exported with
//! OpenTelemetry's OTLP exporter (HTTP/protobuf, e.g. to Jaeger's `:4318`) and the
//! Prometheus instruments exported by OTLP as well.
//!
//! The exporter follows the standard variables (`OTEL_EXPORTER_OTLP_ENDPOINT`,
//! `OTEL_SERVICE_NAME`, `OTEL_TRACES_SAMPLER`, `OTEL_TRACES_SAMPLER_ARG`,
//! `OTEL_BSP_*`, `OTEL_METRIC_EXPORT_INTERVAL`). Spans go through our bounded batch
//! processor ([`export`]): a collector that is down never blocks an actor, and
//! spans beyond the queue are dropped and counted in `/metrics`. The blocking HTTP
//! client is used on purpose: the async and gRPC exporters need a Tokio reactor that
//! the export thread lacks.
//!
//! Unless `OTEL_TRACES_SAMPLER` says otherwise, one trace in ten is exported
//! ([`DEFAULT_SAMPLE_RATIO`], parent-based): exporting every span costs about a
//! quarter of the scheduler's throughput at full load (BENCHMARKS.md), a tenth of
//! them a few percent. `OTEL_TRACES_SAMPLER=parentbased_always_on` exports all.
//!
//! Without an endpoint, spans still get ids (so log lines can be correlated and the
//! trace context still reaches executors) but nothing is recorded or exported.
//!
//! Layout: `logs` (the line formats), `export` (the span processor),
//! `otlp_metrics` (the registry as OTLP metrics).

pub mod export;
pub mod logs;
pub mod otlp_metrics;

use mesos_stateful_actors::telemetry::spans_dropped;
use opentelemetry::trace::TracerProvider as _;
use opentelemetry_sdk::trace::{Sampler, SdkTracerProvider};
use opentelemetry_sdk::Resource;
use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::util::SubscriberInitExt;
use tracing_subscriber::{EnvFilter, Layer};

/// Output format of log lines.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum LogFormat {
    /// One readable line per event.
    Pretty,
    /// One JSON object per event.
    Json,
}

/// Share of traces exported when `OTEL_TRACES_SAMPLER` is not set: a trace
/// started here is kept with this probability (by its id); one continuing a
/// caller's trace follows the caller's decision.
pub const DEFAULT_SAMPLE_RATIO: f64 = 0.1;

/// The sampler to install over the SDK's own reading of the environment: ours when
/// `OTEL_TRACES_SAMPLER` (given as `configured`) is unset or blank, else `None` (the
/// SDK reads the standard variables).
pub fn default_sampler(configured: Option<&str>) -> Option<Sampler> {
    match configured {
        Some(name) if !name.trim().is_empty() => None,
        _ => Some(Sampler::ParentBased(Box::new(Sampler::TraceIdRatioBased(
            DEFAULT_SAMPLE_RATIO,
        )))),
    }
}

/// Service name reported when `OTEL_SERVICE_NAME` is not set.
pub const DEFAULT_SERVICE_NAME: &str = "mesos-stateful";

/// What [`init`] installed; flushes pending spans when shut down.
#[derive(Debug)]
pub struct Telemetry {
    provider: SdkTracerProvider,
    exporting: bool,
}

impl Telemetry {
    /// Whether spans are exported.
    pub fn exporting(&self) -> bool {
        self.exporting
    }

    /// Flushes and stops the exporter (bounded by the SDK's export timeout).
    pub fn shutdown(self) {
        if let Err(error) = self.provider.shutdown() {
            if self.exporting {
                eprintln!("telemetry: flushing spans failed: {error}");
            }
        }
    }
}

/// The service name: `OTEL_SERVICE_NAME`, else [`DEFAULT_SERVICE_NAME`].
pub fn service_name() -> String {
    std::env::var("OTEL_SERVICE_NAME")
        .ok()
        .filter(|name| !name.is_empty())
        .unwrap_or_else(|| DEFAULT_SERVICE_NAME.to_string())
}

/// Installs the global subscriber: logs, and OTLP export when configured. Calling
/// it twice keeps the first subscriber.
pub fn init(format: LogFormat) -> Telemetry {
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info"));
    let endpoint = std::env::var("OTEL_EXPORTER_OTLP_ENDPOINT")
        .ok()
        .filter(|endpoint| !endpoint.trim().is_empty());
    let exporting = endpoint.and_then(|endpoint| match exporting_provider() {
        Ok(provider) => Some(provider),
        Err(error) => {
            eprintln!("telemetry: not exporting spans to {endpoint}: {error}");
            None
        }
    });
    let is_exporting = exporting.is_some();
    // Without export, spans are sampled out: they keep valid ids for log lines and
    // propagation, and cost no recording.
    let provider = exporting.unwrap_or_else(|| {
        SdkTracerProvider::builder()
            .with_sampler(Sampler::AlwaysOff)
            .build()
    });
    let otel_layer =
        tracing_opentelemetry::layer().with_tracer(provider.tracer(DEFAULT_SERVICE_NAME));
    let fmt_layer = match format {
        LogFormat::Pretty => tracing_subscriber::fmt::layer()
            .event_format(logs::PrettyWithTraceIds)
            .with_writer(std::io::stderr)
            .boxed(),
        LogFormat::Json => tracing_subscriber::fmt::layer()
            .event_format(logs::JsonWithTraceIds)
            .with_writer(std::io::stderr)
            .boxed(),
    };
    let result = tracing_subscriber::registry()
        .with(otel_layer)
        .with(fmt_layer)
        .with(filter)
        .try_init();
    // An already installed subscriber (tests) is fine.
    drop(result);
    Telemetry {
        provider,
        exporting: is_exporting,
    }
}

#[derive(Debug, thiserror::Error)]
enum SetupError {
    #[error("building the exporter: {0}")]
    Exporter(#[from] opentelemetry_otlp::ExporterBuildError),
    #[error("starting the export thread: {0}")]
    Thread(#[from] std::io::Error),
}

fn exporting_provider() -> Result<SdkTracerProvider, SetupError> {
    let exporter = opentelemetry_otlp::SpanExporter::builder()
        .with_http()
        .build()?;
    let processor = export::BoundedBatchProcessor::new(
        exporter,
        export::BatchSettings::from_env(),
        spans_dropped().clone(),
    )?;
    let mut builder = SdkTracerProvider::builder();
    if let Some(sampler) = default_sampler(std::env::var("OTEL_TRACES_SAMPLER").ok().as_deref()) {
        builder = builder.with_sampler(sampler);
    }
    Ok(builder
        .with_span_processor(processor)
        .with_resource(
            Resource::builder()
                .with_service_name(service_name())
                .build(),
        )
        .build())
}

#[cfg(test)]
mod tests {
    use super::*;
    use opentelemetry::trace::{
        SpanContext, SpanId, SpanKind, TraceContextExt, TraceFlags, TraceId, TraceState,
    };
    use opentelemetry::Context;
    use opentelemetry_sdk::trace::{SamplingDecision, ShouldSample};

    fn decision(sampler: &Sampler, parent: Option<&Context>, trace_id: TraceId) -> bool {
        let result = sampler.should_sample(parent, trace_id, "span", &SpanKind::Internal, &[], &[]);
        result.decision == SamplingDecision::RecordAndSample
    }

    #[test]
    fn without_a_configured_sampler_one_root_trace_in_ten_is_kept() {
        let sampler = default_sampler(None).unwrap();
        assert!(default_sampler(Some("  ")).is_some());
        // Trace ids spread over the whole range, as random ids are.
        let kept = (1..=10_000u128)
            .filter(|i| {
                let id = TraceId::from(i.wrapping_mul(0x9e37_79b9_7f4a_7c15_f39c_c060_5ced_c835));
                decision(&sampler, None, id)
            })
            .count();
        assert!((800..=1200).contains(&kept), "kept {kept} of 10,000");
    }

    #[test]
    fn a_continued_trace_follows_its_callers_decision() {
        let sampler = default_sampler(None).unwrap();
        let parent = |flags| {
            Context::new().with_remote_span_context(SpanContext::new(
                TraceId::from(7u128),
                SpanId::from(9u64),
                flags,
                true,
                TraceState::default(),
            ))
        };
        for i in 1..=100u128 {
            let id = TraceId::from(i);
            assert!(decision(&sampler, Some(&parent(TraceFlags::SAMPLED)), id));
            assert!(!decision(
                &sampler,
                Some(&parent(TraceFlags::default())),
                id
            ));
        }
    }

    #[test]
    fn a_configured_sampler_is_left_to_the_sdk() {
        assert!(default_sampler(Some("parentbased_always_on")).is_none());
        assert!(default_sampler(Some("always_off")).is_none());
    }
}
