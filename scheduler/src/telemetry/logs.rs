//! Log lines with the trace id of the span they were written in.
//!
//! The OpenTelemetry layer attaches the context of every span it enters, so while a
//! span is entered `opentelemetry::Context::current()` is that span's context: the
//! formatter reads the trace and span ids from there. Lines written outside any span
//! carry no ids.
//!
//! The executor compiles this same file into its own telemetry module (it may not
//! depend on this crate), so it must only use crates both have.

use std::fmt;

use opentelemetry::trace::TraceContextExt;
use tracing::field::{Field, Visit};
use tracing::{Event, Subscriber};
use tracing_subscriber::fmt::format::Writer;
use tracing_subscriber::fmt::time::{FormatTime, SystemTime};
use tracing_subscriber::fmt::{FmtContext, FormatEvent, FormatFields, FormattedFields};
use tracing_subscriber::registry::LookupSpan;

/// The ids of the current OpenTelemetry span, in W3C hex, if there is a valid one.
pub fn current_ids() -> Option<(String, String)> {
    let context = opentelemetry::Context::current();
    let span = context.span();
    let span_context = span.span_context();
    span_context.is_valid().then(|| {
        (
            span_context.trace_id().to_string(),
            span_context.span_id().to_string(),
        )
    })
}

/// One readable line per event: time, level, trace id, span path (each span with
/// its fields), target, message and fields.
#[derive(Debug, Default, Clone, Copy)]
pub struct PrettyWithTraceIds;

impl<S, N> FormatEvent<S, N> for PrettyWithTraceIds
where
    S: Subscriber + for<'a> LookupSpan<'a>,
    N: for<'a> FormatFields<'a> + 'static,
{
    fn format_event(
        &self,
        ctx: &FmtContext<'_, S, N>,
        mut writer: Writer<'_>,
        event: &Event<'_>,
    ) -> fmt::Result {
        SystemTime.format_time(&mut writer)?;
        let metadata = event.metadata();
        write!(writer, " {:>5}", metadata.level())?;
        if let Some((trace_id, _)) = current_ids() {
            write!(writer, " trace_id={trace_id}")?;
        }
        if let Some(scope) = ctx.event_scope() {
            let mut first = true;
            for span in scope.from_root() {
                writer.write_str(if first { " " } else { ":" })?;
                first = false;
                writer.write_str(span.name())?;
                let extensions = span.extensions();
                if let Some(fields) = extensions.get::<FormattedFields<N>>() {
                    if !fields.is_empty() {
                        write!(writer, "{{{fields}}}")?;
                    }
                }
            }
        }
        write!(writer, " {}: ", metadata.target())?;
        ctx.field_format().format_fields(writer.by_ref(), event)?;
        writeln!(writer)
    }
}

/// One JSON object per event: `timestamp`, `level`, `target`, `trace_id` and
/// `span_id` (inside a span), `span` (the innermost span's name), `message` and the
/// event's fields.
#[derive(Debug, Default, Clone, Copy)]
pub struct JsonWithTraceIds;

impl<S, N> FormatEvent<S, N> for JsonWithTraceIds
where
    S: Subscriber + for<'a> LookupSpan<'a>,
    N: for<'a> FormatFields<'a> + 'static,
{
    fn format_event(
        &self,
        ctx: &FmtContext<'_, S, N>,
        mut writer: Writer<'_>,
        event: &Event<'_>,
    ) -> fmt::Result {
        let mut timestamp = String::new();
        SystemTime.format_time(&mut Writer::new(&mut timestamp))?;
        let metadata = event.metadata();
        let mut object = serde_json::Map::new();
        object.insert("timestamp".into(), timestamp.into());
        object.insert("level".into(), metadata.level().as_str().into());
        object.insert("target".into(), metadata.target().into());
        if let Some((trace_id, span_id)) = current_ids() {
            object.insert("trace_id".into(), trace_id.into());
            object.insert("span_id".into(), span_id.into());
        }
        if let Some(span) = ctx.lookup_current() {
            object.insert("span".into(), span.name().into());
        }
        let mut fields = JsonFields(serde_json::Map::new());
        event.record(&mut fields);
        for (key, value) in fields.0 {
            object.entry(key).or_insert(value);
        }
        let line = serde_json::Value::Object(object).to_string();
        writeln!(writer, "{line}")
    }
}

/// Collects an event's fields as JSON values.
struct JsonFields(serde_json::Map<String, serde_json::Value>);

impl Visit for JsonFields {
    fn record_f64(&mut self, field: &Field, value: f64) {
        self.0.insert(field.name().into(), value.into());
    }

    fn record_i64(&mut self, field: &Field, value: i64) {
        self.0.insert(field.name().into(), value.into());
    }

    fn record_u64(&mut self, field: &Field, value: u64) {
        self.0.insert(field.name().into(), value.into());
    }

    fn record_bool(&mut self, field: &Field, value: bool) {
        self.0.insert(field.name().into(), value.into());
    }

    fn record_str(&mut self, field: &Field, value: &str) {
        self.0.insert(field.name().into(), value.into());
    }

    fn record_error(&mut self, field: &Field, value: &(dyn std::error::Error + 'static)) {
        self.0.insert(field.name().into(), value.to_string().into());
    }

    fn record_debug(&mut self, field: &Field, value: &dyn fmt::Debug) {
        self.0
            .insert(field.name().into(), format!("{value:?}").into());
    }
}

#[cfg(test)]
mod tests {
    use std::sync::{Arc, Mutex};

    use opentelemetry::trace::TracerProvider as _;
    use opentelemetry_sdk::trace::SdkTracerProvider;
    use tracing_subscriber::layer::SubscriberExt;

    use super::*;

    /// A writer the test can read back.
    #[derive(Clone, Default)]
    struct Captured(Arc<Mutex<Vec<u8>>>);

    impl std::io::Write for Captured {
        fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
            if let Ok(mut bytes) = self.0.lock() {
                bytes.extend_from_slice(buf);
            }
            Ok(buf.len())
        }

        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    impl Captured {
        fn text(&self) -> String {
            String::from_utf8(self.0.lock().map(|b| b.clone()).unwrap_or_default())
                .unwrap_or_default()
        }
    }

    /// Logs one event outside any span and one inside, as JSON or not; returns the
    /// output and the trace id of the span.
    fn log_with(json: bool) -> (String, String) {
        use tracing_subscriber::Layer as _;
        let provider = SdkTracerProvider::builder().build();
        let captured = Captured::default();
        let sink = captured.clone();
        let fmt = tracing_subscriber::fmt::layer()
            .with_ansi(false)
            .with_writer(move || sink.clone());
        let fmt = if json {
            fmt.event_format(JsonWithTraceIds).boxed()
        } else {
            fmt.event_format(PrettyWithTraceIds).boxed()
        };
        let subscriber = tracing_subscriber::registry()
            .with(tracing_opentelemetry::layer().with_tracer(provider.tracer("test")))
            .with(fmt);
        let mut trace_id = String::new();
        tracing::subscriber::with_default(subscriber, || {
            tracing::info!(answer = 42, "outside");
            let span = tracing::info_span!("Creator::CreateInstance", member = "cache1-0");
            let _entered = span.enter();
            trace_id = current_ids().map(|(t, _)| t).unwrap_or_default();
            tracing::info!(instance = "cache1", "inside");
        });
        (captured.text(), trace_id)
    }

    #[test]
    fn pretty_lines_carry_the_trace_id_inside_spans() {
        let (text, trace_id) = log_with(false);
        assert_eq!(trace_id.len(), 32, "{text}");
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(lines.len(), 2, "{text}");
        assert!(!lines[0].contains("trace_id="), "{}", lines[0]);
        assert!(lines[0].contains("outside answer=42"), "{}", lines[0]);
        assert!(
            lines[1].contains(&format!(
                "trace_id={trace_id} Creator::CreateInstance{{member=\"cache1-0\"}}"
            )),
            "{}",
            lines[1]
        );
        assert!(
            lines[1].contains("inside instance=\"cache1\""),
            "{}",
            lines[1]
        );
    }

    #[test]
    fn json_lines_carry_the_trace_id_inside_spans() {
        let (text, trace_id) = log_with(true);
        let lines: Vec<serde_json::Value> = text
            .lines()
            .map(|line| serde_json::from_str(line).unwrap_or_default())
            .collect();
        assert_eq!(lines.len(), 2, "{text}");
        assert_eq!(lines[0]["message"], "outside");
        assert_eq!(lines[0]["answer"], 42);
        assert!(lines[0].get("trace_id").is_none(), "{text}");
        assert_eq!(lines[1]["trace_id"], trace_id.as_str());
        assert_eq!(lines[1]["span_id"].as_str().map(str::len), Some(16));
        assert_eq!(lines[1]["span"], "Creator::CreateInstance");
        assert_eq!(lines[1]["instance"], "cache1");
        assert_eq!(lines[1]["level"], "INFO");
    }
}
