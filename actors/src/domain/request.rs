//! The create request of the REST API and its validation.
//!
//! Validation happens before anything is persisted: a request that fails here
//! changes nothing.

use serde::Deserialize;
use std::collections::BTreeMap;

use mesos_stateful_store::records::{InstanceSpec, Resources};

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

/// Body of `POST /v1/instances`. Unknown fields are rejected.
#[derive(Debug, Clone, Deserialize, PartialEq)]
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
}

/// Resources of each member in a create request.
#[derive(Debug, Clone, Copy, Deserialize, PartialEq)]
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
}
