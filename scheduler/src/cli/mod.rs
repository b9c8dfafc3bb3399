//! `mesos-stateful instance …`: the command-line client of the REST API.
//!
//! Conventions of kubectl-style tools: a verb per subcommand, the API's URL from
//! `--api` or `MESOS_STATEFUL_API`, the bearer token from `MESOS_STATEFUL_TOKEN` or
//! `--token-file`, human tables by default and `--output json` for scripts. `create
//! --wait` and `watch` follow `GET /v1/events` and print each member's progress
//! until every member runs. Exit status: 0 on success, 1 on an API error or a failed
//! instance, 2 on a usage error (clap's).
//!
//! # Layout
//! - [`client`]: the HTTP client (errors in the API's shape, the event stream).
//! - [`table`]: the human output.

pub mod client;
pub mod table;

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::Duration;

use anyhow::{bail, Context};
use clap::{Args, Subcommand, ValueEnum};
use serde_json::{json, Value};

use client::{ApiClient, SseEvent};

/// Where the API is and how to talk to it.
#[derive(Debug, Args)]
pub struct ApiArgs {
    /// URL of the REST API.
    #[arg(
        long = "api",
        env = "MESOS_STATEFUL_API",
        default_value = "http://127.0.0.1:8080",
        global = true
    )]
    pub api: String,
    /// File holding the API's bearer token (else MESOS_STATEFUL_TOKEN).
    #[arg(long, global = true)]
    pub token_file: Option<PathBuf>,
    /// PEM certificate(s) to trust for an https:// API, besides the system's.
    #[arg(long, env = "MESOS_STATEFUL_CA_FILE", global = true)]
    pub ca_file: Option<PathBuf>,
    /// Output format.
    #[arg(long, short = 'o', value_enum, default_value = "table", global = true)]
    pub output: Output,
}

/// How results are printed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Output {
    /// Aligned columns for people.
    Table,
    /// The API's JSON, pretty-printed.
    Json,
}

/// `mesos-stateful instance <verb>`.
#[derive(Debug, Subcommand)]
pub enum InstanceCommand {
    /// Create an instance: one master and N replicas of an image.
    Create(CreateArgs),
    /// List instances.
    List {
        /// Only instances with this status (RUNNING, CREATING, …).
        #[arg(long)]
        status: Option<String>,
    },
    /// Show one instance and its members.
    Get {
        /// Instance name.
        name: String,
    },
    /// Delete an instance (its tasks are killed).
    Delete {
        /// Instance name.
        name: String,
        /// Delete only if the instance is still at this version.
        #[arg(long)]
        if_version: Option<u64>,
    },
    /// Set the number of replicas.
    Scale {
        /// Instance name.
        name: String,
        /// Replicas besides the master.
        #[arg(long)]
        replicas: u32,
        /// Change only if the instance is still at this version.
        #[arg(long)]
        if_version: Option<u64>,
        /// Follow the members until every one runs.
        #[arg(long)]
        wait: bool,
        /// With --wait, give up after this many seconds.
        #[arg(long, default_value_t = 300)]
        timeout: u64,
    },
    /// Change the image, args, environment or resources; members restart one at a time.
    Update(UpdateArgs),
    /// Restart one member in place, or replace it elsewhere with --replace.
    Restart {
        /// Instance name.
        name: String,
        /// Ordinal of the member (0 is the first master).
        ordinal: u32,
        /// Start it anywhere with a new volume instead of in place.
        #[arg(long)]
        replace: bool,
    },
    /// Follow an instance's members until every one runs.
    Watch {
        /// Instance name.
        name: String,
        /// Give up after this many seconds.
        #[arg(long, default_value_t = 300)]
        timeout: u64,
    },
    /// Show where the running members listen.
    Endpoints {
        /// Instance name.
        name: String,
    },
}

/// Arguments of `instance update`; absent flags keep their value.
#[derive(Debug, Args)]
pub struct UpdateArgs {
    /// Instance name.
    pub name: String,
    /// Docker image of every member.
    #[arg(long)]
    pub image: Option<String>,
    /// Cpus of each member (with --mem and --disk).
    #[arg(long, requires_all = ["mem", "disk"])]
    pub cpus: Option<f64>,
    /// Memory of each member, MiB.
    #[arg(long, requires_all = ["cpus", "disk"])]
    pub mem: Option<f64>,
    /// Sandbox disk of each member, MiB.
    #[arg(long, requires_all = ["cpus", "mem"])]
    pub disk: Option<f64>,
    /// Replaces the master's container args (repeat).
    #[arg(long = "arg", allow_hyphen_values = true)]
    pub args: Vec<String>,
    /// Replaces the replicas' container args (repeat).
    #[arg(long = "replica-arg", allow_hyphen_values = true)]
    pub replica_args: Vec<String>,
    /// Replaces the environment, `NAME=VALUE` (repeat).
    #[arg(long = "env", value_parser = parse_env)]
    pub env: Vec<(String, String)>,
    /// Change only if the instance is still at this version.
    #[arg(long)]
    pub if_version: Option<u64>,
    /// Follow the members until every one runs.
    #[arg(long)]
    pub wait: bool,
    /// With --wait, give up after this many seconds.
    #[arg(long, default_value_t = 300)]
    pub timeout: u64,
}

/// The body of an update: only the fields given.
pub fn update_body(args: &UpdateArgs) -> Value {
    let mut body = json!({});
    if let Some(image) = &args.image {
        body["image"] = json!(image);
    }
    if let (Some(cpus), Some(mem), Some(disk)) = (args.cpus, args.mem, args.disk) {
        body["resources"] = json!({"cpus": cpus, "mem": mem, "disk": disk});
    }
    if !args.args.is_empty() {
        body["master_args"] = json!(args.args);
    }
    if !args.replica_args.is_empty() {
        body["replica_args"] = json!(args.replica_args);
    }
    if !args.env.is_empty() {
        body["env"] = json!(args.env.iter().cloned().collect::<BTreeMap<_, _>>());
    }
    body
}

/// Arguments of `instance create`.
#[derive(Debug, Args)]
pub struct CreateArgs {
    /// Instance name (a DNS label).
    pub name: String,
    /// Docker image of every member.
    #[arg(long)]
    pub image: String,
    /// Replicas besides the master.
    #[arg(long, default_value_t = 0)]
    pub replicas: u32,
    /// Cpus of each member.
    #[arg(long, default_value_t = 0.5)]
    pub cpus: f64,
    /// Memory of each member, MiB.
    #[arg(long, default_value_t = 256.0)]
    pub mem: f64,
    /// Sandbox disk of each member, MiB.
    #[arg(long, default_value_t = 256.0)]
    pub disk: f64,
    /// An argument of the master's container (repeat; `{port}` is replaced).
    #[arg(long = "arg", allow_hyphen_values = true)]
    pub args: Vec<String>,
    /// An argument of the replicas' containers (repeat; default: the master's;
    /// `{master_host}` and `{master_port}` are replaced too).
    #[arg(long = "replica-arg", allow_hyphen_values = true)]
    pub replica_args: Vec<String>,
    /// An environment variable of every member, `NAME=VALUE` (repeat).
    #[arg(long = "env", value_parser = parse_env)]
    pub env: Vec<(String, String)>,
    /// Makes a retried create return the first answer.
    #[arg(long)]
    pub idempotency_key: Option<String>,
    /// Follow the members until every one runs.
    #[arg(long)]
    pub wait: bool,
    /// With --wait, give up after this many seconds.
    #[arg(long, default_value_t = 300)]
    pub timeout: u64,
}

fn parse_env(value: &str) -> Result<(String, String), String> {
    value
        .split_once('=')
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .ok_or_else(|| format!("expected NAME=VALUE, got {value:?}"))
}

/// The body of a create.
pub fn create_body(args: &CreateArgs) -> Value {
    let mut body = json!({
        "name": args.name,
        "image": args.image,
        "replicas": args.replicas,
        "resources": {"cpus": args.cpus, "mem": args.mem, "disk": args.disk},
        "master_args": args.args,
        "env": args.env.iter().cloned().collect::<BTreeMap<_, _>>(),
    });
    if !args.replica_args.is_empty() {
        body["replica_args"] = json!(args.replica_args);
    }
    body
}

/// Runs one `instance` command; the process's exit status.
pub async fn run(api: ApiArgs, command: InstanceCommand) -> anyhow::Result<i32> {
    let token = match &api.token_file {
        Some(path) => Some(
            std::fs::read_to_string(path)
                .with_context(|| format!("reading the token from {}", path.display()))?
                .trim()
                .to_string(),
        ),
        None => std::env::var("MESOS_STATEFUL_TOKEN")
            .ok()
            .filter(|t| !t.trim().is_empty()),
    };
    let ca = match &api.ca_file {
        Some(path) => Some(
            std::fs::read(path)
                .with_context(|| format!("reading the CA certificate {}", path.display()))?,
        ),
        None => None,
    };
    let client = ApiClient::new(&api.api, token, ca.as_deref())?;
    let output = api.output;
    match command {
        InstanceCommand::Create(args) => {
            let view = client
                .post_json(
                    "/v1/instances",
                    &create_body(&args),
                    args.idempotency_key.as_deref(),
                )
                .await?;
            print(output, &view, table::instance);
            if args.wait {
                return watch(&client, output, &args.name, args.timeout).await;
            }
        }
        InstanceCommand::List { status } => {
            let path = match status {
                Some(status) => format!("/v1/instances?status={}", urlencode(&status)),
                None => "/v1/instances".to_string(),
            };
            let views = client.get(&path).await?;
            print(output, &views, table::instances);
        }
        InstanceCommand::Get { name } => {
            let view = client.get(&instance_path(&name)?).await?;
            print(output, &view, table::instance);
        }
        InstanceCommand::Delete { name, if_version } => {
            let view = client.delete(&instance_path(&name)?, if_version).await?;
            print(output, &view, table::instance);
        }
        InstanceCommand::Scale {
            name,
            replicas,
            if_version,
            wait,
            timeout,
        } => {
            let view = client
                .patch_json(
                    &instance_path(&name)?,
                    &json!({ "replicas": replicas }),
                    if_version,
                )
                .await?;
            print(output, &view, table::instance);
            if wait {
                return watch(&client, output, &name, timeout).await;
            }
        }
        InstanceCommand::Update(args) => {
            let body = update_body(&args);
            if body.as_object().is_some_and(|o| o.is_empty()) {
                bail!("nothing to update: give --image, --cpus/--mem/--disk, --arg, --replica-arg or --env");
            }
            let view = client
                .patch_json(&instance_path(&args.name)?, &body, args.if_version)
                .await?;
            print(output, &view, table::instance);
            if args.wait {
                return watch(&client, output, &args.name, args.timeout).await;
            }
        }
        InstanceCommand::Restart {
            name,
            ordinal,
            replace,
        } => {
            let verb = if replace { "replace" } else { "restart" };
            let view = client
                .post_json(
                    &format!("{}/members/{ordinal}/{verb}", instance_path(&name)?),
                    &json!({}),
                    None,
                )
                .await?;
            print(output, &view, table::instance);
        }
        InstanceCommand::Watch { name, timeout } => {
            return watch(&client, output, &name, timeout).await;
        }
        InstanceCommand::Endpoints { name } => {
            let endpoints = client
                .get(&format!("{}/endpoints", instance_path(&name)?))
                .await?;
            print(output, &endpoints, table::endpoints);
        }
    }
    Ok(0)
}

fn print(output: Output, value: &Value, human: fn(&Value) -> String) {
    match output {
        Output::Table => print!("{}", human(value)),
        Output::Json => println!(
            "{}",
            serde_json::to_string_pretty(value).unwrap_or_else(|_| value.to_string())
        ),
    }
}

fn instance_path(name: &str) -> anyhow::Result<String> {
    if name.is_empty() || !name.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-') {
        bail!("invalid instance name {name:?}");
    }
    Ok(format!("/v1/instances/{name}"))
}

fn urlencode(value: &str) -> String {
    value
        .bytes()
        .map(|b| {
            if b.is_ascii_alphanumeric() || b"-_.~".contains(&b) {
                (b as char).to_string()
            } else {
                format!("%{b:02X}")
            }
        })
        .collect()
}

/// What `watch` knows of an instance: its members by ordinal and its status.
#[derive(Debug, Default, Clone, PartialEq)]
pub struct Progress {
    /// Status of the instance.
    pub status: String,
    /// Members asked for (master and replicas).
    pub wanted: usize,
    /// Latest state of each member by ordinal.
    pub members: BTreeMap<u64, Value>,
}

/// Where a watch stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    /// Members are still starting.
    Waiting,
    /// Every member runs.
    Running,
    /// The instance failed or is being deleted.
    Failed,
}

impl Progress {
    /// From an instance view.
    pub fn from_view(view: &Value) -> Self {
        let members = view["members"]
            .as_array()
            .map(|members| {
                members
                    .iter()
                    .filter_map(|m| Some((m["ordinal"].as_u64()?, m.clone())))
                    .collect()
            })
            .unwrap_or_default();
        Progress {
            status: view["status"].as_str().unwrap_or_default().to_string(),
            wanted: view["spec"]["replicas"].as_u64().unwrap_or(0) as usize + 1,
            members,
        }
    }

    /// Applies one event of the stream; whether it changed anything worth printing.
    pub fn apply(&mut self, event: &SseEvent) -> bool {
        let Ok(data) = serde_json::from_str::<Value>(&event.data) else {
            return false;
        };
        match event.kind.as_str() {
            "instance" => {
                let status = data["status"].as_str().unwrap_or_default().to_string();
                let changed = status != self.status;
                self.status = status;
                changed
            }
            "member" => {
                let member = data["member"].clone();
                let Some(ordinal) = member["ordinal"].as_u64() else {
                    return false;
                };
                let changed =
                    self.members.get(&ordinal).map(|m| &m["state"]) != Some(&member["state"]);
                self.members.insert(ordinal, member);
                changed
            }
            _ => false,
        }
    }

    /// Whether the watch is over.
    pub fn verdict(&self) -> Verdict {
        if matches!(self.status.as_str(), "FAILED" | "DELETING" | "DELETED") {
            return Verdict::Failed;
        }
        let running = self
            .members
            .values()
            .filter(|m| m["state"] == "TASK_RUNNING")
            .count();
        if running >= self.wanted && self.status == "RUNNING" {
            Verdict::Running
        } else {
            Verdict::Waiting
        }
    }
}

/// Follows `name` until every member runs (0), it fails (1), or `timeout` passes.
async fn watch(
    client: &ApiClient,
    output: Output,
    name: &str,
    timeout: u64,
) -> anyhow::Result<i32> {
    let path = instance_path(name)?;
    let deadline = tokio::time::Instant::now() + Duration::from_secs(timeout);
    let mut last_id: Option<String> = None;
    // The stream first, then the state: nothing happens between unseen.
    let mut events = client
        .events(&format!("/v1/events?instance={name}"), None)
        .await?;
    let mut progress = Progress::from_view(&client.get(&path).await?);
    if output == Output::Table {
        print!("{}", table::progress(&progress));
    }
    loop {
        match progress.verdict() {
            Verdict::Running => {
                if output == Output::Json {
                    println!(
                        "{}",
                        serde_json::to_string_pretty(&client.get(&path).await?)?
                    );
                } else {
                    println!("instance {name} is RUNNING");
                }
                return Ok(0);
            }
            Verdict::Failed => {
                eprintln!("instance {name} is {}", progress.status);
                return Ok(1);
            }
            Verdict::Waiting => {}
        }
        let next = tokio::time::timeout_at(deadline, events.next()).await;
        let event = match next {
            Err(_) => bail!("timed out after {timeout} s waiting for {name} to run"),
            Ok(Ok(Some(event))) => event,
            Ok(Ok(None)) | Ok(Err(_)) => {
                // The stream ended (server restart): resume after the last id.
                tokio::time::sleep(Duration::from_millis(500)).await;
                events = client
                    .events(&format!("/v1/events?instance={name}"), last_id.as_deref())
                    .await?;
                continue;
            }
        };
        if let Some(id) = &event.id {
            last_id = Some(id.clone());
        }
        if event.kind == "reset" {
            progress = Progress::from_view(&client.get(&path).await?);
            continue;
        }
        if progress.apply(&event) {
            match output {
                Output::Table => print!("{}", table::event_line(&event)),
                Output::Json => println!("{}", event.data),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn event(kind: &str, data: Value) -> SseEvent {
        SseEvent {
            id: Some("1".into()),
            kind: kind.into(),
            data: data.to_string(),
        }
    }

    #[test]
    fn progress_waits_for_every_member_and_the_status() {
        let view = json!({"status": "CREATING", "spec": {"replicas": 1},
            "members": [{"ordinal": 0, "state": null}]});
        let mut progress = Progress::from_view(&view);
        assert_eq!(progress.wanted, 2);
        assert_eq!(progress.verdict(), Verdict::Waiting);
        let member = |ordinal: u64, state: &str| {
            event(
                "member",
                json!({"instance": "a", "member": {"ordinal": ordinal, "state": state}}),
            )
        };
        assert!(progress.apply(&member(0, "TASK_RUNNING")));
        assert!(!progress.apply(&member(0, "TASK_RUNNING")));
        assert!(progress.apply(&member(1, "TASK_RUNNING")));
        assert_eq!(progress.verdict(), Verdict::Waiting);
        assert!(progress.apply(&event("instance", json!({"status": "RUNNING"}))));
        assert_eq!(progress.verdict(), Verdict::Running);
        assert!(progress.apply(&event("instance", json!({"status": "FAILED"}))));
        assert_eq!(progress.verdict(), Verdict::Failed);
    }

    #[test]
    fn create_bodies_carry_the_flags() {
        let args = CreateArgs {
            name: "c1".into(),
            image: "redis:7".into(),
            replicas: 2,
            cpus: 0.5,
            mem: 128.0,
            disk: 64.0,
            args: vec!["redis-server".into(), "--port".into(), "{port}".into()],
            replica_args: vec![],
            env: vec![("A".into(), "b".into())],
            idempotency_key: None,
            wait: false,
            timeout: 1,
        };
        let body = create_body(&args);
        assert_eq!(body["replicas"], 2);
        assert_eq!(body["resources"]["mem"], 128.0);
        assert_eq!(body["env"]["A"], "b");
        assert!(body.get("replica_args").is_none());
        assert_eq!(parse_env("A=b=c"), Ok(("A".into(), "b=c".into())));
        assert!(parse_env("A").is_err());
        assert_eq!(urlencode("RUN NING"), "RUN%20NING");
        assert!(instance_path("a/b").is_err());
    }
}
