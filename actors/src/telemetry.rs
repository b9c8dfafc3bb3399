//! Cross-cutting observability of the actors: the trace context carried in every
//! message, the span of each handled message, and the Prometheus instruments.
//!
//! Every message travels in a [`Traced`] envelope that captures the sender's current
//! span, so the handler's span (named `Actor::Message`) is its child and one trace
//! runs from the HTTP request or the Mesos event through every actor it reaches.
//! [`Metrics`] holds the instruments; `GET /metrics` encodes them in the Prometheus
//! text format.

use std::future::Future;
use std::time::Instant;

use actix::Message;
use prometheus_client::encoding::text::encode;
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{exponential_buckets, Histogram};
use prometheus_client::registry::Registry;
use tracing::{Instrument, Span};

/// A message with the span of whoever sent it.
#[derive(Debug)]
pub struct Traced<M> {
    /// The message.
    pub message: M,
    /// The sender's span: the parent of the handler's span.
    pub parent: Span,
}

impl<M> Traced<M> {
    /// Wraps `message` with the current span as its parent.
    pub fn new(message: M) -> Self {
        Traced {
            message,
            parent: Span::current(),
        }
    }
}

impl<M: Message> Message for Traced<M>
where
    M::Result: 'static,
{
    type Result = M::Result;
}

/// The name a message has in spans and metrics (`Offers`, `TaskUpdate` …).
pub trait MessageName {
    /// The message's name.
    fn name(&self) -> &'static str;
}

/// The span of one handled message: `Actor::Message`, child of the sender's span.
pub fn handler_span(actor: &'static str, message: &'static str, parent: &Span) -> Span {
    let span = tracing::info_span!(
        parent: parent,
        "handle",
        otel.name = %format_args!("{actor}::{message}"),
        actor,
        message,
        instance = tracing::field::Empty,
        member = tracing::field::Empty,
        task_id = tracing::field::Empty,
        offer_id = tracing::field::Empty,
        agent_id = tracing::field::Empty,
    );
    span
}

/// The W3C `traceparent` of `span` (`00-<trace id>-<span id>-<flags>`), when spans
/// are exported; `None` otherwise.
pub fn traceparent(span: &Span) -> Option<String> {
    use opentelemetry::trace::TraceContextExt;
    use tracing_opentelemetry::OpenTelemetrySpanExt;
    let context = span.context();
    let span_context = context.span().span_context().clone();
    if !span_context.is_valid() {
        return None;
    }
    Some(format!(
        "00-{}-{}-{:02x}",
        span_context.trace_id(),
        span_context.span_id(),
        span_context.trace_flags().to_u8()
    ))
}

/// Parses a W3C `traceparent` (version 00); `None` for anything malformed.
pub fn parse_traceparent(value: &str) -> Option<opentelemetry::trace::SpanContext> {
    use opentelemetry::trace::{SpanContext, SpanId, TraceFlags, TraceId, TraceState};
    let mut parts = value.trim().split('-');
    let (version, trace_id, span_id, flags) =
        (parts.next()?, parts.next()?, parts.next()?, parts.next()?);
    if parts.next().is_some()
        || version != "00"
        || trace_id.len() != 32
        || span_id.len() != 16
        || flags.len() != 2
    {
        return None;
    }
    let hex = |s: &str| {
        s.bytes()
            .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
    };
    if !(hex(trace_id) && hex(span_id) && hex(flags)) {
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

/// Makes the span described by `traceparent` the parent of `span`, which must not
/// have been entered yet. Does nothing for `None`, a malformed value, or when spans
/// are not exported.
pub fn set_remote_parent(span: &Span, traceparent: Option<&str>) {
    use opentelemetry::trace::TraceContextExt;
    use tracing_opentelemetry::OpenTelemetrySpanExt;
    if let Some(parent) = traceparent.and_then(parse_traceparent) {
        let _ = span.set_parent(opentelemetry::Context::new().with_remote_span_context(parent));
    }
}

/// Links `span` to the span `other` (another trace that caused it).
pub fn link_to(span: &Span, other: &Span) {
    use opentelemetry::trace::TraceContextExt;
    use tracing_opentelemetry::OpenTelemetrySpanExt;
    let context = other.context();
    let span_context = context.span().span_context().clone();
    if span_context.is_valid() {
        span.add_link(span_context);
    }
}

/// Labels naming an actor's message.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct MessageLabels {
    /// Actor that handled it.
    pub actor: &'static str,
    /// Message name.
    pub message: &'static str,
}

/// Labels naming an actor.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ActorLabels {
    /// The actor.
    pub actor: &'static str,
}

/// Labels of offer outcomes.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct OfferLabels {
    /// `received`, `accepted`, `declined` or `rescinded`.
    pub outcome: &'static str,
}

/// Labels of task states.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct StateLabels {
    /// Mesos task state name.
    pub state: String,
}

/// Labels of instance statuses.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct StatusLabels {
    /// Instance status.
    pub status: &'static str,
}

/// Labels of REST requests.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct RequestLabels {
    /// HTTP method.
    pub method: String,
    /// Route pattern (`/v1/instances/{name}`), never the raw path.
    pub route: String,
    /// Status code.
    pub status: String,
}

/// Every instrument of the scheduler. Cheap to share (`Arc`); instruments are
/// lock-free, only encoding takes the registry.
#[derive(Debug)]
pub struct Metrics {
    registry: Registry,
    /// Messages handled, by actor and message.
    pub messages: Family<MessageLabels, Counter>,
    /// Time from the start of a handler to the end of its work, seconds.
    pub handler_seconds: Family<MessageLabels, Histogram>,
    /// Handlers that ended in an error.
    pub errors: Family<MessageLabels, Counter>,
    /// Messages sent to an actor and not yet picked up.
    pub mailbox_depth: Family<ActorLabels, Gauge>,
    /// Actor starts (more than one per actor means restarts).
    pub starts: Family<ActorLabels, Counter>,
    /// Offers by outcome.
    pub offers: Family<OfferLabels, Counter>,
    /// Time from receiving offers to sending the ACCEPT, seconds.
    pub offer_to_accept_seconds: Histogram,
    /// Tasks launched.
    pub launches: Counter,
    /// Status updates by task state.
    pub task_updates: Family<StateLabels, Counter>,
    /// Instances by status, computed when scraped.
    pub instances: Family<StatusLabels, Gauge>,
    /// Durable store writes, seconds.
    pub store_write_seconds: Histogram,
    /// Records per durable store write.
    pub store_batch_records: Histogram,
    /// Subscriptions to Mesos (the first, then one per reconnection).
    pub subscriptions: Counter,
    /// REST requests by method, route and status.
    pub requests: Family<RequestLabels, Counter>,
    /// 1 while subscribed to a Mesos master, else 0.
    pub mesos_subscribed: Gauge,
    /// Subscriptions lost (stream ended, master changed or failed) after being up.
    pub mesos_disconnects: Counter,
    /// Members promoted to master (after their master was lost, or in a rolling update).
    pub promotions: Counter,
    /// Members relaunched or replaced after their task ended.
    pub relaunches: Counter,
    /// Image pulls done by executors, seconds (only launches that pulled).
    pub executor_pull_seconds: Histogram,
    /// Container creates done by executors, seconds.
    pub executor_create_seconds: Histogram,
    /// Container starts done by executors, seconds.
    pub executor_start_seconds: Histogram,
    /// Failed health checks reported by executors.
    pub executor_health_failures: Counter,
    /// Spans dropped because the export queue was full (shared with the exporter).
    pub spans_dropped: Counter,
    /// Latest cumulative health-check failure count reported per task, to count
    /// only what is new in each report.
    health_failures_seen: std::sync::Mutex<std::collections::HashMap<String, u64>>,
}

/// Tasks whose health failure counts are remembered at most; past it the memory is
/// cleared (a task's next report then counts from zero again).
const HEALTH_FAILURES_TRACKED: usize = 100_000;

/// The process-wide count of spans dropped by the exporter's bounded queue. The
/// exporter increments it; every [`Metrics`] registers it.
pub fn spans_dropped() -> &'static Counter {
    static DROPPED: std::sync::OnceLock<Counter> = std::sync::OnceLock::new();
    DROPPED.get_or_init(Counter::default)
}

/// Buckets for container operations, from 1 ms to about 4 min.
fn container_histogram() -> Histogram {
    Histogram::new(exponential_buckets(0.001, 4.0, 10))
}

/// Buckets for durations from 50 µs to about 13 s.
fn latency_histogram() -> Histogram {
    Histogram::new(exponential_buckets(0.000_05, 4.0, 10))
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

impl Metrics {
    /// A fresh set of instruments in their own registry.
    pub fn new() -> Self {
        let mut registry = Registry::with_prefix("mesos_stateful");
        let metrics = Metrics {
            messages: Family::default(),
            handler_seconds: Family::new_with_constructor(latency_histogram),
            errors: Family::default(),
            mailbox_depth: Family::default(),
            starts: Family::default(),
            offers: Family::default(),
            offer_to_accept_seconds: latency_histogram(),
            launches: Counter::default(),
            task_updates: Family::default(),
            instances: Family::default(),
            store_write_seconds: latency_histogram(),
            store_batch_records: Histogram::new(exponential_buckets(1.0, 2.0, 12)),
            subscriptions: Counter::default(),
            requests: Family::default(),
            mesos_subscribed: Gauge::default(),
            mesos_disconnects: Counter::default(),
            promotions: Counter::default(),
            relaunches: Counter::default(),
            executor_pull_seconds: container_histogram(),
            executor_create_seconds: container_histogram(),
            executor_start_seconds: container_histogram(),
            executor_health_failures: Counter::default(),
            spans_dropped: spans_dropped().clone(),
            health_failures_seen: Default::default(),
            registry: Registry::default(),
        };
        registry.register(
            "actor_messages",
            "Messages handled by actors",
            metrics.messages.clone(),
        );
        registry.register(
            "actor_handler_seconds",
            "Duration of actor message handling",
            metrics.handler_seconds.clone(),
        );
        registry.register(
            "actor_errors",
            "Actor handlers that failed",
            metrics.errors.clone(),
        );
        registry.register(
            "actor_mailbox_depth",
            "Messages waiting for an actor",
            metrics.mailbox_depth.clone(),
        );
        registry.register(
            "actor_starts",
            "Actor starts (restarts included)",
            metrics.starts.clone(),
        );
        registry.register("offers", "Mesos offers by outcome", metrics.offers.clone());
        registry.register(
            "offer_to_accept_seconds",
            "Time from receiving offers to sending their ACCEPT",
            metrics.offer_to_accept_seconds.clone(),
        );
        registry.register("task_launches", "Tasks launched", metrics.launches.clone());
        registry.register(
            "task_updates",
            "Task status updates by state",
            metrics.task_updates.clone(),
        );
        registry.register(
            "instances",
            "Instances by status",
            metrics.instances.clone(),
        );
        registry.register(
            "store_write_seconds",
            "Duration of durable store writes",
            metrics.store_write_seconds.clone(),
        );
        registry.register(
            "store_batch_records",
            "Records per durable store write",
            metrics.store_batch_records.clone(),
        );
        registry.register(
            "mesos_subscriptions",
            "Subscriptions to Mesos",
            metrics.subscriptions.clone(),
        );
        registry.register("http_requests", "REST requests", metrics.requests.clone());
        registry.register(
            "mesos_subscribed",
            "Whether the scheduler is subscribed to a Mesos master",
            metrics.mesos_subscribed.clone(),
        );
        registry.register(
            "mesos_disconnects",
            "Subscriptions to Mesos lost after being up",
            metrics.mesos_disconnects.clone(),
        );
        registry.register(
            "promotions",
            "Members promoted to master",
            metrics.promotions.clone(),
        );
        registry.register(
            "relaunches",
            "Members relaunched or replaced",
            metrics.relaunches.clone(),
        );
        registry.register(
            "executor_pull_seconds",
            "Image pulls by executors",
            metrics.executor_pull_seconds.clone(),
        );
        registry.register(
            "executor_create_seconds",
            "Container creates by executors",
            metrics.executor_create_seconds.clone(),
        );
        registry.register(
            "executor_start_seconds",
            "Container starts by executors",
            metrics.executor_start_seconds.clone(),
        );
        registry.register(
            "executor_health_failures",
            "Failed health checks reported by executors",
            metrics.executor_health_failures.clone(),
        );
        registry.register(
            "spans_dropped",
            "Spans dropped because the export queue was full",
            metrics.spans_dropped.clone(),
        );
        Metrics {
            registry,
            ..metrics
        }
    }

    /// The instruments in the Prometheus text format.
    pub fn encode(&self) -> String {
        let mut out = String::new();
        // Writing into a String cannot fail.
        let _ = encode(&mut out, &self.registry);
        out
    }

    fn labels(actor: &'static str, message: &'static str) -> MessageLabels {
        // Static labels: counting a message allocates nothing.
        MessageLabels { actor, message }
    }

    /// Counts a message sent to `actor` (its mailbox grows).
    pub fn sent(&self, actor: &'static str) {
        self.mailbox_depth
            .get_or_create(&ActorLabels { actor })
            .inc();
    }

    /// Counts a message picked up by `actor`.
    pub fn received(&self, actor: &'static str, message: &'static str) {
        self.mailbox_depth
            .get_or_create(&ActorLabels { actor })
            .dec();
        self.messages
            .get_or_create(&Self::labels(actor, message))
            .inc();
    }

    /// Counts an actor start.
    pub fn started(&self, actor: &'static str) {
        self.starts.get_or_create(&ActorLabels { actor }).inc();
    }

    /// Records the handling time of a message and whether it failed.
    pub fn handled(
        &self,
        actor: &'static str,
        message: &'static str,
        started: Instant,
        failed: bool,
    ) {
        let labels = Self::labels(actor, message);
        self.handler_seconds
            .get_or_create(&labels)
            .observe(started.elapsed().as_secs_f64());
        if failed {
            self.errors.get_or_create(&labels).inc();
        }
    }

    /// Records an executor's launch timings (nothing for an adopted container).
    pub fn launch_report(&self, report: &mesos_stateful_proto::stateful::LaunchReport) {
        if report.adopted() {
            return;
        }
        if report.pulled() {
            self.executor_pull_seconds.observe(report.pull_seconds());
        }
        if let Some(seconds) = report.create_seconds.filter(|s| s.is_finite()) {
            self.executor_create_seconds.observe(seconds);
        }
        if let Some(seconds) = report.start_seconds.filter(|s| s.is_finite()) {
            self.executor_start_seconds.observe(seconds);
        }
    }

    /// Counts the health-check failures of `task_id` that are new since its previous
    /// report (`cumulative` is the executor's running total).
    pub fn health_failures(&self, task_id: &str, cumulative: u64) {
        let Ok(mut seen) = self.health_failures_seen.lock() else {
            return;
        };
        if seen.len() >= HEALTH_FAILURES_TRACKED && !seen.contains_key(task_id) {
            seen.clear();
        }
        let previous = seen.insert(task_id.to_string(), cumulative).unwrap_or(0);
        // A smaller total means a new executor started counting again.
        let new = if cumulative >= previous {
            cumulative - previous
        } else {
            cumulative
        };
        self.executor_health_failures.inc_by(new);
    }

    /// Counts offers with an outcome.
    pub fn offers(&self, outcome: &'static str, count: usize) {
        self.offers
            .get_or_create(&OfferLabels { outcome })
            .inc_by(count as u64);
    }
}

/// Runs `work` inside the handler span of `actor`/`message` and records its
/// duration and outcome. `work` returns whether it failed.
pub async fn observe<F>(
    metrics: std::sync::Arc<Metrics>,
    actor: &'static str,
    message: &'static str,
    span: Span,
    work: F,
) where
    F: Future<Output = bool>,
{
    let started = Instant::now();
    let failed = work.instrument(span).await;
    metrics.handled(actor, message, started, failed);
}

#[cfg(test)]
mod tests {
    use super::*;

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
        for bad in [
            "",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7",
            "01-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
            "00-00000000000000000000000000000000-00f067aa0ba902b7-01",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-0000000000000000-01",
            "00-4BF92F3577B34DA6A3CE929D0E0E4736-00f067aa0ba902b7-01",
            "00-4bf92f3577b34da6a3ce929d0e0e473-00f067aa0ba902b7-01",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01-extra",
            "00-4bf92f3577b34da6a3ce929d0e0e473g-00f067aa0ba902b7-01",
        ] {
            assert!(parse_traceparent(bad).is_none(), "{bad:?}");
        }
        // Without an exporting subscriber there is nothing to propagate.
        assert_eq!(traceparent(&Span::current()), None);
    }

    #[test]
    fn encodes_counters_and_histograms() {
        let metrics = Metrics::new();
        metrics.sent("OfferManager");
        metrics.received("OfferManager", "Offers");
        metrics.handled("OfferManager", "Offers", Instant::now(), true);
        metrics.offers("received", 3);
        metrics.launches.inc();
        let text = metrics.encode();
        assert!(
            text.contains(
                r#"mesos_stateful_actor_messages_total{actor="OfferManager",message="Offers"} 1"#
            ),
            "{text}"
        );
        assert!(text.contains(
            r#"mesos_stateful_actor_errors_total{actor="OfferManager",message="Offers"} 1"#
        ));
        assert!(text.contains(r#"mesos_stateful_actor_mailbox_depth{actor="OfferManager"} 0"#));
        assert!(text.contains(r#"mesos_stateful_offers_total{outcome="received"} 3"#));
        assert!(text.contains("mesos_stateful_task_launches_total 1"));
        assert!(text.contains("mesos_stateful_actor_handler_seconds_bucket"));
        assert!(text.ends_with("# EOF\n"));
    }

    #[test]
    fn executor_reports_feed_their_instruments() {
        use mesos_stateful_proto::stateful::LaunchReport;
        let metrics = Metrics::new();
        metrics.launch_report(&LaunchReport {
            task_id: "a-0.1".into(),
            pull_seconds: Some(2.0),
            create_seconds: Some(0.05),
            start_seconds: Some(0.2),
            pulled: Some(true),
            adopted: None,
        });
        // Present image: no pull observed. Adopted container: nothing observed.
        metrics.launch_report(&LaunchReport {
            task_id: "a-1.1".into(),
            pull_seconds: Some(0.0),
            create_seconds: Some(0.05),
            start_seconds: Some(0.2),
            pulled: Some(false),
            adopted: None,
        });
        metrics.launch_report(&LaunchReport {
            task_id: "a-2.1".into(),
            adopted: Some(true),
            ..Default::default()
        });
        let text = metrics.encode();
        assert!(
            text.contains("mesos_stateful_executor_pull_seconds_count 1"),
            "{text}"
        );
        assert!(text.contains("mesos_stateful_executor_create_seconds_count 2"));
        assert!(text.contains("mesos_stateful_executor_start_seconds_count 2"));

        // Cumulative counts per task: only the increase is counted; a restart of the
        // count (new executor) counts from zero.
        metrics.health_failures("a-0.1", 2);
        metrics.health_failures("a-0.1", 2);
        metrics.health_failures("a-0.1", 5);
        metrics.health_failures("a-1.1", 1);
        metrics.health_failures("a-0.1", 1);
        assert_eq!(metrics.executor_health_failures.get(), 7);
    }
}
