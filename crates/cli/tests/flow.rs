//! The customer's flow with nothing but `keyplane` commands, against a real `serve --dev`: the
//! README's own commands (read from the README, so it cannot drift from what works), then the
//! `db` commands' refusals, `--no-wait`, a database ending in ERROR, and `db keyspace
//! create|delete` against the server's keyspace routes.
mod common;

use std::io::Write;

use common::readme::{Step, command_of, readme_block, run_verbatim};
use common::{Customer, serve_dev, webhook_receiver};
use serde_json::Value;

/// The commands of the README's flow: the first indented block under its heading.
fn readme_flow() -> Vec<String> {
    readme_block(0)
}

/// keyplane's statements for the dev organization `org`, bound to it, written out as the
/// README's flow must leave them in the key policy.
fn bound_statements(org: &str) -> Vec<Value> {
    let role = "arn:aws:iam::222222222222:role/creator";
    let only_org = serde_json::json!({"StringEquals": {"kms:EncryptionContext:organization": org}});
    vec![
        serde_json::json!({"Sid": "Allow an external account to use this KMS key", "Effect": "Allow",
            "Principal": {"AWS": role},
            "Action": ["kms:Encrypt", "kms:Decrypt", "kms:GenerateDataKey", "kms:GenerateDataKeyWithoutPlaintext",
                       "kms:ReEncryptTo", "kms:ReEncryptFrom"],
            "Resource": "*", "Condition": only_org}),
        serde_json::json!({"Sid": "Allow an external account to describe this KMS key", "Effect": "Allow",
            "Principal": {"AWS": role}, "Action": ["kms:EnableKey", "kms:DescribeKey"], "Resource": "*"}),
        serde_json::json!({"Sid": "Allow attachment of persistent resources", "Effect": "Allow",
            "Principal": {"AWS": role}, "Action": ["kms:CreateGrant"], "Resource": "*", "Condition": only_org}),
        serde_json::json!({"Sid": "Allow an external account to list and revoke its grants", "Effect": "Allow",
            "Principal": {"AWS": role}, "Action": ["kms:ListGrants", "kms:RevokeGrant"], "Resource": "*"}),
    ]
}

fn json(step: &Step) -> Value {
    step.json()
}

#[test]
fn the_readmes_flow_runs_verbatim_with_keyplane_commands_only() {
    let lines = readme_flow();
    for l in &lines {
        assert!(
            command_of(l).starts_with("keyplane "),
            "the README's flow must use keyplane commands only: {l}"
        );
    }
    let customer = Customer::new();
    let (_server, creds) = serve_dev(&customer);
    let (steps, vars) = run_verbatim(&customer, &lines);
    let key = vars
        .get("KEY")
        .expect("the flow names its key $KEY")
        .clone();
    assert!(
        key.starts_with("arn:aws:kms:us-east-2:111111111111:key/"),
        "{key}"
    );

    // Every step is checked; a step the test does not know fails it, so the README and this
    // test change together.
    let mut seen = Vec::new();
    for step in &steps {
        let cmd = command_of(&step.line);
        let ctx = || {
            format!(
                "`{}` exit {}\nstdout: {}\nstderr: {}",
                step.line, step.code, step.stdout, step.stderr
            )
        };
        let kind = [
            "keyplane kms create-key",
            "keyplane key policy",
            "keyplane kms put-key-policy",
            "keyplane key check-policy",
            "keyplane key register",
            "keyplane db create",
            "keyplane db get",
            "keyplane db add-region",
            "keyplane db terminate",
        ]
        .into_iter()
        .find(|k| cmd.starts_with(&format!("{k} ")))
        .unwrap_or_else(|| panic!("a README step this test does not check: {}", step.line));
        seen.push(kind);
        let expected_code = if kind == "keyplane db add-region" {
            1
        } else {
            0
        };
        assert_eq!(step.code, expected_code, "{}", ctx());
        match kind {
            "keyplane key policy" => {
                // The whole policy went to policy.json: the key's default statement first,
                // then keyplane's four, bound to the organization, added.
                let policy: Value = serde_json::from_str(
                    &std::fs::read_to_string(customer.cwd().join("policy.json")).unwrap(),
                )
                .unwrap();
                let statements = policy["Statement"].as_array().unwrap();
                assert_eq!(
                    statements[0]["Sid"],
                    "Enable IAM User Permissions",
                    "{}",
                    ctx()
                );
                let org = creds["orgId"].as_str().unwrap();
                assert_eq!(
                    statements[1..],
                    bound_statements(org),
                    "the merged statements are the organization-bound ones: {}",
                    ctx()
                );
                assert_eq!(step.stderr.matches("added").count(), 4, "{}", ctx());
            }
            "keyplane kms put-key-policy" => {
                let put = customer.run(&["kms", "get-key-policy", "--key-id", &key]);
                let on_key = &put.ok().json()["Policy"];
                let file: Value = serde_json::from_str(
                    &std::fs::read_to_string(customer.cwd().join("policy.json")).unwrap(),
                )
                .unwrap();
                assert_eq!(on_key, &file, "the key holds the merged policy");
            }
            "keyplane key check-policy" => assert_eq!(json(step)["verdict"], "ok", "{}", ctx()),
            "keyplane key register" => {
                let v = json(step);
                assert_eq!(v["aws"]["keyID"], key.as_str(), "{}", ctx());
                assert_eq!(v["orgId"], creds["orgId"]);
                let status = customer.run(&["key", "status", "--region", "us-east-2"]);
                let status = status.ok();
                assert_eq!(status.json()["boundToOrganization"], true, "{status:?}");
                assert_eq!(status.json()["warning"], Value::Null, "{status:?}");
                assert!(!status.stderr.contains("warning"), "{status:?}");
            }
            "keyplane db create" => {
                // Waited for ACTIVE; not a terminal, so plain lines on stderr.
                assert!(step.stderr.contains("orders: ACTIVE after"), "{}", ctx());
                assert!(!step.stderr.contains('\r'), "{}", ctx());
                assert!(step.stdout.contains("ACTIVE"), "{}", ctx());
                assert!(
                    step.stdout.contains(&key),
                    "the table shows the key: {}",
                    ctx()
                );
            }
            "keyplane db get" => {
                let v = json(step);
                assert_eq!(v["status"], "ACTIVE", "{}", ctx());
                assert_eq!(v["info"]["name"], "orders");
                let dcs = v["info"]["datacenters"].as_array().unwrap();
                assert_eq!(dcs.len(), 1);
                assert_eq!(dcs[0]["region"], "us-east-2");
                assert_eq!(dcs[0]["encryption"]["keyID"], key.as_str());
                assert_eq!(dcs[0]["encryption"]["keyType"], "customer");
            }
            "keyplane db add-region" => {
                assert!(
                    step.stderr
                        .contains("no classic customer key is registered for aws eu-west-1"),
                    "{}",
                    ctx()
                );
                assert!(
                    step.stderr
                        .contains("`keyplane key register --region eu-west-1 --key-id ARN`"),
                    "{}",
                    ctx()
                );
            }
            "keyplane db terminate" => {
                assert!(
                    step.stderr.contains("orders: TERMINATED after"),
                    "{}",
                    ctx()
                );
            }
            _ => {}
        }
    }
    for required in [
        "keyplane key policy",
        "keyplane kms put-key-policy",
        "keyplane key check-policy",
        "keyplane key register",
        "keyplane db create",
        "keyplane db add-region",
        "keyplane db terminate",
    ] {
        assert!(
            seen.contains(&required),
            "the README's flow lacks `{required}`"
        );
    }

    // After the flow: the database is TERMINATED (listed only with --include all) and a merge
    // of the policy the README put changes nothing.
    let live = customer.run(&["db", "list", "--output", "json"]);
    assert_eq!(live.ok().json(), serde_json::json!([]));
    let all = customer.run(&["db", "list", "--include", "all", "--output", "json"]);
    let all = all.ok().json();
    assert_eq!(all[0]["info"]["name"], "orders");
    assert_eq!(all[0]["status"], "TERMINATED");
    let again = customer.run(&["kms", "put-key-policy", "--key-id", &key, "--merge"]);
    let again = again.ok().json();
    assert_eq!(again["updated"], false, "{again}");
    assert_eq!(again["statements"][0]["outcome"], "unchanged");
}

fn create_registered_key(customer: &Customer) -> String {
    let created = customer.run(&["kms", "create-key", "--output", "arn"]);
    let key = created.ok().stdout.trim().to_string();
    // The one-step merge: the key's default policy plus keyplane's statements.
    let merged = customer.run(&["kms", "put-key-policy", "--key-id", &key, "--merge"]);
    let v = merged.ok().json();
    assert_eq!(v["updated"], true, "{v}");
    for i in 0..4 {
        assert_eq!(v["statements"][i]["outcome"], "added", "{v}");
    }
    let policy = customer.run(&["kms", "get-key-policy", "--key-id", &key]);
    let policy = policy.ok().json();
    assert_eq!(policy["Policy"]["Statement"].as_array().unwrap().len(), 5);
    let again = customer.run(&["kms", "put-key-policy", "--key-id", &key, "--merge"]);
    assert_eq!(again.ok().json()["updated"], false, "idempotent");
    customer
        .run(&["key", "register", "--region", "us-east-2", "--key-id", &key])
        .ok();
    key
}

#[test]
fn db_commands_wait_refuse_and_report_the_databases_message() {
    let customer = Customer::new();
    let (_server, _creds) = serve_dev(&customer);
    let key = create_registered_key(&customer);

    // --no-wait returns what the API answered at once.
    let quick = customer.run(&[
        "db",
        "create",
        "--name",
        "quick",
        "--keyspace",
        "shop",
        "--region",
        "us-east-2",
        "--no-wait",
        "--output",
        "json",
    ]);
    let v = quick.ok().json();
    assert_eq!(v["status"], "PENDING", "{v}");
    assert!(
        quick.stderr.is_empty(),
        "no progress without waiting: {quick:?}"
    );
    let id = v["id"].as_str().unwrap().to_string();
    // Named by ID or by name alike; the table shows the key per region.
    let by_name = customer.run(&["db", "get", "quick"]);
    assert!(by_name.ok().stdout.contains(&id), "{by_name:?}");
    assert!(by_name.stdout.contains(&key), "{by_name:?}");
    let list = customer.run(&["db", "list"]);
    let header = list.ok().stdout.lines().next().unwrap().to_string();
    assert!(
        header.starts_with("ID") && header.ends_with("KEY"),
        "{header}"
    );
    assert!(list.stdout.contains(&key), "{list:?}");
    customer.run(&["db", "get", &id, "-o", "json"]).ok();

    // Unknown names and terminating without confirmation are refused, changing nothing.
    let missing = customer.run(&["db", "get", "nosuch"]);
    assert_eq!(missing.code, Some(1));
    assert!(
        missing.stderr.contains("no database is named \"nosuch\""),
        "{missing:?}"
    );
    let unconfirmed = customer.run(&["db", "terminate", "quick"]);
    assert_eq!(unconfirmed.code, Some(1));
    assert!(unconfirmed.stderr.contains("pass --yes"), "{unconfirmed:?}");
    let still = customer.run(&["db", "get", &id, "--output", "json"]);
    assert_ne!(still.ok().json()["status"], "TERMINATING");

    // On a terminal it asks for the name: a wrong one terminates nothing, the right one does.
    let answer = |name: &str| {
        let mut c = customer
            .with_terminal(&format!("{} db terminate quick", common::BIN))
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .spawn()
            .unwrap();
        // `script` passes its input to the terminal once the prompt is up.
        std::thread::sleep(std::time::Duration::from_millis(500));
        c.stdin
            .take()
            .unwrap()
            .write_all(format!("{name}\n").as_bytes())
            .unwrap();
        common::Run::of(c.wait_with_output().unwrap())
    };
    let wrong = answer("orders");
    assert!(
        wrong.stdout.contains("Type its name to confirm"),
        "{wrong:?}"
    );
    assert!(wrong.stdout.contains("the name did not match"), "{wrong:?}");
    assert_eq!(wrong.code, Some(1), "{wrong:?}");
    let still = customer.run(&["db", "get", &id, "--output", "json"]);
    assert_ne!(still.ok().json()["status"], "TERMINATING");

    // A keyspace name the server would refuse is refused before any request.
    let bad = customer.run(&["db", "keyspace", "create", "quick", "no/such"]);
    assert_eq!(bad.code, Some(1));
    assert!(bad.stderr.contains("must start with a letter"), "{bad:?}");

    // A database whose key is disabled ends in ERROR: the command fails with its message and
    // still prints the final state for scripts.
    customer.run(&["kms", "disable-key", "--key-id", &key]).ok();
    let broken = customer.run(&[
        "db",
        "create",
        "--name",
        "broken",
        "--keyspace",
        "shop",
        "--region",
        "us-east-2",
        "--output",
        "json",
    ]);
    assert_eq!(broken.code, Some(1), "{broken:?}");
    assert!(
        broken.stderr.contains("database broken is ERROR"),
        "{broken:?}"
    );
    assert!(broken.stderr.contains("is disabled"), "{broken:?}");
    let final_state: Value = serde_json::from_str(&broken.stdout).unwrap();
    assert_eq!(final_state["status"], "ERROR");

    // A refusal by the API keeps its message and status.
    let dup_region = customer.run(&["db", "add-region", "quick", "--region", "us-east-2"]);
    assert_eq!(dup_region.code, Some(1), "{dup_region:?}");
    assert!(dup_region.stderr.contains("409 Conflict"), "{dup_region:?}");

    let right = answer("quick");
    assert_eq!(right.code, Some(0), "{right:?}");
    assert!(
        right.stdout.contains("quick: TERMINATED after"),
        "{right:?}"
    );
}

#[test]
fn db_keyspace_commands_add_and_remove_keyspaces_in_every_region() {
    let customer = Customer::new();
    let (_server, creds) = serve_dev(&customer);
    // Platform-keyed (no customer key registered), in two regions.
    let created = customer.run(&[
        "db",
        "create",
        "--name",
        "ks",
        "--keyspace",
        "shop",
        "--region",
        "us-east-2",
        "--output",
        "json",
    ]);
    let id = created.ok().json()["id"].as_str().unwrap().to_string();
    customer
        .run(&["db", "add-region", "ks", "--region", "eu-west-1"])
        .ok();
    let keyspaces = || {
        let v = customer.run(&["db", "get", "ks", "-o", "json"]).ok().json();
        v["info"]["keyspaces"]
            .as_array()
            .unwrap()
            .iter()
            .map(|k| k.as_str().unwrap().to_string())
            .collect::<Vec<_>>()
    };
    assert_eq!(keyspaces(), ["shop"]);

    let added = customer.run(&["db", "keyspace", "create", "ks", "sales"]);
    assert!(
        added
            .ok()
            .stdout
            .contains(&format!("keyspace sales added to database ks ({id})")),
        "{added:?}"
    );
    assert_eq!(keyspaces(), ["shop", "sales"]);
    // The table shows them all; adding one it has already succeeds, as the original does.
    let table = customer.run(&["db", "get", "ks"]);
    assert!(table.ok().stdout.contains("shop, sales"), "{table:?}");
    customer
        .run(&["db", "keyspace", "create", &id, "sales"])
        .ok();
    assert_eq!(keyspaces(), ["shop", "sales"]);

    // It exists in both regions' stores: the Data API of each lists it.
    let api = creds["apiUrl"].as_str().unwrap().to_string();
    let token = creds["token"].as_str().unwrap().to_string();
    let find_keyspaces = |region: &str| -> Vec<String> {
        let url = format!("{api}/db/{id}-{region}/api/json/v1");
        let v = data_api(&url, &token, r#"{"findKeyspaces":{}}"#);
        let mut ks: Vec<String> = v["status"]["keyspaces"]
            .as_array()
            .unwrap_or_else(|| panic!("{v}"))
            .iter()
            .map(|k| k.as_str().unwrap().to_string())
            .collect();
        ks.sort();
        ks
    };
    assert_eq!(find_keyspaces("us-east-2"), ["sales", "shop"]);
    assert_eq!(find_keyspaces("eu-west-1"), ["sales", "shop"]);

    let removed = customer.run(&["db", "keyspace", "delete", "ks", "sales"]);
    assert!(
        removed
            .ok()
            .stdout
            .contains("keyspace sales removed from database ks"),
        "{removed:?}"
    );
    assert_eq!(keyspaces(), ["shop"]);
    assert_eq!(find_keyspaces("us-east-2"), ["shop"]);
    assert_eq!(find_keyspaces("eu-west-1"), ["shop"]);

    // Refusals carry the server's message and exit 1.
    let again = customer.run(&["db", "keyspace", "delete", "ks", "sales"]);
    assert_eq!(again.code, Some(1), "{again:?}");
    assert!(
        again.stderr.contains("keyspace sales not found"),
        "{again:?}"
    );
    let initial = customer.run(&["db", "keyspace", "delete", "ks", "shop"]);
    assert_eq!(initial.code, Some(1), "{initial:?}");
    assert!(initial.stderr.contains("initial keyspace"), "{initial:?}");
    let reserved = customer.run(&["db", "keyspace", "create", "ks", "system"]);
    assert_eq!(reserved.code, Some(1), "{reserved:?}");
    assert!(reserved.stderr.contains("reserved"), "{reserved:?}");
    let unknown = customer.run(&["db", "keyspace", "create", "nosuch", "sales"]);
    assert_eq!(unknown.code, Some(1), "{unknown:?}");
    // A terminated database takes no keyspace.
    customer.run(&["db", "terminate", "ks", "--yes"]).ok();
    let late = customer.run(&["db", "keyspace", "create", &id, "late"]);
    assert_eq!(late.code, Some(1), "{late:?}");
    assert!(late.stderr.contains("only when it is ACTIVE"), "{late:?}");
}

/// One Data API command over HTTP; its JSON answer.
fn data_api(url: &str, token: &str, command: &str) -> Value {
    let (status, body) = common::data_api_call(url, token, command);
    assert_eq!(status, 200, "{url}: {body}");
    body
}

/// `keyplane key revoke`, `unrevoke`, `on-inaccessible` and `deregister` against a real server.
#[test]
fn a_key_is_revoked_unrevoked_and_deregistered_from_the_cli() {
    let customer = Customer::new();
    let (_server, _creds) = serve_dev(&customer);
    let key = create_registered_key(&customer);
    customer
        .run(&[
            "db",
            "create",
            "--name",
            "ledger",
            "--keyspace",
            "shop",
            "--region",
            "us-east-2",
        ])
        .ok();
    let revoked = customer.run(&["key", "revoke", "--region", "us-east-2"]);
    let v = revoked.ok().json();
    assert_eq!(v["status"], "REVOKED", "{v}");
    assert_eq!(v["key"]["aws"]["keyID"], key.as_str(), "{v}");
    assert!(
        v["reason"]
            .as_str()
            .unwrap()
            .starts_with("revoked by the customer"),
        "{v}"
    );
    let db = customer.run(&["db", "get", "ledger", "--output", "json"]);
    assert_eq!(db.ok().json()["status"], "SUSPENDED");
    // A new database under the revoked key is refused with what to do.
    let refused = customer.run(&[
        "db",
        "create",
        "--name",
        "more",
        "--keyspace",
        "shop",
        "--region",
        "us-east-2",
    ]);
    assert_ne!(refused.code, Some(0), "{refused:?}");
    assert!(refused.stderr.contains("unrevoke"), "{refused:?}");

    let back = customer.run(&["key", "unrevoke", "--region", "us-east-2"]);
    assert_eq!(back.ok().json()["status"], "IN_USE");
    let db = customer.run(&["db", "get", "ledger", "--output", "json"]);
    assert_eq!(db.ok().json()["status"], "ACTIVE");

    // What a failing key does: the organization's choice, then the key's own, then cleared.
    let shown = customer.run(&["key", "on-inaccessible"]).ok().json();
    assert_eq!(shown["organization"]["action"], "suspend", "{shown}");
    let org = customer
        .run(&["key", "on-inaccessible", "--alert-only", "900"])
        .ok()
        .json();
    assert_eq!(org["organization"]["alertOnlySeconds"], 900, "{org}");
    let own = customer
        .run(&[
            "key",
            "on-inaccessible",
            "--region",
            "us-east-2",
            "--suspend",
        ])
        .ok()
        .json();
    assert_eq!(own["keys"][0]["keyID"], key.as_str(), "{own}");
    assert_eq!(own["keys"][0]["action"], "suspend", "{own}");
    let too_long = customer.run(&["key", "on-inaccessible", "--alert-only", "9999999"]);
    assert_ne!(too_long.code, Some(0), "{too_long:?}");
    assert!(too_long.stderr.contains("86400"), "{too_long:?}");
    let cleared = customer
        .run(&["key", "on-inaccessible", "--region", "us-east-2", "--clear"])
        .ok()
        .json();
    assert_eq!(cleared["keys"], serde_json::json!([]), "{cleared}");

    // Deregistering waits until no database uses the key.
    let refused = customer.run(&["key", "deregister", "--region", "us-east-2"]);
    assert_ne!(refused.code, Some(0), "{refused:?}");
    assert!(
        refused.stderr.contains("cannot be deregistered"),
        "{refused:?}"
    );
    customer.run(&["db", "terminate", "ledger", "--yes"]).ok();
    let gone = customer.run(&["key", "deregister", "--region", "us-east-2"]);
    assert_eq!(gone.ok().json()["deregistered"], true);
    let list = customer.run(&["key", "list"]);
    assert_eq!(list.ok().json(), serde_json::json!([]));
}

/// 8 writers on a database while its key is revoked, then `kill -9` of the server: after the
/// restart the key is still revoked and the database refuses reads; unrevoked, it holds every
/// write that was acknowledged, and no write sent after the revoke's answer was acknowledged
/// (one already running when the revoke came may finish).
#[test]
fn a_revoke_survives_kill_9_and_unrevoke_loses_no_acknowledged_write() {
    use std::sync::{Arc, Mutex};
    let customer = Customer::new();
    let (server, creds) = serve_dev(&customer);
    create_registered_key(&customer);
    customer
        .run(&[
            "db",
            "create",
            "--name",
            "ledger",
            "--keyspace",
            "shop",
            "--region",
            "us-east-2",
        ])
        .ok();
    let db = customer.run(&["db", "get", "ledger", "--output", "json"]);
    let id = db.ok().json()["id"].as_str().unwrap().to_string();
    let token = creds["token"].as_str().unwrap().to_string();
    let api = creds["apiUrl"].as_str().unwrap().to_string();
    let ks = format!("{api}/db/{id}-us-east-2/api/json/v1/shop");
    let (st, body) = common::data_api_call(&ks, &token, r#"{"createCollection":{"name":"c"}}"#);
    assert_eq!(st, 200, "{body}");
    let coll = format!("{ks}/c");

    let acked = Arc::new(Mutex::new(Vec::<(String, std::time::Instant)>::new()));
    let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let writers: Vec<_> = (0..8)
        .map(|w| {
            let (coll, token, acked, stop) =
                (coll.clone(), token.clone(), acked.clone(), stop.clone());
            std::thread::spawn(move || {
                let rt = tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()
                    .unwrap();
                let http = reqwest::Client::new();
                let mut refused = 0;
                for i in 0.. {
                    if stop.load(std::sync::atomic::Ordering::Relaxed) {
                        return refused;
                    }
                    let doc = format!(r#"{{"insertOne":{{"document":{{"_id":"w{w}-{i}"}}}}}}"#);
                    let sent_at = std::time::Instant::now();
                    let sent = rt.block_on(
                        http.post(&coll)
                            .header("Token", &token)
                            .header("content-type", "application/json")
                            .body(doc)
                            .send(),
                    );
                    // The server was killed: what was in flight was never acknowledged.
                    let Ok(res) = sent else { return refused };
                    match res.status().as_u16() {
                        200 => acked.lock().unwrap().push((format!("w{w}-{i}"), sent_at)),
                        503 => refused += 1,
                        other => panic!("write answered {other}"),
                    }
                }
                refused
            })
        })
        .collect();
    std::thread::sleep(std::time::Duration::from_millis(400));
    let revoked = customer.run(&["key", "revoke", "--region", "us-east-2"]);
    let answered = std::time::Instant::now();
    assert_eq!(revoked.ok().json()["status"], "REVOKED");
    std::thread::sleep(std::time::Duration::from_millis(300));
    drop(server); // SIGKILL, with the writers still sending
    std::thread::sleep(std::time::Duration::from_millis(100));
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    let refused: usize = writers.into_iter().map(|w| w.join().unwrap()).sum();
    assert!(refused > 0, "the writers saw the revoke");
    let acked = acked.lock().unwrap().clone();
    assert!(!acked.is_empty());
    assert!(
        acked.iter().all(|(_, at)| *at <= answered),
        "a write sent after the revoke answered was acknowledged"
    );

    let (_server, creds) = serve_dev(&customer);
    let api = creds["apiUrl"].as_str().unwrap();
    let coll = format!("{api}/db/{id}-us-east-2/api/json/v1/shop/c");
    let status = customer.run(&["key", "status", "--region", "us-east-2"]);
    assert_eq!(status.ok().json()["status"], "REVOKED");
    let db = customer.run(&["db", "get", "ledger", "--output", "json"]);
    assert_eq!(db.ok().json()["status"], "SUSPENDED");
    let (st, body) = common::data_api_call(&coll, &token, r#"{"countDocuments":{}}"#);
    assert_eq!(st, 503, "{body}");

    customer
        .run(&["key", "unrevoke", "--region", "us-east-2"])
        .ok();
    let mut stored = std::collections::BTreeSet::new();
    let mut page: Option<String> = None;
    loop {
        let cmd = match &page {
            Some(p) => format!(r#"{{"find":{{"options":{{"pageState":"{p}"}}}}}}"#),
            None => r#"{"find":{}}"#.to_string(),
        };
        let (st, body) = common::data_api_call(&coll, &token, &cmd);
        assert_eq!(st, 200, "{body}");
        for d in body["data"]["documents"].as_array().unwrap() {
            stored.insert(d["_id"].as_str().unwrap().to_string());
        }
        match body["data"]["nextPageState"].as_str() {
            Some(p) => page = Some(p.to_string()),
            None => break,
        }
    }
    for (id, _) in &acked {
        assert!(stored.contains(id), "acknowledged write {id} was lost");
    }
}

/// Polls the databases' views until one datacenter is under `key` (10 s at most).
fn first_moved(api: &str, token: &str, ids: &[String], key: &str) {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        let client = reqwest::Client::new();
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
        loop {
            for id in ids {
                let view: Value = client
                    .get(format!("{api}/v2/databases/{id}"))
                    .bearer_auth(token)
                    .send()
                    .await
                    .unwrap()
                    .json()
                    .await
                    .unwrap();
                if view["info"]["datacenters"][0]["encryption"]["keyID"] == key {
                    return;
                }
            }
            assert!(std::time::Instant::now() < deadline, "no rewrap finished");
        }
    });
}

/// `key replace` then `db rewrap`, with the server killed by SIGKILL while rewraps of three
/// databases are in flight: after the restart every database is ACTIVE under one of the two
/// keys and reads every document; the rewrap run again moves what was left, and with the old
/// key disabled every database opens again after another restart.
#[test]
fn rewraps_cut_by_kill_9_leave_every_database_readable() {
    let customer = Customer::new();
    let (server, creds) = serve_dev(&customer);
    let token = creds["token"].as_str().unwrap().to_string();
    let old = create_registered_key(&customer);
    let names = ["r0", "r1", "r2"];
    let mut ids = vec![];
    for (i, name) in names.iter().enumerate() {
        customer
            .run(&[
                "db",
                "create",
                "--name",
                name,
                "--keyspace",
                "shop",
                "--region",
                "us-east-2",
            ])
            .ok();
        let db = customer
            .run(&["db", "get", name, "--output", "json"])
            .ok()
            .json();
        let id = db["id"].as_str().unwrap().to_string();
        let ks = format!(
            "{}/db/{id}-us-east-2/api/json/v1/shop",
            creds["apiUrl"].as_str().unwrap()
        );
        let (st, body) = common::data_api_call(&ks, &token, r#"{"createCollection":{"name":"c"}}"#);
        assert_eq!(st, 200, "{body}");
        let docs: Vec<Value> = (0..10 + i).map(|n| serde_json::json!({"_id": n})).collect();
        let cmd = serde_json::json!({"insertMany": {"documents": docs}}).to_string();
        let (st, body) = common::data_api_call(&format!("{ks}/c"), &token, &cmd);
        assert_eq!(st, 200, "{body}");
        ids.push(id);
    }
    let new = customer
        .run(&["kms", "create-key", "--output", "arn"])
        .ok()
        .stdout
        .trim()
        .to_string();
    customer
        .run(&["kms", "put-key-policy", "--key-id", &new, "--merge"])
        .ok();
    let replaced = customer
        .run(&["key", "replace", "--region", "us-east-2", "--key-id", &new])
        .ok()
        .json();
    assert_eq!(
        replaced["previousKeys"][0]["keyID"],
        old.as_str(),
        "{replaced}"
    );
    assert_eq!(
        replaced["previousKeys"][0]["datacenters"]
            .as_array()
            .unwrap()
            .len(),
        3
    );

    let rewraps: Vec<_> = names
        .iter()
        .map(|n| {
            customer
                .command()
                .args(["db", "rewrap", n])
                .stdout(std::process::Stdio::null())
                .stderr(std::process::Stdio::null())
                .spawn()
                .unwrap()
        })
        .collect();
    // SIGKILL as soon as one datacenter is recorded under the new key, the other rewraps
    // started with it.
    first_moved(creds["apiUrl"].as_str().unwrap(), &token, &ids, &new);
    drop(server);
    for mut r in rewraps {
        let _ = r.wait();
    }

    let (server, creds) = serve_dev(&customer);
    let api = creds["apiUrl"].as_str().unwrap().to_string();
    let under = |name: &str| {
        let db = customer
            .run(&["db", "get", name, "--output", "json"])
            .ok()
            .json();
        (
            db["status"].as_str().unwrap().to_string(),
            db["info"]["datacenters"][0]["encryption"]["keyID"]
                .as_str()
                .unwrap()
                .to_string(),
        )
    };
    let readable = |api: &str, id: &str, n: usize| {
        let coll = format!("{api}/db/{id}-us-east-2/api/json/v1/shop/c");
        let (st, body) = common::data_api_call(&coll, &token, r#"{"countDocuments":{}}"#);
        assert_eq!(
            (st, &body["status"]["count"]),
            (200, &serde_json::json!(n)),
            "{body}"
        );
    };
    let mut moved = 0;
    for (i, (name, id)) in names.iter().zip(&ids).enumerate() {
        let (status, key) = under(name);
        assert_eq!(status, "ACTIVE", "{name}");
        assert!(key == old || key == new, "{name} is under {key}");
        moved += usize::from(key == new);
        readable(&api, id, 10 + i);
    }
    assert!(moved >= 1, "the kill came after one rewrap");
    eprintln!("rewrap crash test: {moved} of 3 datacenters moved before the kill");
    for name in names {
        customer.run(&["db", "rewrap", name]).ok();
    }
    let status = customer
        .run(&["key", "status", "--region", "us-east-2"])
        .ok()
        .json();
    assert_eq!(status["previousKeys"], serde_json::json!([]), "{status}");
    // The old key disabled and the server restarted: every data key is unwrapped afresh, by
    // the new key alone.
    customer.run(&["kms", "disable-key", "--key-id", &old]).ok();
    drop(server);
    let (_server, creds) = serve_dev(&customer);
    let api = creds["apiUrl"].as_str().unwrap().to_string();
    let check = customer
        .run(&["key", "status", "--region", "us-east-2"])
        .ok()
        .json();
    assert_eq!(check["key"]["aws"]["keyID"], new.as_str(), "{check}");
    for (i, (name, id)) in names.iter().zip(&ids).enumerate() {
        assert_eq!(under(name), ("ACTIVE".to_string(), new.clone()));
        readable(&api, id, 10 + i);
    }
}

/// `keyplane webhook create`, `list`, `deliveries` and `delete` against `serve --dev`, which
/// delivers to a loopback endpoint (dev mode allows test targets): the event arrives signed
/// with the secret `create` printed.
#[test]
fn webhooks_from_the_cli() {
    let customer = Customer::new();
    let (_server, _creds) = serve_dev(&customer);
    let (url, got) = webhook_receiver();
    let refused = customer.run(&["webhook", "create", "--url", "ftp://example.com/"]);
    assert_ne!(refused.code, Some(0), "{refused:?}");
    assert!(refused.stderr.contains("https"), "{refused:?}");
    let created = customer
        .run(&[
            "webhook",
            "create",
            "--url",
            &url,
            "--event",
            "cmk.on_inaccessible",
        ])
        .ok()
        .json();
    let secret = created["secret"].as_str().unwrap().to_string();
    let id = created["id"].as_str().unwrap().to_string();
    assert_eq!(
        created["events"],
        serde_json::json!(["cmk.on_inaccessible"])
    );
    let listed = customer.run(&["webhook", "list"]).ok().json();
    assert_eq!(listed[0]["id"], id.as_str());
    assert!(!listed.to_string().contains(&secret));

    customer
        .run(&["key", "on-inaccessible", "--alert-only", "900"])
        .ok();
    let (headers, body) = got
        .recv_timeout(std::time::Duration::from_secs(20))
        .unwrap();
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64;
    keyplane_core::webhook::verify(&secret, &headers["keyplane-signature"], &body, now, 300)
        .unwrap();
    let event: Value = serde_json::from_slice(&body).unwrap();
    assert_eq!(event["type"], "cmk.on_inaccessible", "{event}");
    assert_eq!(headers["keyplane-event"], "cmk.on_inaccessible");
    assert_eq!(headers["keyplane-delivery-attempt"], "1");

    let start = std::time::Instant::now();
    loop {
        let log = customer.run(&["webhook", "deliveries", &id]).ok().json();
        if log[0]["state"] == "delivered" {
            assert_eq!(log[0]["attempts"][0]["status"], 204, "{log}");
            break;
        }
        assert!(start.elapsed().as_secs() < 20, "{log}");
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
    let deleted = customer.run(&["webhook", "delete", &id]).ok().json();
    assert_eq!(deleted["deleted"], id.as_str());
    assert_eq!(
        customer.run(&["webhook", "list"]).ok().json(),
        serde_json::json!([])
    );
    let gone = customer.run(&["webhook", "deliveries", &id]);
    assert_ne!(gone.code, Some(0), "{gone:?}");
    assert!(gone.stderr.contains("not found"), "{gone:?}");
}

/// `db rotate-data-key`: every region of the database gets a new data key, the command says
/// what each rotation cost, the database answers as before, and a region it does not have is
/// refused naming it.
#[test]
fn data_keys_are_rotated_from_the_cli() {
    let customer = Customer::new();
    let (_server, creds) = serve_dev(&customer);
    let token = creds["token"].as_str().unwrap().to_string();
    create_registered_key(&customer);
    customer
        .run(&[
            "db",
            "create",
            "--name",
            "ledger",
            "--keyspace",
            "shop",
            "--region",
            "us-east-2",
        ])
        .ok();
    let db = customer
        .run(&["db", "get", "ledger", "--output", "json"])
        .ok()
        .json();
    assert!(
        db["info"]["datacenters"][0]["encryption"]["dataKeyRotatedAt"].is_null(),
        "{db}"
    );
    let id = db["id"].as_str().unwrap();
    let ks = format!(
        "{}/db/{id}-us-east-2/api/json/v1/shop",
        creds["apiUrl"].as_str().unwrap()
    );
    let (st, body) = common::data_api_call(&ks, &token, r#"{"createCollection":{"name":"c"}}"#);
    assert_eq!(st, 200, "{body}");
    let docs: Vec<Value> = (0..50).map(|n| serde_json::json!({"_id": n})).collect();
    let cmd = serde_json::json!({"insertMany": {"documents": docs}}).to_string();
    let (st, body) = common::data_api_call(&format!("{ks}/c"), &token, &cmd);
    assert_eq!(st, 200, "{body}");

    let run = customer.run(&["db", "rotate-data-key", "ledger", "--output", "json"]);
    let rotated = run.ok().json();
    let enc = &rotated["info"]["datacenters"][0]["encryption"];
    assert!(enc["dataKeyRotatedAt"].is_string(), "{rotated}");
    assert!(
        run.stderr.contains("us-east-2: data key rotated")
            && run.stderr.contains("bytes re-encrypted"),
        "{run:#?}"
    );
    let (st, body) = common::data_api_call(
        &format!("{ks}/c"),
        &token,
        r#"{"estimatedDocumentCount":{}}"#,
    );
    assert_eq!(
        (st, &body["status"]["count"]),
        (200, &serde_json::json!(50)),
        "{body}"
    );

    let refused = customer.run(&["db", "rotate-data-key", "ledger", "--region", "eu-west-1"]);
    assert_ne!(refused.code, Some(0));
    assert!(
        refused.stderr.contains("no live datacenter in eu-west-1"),
        "{refused:#?}"
    );
}
