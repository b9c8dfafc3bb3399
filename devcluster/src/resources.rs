//! Resource accounting: the cpus, mem, disk scalars and `ports` ranges of an agent.
//!
//! A [`ResourceSet`] keeps them by pool: unreserved, dynamically reserved to a role
//! (either reservation format on input), and persistent volumes.
//!
//! Scalars are fixed-point with three decimal digits, as Mesos rounds them, so sums
//! and differences never drift. Ports are kept as sorted, disjoint, merged ranges.

use std::collections::BTreeMap;

use mesos_stateful_proto::v1::{self, resource, value, Resource};

/// A scalar quantity in thousandths (Mesos's fixed-point resolution).
pub type Milli = i64;

/// Converts a Mesos double to thousandths, rounding like Mesos does.
pub fn to_milli(value: f64) -> Milli {
    (value * 1000.0).round() as Milli
}

/// Converts thousandths back to the double Mesos puts on the wire.
pub fn from_milli(value: Milli) -> f64 {
    value as f64 / 1000.0
}

/// Sorted, disjoint, non-adjacent inclusive ranges of `u64` (the ports resource).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Ranges(Vec<(u64, u64)>);

impl Ranges {
    /// Normalizes arbitrary inclusive ranges (overlapping, unsorted, reversed are dropped).
    pub fn new(ranges: impl IntoIterator<Item = (u64, u64)>) -> Ranges {
        let mut out = Ranges::default();
        for (begin, end) in ranges {
            out.add_range(begin, end);
        }
        out
    }

    /// The ranges in ascending order.
    pub fn ranges(&self) -> &[(u64, u64)] {
        &self.0
    }

    /// Whether no value is in the set.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    fn add_range(&mut self, begin: u64, end: u64) {
        if begin > end {
            return;
        }
        let mut merged = (begin, end);
        let mut out = Vec::with_capacity(self.0.len() + 1);
        for &(b, e) in &self.0 {
            // Overlapping or adjacent ranges merge into one.
            if e.saturating_add(1) < merged.0 || merged.1.saturating_add(1) < b {
                out.push((b, e));
            } else {
                merged = (merged.0.min(b), merged.1.max(e));
            }
        }
        out.push(merged);
        out.sort_unstable();
        self.0 = out;
    }

    fn remove_range(&mut self, begin: u64, end: u64) {
        let mut out = Vec::with_capacity(self.0.len() + 1);
        for &(b, e) in &self.0 {
            if e < begin || b > end {
                out.push((b, e));
                continue;
            }
            if b < begin {
                out.push((b, begin - 1));
            }
            if e > end {
                out.push((end + 1, e));
            }
        }
        self.0 = out;
    }

    /// Adds every value of `other`.
    pub fn add(&mut self, other: &Ranges) {
        for &(b, e) in &other.0 {
            self.add_range(b, e);
        }
    }

    /// Removes every value of `other` (values not present are ignored).
    pub fn subtract(&mut self, other: &Ranges) {
        for &(b, e) in &other.0 {
            self.remove_range(b, e);
        }
    }

    /// Whether every value of `other` is in `self`.
    pub fn contains(&self, other: &Ranges) -> bool {
        other
            .0
            .iter()
            .all(|&(ob, oe)| self.0.iter().any(|&(b, e)| b <= ob && oe <= e))
    }
}

/// Flat quantities of the resources devcluster knows: three scalars and the ports
/// ranges, all of one pool (unreserved, or reserved to one role).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Quantities {
    /// CPUs in thousandths.
    pub cpus: Milli,
    /// Memory in thousandths of a MB.
    pub mem: Milli,
    /// Disk in thousandths of a MB.
    pub disk: Milli,
    /// Port ranges.
    pub ports: Ranges,
}

impl Quantities {
    /// Builds quantities from plain values.
    pub fn new(cpus: f64, mem: f64, disk: f64, ports: Ranges) -> Quantities {
        Quantities {
            cpus: to_milli(cpus),
            mem: to_milli(mem),
            disk: to_milli(disk),
            ports,
        }
    }

    /// Adds one Mesos resource's value. Names other than cpus, mem, disk and ports,
    /// or a value of the wrong type, are an error.
    fn add_resource(&mut self, resource: &Resource) -> Result<(), String> {
        let name = resource.name.as_str();
        match name {
            "cpus" | "mem" | "disk" => {
                let milli = scalar_milli(resource)?;
                match name {
                    "cpus" => self.cpus += milli,
                    "mem" => self.mem += milli,
                    _ => self.disk += milli,
                }
            }
            "ports" => {
                let ranges = resource
                    .ranges
                    .as_ref()
                    .filter(|_| resource.r#type == value::Type::Ranges as i32)
                    .ok_or_else(|| "resource ports is not a ranges value".to_string())?;
                for range in &ranges.range {
                    if range.begin > range.end {
                        return Err(format!(
                            "ports range {}-{} is reversed",
                            range.begin, range.end
                        ));
                    }
                    self.ports.add_range(range.begin, range.end);
                }
            }
            other => return Err(format!("resource {other} is not offered by devcluster")),
        }
        Ok(())
    }

    /// The quantities as Mesos resources, each completed by `decorate` (role,
    /// reservation, allocation info).
    fn to_resources(&self, decorate: &dyn Fn(Resource) -> Resource) -> Vec<Resource> {
        let mut out = Vec::new();
        for (name, milli) in [("cpus", self.cpus), ("mem", self.mem), ("disk", self.disk)] {
            if milli > 0 {
                out.push(decorate(scalar_resource(name, milli)));
            }
        }
        if !self.ports.is_empty() {
            out.push(decorate(Resource {
                name: "ports".to_string(),
                r#type: value::Type::Ranges as i32,
                ranges: Some(value::Ranges {
                    range: self
                        .ports
                        .ranges()
                        .iter()
                        .map(|&(begin, end)| value::Range { begin, end })
                        .collect(),
                }),
                ..Default::default()
            }));
        }
        out
    }

    /// Whether nothing at all is in the set.
    pub fn is_empty(&self) -> bool {
        self.cpus <= 0 && self.mem <= 0 && self.disk <= 0 && self.ports.is_empty()
    }

    /// Adds `other` to `self`.
    pub fn add(&mut self, other: &Quantities) {
        self.cpus += other.cpus;
        self.mem += other.mem;
        self.disk += other.disk;
        self.ports.add(&other.ports);
    }

    /// Removes `other` from `self`, clamping scalars at zero.
    pub fn subtract(&mut self, other: &Quantities) {
        self.cpus = (self.cpus - other.cpus).max(0);
        self.mem = (self.mem - other.mem).max(0);
        self.disk = (self.disk - other.disk).max(0);
        self.ports.subtract(&other.ports);
    }

    /// Whether every resource of `other` is within `self`.
    pub fn contains(&self, other: &Quantities) -> bool {
        self.cpus >= other.cpus
            && self.mem >= other.mem
            && self.disk >= other.disk
            && self.ports.contains(&other.ports)
    }
}

fn scalar_milli(resource: &Resource) -> Result<Milli, String> {
    let name = &resource.name;
    let scalar = resource
        .scalar
        .filter(|_| resource.r#type == value::Type::Scalar as i32)
        .ok_or_else(|| format!("resource {name} is not a scalar"))?;
    if !scalar.value.is_finite() || scalar.value < 0.0 {
        return Err(format!(
            "resource {name} has invalid value {}",
            scalar.value
        ));
    }
    Ok(to_milli(scalar.value))
}

fn scalar_resource(name: &str, milli: Milli) -> Resource {
    Resource {
        name: name.to_string(),
        r#type: value::Type::Scalar as i32,
        scalar: Some(value::Scalar {
            value: from_milli(milli),
        }),
        ..Default::default()
    }
}

/// A dynamic reservation: the role and the principal that reserved.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Reservation {
    /// The role the resources are reserved to.
    pub role: String,
    /// The principal of the RESERVE, if any.
    pub principal: Option<String>,
}

/// A persistent volume: reserved disk with a persistence ID and a container path.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Volume {
    /// The reservation of its disk.
    pub reservation: Reservation,
    /// `disk.persistence.id`, unique per role on an agent.
    pub id: String,
    /// `disk.persistence.principal`.
    pub principal: Option<String>,
    /// `disk.volume.container_path`, relative to the sandbox.
    pub container_path: String,
    /// Its size, in thousandths of a MB.
    pub disk: Milli,
}

/// The format of reserved resources a framework reads and writes: the `reservations`
/// stack (capability RESERVATION_REFINEMENT) or the older `role` + `reservation`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    /// `reservations[]` (post-refinement).
    Refined,
    /// `role` + `reservation` (pre-refinement).
    Legacy,
}

/// Resources of an agent by pool: unreserved, dynamically reserved per role and
/// principal, and persistent volumes (keyed by role and persistence ID).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ResourceSet {
    /// Unreserved resources (role `*`).
    pub unreserved: Quantities,
    /// Dynamically reserved resources, other than volumes.
    pub reserved: BTreeMap<Reservation, Quantities>,
    /// Persistent volumes by (role, persistence ID).
    pub volumes: BTreeMap<(String, String), Volume>,
}

impl ResourceSet {
    /// An unreserved set from plain values.
    pub fn new(cpus: f64, mem: f64, disk: f64, ports: Ranges) -> ResourceSet {
        ResourceSet {
            unreserved: Quantities::new(cpus, mem, disk, ports),
            ..Default::default()
        }
    }

    /// Sums Mesos resources into their pools, reading reservations in either format.
    /// Resource names other than cpus, mem, disk and ports, static reservations,
    /// disk sources, and volumes on unreserved disk are errors.
    #[allow(deprecated)] // `Resource.role` is the pre-refinement format.
    pub fn from_resources(resources: &[Resource]) -> Result<ResourceSet, String> {
        let mut set = ResourceSet::default();
        for resource in resources {
            let reservation = reservation_of(resource)?;
            let disk_info = resource.disk.as_ref();
            if disk_info.is_some_and(|d| d.source.is_some()) {
                return Err("disk sources are not offered by devcluster".to_string());
            }
            match disk_info.and_then(|d| d.persistence.as_ref()) {
                Some(persistence) => {
                    if resource.name != "disk" {
                        return Err(format!(
                            "resource {} cannot have a persistence",
                            resource.name
                        ));
                    }
                    let Some(reservation) = reservation else {
                        return Err(format!(
                            "persistent volume {} is not on reserved disk",
                            persistence.id
                        ));
                    };
                    if persistence.id.is_empty() {
                        return Err("persistent volume ID must not be empty".to_string());
                    }
                    let container_path = disk_info
                        .and_then(|d| d.volume.as_ref())
                        .map(|v| v.container_path.clone())
                        .ok_or_else(|| {
                            format!(
                                "persistent volume {} has no 'volume' with a container path",
                                persistence.id
                            )
                        })?;
                    let key = (reservation.role.clone(), persistence.id.clone());
                    if set.volumes.contains_key(&key) {
                        return Err(format!(
                            "persistent volume {} is listed twice",
                            persistence.id
                        ));
                    }
                    let volume = Volume {
                        reservation,
                        id: persistence.id.clone(),
                        principal: persistence.principal.clone(),
                        container_path,
                        disk: scalar_milli(resource)?,
                    };
                    set.volumes.insert(key, volume);
                }
                None => {
                    let pool = match reservation {
                        Some(reservation) => set.reserved.entry(reservation).or_default(),
                        None => &mut set.unreserved,
                    };
                    pool.add_resource(resource)?;
                }
            }
        }
        set.reserved.retain(|_, quantities| !quantities.is_empty());
        Ok(set)
    }

    /// The set as Mesos resources allocated to `allocation_role`, reservations in
    /// `format`; unreserved resources carry `role` "*" as real masters send.
    #[allow(deprecated)] // `Resource.role` is still sent by real masters.
    pub fn to_resources(&self, allocation_role: &str, format: Format) -> Vec<Resource> {
        let allocation_info = Some(resource::AllocationInfo {
            role: Some(allocation_role.to_string()),
        });
        let reserve = |mut resource: Resource, reservation: &Reservation| {
            match format {
                Format::Refined => {
                    resource.reservations = vec![resource::ReservationInfo {
                        r#type: Some(resource::reservation_info::Type::Dynamic as i32),
                        role: Some(reservation.role.clone()),
                        principal: reservation.principal.clone(),
                        labels: None,
                    }];
                }
                Format::Legacy => {
                    resource.role = Some(reservation.role.clone());
                    resource.reservation = Some(resource::ReservationInfo {
                        principal: reservation.principal.clone(),
                        ..Default::default()
                    });
                }
            }
            resource.allocation_info = allocation_info.clone();
            resource
        };
        let mut out = self.unreserved.to_resources(&|mut resource| {
            resource.role = Some("*".to_string());
            resource.allocation_info = allocation_info.clone();
            resource
        });
        for (reservation, quantities) in &self.reserved {
            out.extend(quantities.to_resources(&|resource| reserve(resource, reservation)));
        }
        for volume in self.volumes.values() {
            let mut resource = reserve(scalar_resource("disk", volume.disk), &volume.reservation);
            resource.disk = Some(resource::DiskInfo {
                persistence: Some(resource::disk_info::Persistence {
                    id: volume.id.clone(),
                    principal: volume.principal.clone(),
                }),
                volume: Some(v1::Volume {
                    mode: v1::volume::Mode::Rw as i32,
                    container_path: volume.container_path.clone(),
                    ..Default::default()
                }),
                source: None,
            });
            out.push(resource);
        }
        out
    }

    /// The part a framework of `role` may be offered: unreserved resources, those
    /// reserved to `role` and its volumes.
    pub fn for_role(&self, role: &str) -> ResourceSet {
        ResourceSet {
            unreserved: self.unreserved.clone(),
            reserved: self
                .reserved
                .iter()
                .filter(|(reservation, _)| reservation.role == role)
                .map(|(reservation, q)| (reservation.clone(), q.clone()))
                .collect(),
            volumes: self
                .volumes
                .iter()
                .filter(|((volume_role, _), _)| volume_role == role)
                .map(|(key, volume)| (key.clone(), volume.clone()))
                .collect(),
        }
    }

    /// Whether the set is worth offering: Mesos's minimum allocatable resources
    /// (0.01 cpus or 32 MB of memory) in some pool, or a volume.
    pub fn is_allocatable(&self) -> bool {
        let enough = |q: &Quantities| q.cpus >= 10 || q.mem >= 32_000;
        enough(&self.unreserved) || self.reserved.values().any(enough) || !self.volumes.is_empty()
    }

    /// Whether nothing at all is in the set.
    pub fn is_empty(&self) -> bool {
        self.unreserved.is_empty()
            && self.reserved.values().all(Quantities::is_empty)
            && self.volumes.is_empty()
    }

    /// Adds `other` to `self`.
    pub fn add(&mut self, other: &ResourceSet) {
        self.unreserved.add(&other.unreserved);
        for (reservation, quantities) in &other.reserved {
            self.reserved
                .entry(reservation.clone())
                .or_default()
                .add(quantities);
        }
        for (key, volume) in &other.volumes {
            self.volumes.insert(key.clone(), volume.clone());
        }
    }

    /// Removes `other` from `self`, clamping scalars at zero.
    pub fn subtract(&mut self, other: &ResourceSet) {
        self.unreserved.subtract(&other.unreserved);
        for (reservation, quantities) in &other.reserved {
            if let Some(pool) = self.reserved.get_mut(reservation) {
                pool.subtract(quantities);
                if pool.is_empty() {
                    self.reserved.remove(reservation);
                }
            }
        }
        for key in other.volumes.keys() {
            self.volumes.remove(key);
        }
    }

    /// Whether every resource of `other` is within `self` (volumes identical).
    pub fn contains(&self, other: &ResourceSet) -> bool {
        let empty = Quantities::default();
        self.unreserved.contains(&other.unreserved)
            && other.reserved.iter().all(|(reservation, quantities)| {
                self.reserved
                    .get(reservation)
                    .unwrap_or(&empty)
                    .contains(quantities)
            })
            && other
                .volumes
                .iter()
                .all(|(key, volume)| self.volumes.get(key) == Some(volume))
    }
}

/// The dynamic reservation of a resource in either format, `None` if unreserved.
#[allow(deprecated)] // `Resource.role` is the pre-refinement format.
fn reservation_of(resource: &Resource) -> Result<Option<Reservation>, String> {
    if resource.reservations.len() > 1 {
        return Err("refined reservations are not supported by devcluster".to_string());
    }
    if let Some(info) = resource.reservations.first() {
        if resource.role.as_deref().is_some_and(|role| role != "*")
            || resource.reservation.is_some()
        {
            return Err(format!(
                "resource {} mixes 'reservations' with 'role'/'reservation'",
                resource.name
            ));
        }
        let static_reservation =
            info.r#type == Some(resource::reservation_info::Type::Static as i32);
        if static_reservation {
            return Err("static reservations are not offered by devcluster".to_string());
        }
        let role = info
            .role
            .clone()
            .filter(|role| !role.is_empty() && role != "*")
            .ok_or_else(|| format!("reservation of {} has no valid role", resource.name))?;
        return Ok(Some(Reservation {
            role,
            principal: info.principal.clone(),
        }));
    }
    match resource.role.as_deref() {
        None | Some("*") => {
            if resource.reservation.is_some() {
                return Err(format!(
                    "resource {} has a 'reservation' but no role",
                    resource.name
                ));
            }
            Ok(None)
        }
        Some(role) => match &resource.reservation {
            Some(info) => Ok(Some(Reservation {
                role: role.to_string(),
                principal: info.principal.clone(),
            })),
            None => Err("static reservations are not offered by devcluster".to_string()),
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ranges(list: &[(u64, u64)]) -> Ranges {
        Ranges::new(list.iter().copied())
    }

    #[test]
    fn ranges_normalize() {
        let check = |input: &[(u64, u64)], expected: &[(u64, u64)]| {
            assert_eq!(ranges(input).ranges(), expected, "input {input:?}");
        };
        check(&[], &[]);
        check(&[(5, 3)], &[]);
        check(&[(1, 3), (4, 6)], &[(1, 6)]);
        check(&[(10, 20), (1, 2)], &[(1, 2), (10, 20)]);
        check(&[(1, 10), (3, 4)], &[(1, 10)]);
        check(&[(1, 5), (3, 8), (20, 21)], &[(1, 8), (20, 21)]);
    }

    #[test]
    fn ranges_subtract() {
        let check = |from: &[(u64, u64)], take: &[(u64, u64)], expected: &[(u64, u64)]| {
            let mut set = ranges(from);
            set.subtract(&ranges(take));
            assert_eq!(set.ranges(), expected, "{from:?} - {take:?}");
        };
        check(&[(31000, 32000)], &[(31000, 31000)], &[(31001, 32000)]);
        check(&[(31000, 32000)], &[(32000, 32000)], &[(31000, 31999)]);
        check(
            &[(31000, 32000)],
            &[(31500, 31600)],
            &[(31000, 31499), (31601, 32000)],
        );
        check(&[(1, 5)], &[(1, 5)], &[]);
        check(&[(1, 5)], &[(7, 9)], &[(1, 5)]);
        check(&[(1, 5), (10, 12)], &[(4, 11)], &[(1, 3), (12, 12)]);
    }

    #[test]
    fn ranges_contains() {
        let check = |outer: &[(u64, u64)], inner: &[(u64, u64)], expected: bool| {
            assert_eq!(
                ranges(outer).contains(&ranges(inner)),
                expected,
                "{outer:?} ⊇ {inner:?}"
            );
        };
        check(&[(31000, 32000)], &[], true);
        check(&[(31000, 32000)], &[(31000, 31000), (32000, 32000)], true);
        check(&[(31000, 32000)], &[(30999, 31000)], false);
        check(&[(1, 5), (7, 9)], &[(5, 7)], false);
    }

    #[test]
    fn resource_set_round_trips_through_mesos_resources() {
        let set = ResourceSet::new(1.5, 256.0, 0.0, ranges(&[(31000, 31002), (31010, 31010)]));
        let resources = set.to_resources("*", Format::Refined);
        assert_eq!(resources.len(), 3, "zero disk is not listed");
        assert_eq!(ResourceSet::from_resources(&resources), Ok(set));
    }

    #[test]
    fn resource_set_rejects_foreign_resources() {
        let check = |resource: Resource, expected_error: &str| {
            let err = ResourceSet::from_resources(&[resource]).unwrap_err();
            assert!(err.contains(expected_error), "{err}");
        };
        let gpus = Resource {
            name: "gpus".into(),
            r#type: value::Type::Scalar as i32,
            scalar: Some(value::Scalar { value: 1.0 }),
            ..Default::default()
        };
        check(gpus, "gpus");
        let cpus_as_ranges = Resource {
            name: "cpus".into(),
            r#type: value::Type::Ranges as i32,
            ..Default::default()
        };
        check(cpus_as_ranges, "not a scalar");
        let negative = Resource {
            name: "mem".into(),
            r#type: value::Type::Scalar as i32,
            scalar: Some(value::Scalar { value: -1.0 }),
            ..Default::default()
        };
        check(negative, "invalid value");
    }

    #[test]
    fn resource_set_arithmetic() {
        let total = ResourceSet::new(4.0, 4096.0, 10240.0, ranges(&[(31000, 32000)]));
        let task = ResourceSet::new(0.1, 32.0, 0.0, ranges(&[(31005, 31005)]));
        assert!(total.contains(&task));
        let mut free = total.clone();
        free.subtract(&task);
        assert_eq!(free.unreserved.cpus, 3900);
        assert!(!free.contains(&task), "port 31005 is taken");
        free.add(&task);
        assert_eq!(free, total);
        assert!(ResourceSet::default().is_empty());
        assert!(!task.is_empty());
    }
}
