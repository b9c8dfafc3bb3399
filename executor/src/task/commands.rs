//! Commands the scheduler asks to run in a task's container (`RunCommand` in a
//! framework MESSAGE), run once per command id and answered with a `CommandResult`.
//!
//! [`CommandTable`] is the plain bookkeeping that makes commands idempotent: the
//! scheduler may resend a `RunCommand` (MESSAGE is not acknowledged), and every copy
//! gets the same answer while the command runs only once. [`run_command`] is the
//! async part that execs the command in the container.

use std::collections::{HashMap, VecDeque};
use std::time::Duration;

use mesos_stateful_proto::stateful::{CommandResult, RunCommand};

use crate::docker::DockerClient;

/// How many finished command results are kept to answer repeats.
pub const COMMAND_HISTORY: usize = 1024;
/// The longest a command may run when its `RunCommand` names no timeout.
pub const DEFAULT_COMMAND_TIMEOUT: Duration = Duration::from_secs(30);
/// Most bytes of standard output and of standard error put in a `CommandResult`.
pub const MAX_COMMAND_OUTPUT: usize = 64 * 1024;

/// What to do with a `RunCommand` that just arrived.
#[derive(Debug, Clone, PartialEq)]
pub enum Admission {
    /// The id is new: run the command, then call [`CommandTable::finish`].
    Run,
    /// The same command runs already; this copy is answered when it finishes.
    Wait,
    /// The command ran already; answer this copy with its result.
    Answer(CommandResult),
}

#[derive(Debug, Clone, PartialEq)]
enum Entry {
    /// Running, with the number of copies that arrived since it started.
    Running {
        waiting: usize,
    },
    Done(CommandResult),
}

/// The commands running or run recently, by command id.
#[derive(Debug, Clone)]
pub struct CommandTable {
    capacity: usize,
    entries: HashMap<String, Entry>,
    /// Ids of finished commands, oldest first, for eviction.
    finished: VecDeque<String>,
}

impl Default for CommandTable {
    fn default() -> Self {
        CommandTable::new(COMMAND_HISTORY)
    }
}

impl CommandTable {
    /// A table remembering the results of the last `capacity` finished commands
    /// (running commands are always remembered).
    pub fn new(capacity: usize) -> CommandTable {
        CommandTable {
            capacity,
            entries: HashMap::new(),
            finished: VecDeque::new(),
        }
    }

    /// Records the arrival of a `RunCommand` with `command_id`.
    pub fn admit(&mut self, command_id: &str) -> Admission {
        match self.entries.get_mut(command_id) {
            Some(Entry::Running { waiting }) => {
                *waiting += 1;
                Admission::Wait
            }
            Some(Entry::Done(result)) => Admission::Answer(result.clone()),
            None => {
                self.entries
                    .insert(command_id.to_owned(), Entry::Running { waiting: 0 });
                Admission::Run
            }
        }
    }

    /// Records the result of a command admitted with [`Admission::Run`] and returns
    /// how many answers to send: one for the first copy plus one per copy that waited.
    pub fn finish(&mut self, result: CommandResult) -> usize {
        let id = result.command_id.clone();
        let waiting = match self.entries.insert(id.clone(), Entry::Done(result)) {
            Some(Entry::Running { waiting }) => waiting,
            // A result for a command not running (not expected): answer once, and do
            // not list it twice for eviction.
            Some(Entry::Done(_)) => return 1,
            None => 0,
        };
        self.finished.push_back(id);
        while self.finished.len() > self.capacity {
            if let Some(oldest) = self.finished.pop_front() {
                self.entries.remove(&oldest);
            }
        }
        1 + waiting
    }

    /// Whether the table knows `command_id` (running or finished).
    pub fn knows(&self, command_id: &str) -> bool {
        self.entries.contains_key(command_id)
    }
}

/// The time `run` may take: its own timeout when positive, else the default.
pub fn command_timeout(run: &RunCommand) -> Duration {
    run.timeout_seconds
        .filter(|seconds| seconds.is_finite() && *seconds > 0.0)
        .map(Duration::from_secs_f64)
        .unwrap_or(DEFAULT_COMMAND_TIMEOUT)
}

/// `bytes` as text (invalid UTF-8 replaced), cut to at most `limit` bytes on a
/// character boundary.
pub fn truncated_text(bytes: &[u8], limit: usize) -> String {
    let mut text = String::from_utf8_lossy(&bytes[..bytes.len().min(limit)]).into_owned();
    if text.len() > limit {
        let mut end = limit;
        while !text.is_char_boundary(end) {
            end -= 1;
        }
        text.truncate(end);
    }
    text
}

/// Runs `run` in `container` (the task's running container, `None` when the task has
/// none) and describes the outcome; every failure becomes the result's `error`.
pub async fn run_command(
    docker: Result<DockerClient, String>,
    container: Option<String>,
    run: &RunCommand,
) -> CommandResult {
    let mut result = CommandResult {
        command_id: run.command_id.clone(),
        task_id: run.task_id.clone(),
        ..Default::default()
    };
    let Some(container) = container else {
        result.error = Some(format!(
            "unknown task {} (no running container)",
            run.task_id
        ));
        return result;
    };
    if run.argv.is_empty() {
        result.error = Some("empty command".to_owned());
        return result;
    }
    let docker = match docker {
        Ok(docker) => docker,
        Err(err) => {
            result.error = Some(format!("docker engine unavailable: {err}"));
            return result;
        }
    };
    let timeout = command_timeout(run);
    match tokio::time::timeout(timeout, docker.exec(&container, &run.argv)).await {
        Ok(Ok(exec)) => {
            result.exit_code = Some(exec.exit_code);
            result.stdout = Some(truncated_text(&exec.stdout, MAX_COMMAND_OUTPUT));
            result.stderr = Some(truncated_text(&exec.stderr, MAX_COMMAND_OUTPUT));
        }
        Ok(Err(err)) => result.error = Some(format!("cannot run the command: {err}")),
        Err(_) => {
            result.error = Some(format!(
                "command did not finish within {:.1}s",
                timeout.as_secs_f64()
            ))
        }
    }
    result
}

#[cfg(test)]
mod tests {
    use super::*;

    fn done(id: &str, exit_code: i64) -> CommandResult {
        CommandResult {
            command_id: id.into(),
            task_id: "t".into(),
            exit_code: Some(exit_code),
            ..Default::default()
        }
    }

    #[test]
    fn repeats_wait_for_or_reuse_the_first_run() {
        let mut table = CommandTable::new(2);
        assert_eq!(table.admit("a"), Admission::Run);
        assert_eq!(table.admit("a"), Admission::Wait);
        assert_eq!(table.admit("a"), Admission::Wait);
        assert_eq!(table.admit("b"), Admission::Run);
        // The first copy and the two that waited are answered.
        assert_eq!(table.finish(done("a", 0)), 3);
        assert_eq!(table.admit("a"), Admission::Answer(done("a", 0)));
        assert_eq!(table.finish(done("b", 1)), 1);
        assert_eq!(table.admit("b"), Admission::Answer(done("b", 1)));
    }

    #[test]
    fn only_the_last_finished_results_are_kept() {
        let mut table = CommandTable::new(2);
        for id in ["a", "b", "c"] {
            assert_eq!(table.admit(id), Admission::Run);
        }
        assert_eq!(table.admit("d"), Admission::Run);
        for id in ["a", "b", "c"] {
            table.finish(done(id, 0));
        }
        // "a" was evicted; "d" still runs and is never evicted while it does.
        assert!(!table.knows("a"));
        assert!(table.knows("b") && table.knows("c") && table.knows("d"));
        assert_eq!(table.admit("d"), Admission::Wait);
        assert_eq!(table.admit("a"), Admission::Run);
        // A duplicate result is answered once and not recorded twice.
        assert_eq!(table.finish(done("c", 5)), 1);
    }

    #[test]
    fn timeouts_default_when_unset_or_invalid() {
        let check = |seconds: Option<f64>, expected: Duration| {
            let run = RunCommand {
                timeout_seconds: seconds,
                ..Default::default()
            };
            assert_eq!(command_timeout(&run), expected, "{seconds:?}");
        };
        check(None, DEFAULT_COMMAND_TIMEOUT);
        check(Some(0.0), DEFAULT_COMMAND_TIMEOUT);
        check(Some(-1.0), DEFAULT_COMMAND_TIMEOUT);
        check(Some(f64::NAN), DEFAULT_COMMAND_TIMEOUT);
        check(Some(2.5), Duration::from_millis(2500));
    }

    #[test]
    fn output_is_truncated_on_character_boundaries() {
        let check = |bytes: &[u8], limit: usize, expected: &str| {
            assert_eq!(truncated_text(bytes, limit), expected);
        };
        check(b"hello", 10, "hello");
        check(b"hello", 3, "hel");
        // "é" is two bytes; cutting after its first byte drops it whole.
        check("aé".as_bytes(), 2, "a");
        check("aé".as_bytes(), 3, "aé");
        // A replacement character may make the text longer than the bytes.
        check(&[b'a', 0xff, b'b'], 3, "a");
        check(&[b'a', 0xff, b'b'], 5, "a\u{fffd}b");
    }
}
