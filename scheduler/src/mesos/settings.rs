//! What the framework registers as: [`FrameworkSettings`] and the FrameworkInfo built
//! from them.

use std::time::Duration;

use mesos_stateful_proto::v1;
use mesos_stateful_proto::v1::framework_info::capability::Type as Capability;

use super::auth::Credentials;
use crate::error::SchedulerError;

/// Default `failover_timeout`: one week.
pub const DEFAULT_FAILOVER_TIMEOUT: Duration = Duration::from_secs(7 * 24 * 3600);

/// What the framework registers as. `checkpoint` is always on: tasks must survive
/// agent restarts.
#[derive(Debug, Clone, PartialEq)]
pub struct FrameworkSettings {
    /// Framework name.
    pub name: String,
    /// User tasks run as on agents.
    pub user: String,
    /// Mesos roles; more than one registers with the MULTI_ROLE capability.
    pub roles: Vec<String>,
    /// How long Mesos keeps our tasks running while we are away. Never zero: zero
    /// would make Mesos kill every task the moment the connection drops.
    pub failover_timeout: Duration,
    /// `FrameworkInfo.principal`; defaults to the credentials' principal.
    pub principal: Option<String>,
    /// HTTP Basic credentials sent on every request, if the master authenticates.
    pub credentials: Option<Credentials>,
    /// Registers as PARTITION_AWARE (TASK_UNREACHABLE/GONE/DROPPED instead of
    /// TASK_LOST). Off by default.
    pub partition_aware: bool,
    /// Capabilities beyond TASK_KILLING_STATE (always on), MULTI_ROLE and
    /// PARTITION_AWARE (set from the fields above).
    pub extra_capabilities: Vec<Capability>,
    /// Framework labels.
    pub labels: Vec<(String, String)>,
}

impl Default for FrameworkSettings {
    fn default() -> Self {
        FrameworkSettings {
            name: "mesos-stateful".to_string(),
            user: std::env::var("USER").unwrap_or_else(|_| "root".to_string()),
            roles: vec!["*".to_string()],
            failover_timeout: DEFAULT_FAILOVER_TIMEOUT,
            principal: None,
            credentials: None,
            partition_aware: false,
            extra_capabilities: Vec::new(),
            labels: Vec::new(),
        }
    }
}

impl FrameworkSettings {
    /// Refuses settings Mesos would reject or that would lose tasks.
    pub fn validate(&self) -> Result<(), SchedulerError> {
        if self.failover_timeout.is_zero() {
            return Err(SchedulerError::Config(
                "failover_timeout must not be zero: Mesos would kill every task on disconnect"
                    .to_string(),
            ));
        }
        if self.roles.is_empty() || self.roles.iter().any(|role| role.is_empty()) {
            return Err(SchedulerError::Config(
                "roles: at least one role, none empty".into(),
            ));
        }
        if let (Some(principal), Some(credentials)) = (&self.principal, &self.credentials) {
            if *principal != credentials.principal {
                return Err(SchedulerError::Config(format!(
                    "principal {principal:?} differs from the credentials' principal {:?}; the master would refuse it",
                    credentials.principal
                )));
            }
        }
        Ok(())
    }

    /// The principal registered in FrameworkInfo.
    pub fn effective_principal(&self) -> Option<String> {
        self.principal
            .clone()
            .or_else(|| self.credentials.as_ref().map(|c| c.principal.clone()))
    }

    /// The capabilities registered.
    pub fn capabilities(&self) -> Vec<Capability> {
        let mut capabilities = vec![Capability::TaskKillingState];
        if self.roles.len() > 1 {
            capabilities.push(Capability::MultiRole);
        }
        if self.partition_aware {
            capabilities.push(Capability::PartitionAware);
        }
        for extra in &self.extra_capabilities {
            if !capabilities.contains(extra) && *extra != Capability::Unknown {
                capabilities.push(*extra);
            }
        }
        capabilities
    }

    /// FrameworkInfo for a SUBSCRIBE, with `id` on a re-subscription.
    pub fn framework_info(&self, id: Option<String>) -> v1::FrameworkInfo {
        let capabilities = self.capabilities();
        let multi_role = capabilities.contains(&Capability::MultiRole);
        #[allow(deprecated)]
        let info = v1::FrameworkInfo {
            user: self.user.clone(),
            name: self.name.clone(),
            id: id.map(|value| v1::FrameworkId { value }),
            failover_timeout: Some(self.failover_timeout.as_secs_f64()),
            checkpoint: Some(true),
            // With MULTI_ROLE Mesos reads `roles` only; without it, `role` only.
            role: if multi_role {
                None
            } else {
                self.roles.first().cloned()
            },
            roles: if multi_role {
                self.roles.clone()
            } else {
                Vec::new()
            },
            principal: self.effective_principal(),
            capabilities: capabilities
                .into_iter()
                .map(|kind| v1::framework_info::Capability {
                    r#type: Some(kind as i32),
                })
                .collect(),
            labels: if self.labels.is_empty() {
                None
            } else {
                Some(v1::Labels {
                    labels: self
                        .labels
                        .iter()
                        .map(|(key, value)| v1::Label {
                            key: key.clone(),
                            value: Some(value.clone()),
                        })
                        .collect(),
                })
            },
            ..Default::default()
        };
        info
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn capability_types(info: &v1::FrameworkInfo) -> Vec<i32> {
        info.capabilities.iter().filter_map(|c| c.r#type).collect()
    }

    #[test]
    #[allow(deprecated)]
    fn framework_info_follows_the_settings() {
        let single = FrameworkSettings::default().framework_info(None);
        assert_eq!(single.checkpoint, Some(true));
        assert_eq!(single.failover_timeout, Some(7.0 * 24.0 * 3600.0));
        assert_eq!(single.role.as_deref(), Some("*"));
        assert!(single.roles.is_empty());
        assert_eq!(
            capability_types(&single),
            vec![Capability::TaskKillingState as i32]
        );
        assert!(single.id.is_none());
        assert!(single.principal.is_none());
        assert!(single.labels.is_none());

        let multi = FrameworkSettings {
            roles: vec!["a".into(), "b".into()],
            partition_aware: true,
            extra_capabilities: vec![Capability::GpuResources, Capability::TaskKillingState],
            labels: vec![("team".into(), "db".into())],
            credentials: Some(Credentials::new("fw", "s").unwrap()),
            ..Default::default()
        }
        .framework_info(Some("fw-1".into()));
        assert_eq!(multi.role, None);
        assert_eq!(multi.roles, vec!["a".to_string(), "b".to_string()]);
        assert_eq!(
            capability_types(&multi),
            vec![
                Capability::TaskKillingState as i32,
                Capability::MultiRole as i32,
                Capability::PartitionAware as i32,
                Capability::GpuResources as i32,
            ]
        );
        assert_eq!(multi.id.unwrap().value, "fw-1");
        assert_eq!(multi.principal.as_deref(), Some("fw"));
        let labels = multi.labels.unwrap().labels;
        assert_eq!(labels[0].key, "team");
        assert_eq!(labels[0].value.as_deref(), Some("db"));
    }

    #[test]
    fn invalid_settings_are_refused() {
        let cases = [
            FrameworkSettings {
                failover_timeout: Duration::ZERO,
                ..Default::default()
            },
            FrameworkSettings {
                roles: Vec::new(),
                ..Default::default()
            },
            FrameworkSettings {
                roles: vec![String::new()],
                ..Default::default()
            },
            FrameworkSettings {
                principal: Some("other".into()),
                credentials: Some(Credentials::new("fw", "s").unwrap()),
                ..Default::default()
            },
        ];
        for settings in cases {
            assert!(settings.validate().is_err(), "{settings:?}");
        }
        assert!(FrameworkSettings::default().validate().is_ok());
    }
}
