//! Offer filters: which resources a framework refused on which agent, and until when.
//!
//! Mesos semantics: a DECLINE (or the unused part of an ACCEPT) with
//! `Filters.refuse_seconds` stops the allocator from offering the framework a subset
//! of the refused resources on that agent until the filter expires. An offer holding
//! more than the refused resources (say a task finished meanwhile) is not filtered.
//! REVIVE clears all of a framework's filters.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use mesos_stateful_proto::v1::{AgentId, FrameworkId};

use crate::resources::ResourceSet;

/// `Filters.refuse_seconds` when the scheduler sends none.
pub const DEFAULT_REFUSE_SECONDS: f64 = 5.0;

/// The longest filter Mesos accepts (365 days); longer values are capped.
pub const MAX_REFUSE_SECONDS: f64 = 31_536_000.0;

#[derive(Debug, Clone)]
struct Filter {
    resources: ResourceSet,
    until: Instant,
}

/// All active offer filters of the master.
#[derive(Debug, Default)]
pub struct OfferFilters {
    filters: HashMap<(FrameworkId, AgentId), Vec<Filter>>,
}

impl OfferFilters {
    /// Refuses `resources` on `agent_id` to `framework_id` for `refuse_seconds` from `now`.
    /// Non-positive or non-finite durations add nothing (the resources may be re-offered at once).
    pub fn refuse(
        &mut self,
        framework_id: &FrameworkId,
        agent_id: &AgentId,
        resources: ResourceSet,
        refuse_seconds: f64,
        now: Instant,
    ) {
        if refuse_seconds.is_nan() || refuse_seconds <= 0.0 || resources.is_empty() {
            return;
        }
        let seconds = refuse_seconds.min(MAX_REFUSE_SECONDS);
        let until = now + Duration::from_secs_f64(seconds);
        self.filters
            .entry((framework_id.clone(), agent_id.clone()))
            .or_default()
            .push(Filter { resources, until });
    }

    /// Whether offering `candidate` on `agent_id` to `framework_id` is filtered at `now`.
    pub fn is_filtered(
        &self,
        framework_id: &FrameworkId,
        agent_id: &AgentId,
        candidate: &ResourceSet,
        now: Instant,
    ) -> bool {
        self.filters
            .get(&(framework_id.clone(), agent_id.clone()))
            .is_some_and(|filters| {
                filters
                    .iter()
                    .any(|filter| filter.until > now && filter.resources.contains(candidate))
            })
    }

    /// Drops every filter of `framework_id` (REVIVE, removal).
    pub fn clear_framework(&mut self, framework_id: &FrameworkId) {
        self.filters.retain(|(fid, _), _| fid != framework_id);
    }

    /// Forgets expired filters.
    pub fn expire(&mut self, now: Instant) {
        self.filters.retain(|_, filters| {
            filters.retain(|filter| filter.until > now);
            !filters.is_empty()
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::resources::Ranges;

    fn fid(value: &str) -> FrameworkId {
        FrameworkId {
            value: value.into(),
        }
    }

    fn aid(value: &str) -> AgentId {
        AgentId {
            value: value.into(),
        }
    }

    fn set(cpus: f64, mem: f64) -> ResourceSet {
        ResourceSet::new(cpus, mem, 0.0, Ranges::default())
    }

    #[test]
    fn refused_resources_are_filtered_until_expiry() {
        struct Case {
            refuse_seconds: f64,
            candidate: ResourceSet,
            after: Duration,
            expected: bool,
        }
        let cases = [
            Case {
                refuse_seconds: 5.0,
                candidate: set(4.0, 1024.0),
                after: Duration::from_secs(1),
                expected: true,
            },
            Case {
                refuse_seconds: 5.0,
                candidate: set(1.0, 512.0),
                after: Duration::from_secs(1),
                expected: true,
            },
            Case {
                refuse_seconds: 5.0,
                candidate: set(4.0, 1024.0),
                after: Duration::from_secs(6),
                expected: false,
            },
            Case {
                refuse_seconds: 5.0,
                candidate: set(5.0, 1024.0),
                after: Duration::from_secs(1),
                expected: false,
            },
            Case {
                refuse_seconds: 0.0,
                candidate: set(4.0, 1024.0),
                after: Duration::ZERO,
                expected: false,
            },
            Case {
                refuse_seconds: -3.0,
                candidate: set(4.0, 1024.0),
                after: Duration::ZERO,
                expected: false,
            },
            Case {
                refuse_seconds: f64::NAN,
                candidate: set(4.0, 1024.0),
                after: Duration::ZERO,
                expected: false,
            },
            Case {
                refuse_seconds: 1e12,
                candidate: set(4.0, 1024.0),
                after: Duration::from_secs(86_400 * 364),
                expected: true,
            },
        ];
        let start = Instant::now();
        for (index, case) in cases.into_iter().enumerate() {
            let mut filters = OfferFilters::default();
            filters.refuse(
                &fid("f"),
                &aid("a"),
                set(4.0, 1024.0),
                case.refuse_seconds,
                start,
            );
            let filtered =
                filters.is_filtered(&fid("f"), &aid("a"), &case.candidate, start + case.after);
            assert_eq!(filtered, case.expected, "case {index}");
        }
    }

    #[test]
    fn filters_are_per_framework_and_agent() {
        let now = Instant::now();
        let mut filters = OfferFilters::default();
        filters.refuse(&fid("f"), &aid("a"), set(4.0, 1024.0), 5.0, now);
        assert!(filters.is_filtered(&fid("f"), &aid("a"), &set(4.0, 1024.0), now));
        assert!(!filters.is_filtered(&fid("g"), &aid("a"), &set(4.0, 1024.0), now));
        assert!(!filters.is_filtered(&fid("f"), &aid("b"), &set(4.0, 1024.0), now));
        filters.clear_framework(&fid("f"));
        assert!(!filters.is_filtered(&fid("f"), &aid("a"), &set(4.0, 1024.0), now));
    }

    #[test]
    fn expire_drops_old_filters() {
        let now = Instant::now();
        let mut filters = OfferFilters::default();
        filters.refuse(&fid("f"), &aid("a"), set(1.0, 1.0), 1.0, now);
        filters.expire(now + Duration::from_secs(2));
        assert!(filters.filters.is_empty());
    }
}
