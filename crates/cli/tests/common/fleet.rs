//! Several `keyplane serve` processes on one PostgreSQL, as an operator runs replicas: a
//! fresh database per test on the throwaway cluster `scripts/with-postgres` gives
//! (`KEYPLANE_TEST_PG_URL`), one built-in KMS process (`keyplane kms serve`) shared by every
//! replica, an organization and token made with `keyplane admin`, and the replicas on free
//! ports, each with its own data dir. Helpers kill -9, stop (SIGSTOP) and restart one
//! replica or the KMS, read the store with SQL, and read a replica's `/metrics`.
//!
//! Everything is the real binary over real sockets; nothing is faked.
#![allow(dead_code)]

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::{Value, json};

use super::{BIN, Proc, free_port, signal};

pub const PG_ENV: &str = "KEYPLANE_TEST_PG_URL";
pub const PLATFORM_ACCOUNT: &str = "222222222222";
pub const PLATFORM_ROLE: &str = "arn:aws:iam::222222222222:role/creator";
pub const CUSTOMER: &str = "arn:aws:iam::111111111111:user/admin";
/// The regions the fleet has platform keys for.
pub const REGIONS: [&str; 2] = ["us-east-2", "eu-west-1"];

/// One built-in KMS identity's keys, from the KMS's `credentials.json`.
#[derive(Clone)]
pub struct Identity {
    pub access_key_id: String,
    pub secret_access_key: String,
}

/// One replica: where it listens and keeps its data dir, its log, and its process (None
/// while it is down).
pub struct Replica {
    pub url: String,
    pub port: u16,
    pub data_dir: PathBuf,
    pub log: PathBuf,
    /// Its replica ID in job leases, from `/readyz` (a new one at every start).
    pub id: String,
    proc: Option<Proc>,
}

pub struct Fleet {
    pub root: tempfile::TempDir,
    admin_url: String,
    pub db_name: String,
    /// The fleet's database.
    pub db_url: String,
    pub config: PathBuf,
    pub kms_endpoint: String,
    kms: Proc,
    pub platform: Identity,
    pub customer: Identity,
    /// Platform key ARN per region.
    pub platform_keys: Vec<(String, String)>,
    pub org: String,
    pub token: String,
    pub replicas: Vec<Replica>,
    /// Flags every replica starts with (after the fleet's own).
    flags: Vec<String>,
    pub http: reqwest::Client,
}

fn pg_admin_url() -> String {
    std::env::var(PG_ENV).unwrap_or_else(|_| {
        panic!(
            "{PG_ENV} is not set, so the multi-process tests have no PostgreSQL to share. Run them \
             with a throwaway server: scripts/with-postgres cargo test -p keyplane --test replicas"
        )
    })
}

/// The admin URL with its path (the database name) replaced by `db`.
fn with_database(url: &str, db: &str) -> String {
    let (base, query) = match url.split_once('?') {
        Some((base, query)) => (base, Some(query)),
        None => (url, None),
    };
    let scheme_end = base.find("://").map_or(0, |i| i + 3);
    let authority_end = base[scheme_end..]
        .find('/')
        .map_or(base.len(), |i| scheme_end + i);
    let mut out = format!("{}/{db}", &base[..authority_end]);
    if let Some(q) = query {
        out.push('?');
        out.push_str(q);
    }
    out
}

async fn pg(url: &str) -> tokio_postgres::Client {
    let (client, conn) = tokio_postgres::connect(url, tokio_postgres::NoTls)
        .await
        .unwrap_or_else(|e| panic!("cannot connect to {url}: {e}"));
    tokio::spawn(conn);
    client
}

pub fn kms_client(endpoint: &str, who: &Identity, region: &str) -> aws_sdk_kms::Client {
    keyplane_testkit::kms_client(
        endpoint,
        region,
        keyplane_testkit::credentials(&who.access_key_id, &who.secret_access_key),
    )
}

fn run_admin(db_url: &str, config: &Path, args: &[&str]) -> Value {
    let out = Command::new(BIN)
        .args(["admin", "--database-url", db_url, "--config"])
        .arg(config)
        .args(args)
        .env_remove("RUST_LOG")
        .stdin(Stdio::null())
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "keyplane admin {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).unwrap_or_else(|e| {
        panic!(
            "admin {args:?} printed no JSON ({e}): {}",
            String::from_utf8_lossy(&out.stdout)
        )
    })
}

impl Fleet {
    /// `n` replicas started with `flags` (e.g. `--role api --job-lease 2`), each waited for
    /// until `/readyz` answers.
    pub async fn start(n: usize, flags: &[&str]) -> Fleet {
        let admin_url = pg_admin_url();
        let db_name = format!("kp_fleet_{}", uuid::Uuid::new_v4().simple());
        pg(&admin_url)
            .await
            .batch_execute(&format!("CREATE DATABASE {db_name}"))
            .await
            .unwrap();
        let db_url = with_database(&admin_url, &db_name);
        let root = tempfile::tempdir().unwrap();

        // The shared KMS, on a free port; it prints its endpoint on its first line.
        let mut kms = Command::new(BIN)
            .args(["kms", "serve", "--listen", "127.0.0.1:0", "--data-dir"])
            .arg(root.path().join("kms"))
            .stdout(Stdio::piped())
            .stderr(std::fs::File::create(root.path().join("kms.log")).unwrap())
            .spawn()
            .unwrap();
        let mut first = String::new();
        BufReader::new(kms.stdout.take().unwrap())
            .read_line(&mut first)
            .unwrap();
        let kms = Proc(kms);
        let hello: Value = serde_json::from_str(&first).unwrap();
        let kms_endpoint = hello["endpoint"].as_str().unwrap().to_string();
        let ids: Value = serde_json::from_str(
            &std::fs::read_to_string(root.path().join("kms/credentials.json")).unwrap(),
        )
        .unwrap();
        let identity = |arn: &str| {
            let i = ids["identities"]
                .as_array()
                .unwrap()
                .iter()
                .find(|i| i["principalArn"] == arn)
                .unwrap_or_else(|| panic!("the built-in KMS knows {arn}"));
            Identity {
                access_key_id: i["accessKeyId"].as_str().unwrap().to_string(),
                secret_access_key: i["secretAccessKey"].as_str().unwrap().to_string(),
            }
        };
        let (platform, customer) = (identity(PLATFORM_ROLE), identity(CUSTOMER));

        // The platform's own keys, in its account, one per region.
        let mut platform_keys = Vec::new();
        for region in REGIONS {
            let key = kms_client(&kms_endpoint, &platform, region)
                .create_key()
                .description("fleet platform key")
                .send()
                .await
                .unwrap();
            let arn = key.key_metadata().unwrap().arn().unwrap().to_string();
            platform_keys.push((region.to_string(), arn));
        }
        // One sealing key for every replica of the store, as the README says to run them.
        let sealing = root.path().join("sealing.key");
        std::fs::write(&sealing, format!("{}\n", "5e".repeat(32))).unwrap();
        std::fs::set_permissions(
            &sealing,
            std::os::unix::fs::PermissionsExt::from_mode(0o600),
        )
        .unwrap();
        // Every replica's configuration: the KMS as the platform account, with bounded but
        // patient attempts (a stopped KMS is a slow one, not a failing one).
        let mut toml = format!(
            "sealing_key_file = \"{}\"\n[aws]\nendpoint_url = \"{kms_endpoint}\"\nmax_attempts = 2\nattempt_timeout_ms = 30000\n\
             operation_timeout_ms = 60000\n[aws.credentials.\"{PLATFORM_ACCOUNT}\"]\n\
             access_key_id = \"{}\"\nsecret_access_key = \"{}\"\n",
            sealing.display(),
            platform.access_key_id,
            platform.secret_access_key
        );
        for (region, arn) in &platform_keys {
            toml.push_str(&format!(
                "[platform_keys.aws.{region}]\nkey_id = \"{arn}\"\naccount = \"{PLATFORM_ACCOUNT}\"\n"
            ));
        }
        let config = root.path().join("keyplane.toml");
        std::fs::write(&config, toml).unwrap();

        let org = run_admin(&db_url, &config, &["create-org", "Acme"]);
        let org = org["id"].as_str().unwrap().to_string();
        let token = run_admin(
            &db_url,
            &config,
            &[
                "create-token",
                "--org",
                &org,
                "--role",
                "Organization Administrator",
            ],
        );
        let token = token["token"].as_str().unwrap().to_string();

        let mut fleet = Fleet {
            admin_url,
            db_name,
            db_url,
            config,
            kms_endpoint,
            kms,
            platform,
            customer,
            platform_keys,
            org,
            token,
            replicas: Vec::new(),
            flags: flags.iter().map(|f| f.to_string()).collect(),
            http: reqwest::Client::builder()
                .timeout(Duration::from_secs(30))
                .connect_timeout(Duration::from_secs(2))
                .redirect(reqwest::redirect::Policy::none())
                .build()
                .unwrap(),
            root,
        };
        for i in 0..n {
            let port = free_port();
            fleet.replicas.push(Replica {
                url: format!("http://127.0.0.1:{port}"),
                port,
                data_dir: fleet.root.path().join(format!("replica{i}")),
                log: fleet.root.path().join(format!("replica{i}.log")),
                id: String::new(),
                proc: None,
            });
            fleet.start_replica(i).await;
        }
        fleet
    }

    /// Starts replica `i` (again) on its port and data dir; waits until `/readyz` answers.
    pub async fn start_replica(&mut self, i: usize) {
        assert!(self.replicas[i].proc.is_none(), "replica {i} is running");
        let r = &self.replicas[i];
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&r.log)
            .unwrap();
        let child = Command::new(BIN)
            .args(["serve", "--listen", &format!("127.0.0.1:{}", r.port)])
            .arg("--database-url")
            .arg(&self.db_url)
            .arg("--config")
            .arg(&self.config)
            .arg("--data-dir")
            .arg(&r.data_dir)
            .args(["--key-check-interval", "3600"])
            .args(&self.flags)
            .env("RUST_LOG", "info")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .unwrap();
        let mut proc = Proc(child);
        let url = r.url.clone();
        let deadline = Instant::now() + Duration::from_secs(60);
        let id = loop {
            if let Ok(res) = self.http.get(format!("{url}/readyz")).send().await
                && res.status() == 200
            {
                let body: Value = res.json().await.unwrap();
                break body["replicaId"].as_str().unwrap().to_string();
            }
            if let Ok(Some(status)) = proc.0.try_wait() {
                panic!(
                    "replica {i} exited during start ({status}):\n{}",
                    self.logs(i)
                );
            }
            assert!(
                Instant::now() < deadline,
                "replica {i} did not come up:\n{}",
                self.logs(i)
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        };
        let r = &mut self.replicas[i];
        r.id = id;
        r.proc = Some(proc);
    }

    /// SIGKILL, and proof that the signal ended it.
    pub fn kill9(&mut self, i: usize) {
        use std::os::unix::process::ExitStatusExt;
        let mut proc = self.replicas[i].proc.take().expect("replica is running");
        proc.0.kill().unwrap();
        let status = proc.0.wait().unwrap();
        assert_eq!(status.signal(), Some(9), "replica {i}: {status}");
    }

    /// SIGSTOP: the process holds its sockets and leases but does nothing (a stalled host).
    pub fn pause(&self, i: usize) {
        signal(&self.replicas[i].proc.as_ref().unwrap().0, "STOP");
    }

    pub fn resume(&self, i: usize) {
        signal(&self.replicas[i].proc.as_ref().unwrap().0, "CONT");
    }

    /// SIGSTOP the KMS: every KMS call waits, as on a slow KMS.
    pub fn pause_kms(&self) {
        signal(&self.kms.0, "STOP");
    }

    pub fn resume_kms(&self) {
        signal(&self.kms.0, "CONT");
    }

    pub fn kms_as(&self, who: &Identity, region: &str) -> aws_sdk_kms::Client {
        kms_client(&self.kms_endpoint, who, region)
    }

    /// The last lines of replica `i`'s log (every run of it).
    pub fn logs(&self, i: usize) -> String {
        let all = std::fs::read_to_string(&self.replicas[i].log).unwrap_or_default();
        let lines: Vec<&str> = all.lines().collect();
        format!(
            "--- replica {i} ---\n{}",
            lines[lines.len().saturating_sub(40)..].join("\n")
        )
    }

    pub fn all_logs(&self) -> String {
        (0..self.replicas.len())
            .map(|i| self.logs(i))
            .collect::<Vec<_>>()
            .join("\n")
    }

    /// Rows of a query on the fleet's database.
    pub async fn sql(&self, query: &str) -> Vec<tokio_postgres::Row> {
        pg(&self.db_url).await.query(query, &[]).await.unwrap()
    }

    /// A DevOps API call to replica `i` with the fleet's token: status, JSON body, Location.
    pub async fn api(
        &self,
        i: usize,
        method: &str,
        path: &str,
        body: Option<Value>,
    ) -> (u16, Value, Option<String>) {
        let mut req = self
            .http
            .request(
                method.parse().unwrap(),
                format!("{}{path}", self.replicas[i].url),
            )
            .bearer_auth(&self.token);
        if let Some(b) = body {
            req = req.json(&b);
        }
        let res = req
            .send()
            .await
            .unwrap_or_else(|e| panic!("replica {i} {method} {path}: {e}"));
        let status = res.status().as_u16();
        let location = res
            .headers()
            .get("location")
            .map(|l| l.to_str().unwrap().to_string());
        let text = res.text().await.unwrap();
        (
            status,
            serde_json::from_str(&text).unwrap_or(Value::String(text)),
            location,
        )
    }

    /// Creates a database through replica `i`; its ID.
    pub async fn create_db(&self, i: usize, name: &str, region: &str) -> String {
        let body = json!({"name": name, "keyspace": "shop", "cloudProvider": "AWS", "tier": "C10",
                          "capacityUnits": 1, "region": region});
        let (st, body, location) = self.api(i, "POST", "/v2/databases", Some(body)).await;
        assert_eq!(st, 201, "replica {i}: {body}");
        location
            .expect("a Location header")
            .rsplit('/')
            .next()
            .unwrap()
            .to_string()
    }

    /// Replica `i`'s counter `name` from `/metrics`.
    pub async fn metric(&self, i: usize, name: &str) -> u64 {
        let text = self
            .http
            .get(format!("{}/metrics", self.replicas[i].url))
            .send()
            .await
            .unwrap()
            .text()
            .await
            .unwrap();
        text.lines()
            .find_map(|l| l.strip_prefix(&format!("{name} ")))
            .unwrap_or_else(|| panic!("no {name} in replica {i}'s metrics:\n{text}"))
            .trim()
            .parse()
            .unwrap()
    }

    /// A key of the customer's (111111111111) with the seed's policy for the platform role,
    /// bound to the fleet's organization as registration requires (the use and grant
    /// statements carry the organization's encryption-context condition; DescribeKey,
    /// ListGrants and RevokeGrant stay in a statement without it), registered for `region`
    /// through replica `i`; its ARN.
    pub async fn register_customer_key(&self, i: usize, region: &str) -> String {
        let bound = json!({"StringEquals": {"kms:EncryptionContext:organization": &self.org}});
        let policy = json!({"Version": "2012-10-17", "Statement": [
            {"Sid": "Enable IAM User Permissions", "Effect": "Allow",
             "Principal": {"AWS": "arn:aws:iam::111111111111:root"}, "Action": "kms:*", "Resource": "*"},
            {"Sid": "Allow an external account to use this KMS key", "Effect": "Allow",
             "Principal": {"AWS": PLATFORM_ROLE},
             "Action": ["kms:EnableKey", "kms:Encrypt", "kms:Decrypt", "kms:GenerateDataKey",
                        "kms:GenerateDataKeyWithoutPlaintext", "kms:ReEncryptTo", "kms:ReEncryptFrom"],
             "Resource": "*", "Condition": bound},
            {"Sid": "Allow attachment of persistent resources", "Effect": "Allow",
             "Principal": {"AWS": PLATFORM_ROLE},
             "Action": ["kms:CreateGrant"], "Resource": "*", "Condition": bound},
            {"Sid": "Allow the platform to describe the key and manage its grants", "Effect": "Allow",
             "Principal": {"AWS": PLATFORM_ROLE},
             "Action": ["kms:DescribeKey", "kms:ListGrants", "kms:RevokeGrant"], "Resource": "*"}]});
        let key = self
            .kms_as(&self.customer, region)
            .create_key()
            .policy(policy.to_string())
            .send()
            .await
            .unwrap();
        let arn = key.key_metadata().unwrap().arn().unwrap().to_string();
        let (st, body, _) = self
            .api(
                i,
                "POST",
                "/v2/kms/classic",
                Some(json!({"orgId": self.org, "aws": {"keyID": arn, "region": region}})),
            )
            .await;
        assert_eq!(st, 201, "{body}");
        arn
    }

    /// Drops the fleet's database (only reached when the test passed, so a failure leaves it
    /// to look at); the processes are killed when the fleet is dropped.
    pub async fn finish(mut self) {
        for i in 0..self.replicas.len() {
            if self.replicas[i].proc.is_some() {
                self.kill9(i);
            }
        }
        pg(&self.admin_url)
            .await
            .batch_execute(&format!(
                "DROP DATABASE IF EXISTS {} WITH (FORCE)",
                self.db_name
            ))
            .await
            .unwrap();
    }
}
