//! Resource accounting: the cpus, mem, disk scalars and `ports` ranges of an agent.
//!
//! Scalars are fixed-point with three decimal digits, as Mesos rounds them, so sums
//! and differences never drift. Ports are kept as sorted, disjoint, merged ranges.

use mesos_stateful_proto::v1::{resource, value, Resource};

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

/// The resources devcluster knows: three scalars and the ports ranges.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ResourceSet {
    /// CPUs in thousandths.
    pub cpus: Milli,
    /// Memory in thousandths of a MB.
    pub mem: Milli,
    /// Disk in thousandths of a MB.
    pub disk: Milli,
    /// Port ranges.
    pub ports: Ranges,
}

impl ResourceSet {
    /// Builds a set from plain values.
    pub fn new(cpus: f64, mem: f64, disk: f64, ports: Ranges) -> ResourceSet {
        ResourceSet {
            cpus: to_milli(cpus),
            mem: to_milli(mem),
            disk: to_milli(disk),
            ports,
        }
    }

    /// Sums Mesos resources. Resource names other than cpus, mem, disk and ports, or a
    /// value of the wrong type, are an error (devcluster's agents have nothing else).
    pub fn from_resources(resources: &[Resource]) -> Result<ResourceSet, String> {
        let mut set = ResourceSet::default();
        for resource in resources {
            let name = resource.name.as_str();
            match name {
                "cpus" | "mem" | "disk" => {
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
                    let milli = to_milli(scalar.value);
                    match name {
                        "cpus" => set.cpus += milli,
                        "mem" => set.mem += milli,
                        _ => set.disk += milli,
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
                        set.ports.add_range(range.begin, range.end);
                    }
                }
                other => return Err(format!("resource {other} is not offered by devcluster")),
            }
        }
        Ok(set)
    }

    /// The set as Mesos resources, unreserved (`role` "*") and allocated to `allocation_role`.
    #[allow(deprecated)] // `Resource.role` is deprecated but still sent by real masters.
    pub fn to_resources(&self, allocation_role: &str) -> Vec<Resource> {
        let allocation_info = Some(resource::AllocationInfo {
            role: Some(allocation_role.to_string()),
        });
        let scalar = |name: &str, milli: Milli| Resource {
            name: name.to_string(),
            r#type: value::Type::Scalar as i32,
            scalar: Some(value::Scalar {
                value: from_milli(milli),
            }),
            role: Some("*".to_string()),
            allocation_info: allocation_info.clone(),
            ..Default::default()
        };
        let mut out = Vec::new();
        for (name, milli) in [("cpus", self.cpus), ("mem", self.mem), ("disk", self.disk)] {
            if milli > 0 {
                out.push(scalar(name, milli));
            }
        }
        if !self.ports.is_empty() {
            out.push(Resource {
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
                role: Some("*".to_string()),
                allocation_info: allocation_info.clone(),
                ..Default::default()
            });
        }
        out
    }

    /// Whether nothing at all is in the set.
    pub fn is_empty(&self) -> bool {
        self.cpus <= 0 && self.mem <= 0 && self.disk <= 0 && self.ports.is_empty()
    }

    /// Adds `other` to `self`.
    pub fn add(&mut self, other: &ResourceSet) {
        self.cpus += other.cpus;
        self.mem += other.mem;
        self.disk += other.disk;
        self.ports.add(&other.ports);
    }

    /// Removes `other` from `self`, clamping scalars at zero.
    pub fn subtract(&mut self, other: &ResourceSet) {
        self.cpus = (self.cpus - other.cpus).max(0);
        self.mem = (self.mem - other.mem).max(0);
        self.disk = (self.disk - other.disk).max(0);
        self.ports.subtract(&other.ports);
    }

    /// Whether every resource of `other` is within `self`.
    pub fn contains(&self, other: &ResourceSet) -> bool {
        self.cpus >= other.cpus
            && self.mem >= other.mem
            && self.disk >= other.disk
            && self.ports.contains(&other.ports)
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
        let resources = set.to_resources("*");
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
        assert_eq!(free.cpus, 3900);
        assert!(!free.contains(&task), "port 31005 is taken");
        free.add(&task);
        assert_eq!(free, total);
        assert!(ResourceSet::default().is_empty());
        assert!(!task.is_empty());
    }
}
