//! Telemetry set-up for the binary: `tracing` to stderr, filtered by `RUST_LOG`
//! (default `info`), human-readable or JSON; and, when `OTEL_EXPORTER_OTLP_ENDPOINT`
//! is set, every span exported with OpenTelemetry's OTLP exporter (HTTP/protobuf,
//! e.g. to Jaeger's `:4318`).
//!
//! The exporter follows the standard variables (`OTEL_EXPORTER_OTLP_ENDPOINT`,
//! `OTEL_SERVICE_NAME`, `OTEL_TRACES_SAMPLER`, `OTEL_TRACES_SAMPLER_ARG`). Spans go
//! through the SDK's batch processor: a bounded queue on its own thread, so a
//! collector that is down never blocks an actor; spans beyond the queue are dropped
//! and counted by the SDK. The blocking HTTP client is used on purpose: the async
//! and gRPC exporters need a Tokio reactor that the processor's thread lacks.

use opentelemetry::trace::TracerProvider as _;
use opentelemetry_sdk::trace::SdkTracerProvider;
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

/// Service name reported when `OTEL_SERVICE_NAME` is not set.
pub const DEFAULT_SERVICE_NAME: &str = "mesos-stateful";

/// What [`init`] installed; flushes pending spans when shut down.
#[derive(Debug)]
pub struct Telemetry {
    provider: Option<SdkTracerProvider>,
}

impl Telemetry {
    /// Whether spans are exported.
    pub fn exporting(&self) -> bool {
        self.provider.is_some()
    }

    /// Flushes and stops the exporter (bounded by the SDK's export timeout).
    pub fn shutdown(self) {
        if let Some(provider) = self.provider {
            if let Err(error) = provider.shutdown() {
                eprintln!("telemetry: flushing spans failed: {error}");
            }
        }
    }
}

/// Installs the global subscriber: logs, and OTLP export when configured. Calling
/// it twice keeps the first subscriber.
pub fn init(format: LogFormat) -> Telemetry {
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info"));
    let endpoint = std::env::var("OTEL_EXPORTER_OTLP_ENDPOINT")
        .ok()
        .filter(|endpoint| !endpoint.trim().is_empty());
    let provider = endpoint.and_then(|endpoint| match tracer_provider() {
        Ok(provider) => Some(provider),
        Err(error) => {
            eprintln!("telemetry: not exporting spans to {endpoint}: {error}");
            None
        }
    });
    let otel_layer = provider.as_ref().map(|provider| {
        tracing_opentelemetry::layer().with_tracer(provider.tracer(DEFAULT_SERVICE_NAME))
    });
    let fmt_layer = match format {
        LogFormat::Pretty => tracing_subscriber::fmt::layer()
            .with_writer(std::io::stderr)
            .boxed(),
        LogFormat::Json => tracing_subscriber::fmt::layer()
            .json()
            .with_current_span(true)
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
    Telemetry { provider }
}

fn tracer_provider() -> Result<SdkTracerProvider, opentelemetry_otlp::ExporterBuildError> {
    let exporter = opentelemetry_otlp::SpanExporter::builder()
        .with_http()
        .build()?;
    let service_name = std::env::var("OTEL_SERVICE_NAME")
        .ok()
        .filter(|name| !name.is_empty())
        .unwrap_or_else(|| DEFAULT_SERVICE_NAME.to_string());
    Ok(SdkTracerProvider::builder()
        .with_batch_exporter(exporter)
        .with_resource(Resource::builder().with_service_name(service_name).build())
        .build())
}
