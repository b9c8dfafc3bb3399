//! Offer matching: which queued launch goes on which offer, with which resources,
//! and which reservations and volumes are made or released on the way.
//!
//! Rules, in order, for each job in queue order:
//! - A member bound to a volume goes only to the agent holding it, and launches with
//!   its reserved resources and the volume (CREATE first if the reservation is there
//!   but the volume is not; RESERVE and CREATE again if neither is offered).
//! - A member asking for a volume and not yet bound is placed like any other, then
//!   RESERVEs its cpus, mem and volume disk from unreserved resources, CREATEs the
//!   volume and LAUNCHes, all in one ACCEPT; the binding is the placement's `volume`.
//! - Every other job takes resources reserved for the framework's role (not a
//!   member's) first, then unreserved ones: its cpus, mem and disk plus the
//!   executor's own overhead, and one port.
//! - The instance's placement rules ([`PlacementRules`]) must hold on the agent;
//!   among the agents that fit, one running no other member of the instance is
//!   preferred (master and replicas apart when the cluster allows it).
//! - Offers left with nothing placed and nothing released are declined.
//!
//! [`releases`] lists the member reservations to give back (DESTROY, then
//! UNRESERVE) because their member no longer wants them.

use std::collections::BTreeMap;
use std::sync::Arc;

use mesos_stateful_proto::v1;
use mesos_stateful_store::records::{
    member_name, InstanceSpec, MemberVolume, PlacementSpec, Resources, Role, TaskRecord, VolumeSpec,
};

use super::constraints::{AgentFacts, PlacementRules};

/// Label on a reservation naming the member it was made for.
pub const MEMBER_LABEL: &str = "mesos-stateful.member";
/// Label on a reservation naming the persistence id of the member's volume.
pub const PERSISTENCE_LABEL: &str = "mesos-stateful.persistence";
/// Label on a reservation naming the framework id that made it: reservations of
/// another framework sharing the role are never touched.
pub const FRAMEWORK_ID_LABEL: &str = "mesos-stateful.framework-id";

/// Mesos keeps scalars to three decimals; compare with that tolerance.
const EPSILON: f64 = 0.0005;

/// What an offer holds, reduced to what matching needs.
#[derive(Debug, Clone, PartialEq)]
pub struct OfferSummary {
    /// Mesos offer id.
    pub offer_id: String,
    /// Agent the offer's resources are on.
    pub agent_id: String,
    /// Host name of that agent.
    pub hostname: String,
    /// Cpus any job may use (unreserved or reserved for the framework's role).
    pub cpus: f64,
    /// Memory any job may use, MiB.
    pub mem: f64,
    /// Disk any job may use, MiB.
    pub disk: f64,
    /// Port ranges any job may use, inclusive.
    pub ports: Vec<(u64, u64)>,
    /// What placement rules see of the agent.
    pub facts: AgentFacts,
    /// The resources any job may use, by reservation: role-reserved first.
    pub slices: Vec<Slice>,
    /// Reservations made for members, by persistence id.
    pub member_reservations: BTreeMap<String, MemberReservation>,
    /// Whether the offer uses the reservation-refinement format (`reservations`
    /// stacks) rather than `role` + `reservation`; operations are written alike.
    pub refinement: bool,
}

/// Resources of one reservation (or none) in an offer.
#[derive(Debug, Clone, PartialEq)]
pub struct Slice {
    /// The reservation and allocation fields resources taken from it carry; shared,
    /// because matching copies slices often.
    pub template: Arc<Template>,
    /// Whether these resources are unreserved (and so may be reserved).
    pub unreserved: bool,
    /// Cpus.
    pub cpus: f64,
    /// Memory, MiB.
    pub mem: f64,
    /// Disk, MiB.
    pub disk: f64,
    /// Port ranges, inclusive.
    pub ports: Vec<(u64, u64)>,
}

/// The fields that say whose a resource is, copied onto what is taken from it.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Template {
    /// Pre-refinement role (`*` for unreserved).
    pub role: Option<String>,
    /// Pre-refinement reservation.
    pub reservation: Option<v1::resource::ReservationInfo>,
    /// Refinement-format reservation stack.
    pub reservations: Vec<v1::resource::ReservationInfo>,
    /// The allocation the master gave the resource.
    pub allocation_info: Option<v1::resource::AllocationInfo>,
}

/// A reservation made for one member, as offered back.
#[derive(Debug, Clone, PartialEq)]
pub struct MemberReservation {
    /// Persistence id the reservation was labelled with.
    pub persistence_id: String,
    /// Member the reservation was labelled with.
    pub member: String,
    /// Framework id the reservation was labelled with.
    pub framework_id: Option<String>,
    /// Every offered resource of the reservation (volume included), as offered.
    pub resources: Vec<v1::Resource>,
    /// Reserved cpus.
    pub cpus: f64,
    /// Reserved memory, MiB.
    pub mem: f64,
    /// Whether the volume exists (a disk resource with the persistence id).
    pub has_volume: bool,
}

impl OfferSummary {
    /// Reads an offer; resources reserved for `role` count as usable, except those
    /// labelled for a member, which are kept apart.
    pub fn from_offer(offer: &v1::Offer, role: &str) -> Self {
        #[allow(deprecated)] // `role` is how pre-refinement resources say whose they are.
        let refinement = offer.resources.iter().all(|r| r.role.is_none());
        let mut summary = OfferSummary {
            offer_id: offer.id.value.clone(),
            agent_id: offer.agent_id.value.clone(),
            hostname: offer.hostname.clone(),
            cpus: 0.0,
            mem: 0.0,
            disk: 0.0,
            ports: Vec::new(),
            facts: AgentFacts::from_offer(offer),
            slices: Vec::new(),
            member_reservations: BTreeMap::new(),
            refinement,
        };
        for resource in &offer.resources {
            if resource.revocable.is_some() || resource.shared.is_some() {
                continue;
            }
            let Some(owner) = reserved_role(resource) else {
                summary.add_to_slice(resource, true);
                continue;
            };
            if owner != role {
                continue;
            }
            let labels = reservation_labels(resource);
            // A volume is known by its labels or, where a master drops reservation
            // labels, by the persistence id on the disk itself.
            let volume_id = resource
                .disk
                .as_ref()
                .and_then(|d| d.persistence.as_ref())
                .map(|p| p.id.as_str());
            let persistence = label(labels, PERSISTENCE_LABEL).or(volume_id);
            match persistence {
                Some(persistence_id) => {
                    let member = label(labels, MEMBER_LABEL)
                        .or_else(|| member_of_persistence_id(persistence_id))
                        .unwrap_or_default();
                    let entry = summary
                        .member_reservations
                        .entry(persistence_id.to_string())
                        .or_insert_with(|| MemberReservation {
                            persistence_id: persistence_id.to_string(),
                            member: member.to_string(),
                            framework_id: label(labels, FRAMEWORK_ID_LABEL).map(String::from),
                            resources: Vec::new(),
                            cpus: 0.0,
                            mem: 0.0,
                            has_volume: false,
                        });
                    let scalar = resource.scalar.as_ref().map(|s| s.value).unwrap_or(0.0);
                    match resource.name.as_str() {
                        "cpus" => entry.cpus += scalar,
                        "mem" => entry.mem += scalar,
                        "disk" if volume_id == Some(persistence_id) => entry.has_volume = true,
                        _ => {}
                    }
                    entry.resources.push(resource.clone());
                }
                // Reserved for our role by someone else (statically or by an
                // operator): usable, but never a volume of ours.
                None if resource.disk.is_none() => summary.add_to_slice(resource, false),
                None => {}
            }
        }
        // Role-reserved resources are used before unreserved ones.
        summary.slices.sort_by_key(|s| s.unreserved);
        summary.refresh_totals();
        summary
    }

    fn add_to_slice(&mut self, resource: &v1::Resource, unreserved: bool) {
        if resource.disk.is_some() && resource.name == "disk" && !unreserved {
            return;
        }
        #[allow(deprecated)]
        let template = Template {
            role: resource.role.clone(),
            reservation: resource.reservation.clone(),
            reservations: resource.reservations.clone(),
            allocation_info: resource.allocation_info.clone(),
        };
        let index = match self.slices.iter().position(|s| *s.template == template) {
            Some(index) => index,
            None => {
                self.slices.push(Slice {
                    template: Arc::new(template),
                    unreserved,
                    cpus: 0.0,
                    mem: 0.0,
                    disk: 0.0,
                    ports: Vec::new(),
                });
                self.slices.len() - 1
            }
        };
        let slice = &mut self.slices[index];
        let scalar = resource.scalar.as_ref().map(|s| s.value).unwrap_or(0.0);
        match resource.name.as_str() {
            "cpus" => slice.cpus += scalar,
            "mem" => slice.mem += scalar,
            // Disk with a source (mount, path) or a volume is not plain disk.
            "disk" if resource.disk.is_none() => slice.disk += scalar,
            "ports" => {
                if let Some(ranges) = &resource.ranges {
                    slice.ports.extend(
                        ranges
                            .range
                            .iter()
                            .filter(|r| r.begin <= r.end && r.begin > 0)
                            .map(|r| (r.begin, r.end.min(u64::from(u16::MAX)))),
                    );
                }
            }
            _ => {}
        }
    }

    fn refresh_totals(&mut self) {
        self.cpus = self.slices.iter().map(|s| s.cpus).sum();
        self.mem = self.slices.iter().map(|s| s.mem).sum();
        self.disk = self.slices.iter().map(|s| s.disk).sum();
        self.ports = self.slices.iter().flat_map(|s| s.ports.clone()).collect();
    }

    /// A plain offer of unreserved resources, for tests and benchmarks.
    pub fn unreserved(
        offer_id: &str,
        agent_id: &str,
        resources: Resources,
        ports: Vec<(u64, u64)>,
    ) -> Self {
        let facts = AgentFacts {
            agent_id: agent_id.to_string(),
            hostname: format!("{agent_id}.local"),
            attributes: BTreeMap::new(),
        };
        let mut summary = OfferSummary {
            offer_id: offer_id.to_string(),
            agent_id: agent_id.to_string(),
            hostname: facts.hostname.clone(),
            cpus: 0.0,
            mem: 0.0,
            disk: 0.0,
            ports: Vec::new(),
            facts,
            slices: vec![Slice {
                template: Arc::new(Template {
                    role: Some("*".to_string()),
                    ..Default::default()
                }),
                unreserved: true,
                cpus: resources.cpus,
                mem: resources.mem,
                disk: resources.disk,
                ports,
            }],
            member_reservations: BTreeMap::new(),
            refinement: false,
        };
        summary.refresh_totals();
        summary
    }
}

/// The member a persistence id was made for: `cache1-0.3` → `cache1-0`.
fn member_of_persistence_id(persistence_id: &str) -> Option<&str> {
    let (member, generation) = persistence_id.rsplit_once('.')?;
    generation.parse::<u32>().ok().map(|_| member)
}

/// The role a resource is reserved for, `None` when unreserved.
fn reserved_role(resource: &v1::Resource) -> Option<&str> {
    if let Some(last) = resource.reservations.last() {
        return Some(last.role.as_deref().unwrap_or("*"));
    }
    #[allow(deprecated)]
    match resource.role.as_deref() {
        None | Some("*") => None,
        Some(role) => Some(role),
    }
}

fn reservation_labels(resource: &v1::Resource) -> &[v1::Label] {
    resource
        .reservations
        .last()
        .or(resource.reservation.as_ref())
        .and_then(|r| r.labels.as_ref())
        .map(|l| l.labels.as_slice())
        .unwrap_or(&[])
}

fn label<'a>(labels: &'a [v1::Label], key: &str) -> Option<&'a str> {
    labels
        .iter()
        .find(|l| l.key == key)
        .and_then(|l| l.value.as_deref())
}

/// A member waiting for an offer.
#[derive(Debug, Clone, PartialEq)]
pub struct LaunchJob {
    /// Instance of the member.
    pub instance: String,
    /// Ordinal of the member.
    pub ordinal: u32,
    /// Task id of the incarnation to launch.
    pub task_id: String,
    /// Role the member starts in.
    pub role: Role,
    /// Resources of the member.
    pub resources: Resources,
    /// Whether the member may share an agent with another member of its instance
    /// when no other agent fits. The OfferManager allows it once no other agent is
    /// known, or once the member has waited long enough for one.
    pub colocate: bool,
    /// W3C `traceparent` of the span that queued the job, if spans are exported.
    pub trace_parent: Option<String>,
    /// The persistent volume the instance asks for each member, if any.
    pub volume: Option<VolumeSpec>,
    /// The member's volume once it has one: the member launches only on its agent.
    /// Boxed: rare, and jobs are copied often.
    pub bound: Option<Box<MemberVolume>>,
    /// The instance's placement rules.
    pub placement: PlacementSpec,
}

impl LaunchJob {
    /// The job launching `task`'s current incarnation, a member of an instance with
    /// `spec`: bound to its volume's agent if it has one.
    pub fn for_member(spec: &InstanceSpec, task: &TaskRecord) -> Self {
        LaunchJob {
            instance: task.instance.clone(),
            ordinal: task.ordinal,
            task_id: task.task_id.clone(),
            role: task.role,
            resources: spec.resources,
            colocate: false,
            trace_parent: task.trace_parent.clone(),
            volume: spec.volume.clone(),
            bound: task.volume.clone().map(Box::new),
            placement: spec.placement.clone(),
        }
    }

    /// Brings the job up to date with its member's record and instance spec, which
    /// may have changed since it was queued (a volume bound, rules changed).
    pub fn refresh(&mut self, spec: &InstanceSpec, task: &TaskRecord) {
        self.resources = spec.resources;
        self.volume = spec.volume.clone();
        self.placement = spec.placement.clone();
        self.bound = task.volume.clone().map(Box::new);
    }

    /// The agent the member must launch on, if bound.
    pub fn bound_agent(&self) -> Option<&str> {
        self.bound.as_ref().map(|v| v.agent_id.as_str())
    }
}

/// How reservations are made and what every task adds for its executor.
#[derive(Debug, Clone, PartialEq)]
pub struct MatchSettings {
    /// The framework's role: reservations are made for it.
    pub role: String,
    /// The framework's principal, if it has one; reservations and volumes carry it.
    pub principal: Option<String>,
    /// The framework's id, labelled on its reservations.
    pub framework_id: String,
    /// Resources of each task's executor, taken from the same offer.
    pub executor_overhead: Resources,
}

/// One job placed on one offer.
#[derive(Debug, Clone, PartialEq)]
pub struct Placement {
    /// The job placed.
    pub job: LaunchJob,
    /// Offer that pays for it.
    pub offer_id: String,
    /// Agent it will run on.
    pub agent_id: String,
    /// Host name of the agent.
    pub hostname: String,
    /// Port taken from the offer.
    pub port: u16,
    /// The task's resources that are the member's existing reservation and volume,
    /// as offered (volume to create included).
    pub reserved: Vec<v1::Resource>,
    /// The task's other resources (its port included), taken from the offer's pools.
    pub takes: Vec<Take>,
    /// The executor's resources, taken from the offer's pools.
    pub executor_takes: Vec<Take>,
    /// The reservation to make before the launch (first placement of a volume).
    /// Boxed, like the other rare parts: placements are moved often.
    pub new_reservation: Option<Box<NewReservation>>,
    /// A volume to CREATE on the member's existing reservation.
    pub create_on_reserved: Option<Box<v1::Resource>>,
    /// The member's volume binding after this launch, to persist before the
    /// ACCEPT; `None` when the member has no volume.
    pub volume: Option<Box<MemberVolume>>,
}

/// An amount taken from one slice of an offer: kept compact during matching and
/// turned into a Mesos resource only when the launch is built.
#[derive(Debug, Clone, PartialEq)]
pub struct Take {
    /// `cpus`, `mem`, `disk` or `ports`.
    pub name: &'static str,
    /// The scalar taken (unused for `ports`).
    pub scalar: f64,
    /// The port taken (for `ports`).
    pub port: u64,
    /// The reservation and allocation of the slice it came from.
    pub template: Arc<Template>,
}

impl Take {
    /// The Mesos resource taken.
    pub fn resource(&self) -> v1::Resource {
        if self.name == "ports" {
            v1::Resource {
                name: "ports".to_string(),
                r#type: v1::value::Type::Ranges as i32,
                ranges: Some(v1::value::Ranges {
                    range: vec![v1::value::Range {
                        begin: self.port,
                        end: self.port,
                    }],
                }),
                ..self.template.apply()
            }
        } else {
            scalar_resource(self.name, self.scalar, &self.template)
        }
    }
}

/// A reservation to make for a member: unreserved cpus, mem and disk taken from the
/// offer, reserved for the role with the member's labels, with its volume on the
/// disk.
#[derive(Debug, Clone, PartialEq)]
pub struct NewReservation {
    /// The unreserved resources to reserve.
    pub takes: Vec<Take>,
    /// Member name, labelled on the reservation.
    pub member: String,
    /// Framework id, labelled on the reservation.
    pub framework_id: String,
    /// Whether to write the reservation-refinement format.
    pub refinement: bool,
}

impl NewReservation {
    /// The resources to RESERVE, each carrying the member's reservation.
    pub fn resources(&self, binding: &MemberVolume) -> Vec<v1::Resource> {
        let reservation =
            reservation_info(binding, &self.member, &self.framework_id, self.refinement);
        self.takes
            .iter()
            .map(|take| {
                reserved_resource(
                    take.resource(),
                    &reservation,
                    &binding.role,
                    self.refinement,
                )
            })
            .collect()
    }

    /// The volume to CREATE on the reserved disk.
    pub fn volume(&self, binding: &MemberVolume) -> Option<v1::Resource> {
        let disk = self
            .resources(binding)
            .into_iter()
            .find(|r| r.name == "disk")?;
        Some(with_volume(disk, binding))
    }
}

impl Placement {
    /// The task's resources (reservations and volume included), as the LAUNCH must
    /// name them.
    pub fn task_resources(&self) -> Vec<v1::Resource> {
        let mut resources = self.reserved.clone();
        if let (Some(new), Some(binding)) = (&self.new_reservation, &self.volume) {
            let reserved = new.resources(binding);
            let disk = reserved.iter().find(|r| r.name == "disk").cloned();
            resources.extend(reserved.into_iter().filter(|r| r.name != "disk"));
            resources.extend(disk.map(|disk| with_volume(disk, binding)));
        }
        resources.extend(self.takes.iter().map(Take::resource));
        resources
    }

    /// Resources to RESERVE before the launch (first placement of a volume).
    pub fn reserve(&self) -> Vec<v1::Resource> {
        match (&self.new_reservation, &self.volume) {
            (Some(new), Some(binding)) => new.resources(binding),
            _ => Vec::new(),
        }
    }

    /// Volumes to CREATE before the launch.
    pub fn create(&self) -> Vec<v1::Resource> {
        match (&self.new_reservation, &self.volume) {
            (Some(new), Some(binding)) => new.volume(binding).into_iter().collect(),
            _ => self
                .create_on_reserved
                .iter()
                .map(|volume| volume.as_ref().clone())
                .collect(),
        }
    }

    /// The executor's resources.
    pub fn executor_resources(&self) -> Vec<v1::Resource> {
        self.executor_takes.iter().map(Take::resource).collect()
    }

    /// The operations of this placement before its LAUNCH, in order.
    pub fn operations(&self) -> Vec<v1::offer::Operation> {
        let mut operations = Vec::new();
        let reserve = self.reserve();
        if !reserve.is_empty() {
            operations.push(crate::mesos::calls::reserve(reserve));
        }
        let create = self.create();
        if !create.is_empty() {
            operations.push(crate::mesos::calls::create(create));
        }
        operations
    }
}

/// Outcome of one matching round.
#[derive(Debug, Default, Clone, PartialEq)]
pub struct MatchOutcome {
    /// Placements, grouped by offer in offer order.
    pub placements: Vec<Placement>,
    /// Offers used by no placement, to decline.
    pub unused_offers: Vec<String>,
    /// Task ids of jobs no offer could take, with the reason.
    pub unplaced: Vec<(String, String)>,
}

/// Remaining capacity of an offer during matching.
#[derive(Debug, Clone)]
struct Remaining {
    slices: Vec<Slice>,
    /// Member reservations not yet used this round.
    members: BTreeMap<String, MemberReservation>,
    /// Totals of what any job may use, kept in step with `slices`.
    cpus: f64,
    mem: f64,
    disk: f64,
    has_port: bool,
    used: bool,
}

impl Remaining {
    fn new(offer: &OfferSummary) -> Self {
        let mut remaining = Remaining {
            slices: offer.slices.clone(),
            members: offer.member_reservations.clone(),
            cpus: 0.0,
            mem: 0.0,
            disk: 0.0,
            has_port: false,
            used: false,
        };
        remaining.refresh();
        remaining
    }

    fn refresh(&mut self) {
        self.cpus = self.slices.iter().map(|s| s.cpus).sum();
        self.mem = self.slices.iter().map(|s| s.mem).sum();
        self.disk = self.slices.iter().map(|s| s.disk).sum();
        self.has_port = self.slices.iter().any(|s| !s.ports.is_empty());
    }

    /// Whether the pool any job may use covers `need` and a port.
    fn fits(&self, need: &Resources) -> bool {
        self.has_port
            && self.cpus + EPSILON >= need.cpus
            && self.mem + EPSILON >= need.mem
            && self.disk + EPSILON >= need.disk
    }

    /// Takes `amount` of scalar `name` from the slices `allowed` admits into `out`;
    /// `None` if short (the slices are then partly taken: callers that may fail work
    /// on a copy).
    fn take_into(
        &mut self,
        name: &'static str,
        amount: f64,
        allowed: impl Fn(&Slice) -> bool,
        out: &mut Vec<Take>,
    ) -> Option<()> {
        let mut left = round(amount);
        for slice in self.slices.iter_mut().filter(|s| allowed(s)) {
            if left <= EPSILON {
                break;
            }
            let available = match name {
                "cpus" => &mut slice.cpus,
                "mem" => &mut slice.mem,
                _ => &mut slice.disk,
            };
            let part = round(left.min(*available));
            if part <= EPSILON {
                continue;
            }
            *available = round(*available - part);
            left = round(left - part);
            out.push(Take {
                name,
                scalar: part,
                port: 0,
                template: slice.template.clone(),
            });
        }
        (left <= EPSILON).then_some(())
    }

    fn take_port(&mut self) -> Option<(u16, Take)> {
        for slice in &mut self.slices {
            let Some(&(begin, end)) = slice.ports.first() else {
                continue;
            };
            let port = u16::try_from(begin).ok()?;
            if begin >= end {
                slice.ports.remove(0);
            } else {
                slice.ports[0] = (begin + 1, end);
            }
            let take = Take {
                name: "ports",
                scalar: 0.0,
                port: begin,
                template: slice.template.clone(),
            };
            return Some((port, take));
        }
        None
    }
}

impl Template {
    fn apply(&self) -> v1::Resource {
        #[allow(deprecated)]
        v1::Resource {
            role: self.role.clone(),
            reservation: self.reservation.clone(),
            reservations: self.reservations.clone(),
            allocation_info: self.allocation_info.clone(),
            ..Default::default()
        }
    }
}

fn scalar_resource(name: &str, value: f64, template: &Template) -> v1::Resource {
    v1::Resource {
        name: name.to_string(),
        r#type: v1::value::Type::Scalar as i32,
        scalar: Some(v1::value::Scalar { value }),
        ..template.apply()
    }
}

/// Rounds to Mesos's three decimals.
fn round(value: f64) -> f64 {
    (value * 1000.0).round() / 1000.0
}

/// Why one job was not placed on one offer, most specific last.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
enum Refusal {
    Resources,
    Spread,
    Rule(String),
}

/// Places `jobs` on `offers`.
///
/// `peers` maps an instance to the agents already running (or about to run) one of
/// its members, one entry per member, with what is known of them.
pub fn match_offers(
    offers: &[OfferSummary],
    jobs: &[LaunchJob],
    peers: &BTreeMap<String, Vec<AgentFacts>>,
    settings: &MatchSettings,
) -> MatchOutcome {
    let mut remaining: Vec<Remaining> = offers.iter().map(Remaining::new).collect();
    let known: Vec<&AgentFacts> = offers.iter().map(|o| &o.facts).collect();
    // Rules compiled once per distinct spec: instances usually share a few.
    let mut compiled: Vec<(&PlacementSpec, Result<PlacementRules, String>)> = Vec::new();
    // Members placed in this round, by instance, as offer indices.
    let mut placed_here: BTreeMap<&str, Vec<usize>> = BTreeMap::new();
    // Placements by offer index: grouped by offer without sorting large values.
    let mut by_offer: Vec<Vec<Placement>> = offers.iter().map(|_| Vec::new()).collect();
    let mut placed = 0;
    // Where the search for the next job's offer starts: at the offer that took the
    // previous job until it has taken another `OFFER_STEP`, then just past it, so
    // that a round's launches spread over its offers (no ACCEPT carrying thousands
    // of launches) without an ACCEPT per launch.
    let mut cursor = 0;
    let round = RoundView {
        offers,
        known: &known,
        settings,
    };
    let mut outcome = MatchOutcome::default();
    for job in jobs {
        let rules_index = match compiled
            .iter()
            .position(|(spec, _)| **spec == job.placement)
        {
            Some(index) => index,
            None => {
                compiled.push((&job.placement, PlacementRules::compile(&job.placement)));
                compiled.len() - 1
            }
        };
        let rules = match &compiled[rules_index].1 {
            Ok(rules) => rules,
            Err(reason) => {
                outcome
                    .unplaced
                    .push((job.task_id.clone(), format!("invalid placement: {reason}")));
                continue;
            }
        };
        let mut job_peers: Vec<&AgentFacts> = peers
            .get(&job.instance)
            .map(|p| p.iter().collect())
            .unwrap_or_default();
        if let Some(here) = placed_here.get(job.instance.as_str()) {
            job_peers.extend(here.iter().map(|&index| &offers[index].facts));
        }
        match place_one(&round, &mut remaining, job, rules, &job_peers, cursor) {
            Ok((index, placement)) => {
                cursor = if (by_offer[index].len() + 1) % OFFER_STEP == 0 {
                    index + 1
                } else {
                    index
                };
                placed_here
                    .entry(job.instance.as_str())
                    .or_default()
                    .push(index);
                by_offer[index].push(placement);
                placed += 1;
            }
            Err(reason) => outcome.unplaced.push((job.task_id.clone(), reason)),
        }
    }
    // Grouped by offer in offer order, in queue order within an offer.
    outcome.placements.reserve_exact(placed);
    for placements in by_offer {
        outcome.placements.extend(placements);
    }
    outcome.unused_offers = offers
        .iter()
        .zip(&remaining)
        .filter(|(_, r)| !r.used)
        .map(|(o, _)| o.offer_id.clone())
        .collect();
    outcome
}

/// Jobs one offer takes in a row before the next job's search starts at the offer
/// after it.
pub const OFFER_STEP: usize = 64;

/// What every job of a round is matched against.
#[derive(Clone, Copy)]
struct RoundView<'a> {
    offers: &'a [OfferSummary],
    /// The facts of every offer's agent, in offer order.
    known: &'a [&'a AgentFacts],
    settings: &'a MatchSettings,
}

fn place_one(
    round: &RoundView<'_>,
    remaining: &mut [Remaining],
    job: &LaunchJob,
    rules: &PlacementRules,
    peers: &[&AgentFacts],
    start: usize,
) -> Result<(usize, Placement), String> {
    let RoundView {
        offers,
        known,
        settings,
    } = *round;
    let overhead = settings.executor_overhead;
    // What the general pool must hold for this job.
    let need = match (&job.bound, &job.volume) {
        (Some(_), _) => Resources {
            cpus: overhead.cpus,
            mem: overhead.mem,
            disk: job.resources.disk + overhead.disk,
        },
        (None, Some(volume)) => Resources {
            cpus: job.resources.cpus + overhead.cpus,
            mem: job.resources.mem + overhead.mem,
            disk: job.resources.disk + overhead.disk + volume.size_mb,
        },
        (None, None) => Resources {
            cpus: job.resources.cpus + overhead.cpus,
            mem: job.resources.mem + overhead.mem,
            disk: job.resources.disk + overhead.disk,
        },
    };
    let busy = |agent: &str| peers.iter().any(|p| p.agent_id == agent);
    let mut best_refusal: Option<Refusal> = None;
    let mut refuse = |refusal: Refusal| {
        if best_refusal.as_ref().is_none_or(|r| refusal > *r) {
            best_refusal = Some(refusal);
        }
    };
    // The first offer from `start` on (wrapping around) that fits on an agent without
    // another member of the instance is taken; offers on such agents are kept for
    // when the job may share one.
    let mut shared: Vec<usize> = Vec::new();
    let try_take = |index: usize, remaining: &mut [Remaining]| {
        if job.bound.is_none() && job.volume.is_none() {
            // Everything comes from the pools `fits` summed: the take cannot fail.
            let placement = take(&mut remaining[index], &offers[index], job, settings)?;
            remaining[index].used = true;
            return Some((index, placement));
        }
        // Work on a copy so that a take failing half-way changes nothing.
        let mut trial = remaining[index].clone();
        let placement = take(&mut trial, &offers[index], job, settings)?;
        trial.used = true;
        remaining[index] = trial;
        Some((index, placement))
    };
    let start = if offers.is_empty() {
        0
    } else {
        start % offers.len()
    };
    let order = (start..offers.len()).chain(0..start);
    for (index, offer) in order.map(|index| (index, &offers[index])) {
        if let Some(agent) = job.bound_agent() {
            if offer.agent_id != agent {
                continue;
            }
        }
        if !remaining[index].fits(&need) {
            refuse(Refusal::Resources);
            continue;
        }
        // A bound member's agent was chosen under the rules at its first placement.
        if !rules.is_empty() && job.bound.is_none() {
            if let Err(reason) = rules.check(&offer.facts, peers, known) {
                refuse(Refusal::Rule(reason));
                continue;
            }
        }
        // A bound member has exactly one agent; spreading does not apply.
        if job.bound.is_none() && busy(&offer.agent_id) {
            refuse(Refusal::Spread);
            shared.push(index);
            continue;
        }
        match try_take(index, remaining) {
            Some(placement) => return Ok(placement),
            None => refuse(Refusal::Resources),
        }
    }
    if job.colocate {
        for index in shared {
            if let Some(placement) = try_take(index, remaining) {
                return Ok(placement);
            }
        }
    }
    Err(match best_refusal {
        Some(Refusal::Rule(reason)) => reason,
        Some(Refusal::Spread) => {
            "waiting for an offer from an agent without another member of the instance".to_string()
        }
        _ => match job.bound_agent() {
            Some(agent) if !offers.iter().any(|o| o.agent_id == agent) => {
                format!("waiting for an offer from agent {agent}, which holds the member's volume")
            }
            _ => unplaced_reason(offers, &need),
        },
    })
}

/// Takes everything `job` needs from `remaining`.
fn take(
    remaining: &mut Remaining,
    offer: &OfferSummary,
    job: &LaunchJob,
    settings: &MatchSettings,
) -> Option<Placement> {
    let overhead = settings.executor_overhead;
    let any = |_: &Slice| true;
    let mut reserved = Vec::new();
    let mut takes = Vec::with_capacity(4);
    let mut new_reservation = None;
    let mut create_on_reserved = None;
    let mut volume_binding = None;
    match (&job.bound, &job.volume) {
        (Some(bound), _) => {
            match remaining.members.remove(&bound.persistence_id) {
                Some(reservation) => {
                    // cpus and mem: the reserved ones, topped up from the pool.
                    reserved.extend(
                        reservation
                            .resources
                            .iter()
                            .filter(|r| r.name == "cpus" || r.name == "mem")
                            .cloned(),
                    );
                    let cpus_short = round(job.resources.cpus - reservation.cpus);
                    let mem_short = round(job.resources.mem - reservation.mem);
                    if cpus_short > EPSILON {
                        remaining.take_into("cpus", cpus_short, any, &mut takes)?;
                    }
                    if mem_short > EPSILON {
                        remaining.take_into("mem", mem_short, any, &mut takes)?;
                    }
                    let volume = volume_resource(bound, &reservation, offer, settings);
                    if !reservation.has_volume {
                        create_on_reserved = Some(Box::new(volume.clone()));
                    }
                    reserved.push(volume);
                }
                None => {
                    // Neither reservation nor volume is offered on the bound agent:
                    // the RESERVE never happened (or was lost). Make it again.
                    new_reservation = Some(Box::new(reserve_for(
                        remaining, offer, job, bound, settings,
                    )?));
                }
            }
            volume_binding = Some(bound.clone());
        }
        (None, Some(spec)) => {
            let binding = MemberVolume {
                agent_id: offer.agent_id.clone(),
                hostname: Some(offer.hostname.clone()),
                persistence_id: job.task_id.clone(),
                role: settings.role.clone(),
                principal: settings.principal.clone(),
                size_mb: spec.size_mb,
                container_path: spec.container_path.clone(),
                reserved: Resources {
                    cpus: job.resources.cpus,
                    mem: job.resources.mem,
                    disk: spec.size_mb,
                },
            };
            new_reservation = Some(Box::new(reserve_for(
                remaining, offer, job, &binding, settings,
            )?));
            volume_binding = Some(Box::new(binding));
        }
        (None, None) => {
            remaining.take_into("cpus", job.resources.cpus, any, &mut takes)?;
            remaining.take_into("mem", job.resources.mem, any, &mut takes)?;
        }
    }
    if job.resources.disk > EPSILON {
        remaining.take_into("disk", job.resources.disk, any, &mut takes)?;
    }
    let (port, port_take) = remaining.take_port()?;
    takes.push(port_take);
    let mut executor_takes = Vec::with_capacity(2);
    for (name, amount) in [
        ("cpus", overhead.cpus),
        ("mem", overhead.mem),
        ("disk", overhead.disk),
    ] {
        if amount > EPSILON {
            remaining.take_into(name, amount, any, &mut executor_takes)?;
        }
    }
    remaining.refresh();
    Some(Placement {
        job: job.clone(),
        offer_id: offer.offer_id.clone(),
        agent_id: offer.agent_id.clone(),
        hostname: offer.hostname.clone(),
        port,
        reserved,
        takes,
        executor_takes,
        new_reservation,
        create_on_reserved,
        volume: volume_binding,
    })
}

/// Takes the member's cpus, mem and volume disk from unreserved resources, to be
/// reserved for it.
fn reserve_for(
    remaining: &mut Remaining,
    offer: &OfferSummary,
    job: &LaunchJob,
    binding: &MemberVolume,
    settings: &MatchSettings,
) -> Option<NewReservation> {
    let unreserved = |s: &Slice| s.unreserved;
    let mut takes = Vec::with_capacity(3);
    remaining.take_into("cpus", job.resources.cpus, unreserved, &mut takes)?;
    remaining.take_into("mem", job.resources.mem, unreserved, &mut takes)?;
    remaining.take_into("disk", binding.size_mb, unreserved, &mut takes)?;
    Some(NewReservation {
        takes,
        member: member_name(&job.instance, job.ordinal),
        framework_id: settings.framework_id.clone(),
        refinement: offer.refinement,
    })
}

/// The reservation a member's resources carry, labelled with the member and the
/// persistence id so that they are recognized when offered back.
fn reservation_info(
    binding: &MemberVolume,
    member: &str,
    framework_id: &str,
    refinement: bool,
) -> v1::resource::ReservationInfo {
    let principal = binding.principal.clone();
    let label = |key: &str, value: &str| v1::Label {
        key: key.to_string(),
        value: Some(value.to_string()),
    };
    v1::resource::ReservationInfo {
        r#type: refinement.then_some(v1::resource::reservation_info::Type::Dynamic as i32),
        role: refinement.then(|| binding.role.clone()),
        principal,
        labels: Some(v1::Labels {
            labels: vec![
                label(FRAMEWORK_ID_LABEL, framework_id),
                label(MEMBER_LABEL, member),
                label(PERSISTENCE_LABEL, &binding.persistence_id),
            ],
        }),
    }
}

fn reserved_resource(
    mut resource: v1::Resource,
    reservation: &v1::resource::ReservationInfo,
    role: &str,
    refinement: bool,
) -> v1::Resource {
    #[allow(deprecated)]
    if refinement {
        resource.role = None;
        resource.reservation = None;
        resource.reservations = vec![reservation.clone()];
    } else {
        resource.role = Some(role.to_string());
        resource.reservation = Some(reservation.clone());
        resource.reservations = Vec::new();
    }
    resource
}

/// `disk` (reserved) with the member's persistent volume on it.
fn with_volume(mut disk: v1::Resource, binding: &MemberVolume) -> v1::Resource {
    disk.disk = Some(v1::resource::DiskInfo {
        persistence: Some(v1::resource::disk_info::Persistence {
            id: binding.persistence_id.clone(),
            principal: binding.principal.clone(),
        }),
        volume: Some(v1::Volume {
            mode: v1::volume::Mode::Rw as i32,
            container_path: binding.container_path.clone(),
            ..Default::default()
        }),
        source: None,
    });
    disk
}

/// The volume resource of an offered member reservation: the offered one if it
/// exists, otherwise the reserved disk with the volume to create on it.
fn volume_resource(
    bound: &MemberVolume,
    reservation: &MemberReservation,
    offer: &OfferSummary,
    settings: &MatchSettings,
) -> v1::Resource {
    let disk = reservation.resources.iter().find(|r| r.name == "disk");
    match disk {
        Some(disk) if reservation.has_volume => disk.clone(),
        Some(disk) => with_volume(disk.clone(), bound),
        // Reserved cpus and mem without disk: build the disk from the binding.
        None => {
            let template = Template {
                allocation_info: reservation
                    .resources
                    .first()
                    .and_then(|r| r.allocation_info.clone()),
                ..Default::default()
            };
            let disk = scalar_resource("disk", bound.size_mb, &template);
            let framework_id = reservation
                .framework_id
                .as_deref()
                .unwrap_or(&settings.framework_id);
            let info = reservation_info(bound, &reservation.member, framework_id, offer.refinement);
            with_volume(
                reserved_resource(disk, &info, &bound.role, offer.refinement),
                bound,
            )
        }
    }
}

/// A member reservation to give back: DESTROY its volume, then UNRESERVE it all.
#[derive(Debug, Clone, PartialEq)]
pub struct Release {
    /// Offer carrying the reservation.
    pub offer_id: String,
    /// Persistence id of the reservation.
    pub persistence_id: String,
    /// Volumes to DESTROY.
    pub destroy: Vec<v1::Resource>,
    /// Reserved resources to UNRESERVE (the volume's disk without its volume).
    pub unreserve: Vec<v1::Resource>,
}

impl Release {
    /// The operations of this release, in order.
    pub fn operations(&self) -> Vec<v1::offer::Operation> {
        let mut operations = Vec::new();
        if !self.destroy.is_empty() {
            operations.push(crate::mesos::calls::destroy(self.destroy.clone()));
        }
        if !self.unreserve.is_empty() {
            operations.push(crate::mesos::calls::unreserve(self.unreserve.clone()));
        }
        operations
    }
}

/// The member reservations of framework `framework_id` in `offers` that `wanted`
/// (given a persistence id and the member name) does not claim.
///
/// A volume offered without labels (a master that drops reservation labels) is
/// taken for ours only when `known` (given the member name) says its instance is
/// one of ours.
pub fn releases(
    offers: &[OfferSummary],
    framework_id: &str,
    wanted: impl Fn(&str, &str) -> bool,
    known: impl Fn(&str) -> bool,
) -> Vec<Release> {
    let mut releases = Vec::new();
    for offer in offers {
        for reservation in offer.member_reservations.values() {
            let ours = match reservation.framework_id.as_deref() {
                Some(id) => id == framework_id,
                None => known(&reservation.member),
            };
            if !ours || wanted(&reservation.persistence_id, &reservation.member) {
                continue;
            }
            let mut destroy = Vec::new();
            let mut unreserve = Vec::new();
            for resource in &reservation.resources {
                if resource
                    .disk
                    .as_ref()
                    .is_some_and(|d| d.persistence.is_some())
                {
                    destroy.push(resource.clone());
                    let mut bare = resource.clone();
                    bare.disk = None;
                    unreserve.push(bare);
                } else {
                    unreserve.push(resource.clone());
                }
            }
            releases.push(Release {
                offer_id: offer.offer_id.clone(),
                persistence_id: reservation.persistence_id.clone(),
                destroy,
                unreserve,
            });
        }
    }
    releases
}

/// Names the first resource that no offer had enough of.
fn unplaced_reason(offers: &[OfferSummary], need: &Resources) -> String {
    if offers.is_empty() {
        return "no offers".to_string();
    }
    let max = |f: fn(&OfferSummary) -> f64| offers.iter().map(f).fold(0.0, f64::max);
    if max(|o| o.cpus) + EPSILON < need.cpus {
        format!("no agent with {} cpus", need.cpus)
    } else if max(|o| o.mem) + EPSILON < need.mem {
        format!("no agent with {} MiB of memory", need.mem)
    } else if max(|o| o.disk) + EPSILON < need.disk {
        format!("no agent with {} MiB of disk", need.disk)
    } else if offers.iter().all(|o| o.ports.is_empty()) {
        "no agent with a free port".to_string()
    } else {
        "no single offer with enough cpus, memory, disk and a port".to_string()
    }
}

#[cfg(test)]
mod tests;
