//! Telemetry of the executor: `tracing` to stderr, filtered by `RUST_LOG` (default
//! `info`), and, when `OTEL_EXPORTER_OTLP_ENDPOINT` is set, every span exported with
//! OpenTelemetry's OTLP exporter (HTTP/protobuf), so that a task's spans join the
//! trace of the scheduler request that launched it.
//!
//! The scheduler puts a W3C `traceparent` label on every task it launches; the
//! executor makes that remote span the parent of the task's `Executor::Launch` span
//! ([`set_remote_parent`]). The exporter follows the standard variables
//! (`OTEL_EXPORTER_OTLP_ENDPOINT`, `OTEL_SERVICE_NAME`, `OTEL_BSP_*`), which the
//! scheduler passes on to its executors. Spans go through the SDK's batch processor
//! on its own thread with the blocking HTTP client: the async and gRPC exporters need
//! a Tokio reactor that the processor's thread lacks. The batch queue is only flushed
//! by [`Telemetry::shutdown`], which the binary calls on every way out.
//!
//! Log lines written inside a span carry its trace id, as the scheduler's do
//! (`trace_id=…`, or a `trace_id` field with `MESOS_STATEFUL_LOG_FORMAT=json`). The
//! line formats are the scheduler's own source file, compiled into this crate too
//! (the executor may not depend on the scheduler crate). Without an endpoint, spans
//! are sampled out: they keep their ids for log lines and record nothing.

#[path = "../../scheduler/src/telemetry/logs.rs"]
pub mod logs;

use opentelemetry::trace::TracerProvider as _;
use opentelemetry::trace::{SpanContext, SpanId, TraceContextExt, TraceFlags, TraceId, TraceState};
use opentelemetry_sdk::trace::{Sampler, SdkTracerProvider};
use opentelemetry_sdk::Resource;
use tracing::Span;
use tracing_opentelemetry::OpenTelemetrySpanExt;
use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::util::SubscriberInitExt;
use tracing_subscriber::{EnvFilter, Layer as _};

/// Service name reported when `OTEL_SERVICE_NAME` is not set.
pub const DEFAULT_SERVICE_NAME: &str = "mesos-stateful-executor";

/// Key of the task label carrying the W3C `traceparent` of the scheduler's span.
pub const TRACEPARENT_LABEL: &str = "traceparent";

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

    /// Flushes pending spans and stops the exporter (bounded by the SDK's export
    /// timeout). Must not run inside a Tokio runtime: the blocking HTTP client
    /// refuses to.
    pub fn shutdown(self) {
        if let Err(error) = self.provider.shutdown() {
            if self.exporting {
                eprintln!("telemetry: flushing spans failed: {error}");
            }
        }
    }
}

/// Installs the global subscriber: logs to stderr (coloured only when `ansi`), and
/// OTLP export when `OTEL_EXPORTER_OTLP_ENDPOINT` is set. Calling it twice keeps the
/// first subscriber. Must be called outside any Tokio runtime.
pub fn init(ansi: bool) -> Telemetry {
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
    let exporting = provider.is_some();
    let provider = provider.unwrap_or_else(|| {
        SdkTracerProvider::builder()
            .with_sampler(Sampler::AlwaysOff)
            .build()
    });
    let otel_layer =
        tracing_opentelemetry::layer().with_tracer(provider.tracer(DEFAULT_SERVICE_NAME));
    let json = std::env::var("MESOS_STATEFUL_LOG_FORMAT").is_ok_and(|f| f.trim() == "json");
    let fmt_layer = tracing_subscriber::fmt::layer()
        .with_writer(std::io::stderr)
        .with_ansi(ansi && !json);
    let fmt_layer = if json {
        fmt_layer.event_format(logs::JsonWithTraceIds).boxed()
    } else {
        fmt_layer.event_format(logs::PrettyWithTraceIds).boxed()
    };
    let result = tracing_subscriber::registry()
        .with(otel_layer)
        .with(fmt_layer)
        .with(filter)
        .try_init();
    if let Err(error) = result {
        eprintln!("telemetry: a subscriber is already installed: {error}");
    }
    Telemetry {
        provider,
        exporting,
    }
}

fn tracer_provider() -> Result<SdkTracerProvider, opentelemetry_otlp::ExporterBuildError> {
    let exporter = opentelemetry_otlp::SpanExporter::builder()
        .with_http()
        .build()?;
    let service_name = std::env::var("OTEL_SERVICE_NAME")
        .ok()
        .filter(|name| !name.trim().is_empty())
        .unwrap_or_else(|| DEFAULT_SERVICE_NAME.to_owned());
    Ok(SdkTracerProvider::builder()
        .with_batch_exporter(exporter)
        .with_resource(Resource::builder().with_service_name(service_name).build())
        .build())
}

/// Parses a W3C `traceparent` of version `00` (`00-<32 hex>-<16 hex>-<2 hex>`, lower
/// case, neither id all zeros); `None` for anything else.
pub fn parse_traceparent(value: &str) -> Option<SpanContext> {
    let mut parts = value.trim().split('-');
    let (version, trace_id, span_id, flags) =
        (parts.next()?, parts.next()?, parts.next()?, parts.next()?);
    let lower_hex = |part: &str, len: usize| {
        part.len() == len
            && part
                .bytes()
                .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
    };
    if parts.next().is_some()
        || version != "00"
        || !lower_hex(trace_id, 32)
        || !lower_hex(span_id, 16)
        || !lower_hex(flags, 2)
    {
        return None;
    }
    let context = SpanContext::new(
        TraceId::from_hex(trace_id).ok()?,
        SpanId::from_hex(span_id).ok()?,
        TraceFlags::new(u8::from_str_radix(flags, 16).ok()?),
        true,
        TraceState::default(),
    );
    context.is_valid().then_some(context)
}

/// The value of the task's `traceparent` label, if it has one.
pub fn traceparent_label(labels: Option<&mesos_stateful_proto::v1::Labels>) -> Option<&str> {
    labels?
        .labels
        .iter()
        .find(|label| label.key == TRACEPARENT_LABEL)
        .and_then(|label| label.value.as_deref())
}

/// Makes the span described by `traceparent` the parent of `span`, which must be
/// neither entered nor asked for its context yet. Does nothing for `None` or a
/// malformed value (the span stays a root), nor when spans are not exported.
pub fn set_remote_parent(span: &Span, traceparent: Option<&str>) {
    if let Some(parent) = traceparent.and_then(parse_traceparent) {
        let _ = span.set_parent(opentelemetry::Context::new().with_remote_span_context(parent));
    }
}

/// The OpenTelemetry context of a span that may already be closed, used as the
/// parent of later spans without keeping that span open.
///
/// The default parent makes root spans.
#[derive(Debug, Clone, Default)]
pub struct SpanParent(opentelemetry::Context);

impl SpanParent {
    /// The context of `span` (which starts it for OpenTelemetry: set its own parent
    /// first).
    pub fn of(span: &Span) -> SpanParent {
        SpanParent(span.context())
    }

    /// Makes this the parent of `span`, which must be neither entered nor asked for
    /// its context yet. Does nothing for the default parent or when spans are not
    /// exported.
    pub fn adopt(&self, span: &Span) {
        if self.0.span().span_context().is_valid() {
            let _ = span.set_parent(self.0.clone());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use mesos_stateful_proto::v1::{Label, Labels};

    #[test]
    fn traceparents_are_parsed_strictly() {
        let valid = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";
        let context = parse_traceparent(valid).unwrap();
        assert_eq!(
            context.trace_id().to_string(),
            "4bf92f3577b34da6a3ce929d0e0e4736"
        );
        assert_eq!(context.span_id().to_string(), "00f067aa0ba902b7");
        assert!(context.is_sampled());
        assert!(context.is_remote());
        let unsampled =
            parse_traceparent("00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-00").unwrap();
        assert!(!unsampled.is_sampled());
        for bad in [
            "",
            "garbage",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7",
            "01-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
            "00-00000000000000000000000000000000-00f067aa0ba902b7-01",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-0000000000000000-01",
            "00-4BF92F3577B34DA6A3CE929D0E0E4736-00f067aa0ba902b7-01",
            "00-4bf92f3577b34da6a3ce929d0e0e473-00f067aa0ba902b7-01",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-1",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01-extra",
            "00-4bf92f3577b34da6a3ce929d0e0e473g-00f067aa0ba902b7-01",
            "00-+bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
        ] {
            assert!(parse_traceparent(bad).is_none(), "{bad:?}");
        }
    }

    #[test]
    fn traceparent_label_is_found_by_key() {
        let label = |key: &str, value: Option<&str>| Label {
            key: key.into(),
            value: value.map(Into::into),
        };
        let labels = Labels {
            labels: vec![
                label("other", Some("x")),
                label(TRACEPARENT_LABEL, Some("00-a-b-01")),
            ],
        };
        assert_eq!(traceparent_label(Some(&labels)), Some("00-a-b-01"));
        let without = Labels {
            labels: vec![label("other", Some("x")), label(TRACEPARENT_LABEL, None)],
        };
        assert_eq!(traceparent_label(Some(&without)), None);
        assert_eq!(traceparent_label(None), None);
    }

    #[test]
    fn without_an_exporting_subscriber_parents_are_inert() {
        let span = tracing::info_span!("probe");
        set_remote_parent(
            &span,
            Some("00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"),
        );
        let parent = SpanParent::of(&span);
        assert!(!parent.0.span().span_context().is_valid());
        parent.adopt(&tracing::info_span!("child"));
        SpanParent::default().adopt(&span);
    }
}
