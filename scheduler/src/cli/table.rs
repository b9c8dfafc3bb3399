//! Human output of the CLI: aligned columns, like kubectl's.

use serde_json::Value;

use super::client::SseEvent;
use super::Progress;

/// Rows under a header, each column as wide as its widest cell.
pub fn render(header: &[&str], rows: &[Vec<String>]) -> String {
    let mut widths: Vec<usize> = header.iter().map(|h| h.len()).collect();
    for row in rows {
        for (width, cell) in widths.iter_mut().zip(row) {
            *width = (*width).max(cell.chars().count());
        }
    }
    let line = |cells: Vec<String>| {
        let mut out = String::new();
        for (i, (cell, width)) in cells.iter().zip(&widths).enumerate() {
            if i + 1 == cells.len() {
                out.push_str(cell);
            } else {
                out.push_str(&format!("{cell:<width$}   "));
            }
        }
        out.trim_end().to_string() + "\n"
    };
    let mut out = line(header.iter().map(|h| h.to_string()).collect());
    for row in rows {
        out.push_str(&line(row.clone()));
    }
    out
}

fn text(value: &Value) -> String {
    match value {
        Value::Null => "-".to_string(),
        Value::String(s) => s.clone(),
        other => other.to_string(),
    }
}

fn address(member: &Value) -> String {
    match (member["host"].as_str(), member["port"].as_u64()) {
        (Some(host), Some(port)) => format!("{host}:{port}"),
        _ => "-".to_string(),
    }
}

fn state(member: &Value) -> String {
    member["state"]
        .as_str()
        .map(|s| s.trim_start_matches("TASK_").to_string())
        .unwrap_or_else(|| "WAITING".to_string())
}

/// `instance list`.
pub fn instances(views: &Value) -> String {
    let rows: Vec<Vec<String>> = views
        .as_array()
        .into_iter()
        .flatten()
        .map(|view| {
            let members = view["members"].as_array().map(Vec::as_slice).unwrap_or(&[]);
            let running = members
                .iter()
                .filter(|m| m["state"] == "TASK_RUNNING")
                .count();
            vec![
                text(&view["name"]),
                text(&view["status"]),
                format!(
                    "{running}/{}",
                    view["spec"]["replicas"].as_u64().unwrap_or(0) + 1
                ),
                text(&view["spec"]["image"]),
                text(&view["version"]),
            ]
        })
        .collect();
    render(&["NAME", "STATUS", "RUNNING", "IMAGE", "VERSION"], &rows)
}

fn member_rows(members: &[&Value]) -> Vec<Vec<String>> {
    members
        .iter()
        .map(|m| {
            vec![
                text(&m["name"]),
                text(&m["role"]),
                state(m),
                address(m),
                match m["healthy"].as_bool() {
                    Some(true) => "yes".to_string(),
                    Some(false) => "no".to_string(),
                    None => "-".to_string(),
                },
                text(&m["message"]),
            ]
        })
        .collect()
}

const MEMBER_HEADER: [&str; 6] = ["MEMBER", "ROLE", "STATE", "ADDRESS", "HEALTHY", "MESSAGE"];

/// `instance get` and the answers of create and delete.
pub fn instance(view: &Value) -> String {
    let mut out = format!(
        "name:     {}\nstatus:   {}\nimage:    {}\nreplicas: {}\nversion:  {}\n",
        text(&view["name"]),
        text(&view["status"]),
        text(&view["spec"]["image"]),
        text(&view["spec"]["replicas"]),
        text(&view["version"]),
    );
    if let Some(message) = view["status_message"].as_str() {
        out.push_str(&format!("message:  {message}\n"));
    }
    let members: Vec<&Value> = view["members"].as_array().into_iter().flatten().collect();
    out.push('\n');
    out.push_str(&render(&MEMBER_HEADER, &member_rows(&members)));
    out
}

/// `instance endpoints`.
pub fn endpoints(endpoints: &Value) -> String {
    let mut rows = Vec::new();
    if let Some(master) = endpoints["master"].as_str() {
        rows.push(vec!["master".to_string(), master.to_string()]);
    }
    for replica in endpoints["replicas"].as_array().into_iter().flatten() {
        rows.push(vec!["replica".to_string(), text(replica)]);
    }
    render(&["ROLE", "ADDRESS"], &rows)
}

/// The members table at the start of a watch.
pub fn progress(progress: &Progress) -> String {
    let members: Vec<&Value> = progress.members.values().collect();
    format!(
        "status: {}\n{}",
        progress.status,
        render(&MEMBER_HEADER, &member_rows(&members))
    )
}

/// One line per change during a watch.
pub fn event_line(event: &SseEvent) -> String {
    let data: Value = serde_json::from_str(&event.data).unwrap_or(Value::Null);
    match event.kind.as_str() {
        "instance" => format!(
            "instance {} {}\n",
            text(&data["instance"]),
            text(&data["status"])
        ),
        "member" => {
            let m = &data["member"];
            format!(
                "member   {} {} {} {}\n",
                text(&m["name"]),
                text(&m["role"]),
                state(m),
                address(m)
            )
        }
        other => format!("{other}\n"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn columns_align_on_the_widest_cell() {
        let out = render(
            &["NAME", "STATUS"],
            &[
                vec!["a".into(), "RUNNING".into()],
                vec!["long-name".into(), "CREATING".into()],
            ],
        );
        assert_eq!(
            out,
            "NAME        STATUS\na           RUNNING\nlong-name   CREATING\n"
        );
    }

    #[test]
    fn instances_show_running_members_of_wanted() {
        let views = json!([{"name": "c1", "status": "RUNNING", "version": 4,
            "spec": {"image": "redis:7", "replicas": 1},
            "members": [{"state": "TASK_RUNNING"}, {"state": "TASK_STAGING"}]}]);
        let out = instances(&views);
        assert!(out.lines().nth(1).unwrap().contains("1/2"), "{out}");
        let view = json!({"name": "c1", "status": "CREATING", "version": 1,
            "spec": {"image": "redis:7", "replicas": 0},
            "members": [{"name": "c1-0", "role": "master", "state": null, "host": null, "port": null}]});
        let out = instance(&view);
        assert!(out.contains("c1-0"), "{out}");
        assert!(out.contains("WAITING"), "{out}");
    }
}
