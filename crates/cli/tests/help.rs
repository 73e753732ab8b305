//! The help a user reads: every subcommand's `--help`, walked from the top, describes that
//! subcommand (no description repeated across subcommands, none missing) and every option and
//! argument; and the shell completion scripts complete real commands and flags.
mod common;

use std::collections::BTreeMap;

use common::Customer;

fn help(customer: &Customer, path: &[String]) -> String {
    let mut args: Vec<&str> = path.iter().map(String::as_str).collect();
    args.push("-h");
    let r = customer.run(&args);
    r.ok();
    r.stdout.clone()
}

/// The `Commands:` list of a help page: (name, description).
fn commands(page: &str) -> Vec<(String, String)> {
    let Some(start) = page.find("\nCommands:\n") else {
        return Vec::new();
    };
    page[start + "\nCommands:\n".len()..]
        .lines()
        .take_while(|l| l.starts_with("  "))
        .map(|l| {
            let l = l.trim();
            match l.split_once(char::is_whitespace) {
                Some((name, desc)) => (name.to_string(), desc.trim().to_string()),
                None => (l.to_string(), String::new()),
            }
        })
        .filter(|(name, _)| name != "help")
        .collect()
}

/// Option and argument lines of a short help page that carry no description, on the line
/// itself or (clap's layout for wide pages) on the more indented line after it.
fn undescribed(page: &str) -> Vec<String> {
    let lines: Vec<&str> = page.lines().collect();
    let indent = |l: &str| l.len() - l.trim_start().len();
    lines
        .iter()
        .enumerate()
        .filter(|(_, l)| {
            let t = l.trim_start();
            (2..=6).contains(&indent(l))
                && (t.starts_with('-') || t.starts_with('<') || t.starts_with('['))
        })
        .filter(|(i, l)| {
            let same_line = l.trim().contains("  ");
            let next_line = lines
                .get(i + 1)
                .is_some_and(|n| indent(n) >= 8 && !n.trim().is_empty());
            !same_line && !next_line
        })
        .map(|(_, l)| l.trim().to_string())
        .collect()
}

#[test]
fn every_subcommand_has_its_own_description_and_every_option_one() {
    let customer = Customer::new();
    let mut descriptions: BTreeMap<String, Vec<String>> = BTreeMap::new();
    let mut missing = Vec::new();
    let mut pages = 0;
    let mut todo: Vec<Vec<String>> = vec![Vec::new()];
    while let Some(path) = todo.pop() {
        let page = help(&customer, &path);
        pages += 1;
        for line in undescribed(&page) {
            missing.push(format!("keyplane {} {line}", path.join(" ")));
        }
        for (name, desc) in commands(&page) {
            let mut sub = path.clone();
            sub.push(name);
            if desc.is_empty() {
                missing.push(format!("keyplane {} has no description", sub.join(" ")));
            }
            descriptions
                .entry(desc)
                .or_default()
                .push(format!("keyplane {}", sub.join(" ")));
            todo.push(sub);
        }
    }
    assert!(
        pages > 30,
        "walked {pages} help pages: the walk found too few"
    );
    assert!(
        descriptions
            .values()
            .flatten()
            .any(|c| c == "keyplane db keyspace delete"),
        "the walk reaches nested subcommands: {descriptions:?}"
    );
    let repeated: Vec<_> = descriptions
        .iter()
        .filter(|(_, cmds)| cmds.len() > 1)
        .collect();
    assert!(repeated.is_empty(), "repeated descriptions: {repeated:#?}");
    assert!(missing.is_empty(), "without a description: {missing:#?}");
}

#[test]
fn bash_completion_completes_commands_and_flags() {
    let customer = Customer::new();
    let complete = |words: &[&str]| -> Vec<String> {
        let script = format!(
            "source <(keyplane completions bash)\nCOMP_WORDS=({})\nCOMP_CWORD={}\nCOMP_LINE=\"${{COMP_WORDS[*]}}\"\nCOMP_POINT=${{#COMP_LINE}}\n_keyplane keyplane \"${{COMP_WORDS[COMP_CWORD]}}\" \"${{COMP_WORDS[COMP_CWORD-1]}}\"\nprintf '%s\\n' \"${{COMPREPLY[@]}}\"\n",
            words
                .iter()
                .map(|w| format!("'{w}'"))
                .collect::<Vec<_>>()
                .join(" "),
            words.len() - 1
        );
        let out = customer.shell().arg("-c").arg(script).output().unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout)
            .lines()
            .map(str::to_string)
            .collect()
    };
    assert_eq!(complete(&["keyplane", "d"]), ["db"]);
    assert_eq!(complete(&["keyplane", "db", "add"]), ["add-region"]);
    assert_eq!(
        complete(&["keyplane", "db", "create", "--no-w"]),
        ["--no-wait"]
    );
    let shells = complete(&["keyplane", "completions", ""]);
    for s in ["bash", "zsh", "fish"] {
        assert!(shells.contains(&s.to_string()), "{shells:?}");
    }
}

#[test]
fn zsh_and_fish_scripts_name_the_commands() {
    let customer = Customer::new();
    let zsh = customer.run(&["completions", "zsh"]);
    assert!(zsh.ok().stdout.starts_with("#compdef keyplane"), "{zsh:?}");
    let fish = customer.run(&["completions", "fish"]);
    assert!(
        fish.ok().stdout.contains("complete -c keyplane"),
        "{fish:?}"
    );
    for script in [&zsh.stdout, &fish.stdout] {
        for word in ["add-region", "put-key-policy", "--merge-into", "logout"] {
            assert!(script.contains(word), "{word} missing");
        }
    }
    // Where the shells are installed, their own parsers accept the scripts.
    for (shell, flag, script) in [
        ("zsh", "-n", &zsh.stdout),
        ("fish", "--no-execute", &fish.stdout),
    ] {
        let Ok(mut child) = std::process::Command::new(shell)
            .arg(flag)
            .stdin(std::process::Stdio::piped())
            .spawn()
        else {
            continue;
        };
        use std::io::Write;
        child
            .stdin
            .take()
            .unwrap()
            .write_all(script.as_bytes())
            .unwrap();
        assert!(
            child.wait().unwrap().success(),
            "{shell} rejects its script"
        );
    }
    let bad = customer.run(&["completions", "tcsh"]);
    assert_eq!(bad.code, Some(2), "{bad:?}");
    assert!(bad.stderr.contains("bash, zsh, fish"), "{bad:?}");
}
