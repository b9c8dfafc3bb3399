//! What the OfferManager decides around matching: where an instance's members are
//! (for placement rules), which member reservations are still wanted, and when to
//! SUPPRESS and REVIVE offers.
//!
//! # Lifecycle of a member's volume
//! - Created: on the member's first placement the OfferManager persists the binding
//!   ([`MemberVolume`] in the task record), then sends RESERVE + CREATE + LAUNCH in
//!   one ACCEPT.
//! - Kept: every later incarnation of the member (relaunch in place) carries the
//!   binding and launches only on its agent.
//! - Released: when the instance is DELETING or DELETED, or the member's record names
//!   another volume (replaced elsewhere), the reservation is DESTROYed and
//!   UNRESERVEd the next time it is offered; for a deleting instance the binding is
//!   then removed from the record, and [`holds_volumes`] turns false.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use mesos_stateful_store::records::{InstanceRecord, InstanceStatus, MemberVolume, TaskRecord};

use super::constraints::AgentFacts;
use super::lifecycle;

/// How long the launch queue must stay empty before offers are suppressed.
pub const SUPPRESS_AFTER_IDLE: Duration = Duration::from_secs(5);
/// Shortest time between two REVIVEs; work queued sooner is revived for once the
/// interval has passed.
pub const REVIVE_MIN_INTERVAL: Duration = Duration::from_secs(1);

/// A call to Mesos about the flow of offers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FlowCall {
    /// Stop sending offers for the framework's roles.
    Suppress,
    /// Send offers again and clear decline filters.
    Revive,
}

/// Whether offers should flow: SUPPRESS once nothing has been queued for
/// [`SUPPRESS_AFTER_IDLE`], REVIVE when work arrives, never two REVIVEs within
/// [`REVIVE_MIN_INTERVAL`].
#[derive(Debug, Clone, Default)]
pub struct OfferFlow {
    /// Whether a SUPPRESS is in force.
    suppressed: bool,
    /// Since when the queue has been empty, if it is.
    idle_since: Option<Instant>,
    /// When the last REVIVE was sent.
    last_revive: Option<Instant>,
    /// Work arrived too soon after a REVIVE; revive once the interval has passed.
    revive_pending: bool,
    /// Member reservations wait to be given back: offers are needed for them even
    /// with nothing queued.
    releases_pending: bool,
}

impl OfferFlow {
    /// A new subscription: Mesos starts it unsuppressed; a REVIVE clears the
    /// filters declines left under the previous one.
    pub fn subscribed(&mut self, now: Instant) -> FlowCall {
        self.suppressed = false;
        self.revive_pending = false;
        self.last_revive = Some(now);
        FlowCall::Revive
    }

    /// Jobs were queued.
    pub fn work_queued(&mut self, now: Instant) -> Option<FlowCall> {
        self.idle_since = None;
        let recently = self
            .last_revive
            .is_some_and(|at| now.duration_since(at) < REVIVE_MIN_INTERVAL);
        if recently && !self.suppressed {
            self.revive_pending = true;
            return None;
        }
        self.revive(now)
    }

    /// Reservations of deleted members wait to be released: offers flow again until
    /// a round finds none left.
    pub fn releases_pending(&mut self, now: Instant) -> Option<FlowCall> {
        self.releases_pending = true;
        self.work_queued(now)
    }

    /// Whether reservations are known to wait for release.
    pub fn has_releases_pending(&self) -> bool {
        self.releases_pending
    }

    /// An offer round ended: whether the queue was empty and whether reservations
    /// still wait for release (`None`: the round did not look).
    pub fn round_done(&mut self, now: Instant, queue_empty: bool, releases_pending: Option<bool>) {
        if let Some(pending) = releases_pending {
            self.releases_pending = pending;
        }
        self.queue_seen(now, queue_empty && !self.releases_pending);
    }

    /// An offer round saw the queue empty (`true`) or not.
    pub fn queue_seen(&mut self, now: Instant, empty: bool) {
        if empty && !self.releases_pending {
            self.idle_since.get_or_insert(now);
        } else {
            self.idle_since = None;
        }
    }

    /// Called periodically: sends a deferred REVIVE, or SUPPRESSes after a long
    /// enough idle spell.
    pub fn tick(&mut self, now: Instant) -> Option<FlowCall> {
        if self.revive_pending
            && self
                .last_revive
                .is_none_or(|at| now.duration_since(at) >= REVIVE_MIN_INTERVAL)
        {
            return self.revive(now);
        }
        let idle_long = self
            .idle_since
            .is_some_and(|since| now.duration_since(since) >= SUPPRESS_AFTER_IDLE);
        if idle_long && !self.suppressed && !self.revive_pending {
            self.suppressed = true;
            return Some(FlowCall::Suppress);
        }
        None
    }

    /// Whether offers are suppressed.
    pub fn is_suppressed(&self) -> bool {
        self.suppressed
    }

    fn revive(&mut self, now: Instant) -> Option<FlowCall> {
        self.suppressed = false;
        self.revive_pending = false;
        self.last_revive = Some(now);
        Some(FlowCall::Revive)
    }
}

/// The agents of every instance's members that run or are about to run, one entry
/// per member, with what `known` says of each agent.
pub fn peers<'a>(
    instances: impl IntoIterator<Item = &'a TaskRecord>,
    known: &BTreeMap<String, AgentFacts>,
) -> BTreeMap<String, Vec<AgentFacts>> {
    let mut peers: BTreeMap<String, Vec<AgentFacts>> = BTreeMap::new();
    for task in instances {
        let Some(agent) = &task.agent_id else {
            continue;
        };
        if lifecycle::is_terminal(task.state.as_deref()) {
            continue;
        }
        let facts = known.get(agent).cloned().unwrap_or_else(|| AgentFacts {
            agent_id: agent.clone(),
            hostname: task.hostname.clone().unwrap_or_default(),
            attributes: BTreeMap::new(),
        });
        peers.entry(task.instance.clone()).or_default().push(facts);
    }
    peers
}

/// Whether the reservation `persistence_id` made for `member` is still wanted:
/// its instance is live and the member's record names that volume.
pub fn volume_wanted(
    instances: &BTreeMap<String, (InstanceRecord, BTreeMap<u32, TaskRecord>)>,
    persistence_id: &str,
    member: &str,
) -> bool {
    let Some((instance, ordinal)) = split_member(member) else {
        return false;
    };
    let Some((record, tasks)) = instances.get(instance) else {
        return false;
    };
    if matches!(
        record.status,
        InstanceStatus::Deleting | InstanceStatus::Deleted
    ) {
        return false;
    }
    tasks
        .get(&ordinal)
        .and_then(|t| t.volume.as_ref())
        .is_some_and(|v: &MemberVolume| v.persistence_id == persistence_id)
}

/// Whether any member of an instance still holds a volume binding; a deleting
/// instance should become DELETED only once this is false (its reservations have
/// been given back).
pub fn holds_volumes<'a>(tasks: impl IntoIterator<Item = &'a TaskRecord>) -> bool {
    tasks.into_iter().any(|t| t.volume.is_some())
}

/// The instance of a member name: `cache1-0` → `cache1`.
pub fn instance_of_member(member: &str) -> Option<&str> {
    split_member(member).map(|(instance, _)| instance)
}

/// `cache1-0` → (`cache1`, 0).
fn split_member(member: &str) -> Option<(&str, u32)> {
    let (instance, ordinal) = member.rsplit_once('-')?;
    Some((instance, ordinal.parse().ok()?))
}

#[cfg(test)]
mod tests {
    use super::*;
    use mesos_stateful_store::records::{InstanceSpec, PlacementSpec, Resources, Role};

    #[test]
    fn suppresses_after_an_idle_spell_and_revives_when_work_arrives() {
        let start = Instant::now();
        let at = |secs: u64| start + Duration::from_secs(secs);
        let mut flow = OfferFlow::default();
        assert_eq!(flow.subscribed(at(0)), FlowCall::Revive);
        flow.queue_seen(at(1), true);
        // Not idle long enough yet.
        assert_eq!(flow.tick(at(2)), None);
        // Work in between resets the idle spell.
        flow.queue_seen(at(3), false);
        flow.queue_seen(at(4), true);
        assert_eq!(flow.tick(at(8)), None);
        assert_eq!(flow.tick(at(9)), Some(FlowCall::Suppress));
        assert!(flow.is_suppressed());
        // Suppressed once only.
        assert_eq!(flow.tick(at(20)), None);
        // Work revives at once.
        assert_eq!(flow.work_queued(at(21)), Some(FlowCall::Revive));
        assert!(!flow.is_suppressed());
    }

    #[test]
    fn revives_at_most_once_per_interval() {
        let start = Instant::now();
        let at = |millis: u64| start + Duration::from_millis(millis);
        let mut flow = OfferFlow::default();
        assert_eq!(flow.work_queued(at(0)), Some(FlowCall::Revive));
        // A burst of creates does not flood Mesos with REVIVEs ...
        assert_eq!(flow.work_queued(at(100)), None);
        assert_eq!(flow.work_queued(at(200)), None);
        assert_eq!(flow.tick(at(500)), None);
        // ... but the last one is revived for once the interval has passed.
        assert_eq!(flow.tick(at(1000)), Some(FlowCall::Revive));
        assert_eq!(flow.tick(at(1500)), None);
        // A pending revive wins over suppression.
        assert_eq!(flow.work_queued(at(1600)), None);
        flow.queue_seen(at(1600), true);
        assert_eq!(flow.tick(at(9000)), Some(FlowCall::Revive));
        assert_eq!(flow.tick(at(9100)), Some(FlowCall::Suppress));
    }

    #[test]
    fn pending_releases_keep_offers_flowing() {
        let start = Instant::now();
        let at = |secs: u64| start + Duration::from_secs(secs);
        let mut flow = OfferFlow::default();
        flow.queue_seen(at(0), true);
        assert_eq!(flow.tick(at(6)), Some(FlowCall::Suppress));
        // A deleted instance's volumes must be given back: revive.
        assert_eq!(flow.releases_pending(at(7)), Some(FlowCall::Revive));
        assert!(flow.has_releases_pending());
        // Rounds that still see pending releases never let the flow go idle.
        flow.round_done(at(8), true, Some(true));
        assert_eq!(flow.tick(at(20)), None);
        // A round that did not look keeps what was known.
        flow.round_done(at(21), true, None);
        assert_eq!(flow.tick(at(30)), None);
        // Released: idle again, suppressed after the usual spell.
        flow.round_done(at(31), true, Some(false));
        assert_eq!(flow.tick(at(33)), None);
        assert_eq!(flow.tick(at(36)), Some(FlowCall::Suppress));
    }

    fn record(name: &str, status: InstanceStatus) -> InstanceRecord {
        InstanceRecord {
            schema: 1,
            name: name.into(),
            spec: InstanceSpec {
                image: "i".into(),
                replicas: 0,
                resources: Resources {
                    cpus: 1.0,
                    mem: 8.0,
                    disk: 1.0,
                },
                master_args: Vec::new(),
                replica_args: Vec::new(),
                env: BTreeMap::new(),
                volume: None,
                placement: PlacementSpec::default(),
                privileged: false,
            },
            status,
            status_message: None,
            version: 1,
            created_at_ms: 0,
            lifecycle: Default::default(),
        }
    }

    fn bound(persistence_id: &str) -> MemberVolume {
        MemberVolume {
            agent_id: "a1".into(),
            hostname: None,
            persistence_id: persistence_id.into(),
            role: "db".into(),
            principal: None,
            size_mb: 1.0,
            container_path: "data".into(),
            reserved: Resources {
                cpus: 1.0,
                mem: 8.0,
                disk: 1.0,
            },
        }
    }

    #[test]
    fn volumes_are_wanted_by_live_members_that_name_them() {
        let mut task = TaskRecord::waiting("my-db", 1, Role::Replica, 2);
        task.volume = Some(bound("my-db-1.1"));
        let check = |status, persistence_id: &str, member: &str, wanted: bool| {
            let instances = BTreeMap::from([(
                "my-db".to_string(),
                (record("my-db", status), BTreeMap::from([(1, task.clone())])),
            )]);
            assert_eq!(
                volume_wanted(&instances, persistence_id, member),
                wanted,
                "{status:?} {persistence_id} {member}"
            );
        };
        check(InstanceStatus::Running, "my-db-1.1", "my-db-1", true);
        check(InstanceStatus::Creating, "my-db-1.1", "my-db-1", true);
        check(InstanceStatus::Failed, "my-db-1.1", "my-db-1", true);
        // Replaced elsewhere: the old generation is not wanted.
        check(InstanceStatus::Running, "my-db-1.0", "my-db-1", false);
        check(InstanceStatus::Deleting, "my-db-1.1", "my-db-1", false);
        check(InstanceStatus::Deleted, "my-db-1.1", "my-db-1", false);
        check(InstanceStatus::Running, "x-1.1", "other-1", false);
        check(InstanceStatus::Running, "my-db-1.1", "garbage", false);
        assert!(holds_volumes([&task]));
        assert!(!holds_volumes([&TaskRecord::waiting(
            "c",
            0,
            Role::Master,
            1
        )]));
    }

    #[test]
    fn peers_are_live_members_with_known_facts() {
        let mut live = TaskRecord::waiting("c", 0, Role::Master, 1);
        live.agent_id = Some("a1".into());
        live.state = Some("TASK_RUNNING".into());
        let mut ended = TaskRecord::waiting("c", 1, Role::Replica, 1);
        ended.agent_id = Some("a2".into());
        ended.state = Some("TASK_FAILED".into());
        let mut unknown_agent = TaskRecord::waiting("d", 0, Role::Master, 1);
        unknown_agent.agent_id = Some("a9".into());
        unknown_agent.hostname = Some("h9".into());
        unknown_agent.state = Some("TASK_STAGING".into());
        let known = BTreeMap::from([(
            "a1".to_string(),
            AgentFacts {
                agent_id: "a1".into(),
                hostname: "h1".into(),
                attributes: BTreeMap::from([("rack".into(), "r1".into())]),
            },
        )]);
        let peers = peers([&live, &ended, &unknown_agent], &known);
        assert_eq!(peers["c"].len(), 1);
        assert_eq!(peers["c"][0].field("rack"), Some("r1"));
        assert_eq!(peers["d"][0].hostname, "h9");
    }
}
