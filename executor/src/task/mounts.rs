//! Sandbox directories bound into a task's container, made safe on disk.
//!
//! The plan has already refused absolute paths and `..` ([`super::plan_container`]);
//! what is left to check needs the file system: a component of a sandbox path may be
//! a symbolic link (the task's earlier incarnation, or an artifact the agent fetched,
//! may have put one there). [`prepare_mounts`] walks each path from the sandbox down,
//! creating missing directories one level at a time and resolving every existing
//! component, and refuses the mount as soon as a component leads outside the
//! sandbox. Only directories inside the sandbox are ever bound: host paths outside it
//! never reach the engine.
//!
//! One exception, made by the agent rather than by the task: a persistent volume.
//! An agent without a mount namespace for the executor (Mesos's `filesystem/posix`
//! isolator, devcluster) puts the volume in the sandbox as a symbolic link to
//! `<dir>/volumes/roles/<role>/<persistence id>`, where `<dir>` is an ancestor of the
//! sandbox (the agent's work directory). Such a link is followed only as the last
//! component of that volume's own mount, and only when it leads to exactly that shape
//! with the task's persistence id; anything else is refused like any other link.
//!
//! This is blocking file I/O; the launch runs it on tokio's blocking pool.

use std::io;
use std::path::{Component, Path, PathBuf};

use super::SandboxMount;
use crate::docker::BindMount;

/// Creates the sandbox directories of `mounts` under `sandbox` and returns the bind
/// mounts of their resolved host paths, or why one of them cannot be mounted.
pub fn prepare_mounts(sandbox: &Path, mounts: &[SandboxMount]) -> Result<Vec<BindMount>, String> {
    if mounts.is_empty() {
        return Ok(Vec::new());
    }
    let root = sandbox
        .canonicalize()
        .map_err(|err| format!("cannot resolve the sandbox {}: {err}", sandbox.display()))?;
    mounts
        .iter()
        .map(|mount| {
            let volume = mount.persistence_id.as_deref();
            let source = resolve_mount(&root, &mount.sandbox_path, volume).map_err(|reason| {
                format!(
                    "cannot mount sandbox path {}: {reason}",
                    mount.sandbox_path.display()
                )
            })?;
            Ok(BindMount::new(
                source.to_string_lossy().into_owned(),
                mount.container_path.clone(),
                mount.read_only,
            ))
        })
        .collect()
}

/// The real directory `relative` names under the canonical sandbox `root`, created
/// when missing; an error if any component leads outside `root` or is not a
/// directory.
pub fn resolve_in_sandbox(root: &Path, relative: &Path) -> Result<PathBuf, String> {
    resolve_mount(root, relative, None)
}

/// [`resolve_in_sandbox`], except that when `volume` names a persistent volume its
/// last component may be the agent's link to that volume's directory.
fn resolve_mount(root: &Path, relative: &Path, volume: Option<&str>) -> Result<PathBuf, String> {
    let mut current = root.to_path_buf();
    let mut components = relative.components().peekable();
    while let Some(component) = components.next() {
        let name = match component {
            Component::Normal(name) => name,
            Component::CurDir => continue,
            _ => return Err("the path must be relative, without `..`".to_owned()),
        };
        let last = components.peek().is_none();
        let next = current.join(name);
        match std::fs::symlink_metadata(&next) {
            Ok(meta) => {
                let resolved = next
                    .canonicalize()
                    .map_err(|err| format!("cannot resolve {}: {err}", next.display()))?;
                if let Some(id) = volume.filter(|_| last && meta.file_type().is_symlink()) {
                    if is_agent_volume(root, &resolved, id) && resolved.is_dir() {
                        return Ok(resolved);
                    }
                }
                if !resolved.starts_with(root) {
                    return Err(format!(
                        "{} leads outside the sandbox (to {})",
                        next.display(),
                        resolved.display()
                    ));
                }
                if !resolved.is_dir() {
                    return Err(format!("{} is not a directory", resolved.display()));
                }
                current = resolved;
            }
            Err(err) if err.kind() == io::ErrorKind::NotFound => {
                std::fs::create_dir(&next)
                    .map_err(|err| format!("cannot create {}: {err}", next.display()))?;
                current = next;
            }
            Err(err) => return Err(format!("cannot inspect {}: {err}", next.display())),
        }
    }
    // One last check on the whole path, in case a component changed under us.
    let resolved = current
        .canonicalize()
        .map_err(|err| format!("cannot resolve {}: {err}", current.display()))?;
    if resolved.starts_with(root) {
        Ok(resolved)
    } else {
        Err(format!("{} leads outside the sandbox", current.display()))
    }
}

/// Whether the canonical `target` is `<dir>/volumes/roles/<role>/<id>` for some
/// ancestor `<dir>` of the canonical sandbox `root` and a role of one or more plain
/// components.
fn is_agent_volume(root: &Path, target: &Path, id: &str) -> bool {
    if target.file_name().and_then(|name| name.to_str()) != Some(id) {
        return false;
    }
    root.ancestors().skip(1).any(|dir| {
        let Ok(rest) = target.strip_prefix(dir.join("volumes").join("roles")) else {
            return false;
        };
        // The role, then the id: at least two components, all plain.
        rest.components().count() >= 2
            && rest
                .components()
                .all(|component| matches!(component, Component::Normal(_)))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn mount(sandbox_path: &str, container_path: &str, read_only: bool) -> SandboxMount {
        SandboxMount {
            sandbox_path: sandbox_path.into(),
            container_path: container_path.into(),
            read_only,
            persistence_id: None,
        }
    }

    /// An agent's layout: `<work>/agents/a1/runs/c1` as the sandbox, volumes under
    /// `<work>/agents/a1/volumes/roles/<role>/<id>` (devcluster's; Mesos's sits one
    /// level higher, which the same rule admits).
    fn agent_layout() -> (tempfile::TempDir, PathBuf, PathBuf) {
        let work = tempfile::tempdir().unwrap();
        let agent = work.path().canonicalize().unwrap().join("agents/a1");
        let sandbox = agent.join("runs/c1");
        std::fs::create_dir_all(&sandbox).unwrap();
        (work, agent, sandbox)
    }

    fn volume_mount(sandbox_path: &str, id: &str) -> SandboxMount {
        SandboxMount {
            persistence_id: Some(id.into()),
            ..mount(sandbox_path, "/data", false)
        }
    }

    #[test]
    fn the_agents_link_to_a_persistent_volume_is_followed() {
        let (_work, agent, sandbox) = agent_layout();
        let volume = agent.join("volumes/roles/db/cache-0.1");
        std::fs::create_dir_all(&volume).unwrap();
        std::os::unix::fs::symlink(&volume, sandbox.join("data")).unwrap();

        let binds = prepare_mounts(&sandbox, &[volume_mount("data", "cache-0.1")]).unwrap();
        assert_eq!(binds[0].source, volume.to_string_lossy().into_owned());

        // The same link without the volume's id, or for another id, is refused.
        for mount in [
            mount("data", "/data", false),
            volume_mount("data", "cache-0.2"),
        ] {
            let err = prepare_mounts(&sandbox, &[mount]).unwrap_err();
            assert!(err.contains("leads outside the sandbox"), "{err}");
        }
    }

    #[test]
    fn a_volume_link_must_have_the_agents_shape() {
        let (_work, agent, sandbox) = agent_layout();
        let elsewhere = tempfile::tempdir().unwrap();
        let cases = [
            // Right id, not under volumes/roles.
            agent.join("secrets/cache-0.1"),
            // volumes/roles without a role.
            agent.join("volumes/roles/cache-0.1"),
            // The shape, but not under an ancestor of the sandbox.
            elsewhere.path().join("volumes/roles/db/cache-0.1"),
        ];
        for (n, target) in cases.iter().enumerate() {
            std::fs::create_dir_all(target).unwrap();
            let link = format!("data{n}");
            std::os::unix::fs::symlink(target, sandbox.join(&link)).unwrap();
            let err = prepare_mounts(&sandbox, &[volume_mount(&link, "cache-0.1")]).unwrap_err();
            assert!(err.contains("leads outside the sandbox"), "{err}");
        }
        // A link in the middle of the volume's path is not the agent's: refused.
        std::fs::create_dir_all(agent.join("volumes/roles/db/cache-0.1")).unwrap();
        std::os::unix::fs::symlink(agent.join("volumes/roles/db"), sandbox.join("mid")).unwrap();
        let err =
            prepare_mounts(&sandbox, &[volume_mount("mid/cache-0.1", "cache-0.1")]).unwrap_err();
        assert!(err.contains("leads outside the sandbox"), "{err}");
    }

    #[test]
    fn sandbox_directories_are_created_and_bound() {
        let sandbox = tempfile::tempdir().unwrap();
        let root = sandbox.path().canonicalize().unwrap();
        std::fs::create_dir(root.join("existing")).unwrap();
        let binds = prepare_mounts(
            sandbox.path(),
            &[
                mount("data/redis", "/data", false),
                mount("existing", "/conf", true),
            ],
        )
        .unwrap();
        assert_eq!(
            binds,
            [
                BindMount::new(
                    root.join("data/redis").to_string_lossy().into_owned(),
                    "/data".into(),
                    false
                ),
                BindMount::new(
                    root.join("existing").to_string_lossy().into_owned(),
                    "/conf".into(),
                    true
                ),
            ]
        );
        assert!(root.join("data/redis").is_dir());
    }

    #[test]
    fn symbolic_links_may_not_lead_out_of_the_sandbox() {
        let outside = tempfile::tempdir().unwrap();
        let sandbox = tempfile::tempdir().unwrap();
        let root = sandbox.path().canonicalize().unwrap();
        std::os::unix::fs::symlink(outside.path(), root.join("escape")).unwrap();
        std::fs::create_dir(root.join("inner")).unwrap();
        std::os::unix::fs::symlink(root.join("inner"), root.join("alias")).unwrap();
        std::fs::write(root.join("file"), b"x").unwrap();

        let err = prepare_mounts(sandbox.path(), &[mount("escape/sub", "/x", false)]).unwrap_err();
        assert!(err.contains("leads outside the sandbox"), "{err}");
        // Nothing was created outside.
        assert!(!outside.path().join("sub").exists());

        let err = prepare_mounts(sandbox.path(), &[mount("file", "/x", false)]).unwrap_err();
        assert!(err.contains("is not a directory"), "{err}");

        // A link that stays inside is followed.
        let binds = prepare_mounts(sandbox.path(), &[mount("alias/deeper", "/x", false)]).unwrap();
        assert_eq!(
            binds[0].source,
            root.join("inner/deeper").to_string_lossy().into_owned()
        );
        assert_eq!(
            resolve_in_sandbox(&root, Path::new("../x")).unwrap_err(),
            "the path must be relative, without `..`"
        );
    }
}
