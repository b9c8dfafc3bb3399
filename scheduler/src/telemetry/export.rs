//! A batch span processor with a bounded queue that never blocks the thread that
//! ends a span, and counts what it drops.
//!
//! Ending a span hands it to a bounded channel with `try_send`: when the queue is
//! full (the collector is slow or down) the span is dropped and the `dropped`
//! counter moves, which `/metrics` shows as `mesos_stateful_spans_dropped_total`.
//! One thread drains the queue into batches and exports them with the blocking
//! exporter (the only OTLP transport that works on a thread without a Tokio
//! reactor). Flush and shutdown travel through the same queue with a blocking send,
//! so they are never dropped and see every span queued before them.
//!
//! Sizes follow the standard variables `OTEL_BSP_MAX_QUEUE_SIZE` (2048),
//! `OTEL_BSP_SCHEDULE_DELAY` (milliseconds, 5000) and
//! `OTEL_BSP_MAX_EXPORT_BATCH_SIZE` (512).

use std::sync::mpsc::{self, RecvTimeoutError, SyncSender, TrySendError};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use opentelemetry::Context;
use opentelemetry_sdk::error::{OTelSdkError, OTelSdkResult};
use opentelemetry_sdk::trace::{Span, SpanData, SpanExporter, SpanProcessor};
use opentelemetry_sdk::Resource;
use prometheus_client::metrics::counter::Counter;

/// Queue and batch sizes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BatchSettings {
    /// Spans waiting for export at most; more are dropped.
    pub max_queue: usize,
    /// Longest a span waits before its batch is exported.
    pub delay: Duration,
    /// Spans per export at most.
    pub max_batch: usize,
}

impl Default for BatchSettings {
    fn default() -> Self {
        BatchSettings {
            max_queue: 2048,
            delay: Duration::from_millis(5000),
            max_batch: 512,
        }
    }
}

impl BatchSettings {
    /// The defaults, overridden by the `OTEL_BSP_*` variables that parse.
    pub fn from_env() -> Self {
        Self::from_vars(|name| std::env::var(name).ok())
    }

    fn from_vars(get: impl Fn(&str) -> Option<String>) -> Self {
        let read = |name: &str| {
            get(name)
                .and_then(|value| value.trim().parse::<u64>().ok())
                .filter(|value| *value > 0)
        };
        let defaults = BatchSettings::default();
        let max_queue = read("OTEL_BSP_MAX_QUEUE_SIZE").map_or(defaults.max_queue, |v| v as usize);
        BatchSettings {
            max_queue,
            delay: read("OTEL_BSP_SCHEDULE_DELAY").map_or(defaults.delay, Duration::from_millis),
            max_batch: read("OTEL_BSP_MAX_EXPORT_BATCH_SIZE")
                .map_or(defaults.max_batch, |v| v as usize)
                .min(max_queue),
        }
    }
}

enum Message {
    Span(Box<SpanData>),
    Flush(mpsc::Sender<OTelSdkResult>),
    Shutdown(mpsc::Sender<OTelSdkResult>),
}

/// The processor; see the module documentation.
#[derive(Debug)]
pub struct BoundedBatchProcessor<E: SpanExporter + 'static> {
    queue: SyncSender<Message>,
    exporter: Arc<Mutex<E>>,
    dropped: Counter,
    worker: Mutex<Option<std::thread::JoinHandle<()>>>,
}

impl<E: SpanExporter + 'static> BoundedBatchProcessor<E> {
    /// Starts the export thread. `dropped` counts spans that found the queue full.
    pub fn new(exporter: E, settings: BatchSettings, dropped: Counter) -> std::io::Result<Self> {
        let (queue, receiver) = mpsc::sync_channel(settings.max_queue.max(1));
        let exporter = Arc::new(Mutex::new(exporter));
        let worker_exporter = exporter.clone();
        let worker = std::thread::Builder::new()
            .name("span-export".into())
            .spawn(move || export_loop(&receiver, &worker_exporter, settings))?;
        Ok(BoundedBatchProcessor {
            queue,
            exporter,
            dropped,
            worker: Mutex::new(Some(worker)),
        })
    }

    fn request(
        &self,
        make: impl FnOnce(mpsc::Sender<OTelSdkResult>) -> Message,
        timeout: Duration,
    ) -> OTelSdkResult {
        let (reply, answer) = mpsc::channel();
        self.queue
            .send(make(reply))
            .map_err(|_| OTelSdkError::AlreadyShutdown)?;
        match answer.recv_timeout(timeout) {
            Ok(result) => result,
            Err(RecvTimeoutError::Timeout) => Err(OTelSdkError::Timeout(timeout)),
            Err(RecvTimeoutError::Disconnected) => Err(OTelSdkError::AlreadyShutdown),
        }
    }
}

impl<E: SpanExporter + 'static> SpanProcessor for BoundedBatchProcessor<E> {
    fn on_start(&self, _span: &mut Span, _cx: &Context) {}

    fn on_end(&self, span: SpanData) {
        if !span.span_context.is_sampled() {
            return;
        }
        match self.queue.try_send(Message::Span(Box::new(span))) {
            Ok(()) => {}
            Err(TrySendError::Full(_)) => {
                self.dropped.inc();
            }
            // Shut down: nothing exports any more.
            Err(TrySendError::Disconnected(_)) => {}
        }
    }

    fn force_flush(&self) -> OTelSdkResult {
        self.request(Message::Flush, Duration::from_secs(30))
    }

    fn shutdown_with_timeout(&self, timeout: Duration) -> OTelSdkResult {
        let result = self.request(Message::Shutdown, timeout);
        if let Ok(mut worker) = self.worker.lock() {
            if let Some(worker) = worker.take() {
                if result.is_ok() {
                    let _ = worker.join();
                }
            }
        }
        result
    }

    fn set_resource(&mut self, resource: &Resource) {
        if let Ok(mut exporter) = self.exporter.lock() {
            exporter.set_resource(resource);
        }
    }
}

fn export<E: SpanExporter>(exporter: &Mutex<E>, batch: &mut Vec<SpanData>) -> OTelSdkResult {
    if batch.is_empty() {
        return Ok(());
    }
    let spans = std::mem::take(batch);
    let exporter = exporter
        .lock()
        .map_err(|_| OTelSdkError::InternalFailure("span exporter lock poisoned".into()))?;
    let result = futures_executor::block_on(exporter.export(spans));
    if let Err(error) = &result {
        tracing::debug!(%error, "exporting spans failed");
    }
    result
}

fn export_loop<E: SpanExporter>(
    receiver: &mpsc::Receiver<Message>,
    exporter: &Mutex<E>,
    settings: BatchSettings,
) {
    let mut batch: Vec<SpanData> = Vec::with_capacity(settings.max_batch);
    let mut deadline = Instant::now() + settings.delay;
    loop {
        let wait = deadline.saturating_duration_since(Instant::now());
        match receiver.recv_timeout(wait) {
            Ok(Message::Span(span)) => {
                batch.push(*span);
                if batch.len() >= settings.max_batch {
                    let _ = export(exporter, &mut batch);
                    deadline = Instant::now() + settings.delay;
                }
            }
            Ok(Message::Flush(reply)) => {
                let _ = reply.send(export(exporter, &mut batch));
                deadline = Instant::now() + settings.delay;
            }
            Ok(Message::Shutdown(reply)) => {
                let exported = export(exporter, &mut batch);
                let stopped = exporter
                    .lock()
                    .map_err(|_| {
                        OTelSdkError::InternalFailure("span exporter lock poisoned".into())
                    })
                    .and_then(|exporter| exporter.shutdown());
                let _ = reply.send(exported.and(stopped));
                return;
            }
            Err(RecvTimeoutError::Timeout) => {
                let _ = export(exporter, &mut batch);
                deadline = Instant::now() + settings.delay;
            }
            Err(RecvTimeoutError::Disconnected) => {
                let _ = export(exporter, &mut batch);
                return;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};

    use opentelemetry::trace::{Tracer as _, TracerProvider as _};
    use opentelemetry_sdk::trace::SdkTracerProvider;

    use super::*;

    /// Records exported spans; blocks every export while `stuck` is set, as a
    /// collector that does not answer would.
    #[derive(Debug, Clone, Default)]
    struct Recording {
        exported: Arc<AtomicUsize>,
        batches: Arc<Mutex<Vec<usize>>>,
        stuck: Arc<AtomicBool>,
    }

    impl SpanExporter for Recording {
        async fn export(&self, batch: Vec<SpanData>) -> OTelSdkResult {
            while self.stuck.load(Ordering::SeqCst) {
                std::thread::sleep(Duration::from_millis(5));
            }
            self.exported.fetch_add(batch.len(), Ordering::SeqCst);
            if let Ok(mut batches) = self.batches.lock() {
                batches.push(batch.len());
            }
            Ok(())
        }
    }

    fn provider(
        exporter: Recording,
        settings: BatchSettings,
        dropped: Counter,
    ) -> SdkTracerProvider {
        let processor = BoundedBatchProcessor::new(exporter, settings, dropped);
        SdkTracerProvider::builder()
            .with_span_processor(processor.unwrap_or_else(|e| panic!("export thread: {e}")))
            .build()
    }

    #[test]
    fn spans_are_exported_in_bounded_batches_on_flush() {
        let exporter = Recording::default();
        let settings = BatchSettings {
            max_queue: 100,
            delay: Duration::from_secs(3600),
            max_batch: 8,
        };
        let provider = provider(exporter.clone(), settings, Counter::default());
        let tracer = provider.tracer("test");
        for _ in 0..20 {
            tracer.in_span("work", |_| {});
        }
        assert!(provider.force_flush().is_ok());
        assert_eq!(exporter.exported.load(Ordering::SeqCst), 20);
        let batches = exporter
            .batches
            .lock()
            .map(|b| b.clone())
            .unwrap_or_default();
        assert_eq!(batches, vec![8, 8, 4]);
        assert!(provider.shutdown().is_ok());
    }

    #[test]
    fn a_stuck_collector_never_blocks_and_drops_are_counted() {
        let exporter = Recording::default();
        exporter.stuck.store(true, Ordering::SeqCst);
        let settings = BatchSettings {
            max_queue: 10,
            delay: Duration::from_millis(1),
            max_batch: 1,
        };
        let dropped = Counter::default();
        let provider = provider(exporter.clone(), settings, dropped.clone());
        let tracer = provider.tracer("test");
        let started = Instant::now();
        for _ in 0..1000 {
            tracer.in_span("work", |_| {});
        }
        // Ending 1,000 spans against a stuck collector returns at once.
        assert!(started.elapsed() < Duration::from_secs(5));
        // At most the queue and the batch in flight were kept.
        assert!(dropped.get() >= 1000 - 12, "dropped {}", dropped.get());
        exporter.stuck.store(false, Ordering::SeqCst);
        assert!(provider.force_flush().is_ok());
        let exported = exporter.exported.load(Ordering::SeqCst) as u64;
        assert_eq!(exported + dropped.get(), 1000);
        assert!(provider.shutdown().is_ok());
        // After shutdown, ending a span is a no-op.
        tracer.in_span("late", |_| {});
        assert_eq!(exporter.exported.load(Ordering::SeqCst) as u64, exported);
    }

    #[test]
    fn settings_come_from_the_standard_variables() {
        let none = BatchSettings::from_vars(|_| None);
        assert_eq!(none, BatchSettings::default());
        let set = BatchSettings::from_vars(|name| match name {
            "OTEL_BSP_MAX_QUEUE_SIZE" => Some("100".into()),
            "OTEL_BSP_SCHEDULE_DELAY" => Some(" 250 ".into()),
            "OTEL_BSP_MAX_EXPORT_BATCH_SIZE" => Some("512".into()),
            _ => None,
        });
        assert_eq!(
            set,
            BatchSettings {
                max_queue: 100,
                delay: Duration::from_millis(250),
                // A batch never exceeds the queue.
                max_batch: 100,
            }
        );
        let bad = BatchSettings::from_vars(|name| {
            (name == "OTEL_BSP_MAX_QUEUE_SIZE").then(|| "lots".to_string())
        });
        assert_eq!(bad.max_queue, 2048);
    }
}
