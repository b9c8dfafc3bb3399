//! The OpenAPI 3 document of the API, derived from the handlers' annotations and the
//! request, response and error types.
//!
//! The document is checked into the repository as `openapi.json`; a test fails when it
//! drifts from the generated one. Regenerate it with
//! `UPDATE_OPENAPI=1 cargo test -p mesos-stateful-actors --test it openapi`.

use std::sync::OnceLock;

use serde_json::{json, Value};

use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityScheme};
use utoipa::{Modify, OpenApi};

use mesos_stateful_store::records::InstanceStatus;

use crate::domain::request::{
    MAX_ARGS, MAX_ARG_LEN, MAX_CONSTRAINTS, MAX_CONSTRAINT_LEN, MAX_CPUS, MAX_MIB, MAX_NAME_LEN,
    MAX_REPLICAS, MIN_MEM_MIB,
};

use super::error::{ErrorBody, ErrorCode};
use super::events::{EventKind, InstanceEvent, MemberEvent};
use super::{artifacts, compat, events, instances, operations, system};

/// The document's root.
#[derive(Debug, OpenApi)]
#[openapi(
    info(
        title = "mesos-stateful",
        description = "Stateful services on Apache Mesos: instances of one master and N replicas.\n\nEvery error answers `{code, message, details}` with a stable `code` (see the ErrorCode schema). With authentication on, every route but `/health` needs `Authorization: Bearer <token>`; a missing or wrong token answers 401. Every route may answer 429 (code rate_limited) with `Retry-After`.",
        license(name = "Apache-2.0"),
    ),
    paths(
        instances::create_instance,
        instances::list_instances,
        instances::get_instance,
        instances::delete_instance,
        instances::get_endpoints,
        instances::exec_in_member,
        operations::patch_instance,
        operations::restart_member,
        operations::replace_member,
        events::stream_events,
        system::health,
        system::ready,
        system::info,
        system::metrics,
        system::openapi,
        artifacts::get_artifact,
        compat::compat_create,
        compat::compat_delete,
        compat::compat_status_all,
        compat::compat_status,
    ),
    components(schemas(ErrorBody, ErrorCode, EventKind, InstanceEvent, MemberEvent)),
    modifiers(&BearerAuth),
    security(("bearer" = [])),
    tags(
        (name = "instances", description = "Instances and their members"),
        (name = "events", description = "The stream of changes"),
        (name = "system", description = "Health, readiness, metrics and this document"),
        (name = "mr-redis", description = "The routes of mr-redis, for its users and its `mrr` CLI"),
    )
)]
pub struct ApiDoc;

/// Declares the bearer-token scheme.
#[derive(Debug)]
struct BearerAuth;

impl Modify for BearerAuth {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        let components = openapi.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            "bearer",
            SecurityScheme::Http(HttpBuilder::new().scheme(HttpAuthScheme::Bearer).build()),
        );
    }
}

/// The document, versioned as this build.
pub fn document() -> utoipa::openapi::OpenApi {
    let mut document = ApiDoc::openapi();
    document.info.version = env!("CARGO_PKG_VERSION").to_string();
    document
}

/// The document as pretty JSON (built once), with the validation rules of the
/// request types as JSON Schema constraints.
pub fn document_json() -> &'static str {
    static JSON: OnceLock<String> = OnceLock::new();
    JSON.get_or_init(|| {
        let mut json = match serde_json::to_value(document()) {
            Ok(json) => json,
            Err(e) => return format!("{{\"error\":\"openapi document: {e}\"}}"),
        };
        constrain(&mut json);
        serde_json::to_string_pretty(&json)
            .unwrap_or_else(|e| format!("{{\"error\":\"openapi document: {e}\"}}"))
    })
}

/// A DNS label of at most [`MAX_NAME_LEN`] characters.
const NAME_PATTERN: &str = "^[a-z]([-a-z0-9]{0,38}[a-z0-9])?$";
/// An image reference as `validate_image` accepts it.
const IMAGE_PATTERN: &str = "^[A-Za-z0-9]([A-Za-z0-9._/:@-]{0,510}[A-Za-z0-9._-])?$";
/// Any text without NUL.
const NO_NUL_PATTERN: &str = "^[^\\u0000]*$";
/// A volume's one relative path segment, `.` and `..` excluded.
const PATH_SEGMENT_PATTERN: &str =
    "^([A-Za-z0-9_-][A-Za-z0-9._-]{0,254}|\\.[A-Za-z0-9_-][A-Za-z0-9._-]{0,253}|\\.\\.[A-Za-z0-9._-]{1,253})$";

/// Sets, on `schema`'s `property`, the constraints `rules` (merged into the property,
/// or into the non-null branch of an optional one).
fn rule(document: &mut Value, schema: &str, property: &str, rules: Value) {
    let Some(target) = document.pointer_mut(&format!(
        "/components/schemas/{schema}/properties/{property}"
    )) else {
        return;
    };
    merge(target, rules);
}

fn merge(target: &mut Value, rules: Value) {
    // An optional property is `oneOf: [null, X]` or has a type list; the rules go to X.
    if let Some(branches) = target.get_mut("oneOf").and_then(Value::as_array_mut) {
        for branch in branches {
            if branch.get("type") != Some(&json!("null")) {
                merge(branch, rules.clone());
            }
        }
        return;
    }
    if let (Some(target), Some(rules)) = (target.as_object_mut(), rules.as_object()) {
        for (key, value) in rules {
            target.insert(key.clone(), value.clone());
        }
    }
}

/// The request types' validation rules, from the constants the validation uses.
fn constrain(document: &mut Value) {
    let name = json!({"pattern": NAME_PATTERN, "minLength": 1, "maxLength": MAX_NAME_LEN});
    let args = json!({"maxItems": MAX_ARGS,
        "items": {"type": "string", "maxLength": MAX_ARG_LEN, "pattern": NO_NUL_PATTERN}});
    let env = json!({
        "additionalProperties": {"type": "string", "maxLength": MAX_ARG_LEN, "pattern": NO_NUL_PATTERN},
        "propertyNames": {"minLength": 1, "maxLength": MAX_ARG_LEN, "pattern": "^[^=\\u0000]+$"}});
    for schema in ["CreateInstanceRequest", "PatchInstanceRequest"] {
        rule(
            document,
            schema,
            "image",
            json!({"pattern": IMAGE_PATTERN, "minLength": 1, "maxLength": 512}),
        );
        rule(
            document,
            schema,
            "replicas",
            json!({"minimum": 0, "maximum": MAX_REPLICAS}),
        );
        rule(document, schema, "master_args", args.clone());
        rule(document, schema, "replica_args", args.clone());
        rule(document, schema, "env", env.clone());
    }
    rule(document, "CreateInstanceRequest", "name", name.clone());
    rule(
        document,
        "ResourcesRequest",
        "cpus",
        json!({"minimum": 0.001, "maximum": MAX_CPUS}),
    );
    rule(
        document,
        "ResourcesRequest",
        "mem",
        json!({"minimum": MIN_MEM_MIB, "maximum": MAX_MIB}),
    );
    rule(
        document,
        "ResourcesRequest",
        "disk",
        json!({"minimum": 0.001, "maximum": MAX_MIB}),
    );
    rule(
        document,
        "VolumeRequest",
        "size_mb",
        json!({"minimum": 1, "maximum": MAX_MIB}),
    );
    rule(
        document,
        "VolumeRequest",
        "container_path",
        json!({"pattern": PATH_SEGMENT_PATTERN}),
    );
    rule(
        document,
        "PlacementRequest",
        "max_per_agent",
        json!({"minimum": 1}),
    );
    rule(
        document,
        "PlacementRequest",
        "constraints",
        json!({"maxItems": MAX_CONSTRAINTS,
        "items": {"type": "array", "minItems": 2, "maxItems": 3,
            "prefixItems": [
                {"type": "string", "maxLength": MAX_CONSTRAINT_LEN, "pattern": NO_NUL_PATTERN},
                {"enum": ["UNIQUE", "CLUSTER", "GROUP_BY", "LIKE", "UNLIKE", "MAX_PER"]},
                {"type": "string", "maxLength": MAX_CONSTRAINT_LEN, "pattern": NO_NUL_PATTERN}],
            "items": {"type": "string", "maxLength": MAX_CONSTRAINT_LEN, "pattern": NO_NUL_PATTERN}}}),
    );
    rule(
        document,
        "ExecRequest",
        "argv",
        json!({"minItems": 1, "maxItems": 256,
        "items": {"type": "string", "maxLength": 4096, "pattern": NO_NUL_PATTERN}}),
    );
    rule(
        document,
        "ExecRequest",
        "timeout_seconds",
        json!({"exclusiveMinimum": 0, "maximum": 300}),
    );
    // Statuses in any case, as the list filter accepts them.
    let statuses: Vec<String> = InstanceStatus::ALL
        .iter()
        .map(|s| {
            s.as_str()
                .chars()
                .map(|c| format!("[{c}{}]", c.to_ascii_lowercase()))
                .collect()
        })
        .collect();
    let status_pattern = format!("^({})$", statuses.join("|"));
    let Some(paths) = document.get_mut("paths").and_then(Value::as_object_mut) else {
        return;
    };
    let error = json!({
        "description": "An error: `{code, message, details}` with a stable code (see ErrorCode); 401 without a valid token when authentication is on, 429 with `Retry-After` when rate limited",
        "content": {"application/json": {"schema": {"$ref": "#/components/schemas/ErrorBody"}}}
    });
    for item in paths.values_mut() {
        let Some(operations) = item.as_object_mut() else {
            continue;
        };
        for operation in operations.values_mut() {
            if let Some(responses) = operation
                .get_mut("responses")
                .and_then(Value::as_object_mut)
            {
                responses.entry("default").or_insert_with(|| error.clone());
            }
            let Some(parameters) = operation
                .get_mut("parameters")
                .and_then(Value::as_array_mut)
            else {
                continue;
            };
            for parameter in parameters {
                // A header or query value is text, never JSON null.
                if let Some(types) = parameter
                    .pointer_mut("/schema/type")
                    .and_then(Value::as_array_mut)
                {
                    types.retain(|t| t != "null");
                    if types.len() == 1 {
                        let single = types[0].clone();
                        parameter["schema"]["type"] = single;
                    }
                }
                let rules = match (parameter["in"].as_str(), parameter["name"].as_str()) {
                    (Some("path"), Some("name")) | (Some("query"), Some("instance")) => {
                        name.clone()
                    }
                    (Some("query"), Some("status")) => json!({"pattern": status_pattern}),
                    (Some("header"), Some("Idempotency-Key")) => {
                        json!({"pattern": "^[!-~]{1,256}$"})
                    }
                    (Some("header"), Some("If-Match")) => {
                        json!({"pattern": "^(\\*|\"[0-9]{1,19}\"|[0-9]{1,19})$"})
                    }
                    (Some("header"), Some("Last-Event-ID")) => json!({"minimum": 0}),
                    (Some("path"), Some("capacity_mb")) => {
                        json!({"minimum": MIN_MEM_MIB, "maximum": MAX_MIB})
                    }
                    (Some("path"), Some("masters")) => json!({"minimum": 1, "maximum": 1}),
                    (Some("path"), Some("slaves")) => json!({"maximum": MAX_REPLICAS}),
                    _ => continue,
                };
                if let Some(schema) = parameter.get_mut("schema") {
                    merge(schema, rules);
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_error_code_and_route_is_documented() {
        let json: serde_json::Value = serde_json::from_str(document_json()).unwrap();
        let codes = &json["components"]["schemas"]["ErrorCode"]["enum"];
        for code in ErrorCode::ALL {
            assert!(
                codes.as_array().unwrap().iter().any(|c| c == code.as_str()),
                "{code:?}"
            );
        }
        for path in [
            "/v1/instances",
            "/v1/instances/{name}",
            "/v1/events",
            "/health",
            "/openapi.json",
        ] {
            assert!(json["paths"][path].is_object(), "{path}");
        }
        assert_eq!(
            json["components"]["securitySchemes"]["bearer"]["scheme"],
            "bearer"
        );
    }
}
