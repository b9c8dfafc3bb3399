//! Routes of mr-redis and its `mrr` CLI, for people moving from it:
//!
//! - `POST /v1/CREATE/{name}/{capacity_mb}/{masters}/{slaves}` → 201: an instance of
//!   the operator's Redis image (`--compat-image`) with `capacity_mb` of memory per
//!   member, one master (mr-redis never ran more in one instance) and `slaves`
//!   replicas;
//! - `DELETE /v1/DELETE/{name}` → 202;
//! - `GET /v1/STATUS` and `GET /v1/STATUS/{name}` → mr-redis's status shape (`Name`,
//!   `Type`, `Status`, `Capacity`, `Master`, `Slaves`).
//!
//! Errors keep this API's JSON shape; the status codes are the ones of the native
//! routes, with 201 on create.

use actix_web::http::StatusCode;
use actix_web::{web, HttpRequest, HttpResponse};
use serde::Serialize;
use utoipa::ToSchema;

use mesos_stateful_store::records::{InstanceSpec, InstanceStatus};

use crate::domain::request::CreateInstanceRequest;
use crate::domain::view::{InstanceView, MemberView};
use crate::ActorError;

use super::error::{method_not_allowed, ApiError, ErrorBody, ErrorCode};
use super::idempotency::IdempotencyKey;
use super::instances::{checked_name, create, delete};
use super::{ApiHandles, ApiShared};

/// Cpus of each member of an mr-redis instance (mr-redis asked for one per process).
pub const COMPAT_CPUS: f64 = 1.0;
/// Sandbox disk of each member, MiB.
pub const COMPAT_DISK_MIB: f64 = 256.0;

/// Adds the routes.
pub fn configure(config: &mut web::ServiceConfig) {
    config
        .service(
            web::resource("/v1/CREATE/{name}/{capacity_mb}/{masters}/{slaves}")
                .route(web::post().to(compat_create))
                .default_service(web::to(method_not_allowed)),
        )
        .service(
            web::resource("/v1/DELETE/{name}")
                .route(web::delete().to(compat_delete))
                .default_service(web::to(method_not_allowed)),
        )
        .service(
            web::resource("/v1/STATUS")
                .route(web::get().to(compat_status_all))
                .default_service(web::to(method_not_allowed)),
        )
        .service(
            web::resource("/v1/STATUS/{name}")
                .route(web::get().to(compat_status))
                .default_service(web::to(method_not_allowed)),
        );
}

/// One Redis process as mr-redis shows it.
#[derive(Debug, Serialize, ToSchema, PartialEq)]
#[serde(rename_all = "PascalCase")]
pub struct CompatProcess {
    /// Host of its agent.
    #[serde(rename = "IP")]
    pub ip: String,
    /// Its port.
    pub port: String,
    /// Memory asked for it, MiB.
    pub memory_capacity: u64,
    /// Memory in use, bytes (0 until a stats sample arrived).
    pub memory_used: u64,
    /// Host of the master it replicates from (replicas only).
    #[serde(rename = "MasterIP")]
    pub master_ip: String,
    /// Port of that master.
    pub master_port: String,
    /// Task id of the process.
    #[serde(rename = "ID")]
    pub id: String,
    /// Mesos task state.
    pub state: String,
}

/// An instance as mr-redis shows it.
#[derive(Debug, Serialize, ToSchema, PartialEq)]
#[serde(rename_all = "PascalCase")]
pub struct CompatInstance {
    /// Instance name.
    pub name: String,
    /// `S` (a master alone) or `MS` (master and replicas).
    #[serde(rename = "Type")]
    pub kind: String,
    /// `CREATING`, `RUNNING`, `DELETED` or `DISABLED`.
    pub status: String,
    /// Memory of each process, MiB.
    pub capacity: u64,
    /// The master, once placed.
    pub master: Option<CompatProcess>,
    /// The placed replicas.
    pub slaves: Vec<CompatProcess>,
}

impl CompatInstance {
    /// The mr-redis view of `view`.
    pub fn new(view: &InstanceView) -> Self {
        let status = match view.status {
            InstanceStatus::Creating => "CREATING",
            InstanceStatus::Deleting | InstanceStatus::Deleted => "DELETED",
            InstanceStatus::Failed => "DISABLED",
            _ => "RUNNING",
        };
        let capacity = view.spec.resources.mem.round() as u64;
        let master = view.master();
        let process = |member: &MemberView| -> Option<CompatProcess> {
            let (host, port) = member.endpoint()?;
            let upstream = match member.role {
                mesos_stateful_store::records::Role::Replica => {
                    master.and_then(MemberView::endpoint)
                }
                mesos_stateful_store::records::Role::Master => None,
            };
            Some(CompatProcess {
                ip: host,
                port: port.to_string(),
                memory_capacity: capacity,
                memory_used: member
                    .stats
                    .as_ref()
                    .and_then(|s| s.memory_bytes)
                    .unwrap_or(0),
                master_ip: upstream
                    .as_ref()
                    .map(|(h, _)| h.clone())
                    .unwrap_or_default(),
                master_port: upstream.map(|(_, p)| p.to_string()).unwrap_or_default(),
                id: member.task_id.clone(),
                state: member.state.clone().unwrap_or_default(),
            })
        };
        CompatInstance {
            name: view.name.clone(),
            kind: if view.spec.replicas == 0 { "S" } else { "MS" }.to_string(),
            status: status.to_string(),
            capacity,
            master: master.and_then(process),
            slaves: view
                .members
                .iter()
                .filter(|m| m.role == mesos_stateful_store::records::Role::Replica)
                .filter_map(process)
                .collect(),
        }
    }
}

/// The spec of an mr-redis create.
pub fn compat_spec(
    name: &str,
    image: &str,
    capacity_mb: &str,
    masters: &str,
    slaves: &str,
) -> Result<(String, InstanceSpec), ApiError> {
    let number = |field: &'static str, value: &str| {
        value.parse::<u32>().map_err(|_| {
            ApiError::bad_request(
                ErrorCode::InvalidField,
                format!(
                    "{field} must be a whole number, got {:?}",
                    value.chars().take(20).collect::<String>()
                ),
            )
        })
    };
    let capacity = number("capacity_mb", capacity_mb)?;
    if number("masters", masters)? != 1 {
        return Err(ApiError::bad_request(
            ErrorCode::InvalidField,
            "masters must be 1: an instance has one master",
        ));
    }
    let replicas = number("slaves", slaves)?;
    let args = |replica: bool| {
        let mut args = vec![
            "redis-server".to_string(),
            "--port".into(),
            "{port}".into(),
            "--maxmemory".into(),
            format!("{capacity}mb"),
        ];
        if replica {
            args.extend([
                "--replicaof".into(),
                "{master_host}".into(),
                "{master_port}".into(),
            ]);
        }
        args
    };
    // Through the body's own parser, so every default of a create applies.
    let request: CreateInstanceRequest = serde_json::from_value(serde_json::json!({
        "name": name,
        "image": image,
        "replicas": replicas,
        "resources": {"cpus": COMPAT_CPUS, "mem": f64::from(capacity), "disk": COMPAT_DISK_MIB},
        "master_args": args(false),
        "replica_args": args(true),
    }))
    .map_err(|e| {
        ApiError::bad_request(ErrorCode::InvalidField, format!("invalid instance: {e}"))
    })?;
    Ok(request.validate().map_err(ActorError::from)?)
}

/// mr-redis create: a Redis instance of `capacity_mb` per member.
#[utoipa::path(
    post,
    path = "/v1/CREATE/{name}/{capacity_mb}/{masters}/{slaves}",
    tag = "mr-redis",
    params(
        ("name" = String, Path, description = "Instance name"),
        ("capacity_mb" = u32, Path, description = "Memory of each member, MiB"),
        ("masters" = u32, Path, description = "Must be 1"),
        ("slaves" = u32, Path, description = "Replicas"),
    ),
    responses(
        (status = 201, description = "Accepted and durable", body = InstanceView),
        (status = 400, description = "Invalid name or numbers", body = ErrorBody),
        (status = 409, description = "The name exists with another spec", body = ErrorBody),
    )
)]
pub async fn compat_create(
    path: web::Path<(String, String, String, String)>,
    handles: web::Data<ApiHandles>,
    shared: web::Data<ApiShared>,
) -> Result<HttpResponse, ApiError> {
    let (name, capacity, masters, slaves) = path.into_inner();
    let (name, spec) = compat_spec(
        &name,
        &shared.settings.compat_image,
        &capacity,
        &masters,
        &slaves,
    )?;
    let mut response = create(
        &handles,
        &shared,
        IdempotencyKey::Name(name.clone()),
        name,
        spec,
    )
    .await?;
    if response.status() == StatusCode::ACCEPTED {
        *response.status_mut() = StatusCode::CREATED;
    }
    Ok(response)
}

/// mr-redis delete.
#[utoipa::path(
    delete,
    path = "/v1/DELETE/{name}",
    tag = "mr-redis",
    params(("name" = String, Path, description = "Instance name")),
    responses(
        (status = 202, description = "Deletion under way", body = InstanceView),
        (status = 404, description = "No such instance", body = ErrorBody),
    )
)]
pub async fn compat_delete(
    request: HttpRequest,
    path: web::Path<String>,
    handles: web::Data<ApiHandles>,
    shared: web::Data<ApiShared>,
) -> Result<HttpResponse, ApiError> {
    let name = checked_name(path.into_inner())?;
    delete(&request, &handles, &shared, name).await
}

/// mr-redis status of every instance.
#[utoipa::path(
    get,
    path = "/v1/STATUS",
    tag = "mr-redis",
    responses((status = 200, description = "Every instance", body = Vec<CompatInstance>))
)]
pub async fn compat_status_all(handles: web::Data<ApiHandles>) -> Result<HttpResponse, ApiError> {
    let all: Vec<CompatInstance> = handles
        .state
        .list()
        .iter()
        .map(|state| CompatInstance::new(&state.view()))
        .collect();
    Ok(HttpResponse::Ok().json(all))
}

/// mr-redis status of one instance.
#[utoipa::path(
    get,
    path = "/v1/STATUS/{name}",
    tag = "mr-redis",
    params(("name" = String, Path, description = "Instance name")),
    responses(
        (status = 200, description = "The instance", body = CompatInstance),
        (status = 404, description = "No such instance", body = ErrorBody),
    )
)]
pub async fn compat_status(
    path: web::Path<String>,
    handles: web::Data<ApiHandles>,
) -> Result<HttpResponse, ApiError> {
    let name = checked_name(path.into_inner())?;
    match handles.state.get(&name) {
        Some(state) => Ok(HttpResponse::Ok().json(CompatInstance::new(&state.view()))),
        None => Err(ActorError::NotFound(name).into()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn create_paths_become_redis_specs() {
        let (name, spec) = compat_spec("cache1", "redis:7", "512", "1", "2").unwrap();
        assert_eq!(name, "cache1");
        assert_eq!(spec.replicas, 2);
        assert_eq!(spec.resources.mem, 512.0);
        assert!(spec.replica_args.contains(&"--replicaof".to_string()));
        assert!(spec.master_args.contains(&"512mb".to_string()));
        for (capacity, masters, slaves) in [
            ("x", "1", "0"),
            ("512", "2", "0"),
            ("512", "1", "-1"),
            ("0", "1", "0"),
        ] {
            assert!(
                compat_spec("cache1", "redis:7", capacity, masters, slaves).is_err(),
                "{capacity} {masters} {slaves}"
            );
        }
        assert!(compat_spec("Bad_Name", "redis:7", "512", "1", "0").is_err());
    }

    #[test]
    fn status_has_the_mr_redis_shape() {
        let body = r#"{"name":"c","image":"redis:7","replicas":1,"resources":{"cpus":1,"mem":100,"disk":10}}"#;
        let (_, spec) = serde_json::from_str::<CreateInstanceRequest>(body)
            .unwrap()
            .validate()
            .unwrap();
        let member = |ordinal: u32, role, port: u16| MemberView {
            name: format!("c-{ordinal}"),
            ordinal,
            role,
            task_id: format!("c-{ordinal}.1"),
            agent_id: Some("a1".into()),
            host: Some("h1".into()),
            port: Some(port),
            state: Some("TASK_RUNNING".into()),
            message: None,
            healthy: None,
            stats: None,
        };
        let view = InstanceView {
            name: "c".into(),
            status: InstanceStatus::Running,
            status_message: None,
            spec,
            version: 3,
            members: vec![
                member(0, mesos_stateful_store::records::Role::Master, 31000),
                member(1, mesos_stateful_store::records::Role::Replica, 31001),
            ],
        };
        let json = serde_json::to_value(CompatInstance::new(&view)).unwrap();
        assert_eq!(json["Name"], "c");
        assert_eq!(json["Type"], "MS");
        assert_eq!(json["Status"], "RUNNING");
        assert_eq!(json["Capacity"], 100);
        assert_eq!(json["Master"]["IP"], "h1");
        assert_eq!(json["Master"]["Port"], "31000");
        assert_eq!(json["Slaves"][0]["MasterPort"], "31000");
        assert_eq!(json["Slaves"][0]["ID"], "c-1.1");
    }
}
