//! The README's customer flow, as tests read and run it: its command blocks (so the README
//! cannot drift from what works), and a runner that executes a block verbatim in one bash
//! session in the customer's directory.
use std::collections::BTreeMap;

use super::Customer;

pub const FLOW_SECTION: &str = "## The customer's flow on the embedded defaults";

/// The lines of the `n`-th indented block of the README's flow section, each without its
/// trailing comment.
pub fn readme_block(n: usize) -> Vec<String> {
    let readme = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/../../README.md"))
        .expect("README.md at the workspace root");
    let start = readme
        .find(FLOW_SECTION)
        .expect("the README has the customer's flow section");
    let section = &readme[start + FLOW_SECTION.len()..];
    let section = &section[..section.find("\n## ").unwrap_or(section.len())];
    let mut blocks: Vec<Vec<String>> = Vec::new();
    let mut inside = false;
    for l in section.lines() {
        if l.starts_with("    ") {
            if !inside {
                blocks.push(Vec::new());
                inside = true;
            }
            let l = l.trim();
            let l = match l.find(" #") {
                Some(i) => l[..i].trim_end(),
                None => l,
            };
            blocks.last_mut().unwrap().push(l.to_string());
        } else {
            inside = false;
        }
    }
    blocks
        .into_iter()
        .nth(n)
        .expect("the README's flow has that block")
}

/// The `keyplane …` part of a line (`VAR=$(keyplane …)` gives `keyplane …`).
pub fn command_of(line: &str) -> &str {
    match line.split_once("=$(") {
        Some((var, rest)) if var.chars().all(|c| c.is_ascii_uppercase() || c == '_') => {
            rest.strip_suffix(')').unwrap_or(rest)
        }
        _ => line,
    }
}

/// What one README step did.
pub struct Step {
    pub line: String,
    pub code: i32,
    pub stdout: String,
    pub stderr: String,
}

impl Step {
    pub fn json(&self) -> serde_json::Value {
        serde_json::from_str(&self.stdout)
            .unwrap_or_else(|e| panic!("`{}` did not print JSON ({e}): {}", self.line, self.stdout))
    }

    /// The step, as a failure message shows it.
    pub fn describe(&self) -> String {
        format!(
            "`{}` exit {}\nstdout: {}\nstderr: {}",
            self.line, self.code, self.stdout, self.stderr
        )
    }
}

/// Runs the README's lines, verbatim, in one bash session in the customer's directory, each
/// one's output and exit code kept; returns the steps and the shell variables they set.
pub fn run_verbatim(
    customer: &Customer,
    lines: &[String],
) -> (Vec<Step>, BTreeMap<String, String>) {
    let mut script = String::new();
    let mut vars = Vec::new();
    for (i, line) in lines.iter().enumerate() {
        script.push_str(&format!(
            "{{ {line}\n}} > step{i}.out 2> step{i}.err; echo $? > step{i}.rc\n"
        ));
        if let Some((var, _)) = line.split_once("=$(") {
            vars.push(var.to_string());
        }
    }
    for v in &vars {
        script.push_str(&format!("printf '%s' \"${v}\" > var.{v}\n"));
    }
    std::fs::write(customer.cwd().join("flow.sh"), script).unwrap();
    let status = customer.shell().arg("flow.sh").status().unwrap();
    assert!(status.success(), "the flow script itself failed: {status}");
    let read = |name: String| std::fs::read_to_string(customer.cwd().join(name)).unwrap();
    let steps = lines
        .iter()
        .enumerate()
        .map(|(i, line)| Step {
            line: line.clone(),
            code: read(format!("step{i}.rc")).trim().parse().unwrap(),
            stdout: read(format!("step{i}.out")),
            stderr: read(format!("step{i}.err")),
        })
        .collect();
    let vars = vars
        .into_iter()
        .map(|v| (v.clone(), read(format!("var.{v}"))))
        .collect();
    (steps, vars)
}
