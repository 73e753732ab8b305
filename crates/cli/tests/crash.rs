//! Crash tests on the real binary: `serve --dev` killed with SIGKILL while databases are being
//! provisioned and while documents are being written, then restarted on the same data dir.
//! After a restart provisioning resumes (every database ACTIVE, its file opening with the one
//! data key of record) and no acknowledged write is missing.
#![cfg(unix)]

mod common;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use common::{BIN, free_port};
use serde_json::{Value, json};

const REGION: &str = "us-east-2";
const KEYSPACE: &str = "shop";

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(4)
        .enable_all()
        .build()
        .unwrap()
}

fn client() -> reqwest::Client {
    reqwest::Client::builder()
        .timeout(Duration::from_secs(10))
        .connect_timeout(Duration::from_secs(2))
        .build()
        .unwrap()
}

/// One run of `serve --dev` on a data dir; killed with SIGKILL when dropped.
struct Server {
    child: Child,
    log: PathBuf,
    api: Api,
}

/// How clients reach one run of the server (cheap to clone into writer tasks).
#[derive(Clone)]
struct Api {
    api: String,
    token: String,
    http: reqwest::Client,
}

impl std::ops::Deref for Server {
    type Target = Api;
    fn deref(&self) -> &Api {
        &self.api
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Server {
    /// Starts the binary on free ports and waits until its API answers (which it does only
    /// after the dev bootstrap rewrote the credentials file with this run's URL).
    async fn start(data: &Path, log: PathBuf) -> Server {
        let port = free_port();
        let kms = free_port();
        let log_file = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&log)
            .unwrap();
        let child = Command::new(BIN)
            .args(["serve", "--dev", "--listen", &format!("127.0.0.1:{port}")])
            .args(["--kms-listen", &format!("127.0.0.1:{kms}")])
            .args(["--azure-listen", "127.0.0.1:0"])
            .arg("--data-dir")
            .arg(data)
            .stdout(Stdio::null())
            .stderr(log_file)
            .spawn()
            .unwrap();
        let api = format!("http://127.0.0.1:{port}");
        let mut server = Server {
            child,
            log,
            api: Api {
                api: api.clone(),
                token: String::new(),
                http: client(),
            },
        };
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            if let Ok(res) = server.http.get(format!("{api}/healthz")).send().await
                && res.status() == 200
            {
                break;
            }
            if let Some(status) = server.child.try_wait().unwrap() {
                panic!(
                    "serve --dev exited during start ({status}):\n{}",
                    server.logs()
                );
            }
            assert!(
                Instant::now() < deadline,
                "serve --dev did not come up:\n{}",
                server.logs()
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        let creds: Value = serde_json::from_str(
            &std::fs::read_to_string(data.join("dev-credentials.json")).unwrap(),
        )
        .unwrap();
        assert_eq!(creds["apiUrl"], api.as_str());
        server.api.token = creds["token"].as_str().unwrap().to_string();
        server
    }

    /// SIGKILL, and proof that it was the signal that ended the process.
    fn kill9(mut self) {
        use std::os::unix::process::ExitStatusExt;
        self.child.kill().unwrap(); // SIGKILL on unix
        let status = self.child.wait().unwrap();
        assert_eq!(
            status.signal(),
            Some(9),
            "the server was not killed by SIGKILL: {status}"
        );
    }

    /// The last lines of the server logs (all runs on this data dir), for failure messages.
    fn logs(&self) -> String {
        let all = std::fs::read_to_string(&self.log).unwrap_or_default();
        let lines: Vec<&str> = all.lines().collect();
        lines[lines.len().saturating_sub(40)..].join("\n")
    }
}

impl Server {
    async fn wait_active(&self, id: &str, deadline: Instant) -> Value {
        loop {
            let view = self.get_db(id).await;
            if view["status"] == "ACTIVE" {
                return view;
            }
            assert!(
                Instant::now() < deadline,
                "database {id} never became ACTIVE after the restart: {view}\nserver logs:\n{}",
                self.logs()
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
}

impl Api {
    async fn send(
        &self,
        method: &str,
        path: &str,
        body: Option<Value>,
    ) -> Result<(u16, Value, Option<String>), reqwest::Error> {
        let mut req = self
            .http
            .request(method.parse().unwrap(), format!("{}{path}", self.api))
            .bearer_auth(&self.token);
        if let Some(b) = body {
            req = req.json(&b);
        }
        let res = req.send().await?;
        let status = res.status().as_u16();
        let location = res
            .headers()
            .get("location")
            .map(|l| l.to_str().unwrap().to_string());
        let text = res.text().await?;
        Ok((
            status,
            serde_json::from_str(&text).unwrap_or(Value::String(text)),
            location,
        ))
    }

    async fn create_db(&self, name: &str) -> String {
        let body = json!({"name": name, "keyspace": KEYSPACE, "cloudProvider": "AWS", "tier": "C10",
                          "capacityUnits": 1, "region": REGION});
        let (st, body, location) = self
            .send("POST", "/v2/databases", Some(body))
            .await
            .unwrap();
        assert_eq!(st, 201, "{body}");
        location
            .expect("a Location header")
            .rsplit('/')
            .next()
            .unwrap()
            .to_string()
    }

    async fn get_db(&self, id: &str) -> Value {
        let (st, body, _) = self
            .send("GET", &format!("/v2/databases/{id}"), None)
            .await
            .unwrap();
        assert_eq!(st, 200, "{body}");
        body
    }

    /// A Data API command (`Token` header, as Data API clients send it).
    async fn data(
        &self,
        db: &str,
        collection: Option<&str>,
        cmd: Value,
    ) -> Result<(u16, Value), reqwest::Error> {
        let mut url = format!("{}/db/{db}-{REGION}/api/json/v1/{KEYSPACE}", self.api);
        if let Some(c) = collection {
            url.push('/');
            url.push_str(c);
        }
        let res = self
            .http
            .post(url)
            .header("Token", &self.token)
            .json(&cmd)
            .send()
            .await?;
        let status = res.status().as_u16();
        let text = res.text().await?;
        Ok((
            status,
            serde_json::from_str(&text).unwrap_or(Value::String(text)),
        ))
    }
}

/// The datacenters as the killed process left them in its store: id → (database id, status,
/// whether a wrapped data key is stored). Read after the kill, this is the state at kill time.
fn datacenters_at_kill(data: &Path) -> BTreeMap<String, (String, String, bool)> {
    let script = r#"
import json, sqlite3, sys
c = sqlite3.connect(sys.argv[1])
rows = c.execute("SELECT id, database_id, status, wrapped_data_key IS NOT NULL FROM datacenters").fetchall()
print(json.dumps([[r[0], r[1], r[2], bool(r[3])] for r in rows]))
"#;
    let out = Command::new("python3")
        .arg("-c")
        .arg(script)
        .arg(data.join("keyplane.db"))
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let rows: Vec<(String, String, String, bool)> = serde_json::from_slice(&out.stdout).unwrap();
    rows.into_iter()
        .map(|(id, db, st, key)| (id, (db, st, key)))
        .collect()
}

fn dcs_of<'a>(
    state: &'a BTreeMap<String, (String, String, bool)>,
    db: &'a str,
) -> impl Iterator<Item = &'a (String, String, bool)> {
    state.values().filter(move |(d, _, _)| d == db)
}

/// Restarts on `data` and checks that every database of `dbs` reaches ACTIVE (so no job stays
/// pending or running), with one datacenter, no error message, and a file that opens with its
/// stored data key; then that a fresh process (nothing cached) unwraps that key and reads it.
async fn assert_provisioning_resumed(data: &Path, log: &Path, dbs: &[String]) {
    let s = Server::start(data, log.to_path_buf()).await;
    let deadline = Instant::now() + Duration::from_secs(20);
    for db in dbs {
        let view = s.wait_active(db, deadline).await;
        assert_eq!(view["message"], "", "{view}");
        let dcs = view["info"]["datacenters"].as_array().unwrap();
        assert_eq!(dcs.len(), 1, "{view}");
        assert_eq!(dcs[0]["status"], "ACTIVE", "{view}");
        assert_eq!(
            dcs[0]["encryption"]["keyType"], "platform-managed",
            "{view}"
        );
        let (st, body) = s
            .data(db, None, json!({"createCollection": {"name": "c"}}))
            .await
            .unwrap();
        assert_eq!(
            (st, &body["status"]["ok"]),
            (200, &json!(1)),
            "{db}: {body}\n{}",
            s.logs()
        );
        let (st, body) = s
            .data(
                db,
                Some("c"),
                json!({"insertOne": {"document": {"_id": "probe", "db": db}}}),
            )
            .await
            .unwrap();
        assert_eq!(
            (st, &body["status"]["insertedIds"]),
            (200, &json!(["probe"])),
            "{db}: {body}"
        );
        let (st, body) = s
            .data(
                db,
                Some("c"),
                json!({"findOne": {"filter": {"_id": "probe"}}}),
            )
            .await
            .unwrap();
        assert_eq!(
            (st, &body["data"]["document"]["db"]),
            (200, &json!(db)),
            "{db}: {body}"
        );
    }
    // Each datacenter holds one wrapped data key (the column is set once), and it is the one
    // its file was created with: a fresh process unwraps it and reads the file.
    s.kill9();
    let state = datacenters_at_kill(data);
    assert_eq!(state.len(), dbs.len(), "{state:?}");
    for (dc, (_, status, has_key)) in &state {
        assert!(
            status == "ACTIVE" && *has_key,
            "{dc}: {status}, key stored: {has_key}"
        );
    }
    let s = Server::start(data, log.to_path_buf()).await;
    for db in dbs {
        let (st, body) = s
            .data(
                db,
                Some("c"),
                json!({"findOne": {"filter": {"_id": "probe"}}}),
            )
            .await
            .unwrap();
        assert_eq!(
            (st, &body["data"]["document"]["db"]),
            (200, &json!(db)),
            "{db}: {body}\n{}",
            s.logs()
        );
        let (st, body) = s
            .data(db, Some("c"), json!({"countDocuments": {}}))
            .await
            .unwrap();
        assert_eq!(
            (st, &body["status"]["count"]),
            (200, &json!(1)),
            "{db}: {body}"
        );
    }
}

/// Killed right after the 201s of a burst of creations: the worker (polling every 200 ms, one
/// job at a time) cannot have provisioned them all, and the restart provisions them.
#[test]
fn kill_9_right_after_creation_resumes_provisioning() {
    let started = Instant::now();
    let tmp = tempfile::tempdir().unwrap();
    let (data, log) = (tmp.path().join("data"), tmp.path().join("server.log"));
    runtime().block_on(async {
        let s = Server::start(&data, log.clone()).await;
        let mut dbs = vec![];
        for i in 0..3 {
            dbs.push(s.create_db(&format!("burst{i}")).await);
        }
        s.kill9();
        let state = datacenters_at_kill(&data);
        let mut not_active = vec![];
        for db in &dbs {
            let dcs: Vec<_> = dcs_of(&state, db).collect();
            assert_eq!(
                dcs.len(),
                1,
                "the creation stored its datacenter with the 201: {state:?}"
            );
            if dcs[0].1 != "ACTIVE" {
                not_active.push(dcs[0].clone());
            }
        }
        eprintln!("burst: not ACTIVE at kill time: {not_active:?}");
        assert!(
            !not_active.is_empty(),
            "all three were ACTIVE within their 201s: {state:?}"
        );
        assert_provisioning_resumed(&data, &log, &dbs).await;
    });
    assert!(
        started.elapsed() < Duration::from_secs(60),
        "took {:?}",
        started.elapsed()
    );
}

/// Killed in the middle of a provisioning job: as soon as the API shows the new database
/// INITIALIZING (set when the worker starts the job), before ACTIVE. A job quick enough to
/// finish between that GET and the kill is tried again with another database.
///
/// A kill can land inside the datacenter file's creation; the file is created under a
/// temporary name and renamed when whole, so the resumed job never finds a half-made store.
#[test]
fn kill_9_in_the_middle_of_a_provisioning_job_resumes_it() {
    let started = Instant::now();
    let tmp = tempfile::tempdir().unwrap();
    let (data, log) = (tmp.path().join("data"), tmp.path().join("server.log"));
    runtime().block_on(async {
        let mut dbs = vec![];
        let mut caught = None;
        for attempt in 0..6 {
            let s = Server::start(&data, log.clone()).await;
            let id = s.create_db(&format!("midjob{attempt}")).await;
            dbs.push(id.clone());
            let deadline = Instant::now() + Duration::from_secs(20);
            loop {
                let status = s.get_db(&id).await["status"].as_str().unwrap().to_string();
                if status == "INITIALIZING" || status == "ACTIVE" {
                    break;
                }
                assert!(
                    Instant::now() < deadline,
                    "{id} stayed {status}:\n{}",
                    s.logs()
                );
                tokio::time::sleep(Duration::from_millis(1)).await;
            }
            s.kill9();
            let state = datacenters_at_kill(&data);
            let dc = dcs_of(&state, &id).next().unwrap().clone();
            if dc.1 != "ACTIVE" {
                caught = Some((attempt, dc));
                break;
            }
        }
        eprintln!("mid-job kill (attempt, (database, status, data key stored)): {caught:?}");
        assert!(
            caught.is_some(),
            "six kills in a row all came after the provisioning job had finished"
        );
        assert_provisioning_resumed(&data, &log, &dbs).await;
    });
    assert!(
        started.elapsed() < Duration::from_secs(60),
        "took {:?}",
        started.elapsed()
    );
}

/// What the writers saw during one run of the server.
#[derive(Default)]
struct WriteLog {
    /// Ids whose insertOne was answered 200 with exactly that id inserted.
    acked: Mutex<Vec<u64>>,
    acked_count: AtomicUsize,
    /// Answers that are neither an acknowledgement nor explained by the kill.
    unexpected: Mutex<Vec<String>>,
}

const WRITERS: usize = 4;

/// Inserts `d{n}` documents one after the other until the server goes away.
async fn writer(
    api: Api,
    db: String,
    next: Arc<AtomicU64>,
    log: Arc<WriteLog>,
    killed: Arc<AtomicBool>,
) {
    loop {
        let n = next.fetch_add(1, Ordering::SeqCst);
        let id = format!("d{n}");
        let doc = json!({"_id": id, "n": n, "pad": "p".repeat(200)});
        match api
            .data(&db, Some("w"), json!({"insertOne": {"document": doc}}))
            .await
        {
            Ok((200, body))
                if body["status"]["insertedIds"] == json!([id]) && body.get("errors").is_none() =>
            {
                log.acked.lock().unwrap().push(n);
                log.acked_count.fetch_add(1, Ordering::SeqCst);
            }
            // A complete answer that is not an acknowledgement comes from the server, not from
            // the kill (which only cuts connections).
            Ok((st, body)) => {
                log.unexpected
                    .lock()
                    .unwrap()
                    .push(format!("{id}: {st} {body}"));
                return;
            }
            Err(e) => {
                if !killed.load(Ordering::SeqCst) {
                    log.unexpected
                        .lock()
                        .unwrap()
                        .push(format!("{id} before the kill: {e}"));
                }
                return;
            }
        }
    }
}

/// [`WRITERS`] writers inserting into a database of one run of the server, until it is killed.
struct Writers {
    log: Arc<WriteLog>,
    killed: Arc<AtomicBool>,
    tasks: Vec<tokio::task::JoinHandle<()>>,
}

impl Writers {
    fn start(s: &Server, db: &str, next: &Arc<AtomicU64>) -> Writers {
        let log = Arc::new(WriteLog::default());
        let killed = Arc::new(AtomicBool::new(false));
        let tasks = (0..WRITERS)
            .map(|_| {
                let (api, db) = (s.api.clone(), db.to_string());
                tokio::spawn(writer(api, db, next.clone(), log.clone(), killed.clone()))
            })
            .collect();
        Writers { log, killed, tasks }
    }

    /// Waits until `n` writes are acknowledged, none answered unexpectedly meanwhile.
    async fn until_acked(&self, n: usize, s: &Server, cycle: u32) {
        let deadline = Instant::now() + Duration::from_secs(15);
        while self.log.acked_count.load(Ordering::SeqCst) < n {
            let unexpected = self.log.unexpected.lock().unwrap().clone();
            assert!(
                unexpected.is_empty(),
                "cycle {cycle}: {unexpected:?}\n{}",
                s.logs()
            );
            assert!(
                Instant::now() < deadline,
                "cycle {cycle}: writes too slow\n{}",
                s.logs()
            );
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
    }

    /// SIGKILLs the server with the writers running, then checks that every writer stopped and
    /// none saw an answer the kill does not explain; the acknowledged ids, sorted.
    async fn kill_server(self, s: Server, cycle: u32) -> Vec<u64> {
        self.killed.store(true, Ordering::SeqCst);
        s.kill9();
        for w in self.tasks {
            tokio::time::timeout(Duration::from_secs(15), w)
                .await
                .expect("a writer hung after the kill")
                .unwrap();
        }
        let unexpected = self.log.unexpected.lock().unwrap().clone();
        assert!(unexpected.is_empty(), "cycle {cycle}: {unexpected:?}");
        let mut acked = self.log.acked.lock().unwrap().clone();
        acked.sort_unstable();
        acked
    }
}

/// Every acknowledged id is there, with its content, and the collection counts at least as
/// many documents.
async fn assert_all_present(s: &Server, db: &str, acked: &[u64]) {
    let (st, body) = s
        .data(db, Some("w"), json!({"countDocuments": {}}))
        .await
        .unwrap();
    assert_eq!(st, 200, "{body}\n{}", s.logs());
    let count = body["status"]["count"].as_u64().unwrap();
    assert!(
        count >= acked.len() as u64 || body["status"]["moreData"] == true,
        "countDocuments says {count} for {} acknowledged writes",
        acked.len()
    );
    let mut missing = vec![];
    for chunk in acked.chunks(16) {
        let mut checks = tokio::task::JoinSet::new();
        for &n in chunk {
            let (api, db) = (s.api.clone(), db.to_string());
            checks.spawn(async move {
                let filter = json!({"findOne": {"filter": {"_id": format!("d{n}")}}});
                let (st, body) = api.data(&db, Some("w"), filter).await.unwrap();
                assert_eq!(st, 200, "d{n}: {body}");
                (n, body["data"]["document"]["n"] == json!(n))
            });
        }
        while let Some(res) = checks.join_next().await {
            let (n, found) = res.unwrap();
            if !found {
                missing.push(n);
            }
        }
    }
    missing.sort_unstable();
    assert!(
        missing.is_empty(),
        "acknowledged but missing after kill -9: {missing:?} (of {} acknowledged)\n{}",
        acked.len(),
        s.logs()
    );
}

#[test]
fn kill_9_during_writes_loses_no_acknowledged_write() {
    let started = Instant::now();
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("data");
    let log_path = tmp.path().join("server.log");
    runtime().block_on(async {
        let mut s = Server::start(&data, log_path.clone()).await;
        let db = s.create_db("writes").await;
        s.wait_active(&db, Instant::now() + Duration::from_secs(20)).await;
        let (st, body) = s.data(&db, None, json!({"createCollection": {"name": "w"}})).await.unwrap();
        assert_eq!(st, 200, "{body}");

        let next = Arc::new(AtomicU64::new(0));
        let mut all_acked: Vec<u64> = vec![];
        for cycle in 1..=2 {
            let first_id = next.load(Ordering::SeqCst);
            let writers = Writers::start(&s, &db, &next);
            // SIGKILL once at least 200 writes are acknowledged, with one write in flight per
            // writer.
            writers.until_acked(200, &s, cycle).await;
            let acked = writers.kill_server(s, cycle).await;
            let issued = next.load(Ordering::SeqCst) - first_id;
            eprintln!(
                "cycle {cycle}: {} writes acknowledged before the kill, {} not acknowledged (in flight or refused after it)",
                acked.len(),
                issued - acked.len() as u64
            );
            let last20: Vec<u64> = acked[acked.len().saturating_sub(20)..].to_vec();
            all_acked.extend(acked);

            s = Server::start(&data, log_path.clone()).await;
            s.wait_active(&db, Instant::now() + Duration::from_secs(20)).await;
            assert_all_present(&s, &db, &all_acked).await;
            // The last acknowledged ones, the most exposed to the kill, once more one by one.
            for n in last20 {
                let (st, body) =
                    s.data(&db, Some("w"), json!({"findOne": {"filter": {"_id": format!("d{n}")}}})).await.unwrap();
                assert_eq!((st, &body["data"]["document"]["n"]), (200, &json!(n)), "d{n}: {body}");
            }
        }
        // The database still takes writes after two crashes.
        let n = next.fetch_add(1, Ordering::SeqCst);
        let (st, body) = s
            .data(&db, Some("w"), json!({"insertOne": {"document": {"_id": format!("d{n}"), "n": n}}}))
            .await
            .unwrap();
        assert_eq!((st, &body["status"]["insertedIds"]), (200, &json!([format!("d{n}")])), "{body}");
        eprintln!("write crash test: {} acknowledged writes, all present after two kill -9", all_acked.len());
    });
    assert!(
        started.elapsed() < Duration::from_secs(60),
        "took {:?}",
        started.elapsed()
    );
}

/// A kill -9 inside `DocStore::create` (after the file was created, before its schema and
/// format row were committed) leaves a datacenter file that exists but is not a document
/// store yet. The kill window is a few milliseconds wide, so the test makes that state
/// deterministically: a database killed before it was ACTIVE, plus the empty file such a kill
/// leaves. The resumed job must finish provisioning it, not fail it.
///
/// A file that is not a whole store (as an interrupted creation by an older version left)
/// is made again by the resumed provisioning, which runs before any data was acknowledged.
#[test]
fn a_datacenter_file_left_half_created_by_a_kill_is_finished_on_restart() {
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("data");
    let log = tmp.path().join("server.log");
    runtime().block_on(async {
        let mut target = None;
        for attempt in 0..6 {
            let s = Server::start(&data, log.clone()).await;
            let id = s.create_db(&format!("half{attempt}")).await;
            s.kill9();
            let state = datacenters_at_kill(&data);
            let (dc, (_, status, _)) = state.iter().find(|(_, (db, _, _))| *db == id).unwrap();
            if status != "ACTIVE" {
                target = Some((id, dc.clone()));
                break;
            }
        }
        let (db, dc) = target.expect("six databases were all ACTIVE right after their 201");
        let dir = data.join("datacenters");
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::File::create(dir.join(format!("{dc}.db"))).unwrap();

        let s = Server::start(&data, log.clone()).await;
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            let view = s.get_db(&db).await;
            if view["status"] == "ACTIVE" {
                break;
            }
            assert!(
                view["status"] != "ERROR",
                "a half-created file failed the resumed provisioning: {view}"
            );
            assert!(
                Instant::now() < deadline,
                "{db} never became ACTIVE: {view}\n{}",
                s.logs()
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        let (st, body) = s
            .data(&db, None, json!({"createCollection": {"name": "c"}}))
            .await
            .unwrap();
        assert_eq!(st, 200, "{body}");
    });
}

const TWIN: [&str; 2] = [REGION, "eu-west-1"];

impl Api {
    /// A Data API command on one region's endpoint of `db`, collection `w`.
    async fn data_in(
        &self,
        db: &str,
        region: &str,
        cmd: Value,
    ) -> Result<(u16, Value), reqwest::Error> {
        let url = format!("{}/db/{db}-{region}/api/json/v1/{KEYSPACE}/w", self.api);
        let res = self
            .http
            .post(url)
            .header("Token", &self.token)
            .json(&cmd)
            .send()
            .await?;
        let status = res.status().as_u16();
        let text = res.text().await?;
        Ok((
            status,
            serde_json::from_str(&text).unwrap_or(Value::String(text)),
        ))
    }

    /// Every document of `w` in one region, by `_id`, paged through that region's endpoint.
    async fn region_docs(&self, db: &str, region: &str) -> BTreeMap<String, Value> {
        let mut out = BTreeMap::new();
        let mut state: Option<String> = None;
        loop {
            let mut options = json!({});
            if let Some(p) = &state {
                options["pageState"] = json!(p);
            }
            let (st, body) = self
                .data_in(
                    db,
                    region,
                    json!({"find": {"filter": {}, "options": options}}),
                )
                .await
                .unwrap();
            assert_eq!(st, 200, "{region}: {body}");
            for d in body["data"]["documents"].as_array().unwrap() {
                out.insert(d["_id"].to_string(), d.clone());
            }
            match body["data"]["nextPageState"].as_str() {
                Some(p) => state = Some(p.to_string()),
                None => return out,
            }
        }
    }
}

/// One writer of the two-region stream: inserts, a `$set` on a shared document, an `$inc`,
/// and a sorted `findOneAndUpdate` over tied documents, alternating the regions' endpoints.
async fn twin_writer(
    api: Api,
    db: String,
    w: usize,
    next: Arc<AtomicU64>,
    log: Arc<WriteLog>,
    killed: Arc<AtomicBool>,
) {
    for k in 0.. {
        let n = next.fetch_add(1, Ordering::SeqCst);
        let region = TWIN[(w + k) % 2];
        let cmd = match k % 4 {
            0 => json!({"insertOne": {"document": {"_id": format!("d{n}"), "n": n}}}),
            1 => {
                json!({"updateOne": {"filter": {"_id": "shared"}, "update": {"$set": {"last": n}}}})
            }
            2 => json!({"updateOne": {"filter": {"_id": "counter"}, "update": {"$inc": {"n": 1}}}}),
            _ => json!({"findOneAndUpdate": {"filter": {"claimed": false}, "sort": {"prio": 1},
                        "update": {"$set": {"claimed": true, "by": n}}}}),
        };
        match api.data_in(&db, region, cmd).await {
            Ok((200, body)) if body.get("errors").is_none() => {
                if k % 4 == 0 {
                    log.acked.lock().unwrap().push(n);
                }
                log.acked_count.fetch_add(1, Ordering::SeqCst);
            }
            Ok((st, body)) => {
                log.unexpected
                    .lock()
                    .unwrap()
                    .push(format!("{n}: {st} {body}"));
                return;
            }
            Err(e) => {
                if !killed.load(Ordering::SeqCst) {
                    log.unexpected
                        .lock()
                        .unwrap()
                        .push(format!("{n} before the kill: {e}"));
                }
                return;
            }
        }
    }
}

/// `serve` killed with SIGKILL during a stream of writes to a two-region database (some
/// write is between its two regions at that moment), restarted, and both regions compared
/// document by document: equal, with every acknowledged insert in both. Before ordered writes
/// the regions differed after such a kill (and already before it, from concurrent `$set`s
/// landing in opposite orders).
#[test]
fn kill_9_during_writes_to_two_regions_leaves_them_equal() {
    let started = Instant::now();
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("data");
    let log_path = tmp.path().join("server.log");
    runtime().block_on(async {
        let mut s = Server::start(&data, log_path.clone()).await;
        let db = s.create_db("twin").await;
        s.wait_active(&db, Instant::now() + Duration::from_secs(20)).await;
        let (st, body, _) = s
            .send(
                "POST",
                &format!("/v2/databases/{db}/datacenters"),
                Some(json!([{"tier": "C10", "cloudProvider": "AWS", "region": TWIN[1]}])),
            )
            .await
            .unwrap();
        assert_eq!(st, 201, "{body}");
        s.wait_active(&db, Instant::now() + Duration::from_secs(20)).await;
        let (st, body) = s.data(&db, None, json!({"createCollection": {"name": "w"}})).await.unwrap();
        assert_eq!(st, 200, "{body}");
        let mut seed = vec![json!({"_id": "shared", "last": -1}), json!({"_id": "counter", "n": 0})];
        seed.extend((0..98).map(|i| json!({"_id": format!("t{i:03}"), "prio": 1, "claimed": false})));
        let (st, body) = s.data_in(&db, TWIN[1], json!({"insertMany": {"documents": seed}})).await.unwrap();
        assert!(st == 200 && body.get("errors").is_none(), "{body}");

        let next = Arc::new(AtomicU64::new(0));
        let mut all_acked: Vec<u64> = vec![];
        for cycle in 1..=2 {
            let log = Arc::new(WriteLog::default());
            let killed = Arc::new(AtomicBool::new(false));
            let writers: Vec<_> = (0..WRITERS * 2)
                .map(|w| tokio::spawn(twin_writer(s.api.clone(), db.clone(), w, next.clone(), log.clone(), killed.clone())))
                .collect();
            let deadline = Instant::now() + Duration::from_secs(20);
            while log.acked_count.load(Ordering::SeqCst) < 150 {
                let unexpected = log.unexpected.lock().unwrap().clone();
                assert!(unexpected.is_empty(), "cycle {cycle}: {unexpected:?}\n{}", s.logs());
                assert!(Instant::now() < deadline, "cycle {cycle}: writes too slow\n{}", s.logs());
                tokio::time::sleep(Duration::from_millis(1)).await;
            }
            killed.store(true, Ordering::SeqCst);
            s.kill9();
            for w in writers {
                tokio::time::timeout(Duration::from_secs(15), w).await.expect("a writer hung after the kill").unwrap();
            }
            let unexpected = log.unexpected.lock().unwrap().clone();
            assert!(unexpected.is_empty(), "cycle {cycle}: {unexpected:?}");
            all_acked.extend(log.acked.lock().unwrap().iter().copied());

            s = Server::start(&data, log_path.clone()).await;
            s.wait_active(&db, Instant::now() + Duration::from_secs(20)).await;
            let a = s.region_docs(&db, TWIN[0]).await;
            let b = s.region_docs(&db, TWIN[1]).await;
            let differ: Vec<String> = a
                .iter()
                .filter(|(id, d)| b.get(*id) != Some(*d))
                .map(|(id, d)| format!("{id}: {d} vs {:?}", b.get(id)))
                .chain(b.keys().filter(|id| !a.contains_key(*id)).map(|id| format!("{id}: only in {}", TWIN[1])))
                .collect();
            assert!(
                differ.is_empty(),
                "cycle {cycle}: after kill -9 and restart the regions differ in {} documents:\n{}\n{}",
                differ.len(),
                differ.join("\n"),
                s.logs()
            );
            let missing: Vec<&u64> = all_acked.iter().filter(|n| !a.contains_key(&format!("\"d{n}\""))).collect();
            assert!(missing.is_empty(), "cycle {cycle}: acknowledged inserts missing: {missing:?}");
            let claimed = a.values().filter(|d| d["claimed"] == json!(true)).count();
            eprintln!(
                "two-region cycle {cycle}: {} documents equal in both regions, {} acknowledged inserts, {claimed} claimed",
                a.len(),
                all_acked.len()
            );
        }
    });
    assert!(
        started.elapsed() < Duration::from_secs(90),
        "took {:?}",
        started.elapsed()
    );
}

/// Webhooks across a SIGKILL: events acknowledged by a process killed in the middle of a
/// stream of them are all delivered after the restart (the audit log is the outbox; a
/// delivery claimed by the dead process is taken again once its lease passes). Delivery is
/// at least once, so the receiver may see an event twice, never miss one.
#[test]
fn kill_9_loses_no_webhook_event() {
    let rt = runtime();
    rt.block_on(async {
        let dir = tempfile::tempdir().unwrap();
        let data = dir.path().join("data");
        let log = dir.path().join("serve.log");
        let (url, got) = common::webhook_receiver();
        let s = Server::start(&data, log.clone()).await;
        let (st, hook, _) = s
            .send(
                "POST",
                "/v2/webhooks",
                Some(json!({"url": url, "events": ["cmk.on_inaccessible"]})),
            )
            .await
            .unwrap();
        assert_eq!(st, 201, "{hook}");
        let acked = Arc::new(Mutex::new(Vec::<u64>::new()));
        let stop = Arc::new(AtomicBool::new(false));
        let mut writers = Vec::new();
        for w in 0..8u64 {
            let (api, acked, stop) = (s.api.clone(), acked.clone(), stop.clone());
            writers.push(tokio::spawn(async move {
                let mut i = 0u64;
                while !stop.load(Ordering::Relaxed) {
                    let secs = 1000 + w * 10_000 + i;
                    i += 1;
                    let body = json!({"action": "alert-only", "alertOnlySeconds": secs});
                    match api.send("PUT", "/v2/kms/on-inaccessible", Some(body)).await {
                        Ok((200, _, _)) => acked.lock().unwrap().push(secs),
                        Ok((st, body, _)) => panic!("{st} {body}"),
                        Err(_) => return, // the server is gone
                    }
                }
            }));
        }
        // Let a few events through, then kill in the middle of the stream.
        let first = got.recv_timeout(Duration::from_secs(20)).unwrap();
        tokio::time::sleep(Duration::from_millis(300)).await;
        s.kill9();
        stop.store(true, Ordering::Relaxed);
        for w in writers {
            w.await.unwrap();
        }
        let acked = acked.lock().unwrap().clone();
        assert!(
            acked.len() > 10,
            "only {} writes before the kill",
            acked.len()
        );

        let s = Server::start(&data, log).await;
        let mut delivered = std::collections::BTreeSet::new();
        let mut seen = vec![first];
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            for (_, body) in seen.drain(..) {
                let event: Value = serde_json::from_slice(&body).unwrap();
                let reason = event["reason"].as_str().unwrap_or_default().to_string();
                if let Some(n) = reason
                    .split(|c: char| !c.is_ascii_digit())
                    .filter_map(|d| d.parse::<u64>().ok())
                    .find(|n| *n >= 1000)
                {
                    delivered.insert(n);
                }
            }
            if acked.iter().all(|a| delivered.contains(a)) {
                break;
            }
            assert!(
                Instant::now() < deadline,
                "{} of {} acknowledged events not delivered, e.g. {:?}\n{}",
                acked.iter().filter(|a| !delivered.contains(a)).count(),
                acked.len(),
                acked.iter().find(|a| !delivered.contains(a)),
                s.logs()
            );
            while let Ok(next) = got.recv_timeout(Duration::from_millis(200)) {
                seen.push(next);
            }
        }
        eprintln!(
            "webhooks after kill -9: {} acknowledged events, all delivered",
            acked.len()
        );
    });
}

/// What the killed process's store says of the datacenter: whether a rotation was pending and
/// whether a wrapped data key is stored.
fn rotation_at_kill(data: &Path, dc: &str) -> (bool, bool) {
    let script = r#"
import json, sqlite3, sys
c = sqlite3.connect(sys.argv[1])
r = c.execute("SELECT pending_wrapped_data_key IS NOT NULL, wrapped_data_key IS NOT NULL FROM datacenters WHERE id = ?", (sys.argv[2],)).fetchone()
print(json.dumps([bool(r[0]), bool(r[1])]))
"#;
    let out = Command::new("python3")
        .arg("-c")
        .arg(script)
        .arg(data.join("keyplane.db"))
        .arg(dc)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).unwrap()
}

/// SIGKILL while a datacenter's data key is being rotated (writers running all along): once
/// while its file is being copied under the new key, once as the copy is put in place. After
/// each restart the rotation is settled (no key left pending), the file opens under the one
/// data key of record, every acknowledged write is there, and the next rotation works.
#[test]
fn kill_9_during_data_key_rotation_loses_nothing() {
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("data");
    let log_path = tmp.path().join("server.log");
    runtime().block_on(async {
        let mut s = Server::start(&data, log_path.clone()).await;
        let db = s.create_db("rotating").await;
        let view = s.wait_active(&db, Instant::now() + Duration::from_secs(20)).await;
        let dc = view["info"]["datacenters"][0]["id"].as_str().unwrap().to_string();
        let copy = data.join("datacenters").join(format!("{dc}.db.rotating"));
        let (st, body) = s.data(&db, None, json!({"createCollection": {"name": "w"}})).await.unwrap();
        assert_eq!(st, 200, "{body}");
        // Enough data that a copy takes a while: 3,000 documents of 2 KB.
        for batch in 0..30 {
            let docs: Vec<Value> = (0..100)
                .map(|i| json!({"_id": format!("bulk{}", batch * 100 + i), "pad": "b".repeat(2000)}))
                .collect();
            let (st, body) = s
                .data(&db, Some("w"), json!({"insertMany": {"documents": docs}}))
                .await
                .unwrap();
            assert_eq!(st, 200, "{body}");
        }
        let next = Arc::new(AtomicU64::new(0));
        let mut all_acked: Vec<u64> = vec![];
        let mut pending_at_kill = vec![];
        for cycle in 1..=2 {
            let writers = Writers::start(&s, &db, &next);
            // Writes acknowledged before the rotation, and in flight during it.
            writers.until_acked(100, &s, cycle).await;
            let path = format!("/v2/databases/{db}/datacenters/{dc}/rotate-data-key");
            let api = s.api.clone();
            let rotation = tokio::spawn(async move { api.send("POST", &path, None).await });
            // Cycle 1: as soon as the copy exists (mid-copy). Cycle 2: as soon as it is gone
            // again (renamed into place, the pending key maybe not yet promoted).
            let deadline = Instant::now() + Duration::from_secs(30);
            while !copy.exists() {
                assert!(Instant::now() < deadline, "no rotation copy appeared\n{}", s.logs());
                tokio::time::sleep(Duration::from_micros(200)).await;
            }
            if cycle == 2 {
                while copy.exists() {
                    assert!(Instant::now() < deadline, "the copy never went\n{}", s.logs());
                    tokio::task::yield_now().await;
                }
            }
            let acked = writers.kill_server(s, cycle).await;
            let _ = rotation.await.unwrap();
            let (pending, wrapped) = rotation_at_kill(&data, &dc);
            assert!(wrapped, "the key of record is never erased by a rotation");
            pending_at_kill.push(pending);
            all_acked.extend(acked);

            s = Server::start(&data, log_path.clone()).await;
            s.wait_active(&db, Instant::now() + Duration::from_secs(20)).await;
            assert_all_present(&s, &db, &all_acked).await;
            let (st, body) = s
                .data(&db, Some("w"), json!({"findOne": {"filter": {"_id": "bulk2999"}}}))
                .await
                .unwrap();
            assert_eq!((st, body["data"]["document"]["pad"].as_str().map(str::len)), (200, Some(2000)), "{body}");
            // Settled by that first open: nothing pending, no copy left.
            assert_eq!(rotation_at_kill(&data, &dc), (false, true), "cycle {cycle}");
            assert!(!copy.exists(), "cycle {cycle}: the interrupted copy is still there");
        }
        // And a whole rotation after two crashes.
        let (st, body, _) = s
            .send("POST", &format!("/v2/databases/{db}/datacenters/{dc}/rotate-data-key"), None)
            .await
            .unwrap();
        assert_eq!(st, 200, "{body}\n{}", s.logs());
        assert!(body["bytes"].as_u64().unwrap() > 3000 * 2000, "{body}");
        assert!(body["datacenter"]["encryption"]["dataKeyRotatedAt"].is_string(), "{body}");
        assert_all_present(&s, &db, &all_acked).await;
        eprintln!(
            "rotation crash test: {} acknowledged writes all present; a rotation was pending at the kills: {pending_at_kill:?}",
            all_acked.len()
        );
    });
}
