//! The create request of the REST API and its validation.
//!
//! Validation happens before anything is persisted: a request that fails here
//! changes nothing.

use serde::Deserialize;
use std::collections::BTreeMap;

use mesos_stateful_store::records::{
    Constraint, ConstraintOperator, InstanceSpec, PlacementSpec, Resources, VolumeSpec,
};

use super::constraints::PlacementRules;

/// Longest instance name: member names (`name-12`) and task ids (`name-12.345`) must
/// still fit in a DNS label and a Docker container name.
pub const MAX_NAME_LEN: usize = 40;
/// Most replicas one instance may ask for.
pub const MAX_REPLICAS: u32 = 32;
/// Largest cpus one member may ask for.
pub const MAX_CPUS: f64 = 256.0;
/// Largest memory or disk one member may ask for, in MiB (16 TiB).
pub const MAX_MIB: f64 = 16.0 * 1024.0 * 1024.0;
/// Smallest memory a container can start with, in MiB.
pub const MIN_MEM_MIB: f64 = 4.0;
/// Most arguments in `master_args` or `replica_args`.
pub const MAX_ARGS: usize = 256;
/// Longest single argument, environment name or value.
pub const MAX_ARG_LEN: usize = 4096;
/// Most placement constraints one instance may have.
pub const MAX_CONSTRAINTS: usize = 16;
/// Longest constraint field or value.
pub const MAX_CONSTRAINT_LEN: usize = 256;
/// Longest volume container path.
pub const MAX_CONTAINER_PATH_LEN: usize = 255;

/// Body of `POST /v1/instances`. Unknown fields are rejected.
#[derive(Debug, Clone, Deserialize, PartialEq, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateInstanceRequest {
    /// DNS label naming the instance.
    pub name: String,
    /// Docker image of every member.
    pub image: String,
    /// Replicas besides the master (0 allowed).
    #[serde(default)]
    pub replicas: u32,
    /// Resources of each member.
    pub resources: ResourcesRequest,
    /// Args of the master container.
    #[serde(default)]
    pub master_args: Vec<String>,
    /// Args of replica containers; defaults to `master_args`.
    #[serde(default)]
    pub replica_args: Option<Vec<String>>,
    /// Environment of every member.
    #[serde(default)]
    pub env: BTreeMap<String, String>,
    /// Persistent volume of each member; none by default.
    #[serde(default)]
    pub volume: Option<VolumeRequest>,
    /// Placement rules; by default master and replicas go on distinct agents
    /// whenever the cluster allows it.
    #[serde(default)]
    pub placement: Option<PlacementRequest>,
    /// Run the members' containers privileged. Refused (403, code forbidden) unless
    /// the scheduler was started with `--allow-privileged`.
    #[serde(default)]
    pub privileged: bool,
}

/// A persistent volume in a create request.
#[derive(Debug, Clone, Deserialize, PartialEq, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct VolumeRequest {
    /// Size in MiB.
    pub size_mb: f64,
    /// Relative path of one segment where the volume appears in the sandbox
    /// (`data`).
    pub container_path: String,
}

/// Placement rules in a create request.
#[derive(Debug, Clone, Default, Deserialize, PartialEq, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct PlacementRequest {
    /// Most members on one agent.
    #[serde(default)]
    pub max_per_agent: Option<u32>,
    /// Marathon-style constraints: `[field, operator]` or `[field, operator, value]`,
    /// with `field` `hostname` or an agent attribute and `operator` one of UNIQUE,
    /// CLUSTER, GROUP_BY, LIKE, UNLIKE, MAX_PER.
    #[serde(default)]
    pub constraints: Vec<Vec<String>>,
}

/// Resources of each member in a create request.
#[derive(Debug, Clone, Copy, Deserialize, PartialEq, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ResourcesRequest {
    /// Cpu shares.
    pub cpus: f64,
    /// Memory in MiB.
    pub mem: f64,
    /// Disk in MiB.
    pub disk: f64,
}

/// Why a request was refused; each variant has a stable code.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum ValidationError {
    /// The name is not a DNS label of at most [`MAX_NAME_LEN`] characters.
    #[error("invalid name {name:?}: {reason}")]
    InvalidName {
        /// The refused name.
        name: String,
        /// What is wrong with it.
        reason: &'static str,
    },
    /// A resource is zero, negative, not finite or absurdly large.
    #[error("invalid resources: {0}")]
    InvalidResources(String),
    /// The image reference is empty or malformed.
    #[error("invalid image {image:?}: {reason}")]
    InvalidImage {
        /// The refused reference.
        image: String,
        /// What is wrong with it.
        reason: &'static str,
    },
    /// Another field is out of bounds.
    #[error("invalid field {field}: {reason}")]
    InvalidField {
        /// The field's name.
        field: &'static str,
        /// What is wrong with it.
        reason: String,
    },
}

impl ValidationError {
    /// Stable machine-readable code for the REST API.
    pub fn code(&self) -> &'static str {
        match self {
            Self::InvalidName { .. } => "invalid_name",
            Self::InvalidResources(_) => "invalid_resources",
            Self::InvalidImage { .. } => "invalid_image",
            Self::InvalidField { .. } => "invalid_field",
        }
    }
}

impl CreateInstanceRequest {
    /// Checks every field and turns the request into the spec that is persisted.
    pub fn validate(self) -> Result<(String, InstanceSpec), ValidationError> {
        validate_name(&self.name)?;
        validate_image(&self.image)?;
        validate_resources(&self.resources)?;
        if self.replicas > MAX_REPLICAS {
            return Err(ValidationError::InvalidField {
                field: "replicas",
                reason: format!("{} is more than {MAX_REPLICAS}", self.replicas),
            });
        }
        validate_args("master_args", &self.master_args)?;
        let replica_args = self
            .replica_args
            .unwrap_or_else(|| self.master_args.clone());
        validate_args("replica_args", &replica_args)?;
        for (key, value) in &self.env {
            let valid_key = !key.is_empty()
                && key.len() <= MAX_ARG_LEN
                && !key.contains('=')
                && !key.contains('\0');
            if !valid_key {
                return Err(ValidationError::InvalidField {
                    field: "env",
                    reason: format!("invalid variable name {key:?}"),
                });
            }
            if value.len() > MAX_ARG_LEN || value.contains('\0') {
                return Err(ValidationError::InvalidField {
                    field: "env",
                    reason: format!("value of {key} is too long or contains NUL"),
                });
            }
        }
        let spec = InstanceSpec {
            image: self.image,
            replicas: self.replicas,
            resources: Resources {
                cpus: self.resources.cpus,
                mem: self.resources.mem,
                disk: self.resources.disk,
            },
            master_args: self.master_args,
            replica_args,
            env: self.env,
            volume: self.volume.map(validate_volume).transpose()?,
            placement: validate_placement(self.placement.unwrap_or_default())?,
            privileged: self.privileged,
        };
        Ok((self.name, spec))
    }
}

/// A DNS label (RFC 1123): lowercase letters, digits and `-`, starting with a letter
/// and ending with a letter or digit.
pub fn validate_name(name: &str) -> Result<(), ValidationError> {
    let fail = |reason| {
        Err(ValidationError::InvalidName {
            name: name.chars().take(80).collect(),
            reason,
        })
    };
    if name.is_empty() {
        return fail("empty");
    }
    if name.len() > MAX_NAME_LEN {
        return fail("longer than 40 characters");
    }
    if !name
        .bytes()
        .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
    {
        return fail("only lowercase letters, digits and '-' are allowed");
    }
    if !name.as_bytes()[0].is_ascii_lowercase() {
        return fail("must start with a lowercase letter");
    }
    if name.ends_with('-') {
        return fail("must end with a letter or digit");
    }
    Ok(())
}

fn validate_image(image: &str) -> Result<(), ValidationError> {
    let fail = |reason| {
        Err(ValidationError::InvalidImage {
            image: image.chars().take(200).collect(),
            reason,
        })
    };
    if image.is_empty() {
        return fail("empty");
    }
    if image.len() > 512 {
        return fail("longer than 512 characters");
    }
    let allowed = |c: char| c.is_ascii_alphanumeric() || "._-/:@".contains(c);
    if !image.chars().all(allowed) {
        return fail("only letters, digits and . _ - / : @ are allowed");
    }
    let first = image.as_bytes()[0];
    if !first.is_ascii_alphanumeric() {
        return fail("must start with a letter or digit");
    }
    if image.ends_with(':') || image.ends_with('/') || image.ends_with('@') {
        return fail("ends with a separator");
    }
    Ok(())
}

fn validate_resources(resources: &ResourcesRequest) -> Result<(), ValidationError> {
    let check = |name: &str, value: f64, min: f64, max: f64| {
        if !value.is_finite() || value <= 0.0 {
            return Err(ValidationError::InvalidResources(format!(
                "{name} must be a positive number, got {value}"
            )));
        }
        if value < min || value > max {
            return Err(ValidationError::InvalidResources(format!(
                "{name} must be between {min} and {max}, got {value}"
            )));
        }
        Ok(())
    };
    // Mesos rounds scalars to three decimals, so 0.001 is the smallest real cpu share.
    check("cpus", resources.cpus, 0.001, MAX_CPUS)?;
    check("mem", resources.mem, MIN_MEM_MIB, MAX_MIB)?;
    check("disk", resources.disk, 0.001, MAX_MIB)?;
    Ok(())
}

fn validate_volume(volume: VolumeRequest) -> Result<VolumeSpec, ValidationError> {
    let fail = |reason: String| ValidationError::InvalidField {
        field: "volume",
        reason,
    };
    if !volume.size_mb.is_finite() || volume.size_mb < 1.0 || volume.size_mb > MAX_MIB {
        return Err(fail(format!(
            "size_mb must be between 1 and {MAX_MIB}, got {}",
            volume.size_mb
        )));
    }
    let path = &volume.container_path;
    let valid_path = !path.is_empty()
        && path.len() <= MAX_CONTAINER_PATH_LEN
        && path != "."
        && path != ".."
        && path
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'.' || b == b'_' || b == b'-');
    if !valid_path {
        return Err(fail(format!(
            "container_path {:?} must be one relative path segment of letters, digits, '.', '_' and '-'",
            path.chars().take(80).collect::<String>()
        )));
    }
    Ok(VolumeSpec {
        size_mb: volume.size_mb,
        container_path: volume.container_path,
    })
}

fn validate_placement(placement: PlacementRequest) -> Result<PlacementSpec, ValidationError> {
    let fail = |reason: String| ValidationError::InvalidField {
        field: "placement",
        reason,
    };
    if placement.constraints.len() > MAX_CONSTRAINTS {
        return Err(fail(format!(
            "{} constraints, more than {MAX_CONSTRAINTS}",
            placement.constraints.len()
        )));
    }
    let mut constraints = Vec::new();
    for parts in placement.constraints {
        if parts
            .iter()
            .any(|p| p.len() > MAX_CONSTRAINT_LEN || p.contains('\0'))
        {
            return Err(fail(
                "a constraint part is too long or contains NUL".to_string(),
            ));
        }
        let (field, operator, value) = match parts.as_slice() {
            [field, operator] => (field, operator, None),
            [field, operator, value] => (field, operator, Some(value.clone())),
            _ => {
                return Err(fail(format!(
                    "a constraint is [field, operator] or [field, operator, value], got {} parts",
                    parts.len()
                )))
            }
        };
        let operator = match operator.as_str() {
            "UNIQUE" => ConstraintOperator::Unique,
            "CLUSTER" => ConstraintOperator::Cluster,
            "GROUP_BY" => ConstraintOperator::GroupBy,
            "LIKE" => ConstraintOperator::Like,
            "UNLIKE" => ConstraintOperator::Unlike,
            "MAX_PER" => ConstraintOperator::MaxPer,
            other => {
                return Err(fail(format!(
                    "unknown operator {:?}: expected UNIQUE, CLUSTER, GROUP_BY, LIKE, UNLIKE or MAX_PER",
                    other.chars().take(40).collect::<String>()
                )))
            }
        };
        constraints.push(Constraint {
            field: field.clone(),
            operator,
            value,
        });
    }
    let spec = PlacementSpec {
        max_per_agent: placement.max_per_agent,
        constraints,
    };
    // The same checks the OfferManager relies on: values and regular expressions.
    PlacementRules::compile(&spec).map_err(fail)?;
    Ok(spec)
}

fn validate_args(field: &'static str, args: &[String]) -> Result<(), ValidationError> {
    if args.len() > MAX_ARGS {
        return Err(ValidationError::InvalidField {
            field,
            reason: format!("{} arguments, more than {MAX_ARGS}", args.len()),
        });
    }
    if let Some(arg) = args
        .iter()
        .find(|arg| arg.len() > MAX_ARG_LEN || arg.contains('\0'))
    {
        return Err(ValidationError::InvalidField {
            field,
            reason: format!(
                "argument starting {:?} is too long or contains NUL",
                arg.chars().take(20).collect::<String>()
            ),
        });
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn request() -> CreateInstanceRequest {
        serde_json::from_str(
            r#"{"name":"cache1","image":"redis:7","replicas":1,
                "resources":{"cpus":0.2,"mem":128,"disk":64},
                "master_args":["redis-server","--port","{port}"]}"#,
        )
        .unwrap()
    }

    #[test]
    fn accepts_a_valid_request_and_defaults_replica_args() {
        let (name, spec) = request().validate().unwrap();
        assert_eq!(name, "cache1");
        assert_eq!(spec.replica_args, spec.master_args);
        assert_eq!(spec.replicas, 1);
    }

    #[test]
    fn names_must_be_dns_labels() {
        let check = |name: &str, ok: bool| {
            assert_eq!(validate_name(name).is_ok(), ok, "{name:?}");
        };
        check("cache1", true);
        check("a", true);
        check("my-cache-2", true);
        check("", false);
        check("Cache", false);
        check("1cache", false);
        check("cache-", false);
        check("ca_che", false);
        check("ca.che", false);
        check("cache/1", false);
        check(&"a".repeat(40), true);
        check(&"a".repeat(41), false);
        check("caché", false);
    }

    #[test]
    fn resources_must_be_positive_and_bounded() {
        let check = |cpus: f64, mem: f64, disk: f64, ok: bool| {
            let mut r = request();
            r.resources = ResourcesRequest { cpus, mem, disk };
            assert_eq!(r.validate().is_ok(), ok, "{cpus} {mem} {disk}");
        };
        check(0.2, 128.0, 64.0, true);
        check(0.0, 128.0, 64.0, false);
        check(-1.0, 128.0, 64.0, false);
        check(f64::NAN, 128.0, 64.0, false);
        check(1e9, 128.0, 64.0, false);
        check(0.2, 0.0, 64.0, false);
        check(0.2, 1.0, 64.0, false);
        check(0.2, 128.0, 0.0, false);
        check(0.2, 1e12, 64.0, false);
    }

    #[test]
    fn images_are_checked() {
        let check = |image: &str, ok: bool| {
            let mut r = request();
            r.image = image.into();
            assert_eq!(r.validate().is_ok(), ok, "{image:?}");
        };
        check("redis", true);
        check("127.0.0.1:5000/team/redis:7.0", true);
        check("redis@sha256:abcdef", true);
        check("", false);
        check("redis 7", false);
        check("redis:", false);
        check("-redis", false);
        check("redis;rm", false);
    }

    #[test]
    fn unknown_fields_and_bad_json_are_refused() {
        let unknown =
            r#"{"name":"a","image":"b","resources":{"cpus":1,"mem":8,"disk":1},"extra":1}"#;
        assert!(serde_json::from_str::<CreateInstanceRequest>(unknown).is_err());
        let nested = r#"{"name":"a","image":"b","resources":{"cpus":1,"mem":8,"disk":1,"gpus":1}}"#;
        assert!(serde_json::from_str::<CreateInstanceRequest>(nested).is_err());
        assert!(serde_json::from_str::<CreateInstanceRequest>(r#"{"name":"a"}"#).is_err());
    }

    #[test]
    fn too_many_replicas_or_args_are_refused() {
        let mut r = request();
        r.replicas = MAX_REPLICAS + 1;
        assert_eq!(r.validate().unwrap_err().code(), "invalid_field");
        let mut r = request();
        r.master_args = vec!["x".into(); MAX_ARGS + 1];
        assert_eq!(r.validate().unwrap_err().code(), "invalid_field");
        let mut r = request();
        r.env.insert("A=B".into(), "c".into());
        assert_eq!(r.validate().unwrap_err().code(), "invalid_field");
    }

    #[test]
    fn volumes_are_optional_and_checked() {
        let (_, spec) = request().validate().unwrap();
        assert_eq!(spec.volume, None);
        assert_eq!(spec.placement, PlacementSpec::default());
        let check = |size_mb: f64, path: &str, ok: bool| {
            let mut r = request();
            r.volume = Some(VolumeRequest {
                size_mb,
                container_path: path.into(),
            });
            assert_eq!(r.validate().is_ok(), ok, "{size_mb} {path:?}");
        };
        check(1024.0, "data", true);
        check(1.0, "redis-data_1.v", true);
        check(0.0, "data", false);
        check(f64::NAN, "data", false);
        check(1e12, "data", false);
        check(10.0, "", false);
        check(10.0, "/data", false);
        check(10.0, "a/b", false);
        check(10.0, "..", false);
        let json = r#"{"name":"a","image":"b","resources":{"cpus":1,"mem":8,"disk":1},
            "volume":{"size_mb":64,"container_path":"data"}}"#;
        let (_, spec) = serde_json::from_str::<CreateInstanceRequest>(json)
            .unwrap()
            .validate()
            .unwrap();
        assert_eq!(
            spec.volume,
            Some(VolumeSpec {
                size_mb: 64.0,
                container_path: "data".into()
            })
        );
    }

    #[test]
    fn placement_constraints_are_parsed_marathon_style() {
        let json = r#"{"name":"a","image":"b","resources":{"cpus":1,"mem":8,"disk":1},
            "placement":{"max_per_agent":1,"constraints":[["hostname","UNIQUE"],
            ["rack","LIKE","r[12]"],["zone","GROUP_BY","3"],["rack","MAX_PER","2"]]}}"#;
        let (_, spec) = serde_json::from_str::<CreateInstanceRequest>(json)
            .unwrap()
            .validate()
            .unwrap();
        assert_eq!(spec.placement.max_per_agent, Some(1));
        let operators: Vec<_> = spec
            .placement
            .constraints
            .iter()
            .map(|c| c.operator)
            .collect();
        assert_eq!(
            operators,
            [
                ConstraintOperator::Unique,
                ConstraintOperator::Like,
                ConstraintOperator::GroupBy,
                ConstraintOperator::MaxPer
            ]
        );
        assert_eq!(
            spec.placement.constraints[1].value.as_deref(),
            Some("r[12]")
        );

        let refused = |constraints: &[&[&str]], max_per_agent: Option<u32>| {
            let mut r = request();
            r.placement = Some(PlacementRequest {
                max_per_agent,
                constraints: constraints
                    .iter()
                    .map(|c| c.iter().map(|s| s.to_string()).collect())
                    .collect(),
            });
            let error = r.validate().unwrap_err();
            assert_eq!(error.code(), "invalid_field", "{constraints:?}");
            error.to_string()
        };
        assert!(refused(&[&["hostname"]], None).contains("parts"));
        assert!(refused(&[&["hostname", "SOMETIMES"]], None).contains("unknown operator"));
        assert!(refused(&[&["rack", "LIKE", "("]], None).contains("regular expression"));
        assert!(refused(&[&["rack", "MAX_PER"]], None).contains("number"));
        assert!(refused(&[&["hostname", "UNIQUE", "x"]], None).contains("no value"));
        assert!(refused(&[], Some(0)).contains("max_per_agent"));
        let many: Vec<&[&str]> = vec![&["hostname", "UNIQUE"]; MAX_CONSTRAINTS + 1];
        assert!(refused(&many, None).contains("constraints"));
    }
}
