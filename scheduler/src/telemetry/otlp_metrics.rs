//! The scheduler's Prometheus instruments, exported by OTLP as well.
//!
//! `/metrics` stays the source of truth: every interval the registry is encoded in
//! the OpenMetrics text format, parsed back into families, and sent as one OTLP
//! `ExportMetricsServiceRequest` (HTTP/protobuf) to
//! `OTEL_EXPORTER_OTLP_METRICS_ENDPOINT`, or `OTEL_EXPORTER_OTLP_ENDPOINT` +
//! `/v1/metrics`. Counters become cumulative monotonic sums, gauges gauges, and
//! histograms cumulative explicit-bucket histograms, with the Prometheus labels as
//! attributes. The interval is `OTEL_METRIC_EXPORT_INTERVAL` (milliseconds, default
//! 60000); `OTEL_METRICS_EXPORTER=none` turns the export off.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use mesos_stateful_actors::telemetry::Metrics;
use opentelemetry_proto::tonic::collector::metrics::v1::ExportMetricsServiceRequest;
use opentelemetry_proto::tonic::common::v1::{any_value, AnyValue, InstrumentationScope, KeyValue};
use opentelemetry_proto::tonic::metrics::v1::{
    metric, number_data_point, AggregationTemporality, Gauge, Histogram, HistogramDataPoint,
    Metric, NumberDataPoint, ResourceMetrics, ScopeMetrics, Sum,
};
use opentelemetry_proto::tonic::resource::v1::Resource;
use prost::Message as _;

/// The kind of a metric family, from its `# TYPE` line.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// Monotonic counter (samples end in `_total`).
    Counter,
    /// Gauge.
    Gauge,
    /// Histogram (`_bucket`, `_sum`, `_count` samples).
    Histogram,
}

/// One sample line: name, labels and value.
#[derive(Debug, Clone, PartialEq)]
pub struct Sample {
    /// Sample name (`mesos_stateful_offers_total`).
    pub name: String,
    /// Labels in order of appearance.
    pub labels: Vec<(String, String)>,
    /// Value.
    pub value: f64,
}

/// One metric family of the exposition.
#[derive(Debug, Clone, PartialEq)]
pub struct Family {
    /// Family name (`mesos_stateful_offers`).
    pub name: String,
    /// Help text.
    pub help: String,
    /// Kind, if one we export.
    pub kind: Option<Kind>,
    /// Its samples.
    pub samples: Vec<Sample>,
}

/// Parses the OpenMetrics text `prometheus-client` writes. Lines that do not parse
/// are skipped: the text is our own, so a skipped line is a bug the tests catch.
pub fn parse(text: &str) -> Vec<Family> {
    let mut families: Vec<Family> = Vec::new();
    for line in text.lines() {
        if let Some(rest) = line.strip_prefix("# TYPE ") {
            let mut parts = rest.splitn(2, ' ');
            let name = parts.next().unwrap_or_default().to_string();
            let kind = match parts.next().unwrap_or_default().trim() {
                "counter" => Some(Kind::Counter),
                "gauge" => Some(Kind::Gauge),
                "histogram" => Some(Kind::Histogram),
                _ => None,
            };
            match families.last_mut() {
                Some(family) if family.name == name => family.kind = kind,
                _ => families.push(Family {
                    name,
                    help: String::new(),
                    kind,
                    samples: Vec::new(),
                }),
            }
        } else if let Some(rest) = line.strip_prefix("# HELP ") {
            let mut parts = rest.splitn(2, ' ');
            let name = parts.next().unwrap_or_default().to_string();
            let help = parts.next().unwrap_or_default().to_string();
            families.push(Family {
                name,
                help,
                kind: None,
                samples: Vec::new(),
            });
        } else if line.starts_with('#') || line.trim().is_empty() {
            continue;
        } else if let (Some(sample), Some(family)) = (parse_sample(line), families.last_mut()) {
            family.samples.push(sample);
        }
    }
    families
}

fn parse_sample(line: &str) -> Option<Sample> {
    let (name, rest) = match line.find('{') {
        Some(brace) => (&line[..brace], &line[brace..]),
        None => {
            let space = line.find(' ')?;
            (&line[..space], &line[space..])
        }
    };
    let (labels, rest) = if let Some(body) = rest.strip_prefix('{') {
        parse_labels(body)?
    } else {
        (Vec::new(), rest)
    };
    let value = rest.split_whitespace().next()?;
    let value = match value {
        "+Inf" => f64::INFINITY,
        "-Inf" => f64::NEG_INFINITY,
        other => other.parse().ok()?,
    };
    Some(Sample {
        name: name.to_string(),
        labels,
        value,
    })
}

/// Parses `a="x",b="y\"z"}` and returns the labels and what follows the brace.
fn parse_labels(body: &str) -> Option<(Vec<(String, String)>, &str)> {
    let mut labels = Vec::new();
    let mut rest = body;
    loop {
        rest = rest.trim_start_matches(',');
        if let Some(after) = rest.strip_prefix('}') {
            return Some((labels, after));
        }
        let equals = rest.find('=')?;
        let key = rest[..equals].to_string();
        rest = rest[equals + 1..].strip_prefix('"')?;
        let mut value = String::new();
        let mut chars = rest.char_indices();
        let end = loop {
            let (index, c) = chars.next()?;
            match c {
                '\\' => match chars.next()?.1 {
                    'n' => value.push('\n'),
                    other => value.push(other),
                },
                '"' => break index,
                other => value.push(other),
            }
        };
        labels.push((key, value));
        rest = &rest[end + 1..];
    }
}

fn attributes(labels: &[(String, String)]) -> Vec<KeyValue> {
    labels
        .iter()
        .filter(|(key, _)| key != "le")
        .map(|(key, value)| KeyValue {
            key: key.clone(),
            value: Some(AnyValue {
                value: Some(any_value::Value::StringValue(value.clone())),
            }),
            ..Default::default()
        })
        .collect()
}

fn number_point(sample: &Sample, start: u64, now: u64) -> NumberDataPoint {
    NumberDataPoint {
        attributes: attributes(&sample.labels),
        start_time_unix_nano: start,
        time_unix_nano: now,
        value: Some(number_data_point::Value::AsDouble(sample.value)),
        ..Default::default()
    }
}

/// A series' labels, in order.
type Labels = Vec<(String, String)>;

fn histogram_points(family: &Family, start: u64, now: u64) -> Vec<HistogramDataPoint> {
    // Samples of one series share their labels other than `le`.
    let mut series: BTreeMap<Labels, HistogramDataPoint> = BTreeMap::new();
    // Upper bound and cumulative count of each bucket, per series.
    let mut cumulative: BTreeMap<Labels, Vec<(f64, f64)>> = BTreeMap::new();
    for sample in &family.samples {
        let key: Labels = sample
            .labels
            .iter()
            .filter(|(k, _)| k != "le")
            .cloned()
            .collect();
        let point = series
            .entry(key.clone())
            .or_insert_with(|| HistogramDataPoint {
                attributes: attributes(&key),
                start_time_unix_nano: start,
                time_unix_nano: now,
                ..Default::default()
            });
        let suffix = &sample.name[family.name.len().min(sample.name.len())..];
        match suffix {
            "_bucket" => {
                let bound =
                    sample
                        .labels
                        .iter()
                        .find(|(k, _)| k == "le")
                        .and_then(|(_, v)| match v.as_str() {
                            "+Inf" => Some(f64::INFINITY),
                            other => other.parse().ok(),
                        });
                if let Some(bound) = bound {
                    cumulative
                        .entry(key)
                        .or_default()
                        .push((bound, sample.value));
                }
            }
            "_sum" => point.sum = Some(sample.value),
            "_count" => point.count = sample.value as u64,
            _ => {}
        }
    }
    for (key, mut buckets) in cumulative {
        let Some(point) = series.get_mut(&key) else {
            continue;
        };
        buckets.sort_by(|a, b| a.0.total_cmp(&b.0));
        let mut previous = 0.0;
        for (bound, count) in buckets {
            if bound.is_finite() {
                point.explicit_bounds.push(bound);
            }
            point.bucket_counts.push((count - previous).max(0.0) as u64);
            previous = count;
        }
    }
    series.into_values().collect()
}

/// The OTLP request for `families`, as of `now` (Unix nanoseconds), with counts
/// accumulated since `start`.
pub fn to_request(
    families: &[Family],
    service_name: &str,
    start: u64,
    now: u64,
) -> ExportMetricsServiceRequest {
    let mut metrics = Vec::new();
    for family in families {
        let data = match family.kind {
            Some(Kind::Counter) => {
                let total = format!("{}_total", family.name);
                let points: Vec<NumberDataPoint> = family
                    .samples
                    .iter()
                    .filter(|s| s.name == total)
                    .map(|s| number_point(s, start, now))
                    .collect();
                metric::Data::Sum(Sum {
                    data_points: points,
                    aggregation_temporality: AggregationTemporality::Cumulative as i32,
                    is_monotonic: true,
                })
            }
            Some(Kind::Gauge) => metric::Data::Gauge(Gauge {
                data_points: family
                    .samples
                    .iter()
                    .map(|s| number_point(s, start, now))
                    .collect(),
            }),
            Some(Kind::Histogram) => metric::Data::Histogram(Histogram {
                data_points: histogram_points(family, start, now),
                aggregation_temporality: AggregationTemporality::Cumulative as i32,
            }),
            None => continue,
        };
        let unit = if family.name.ends_with("_seconds") {
            "s"
        } else {
            ""
        };
        metrics.push(Metric {
            name: family.name.clone(),
            description: family.help.clone(),
            unit: unit.to_string(),
            data: Some(data),
            ..Default::default()
        });
    }
    ExportMetricsServiceRequest {
        resource_metrics: vec![ResourceMetrics {
            resource: Some(Resource {
                attributes: attributes(&[("service.name".to_string(), service_name.to_string())]),
                ..Default::default()
            }),
            scope_metrics: vec![ScopeMetrics {
                scope: Some(InstrumentationScope {
                    name: "mesos-stateful".to_string(),
                    version: env!("CARGO_PKG_VERSION").to_string(),
                    ..Default::default()
                }),
                metrics,
                ..Default::default()
            }],
            ..Default::default()
        }],
    }
}

/// Where and how often to export, from the standard variables; `None` when metrics
/// are not exported.
pub fn settings_from_env() -> Option<(String, Duration)> {
    let var = |name: &str| {
        std::env::var(name)
            .ok()
            .map(|v| v.trim().to_string())
            .filter(|v| !v.is_empty())
    };
    if var("OTEL_METRICS_EXPORTER").as_deref() == Some("none") {
        return None;
    }
    let url = var("OTEL_EXPORTER_OTLP_METRICS_ENDPOINT").or_else(|| {
        var("OTEL_EXPORTER_OTLP_ENDPOINT")
            .map(|base| format!("{}/v1/metrics", base.trim_end_matches('/')))
    })?;
    let interval = var("OTEL_METRIC_EXPORT_INTERVAL")
        .and_then(|v| v.parse::<u64>().ok())
        .filter(|ms| *ms > 0)
        .map_or(Duration::from_secs(60), Duration::from_millis);
    Some((url, interval))
}

fn unix_nanos(time: SystemTime) -> u64 {
    time.duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos() as u64)
}

/// Sends `metrics` to `url` every `interval` until the task is dropped; a failed
/// export is logged and retried at the next interval.
pub async fn export_periodically(
    metrics: Arc<Metrics>,
    url: String,
    interval: Duration,
    service_name: String,
) {
    let client = reqwest::Client::builder()
        .timeout(Duration::from_secs(10))
        .build()
        .unwrap_or_default();
    let start = unix_nanos(SystemTime::now());
    let mut ticker = tokio::time::interval(interval);
    ticker.tick().await;
    loop {
        ticker.tick().await;
        let families = parse(&metrics.encode());
        let request = to_request(
            &families,
            &service_name,
            start,
            unix_nanos(SystemTime::now()),
        );
        let sent = client
            .post(&url)
            .header("content-type", "application/x-protobuf")
            .body(request.encode_to_vec())
            .send()
            .await;
        match sent {
            Ok(response) if response.status().is_success() => {}
            Ok(response) => {
                tracing::debug!(status = %response.status(), %url, "metrics export refused")
            }
            Err(error) => tracing::debug!(%error, %url, "metrics export failed"),
        }
    }
}

#[cfg(test)]
mod tests {
    use std::time::Instant;

    use super::*;

    fn metric<'a>(request: &'a ExportMetricsServiceRequest, name: &str) -> &'a Metric {
        request.resource_metrics[0].scope_metrics[0]
            .metrics
            .iter()
            .find(|m| m.name == name)
            .unwrap_or_else(|| panic!("no metric {name}"))
    }

    #[test]
    fn labels_with_escapes_parse() {
        let sample = parse_sample(r#"x_total{a="1",b="say \"hi\"\n",c="x,y}"} 3.5"#);
        assert_eq!(
            sample,
            Some(Sample {
                name: "x_total".into(),
                labels: vec![
                    ("a".into(), "1".into()),
                    ("b".into(), "say \"hi\"\n".into()),
                    ("c".into(), "x,y}".into()),
                ],
                value: 3.5,
            })
        );
        assert_eq!(parse_sample("y 1").map(|s| s.value), Some(1.0));
        assert_eq!(parse_sample(r#"y{a="1} 1"#), None);
        assert_eq!(parse_sample("y nope"), None);
    }

    #[test]
    fn the_registry_becomes_sums_gauges_and_histograms() {
        let metrics = Metrics::new();
        metrics.offers("received", 3);
        metrics.offers("declined", 1);
        metrics.launches.inc();
        metrics.mesos_subscribed.set(1);
        metrics.handled("OfferManager", "Offers", Instant::now(), false);
        metrics.offer_to_accept_seconds.observe(0.002);
        metrics.offer_to_accept_seconds.observe(100.0);
        let families = parse(&metrics.encode());
        let request = to_request(&families, "svc", 1, 2);

        let resource = request.resource_metrics[0].resource.as_ref();
        assert_eq!(
            resource.map(|r| r.attributes[0].key.as_str()),
            Some("service.name")
        );

        let Some(metric::Data::Sum(offers)) = &metric(&request, "mesos_stateful_offers").data
        else {
            panic!("offers is not a sum");
        };
        assert!(offers.is_monotonic);
        assert_eq!(offers.data_points.len(), 2);
        let received = offers
            .data_points
            .iter()
            .find(|p| {
                p.attributes.iter().any(|kv| {
                    kv.value.as_ref().and_then(|v| v.value.as_ref())
                        == Some(&any_value::Value::StringValue("received".into()))
                })
            })
            .and_then(|p| p.value);
        assert_eq!(received, Some(number_data_point::Value::AsDouble(3.0)));
        assert_eq!(offers.data_points[0].start_time_unix_nano, 1);
        assert_eq!(offers.data_points[0].time_unix_nano, 2);

        let Some(metric::Data::Gauge(subscribed)) =
            &metric(&request, "mesos_stateful_mesos_subscribed").data
        else {
            panic!("subscribed is not a gauge");
        };
        assert_eq!(
            subscribed.data_points[0].value,
            Some(number_data_point::Value::AsDouble(1.0))
        );

        let latency = metric(&request, "mesos_stateful_offer_to_accept_seconds");
        assert_eq!(latency.unit, "s");
        let Some(metric::Data::Histogram(histogram)) = &latency.data else {
            panic!("latency is not a histogram");
        };
        let point = &histogram.data_points[0];
        assert_eq!(point.count, 2);
        assert_eq!(point.sum, Some(100.002));
        // One bucket more than bounds (the +Inf one), counts per bucket summing to
        // the total: 0.002 in a finite bucket, 100 s past the last bound.
        assert_eq!(point.bucket_counts.len(), point.explicit_bounds.len() + 1);
        assert_eq!(point.bucket_counts.iter().sum::<u64>(), 2);
        assert_eq!(point.bucket_counts.last(), Some(&1));

        // Every family we register is exported.
        let exported = request.resource_metrics[0].scope_metrics[0].metrics.len();
        assert_eq!(
            exported,
            families.iter().filter(|f| f.kind.is_some()).count()
        );
        assert!(exported >= 15, "{exported}");
    }
}
