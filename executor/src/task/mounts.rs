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
            let source = resolve_in_sandbox(&root, &mount.sandbox_path).map_err(|reason| {
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
    let mut current = root.to_path_buf();
    for component in relative.components() {
        let name = match component {
            Component::Normal(name) => name,
            Component::CurDir => continue,
            _ => return Err("the path must be relative, without `..`".to_owned()),
        };
        let next = current.join(name);
        match std::fs::symlink_metadata(&next) {
            Ok(_) => {
                let resolved = next
                    .canonicalize()
                    .map_err(|err| format!("cannot resolve {}: {err}", next.display()))?;
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

#[cfg(test)]
mod tests {
    use super::*;

    fn mount(sandbox_path: &str, container_path: &str, read_only: bool) -> SandboxMount {
        SandboxMount {
            sandbox_path: sandbox_path.into(),
            container_path: container_path.into(),
            read_only,
        }
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
