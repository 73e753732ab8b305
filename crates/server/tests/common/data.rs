//! A customer-keyed database's Data API for the semantics tests: a key in the built-in KMS
//! registered through the API, a classic database on it, collection `c` in keyspace `shop`,
//! and commands sent as JSON or as raw text (for the tests on exact numbers and strict parsing).
use std::time::{Duration, Instant};

use serde_json::{Value, json};

use super::{TestServer, register_key, send};

pub const REGION: &str = "us-east-2";
pub const SECOND_REGION: &str = "eu-west-1";

/// A server, and an ACTIVE classic database keyed with the customer's key in [`REGION`],
/// holding collection `c` in keyspace `shop`.
pub struct DataDb {
    pub s: TestServer,
    pub db: String,
}

impl DataDb {
    pub async fn start() -> DataDb {
        let s = TestServer::with_config(keyplane_app::Config {
            worker_poll: Duration::from_millis(50),
            ..Default::default()
        })
        .await;
        register_key(&s, REGION).await;
        let res = s
            .req("POST", "/v2/databases", Some(&s.admin))
            .json(
                &json!({"name": "sem", "keyspace": "shop", "cloudProvider": "AWS",
                          "tier": "C10", "capacityUnits": 1, "region": REGION}),
            )
            .send()
            .await
            .unwrap();
        assert_eq!(res.status(), 201, "{}", res.text().await.unwrap());
        let loc = res.headers()["location"].to_str().unwrap().to_string();
        let db = loc.rsplit('/').next().unwrap().to_string();
        let d = DataDb { s, db };
        d.wait_active(1).await;
        let (st, view) =
            d.s.get(&format!("/v2/databases/{}", d.db), &d.s.admin)
                .await;
        assert_eq!(st, 200);
        assert_eq!(
            view["info"]["datacenters"][0]["encryption"]["keyType"], "customer",
            "the database is customer-keyed: {view}"
        );
        d.ok("", json!({"createCollection": {"name": "c"}})).await;
        d
    }

    /// Waits until the database and its `n` datacenters are ACTIVE.
    pub async fn wait_active(&self, n: usize) {
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            let (st, view) = self
                .s
                .get(&format!("/v2/databases/{}", self.db), &self.s.admin)
                .await;
            assert_eq!(st, 200, "{view}");
            let dcs = view["info"]["datacenters"]
                .as_array()
                .cloned()
                .unwrap_or_default();
            if view["status"] == "ACTIVE"
                && dcs.len() == n
                && dcs.iter().all(|d| d["status"] == "ACTIVE")
            {
                return;
            }
            assert!(Instant::now() < deadline, "never ACTIVE: {view}");
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// Adds [`SECOND_REGION`] (which needs its own customer key) and waits for it.
    pub async fn add_second_region(&self) {
        register_key(&self.s, SECOND_REGION).await;
        let (st, body) = self
            .s
            .post(
                &format!("/v2/databases/{}/datacenters", self.db),
                &self.s.admin,
                json!([{"tier": "C10", "cloudProvider": "AWS", "region": SECOND_REGION}]),
            )
            .await;
        assert_eq!(st, 201, "{body}");
        self.wait_active(2).await;
    }

    fn url(&self, region: &str, path: &str) -> String {
        format!("/db/{}-{region}/api/json/v1/shop{path}", self.db)
    }

    /// A command against `…/v1/shop{path}` in [`REGION`].
    pub async fn send(&self, path: &str, cmd: Value) -> (u16, Value) {
        self.send_in(REGION, path, cmd).await
    }

    pub async fn send_in(&self, region: &str, path: &str, cmd: Value) -> (u16, Value) {
        send(
            self.s
                .req("POST", &self.url(region, path), None)
                .header("Token", &self.s.admin)
                .json(&cmd),
        )
        .await
    }

    /// A body sent as written, answered as text: what the wire carries, byte for byte.
    pub async fn raw(&self, path: &str, body: &str) -> (u16, String) {
        let res = self
            .s
            .req("POST", &self.url(REGION, path), None)
            .header("Token", &self.s.admin)
            .header("content-type", "application/json")
            .body(body.to_string())
            .send()
            .await
            .unwrap();
        let st = res.status().as_u16();
        (st, res.text().await.unwrap())
    }

    /// A command that must succeed: 200 and no errors.
    pub async fn ok(&self, path: &str, cmd: Value) -> Value {
        let (st, body) = self.send(path, cmd.clone()).await;
        assert_eq!(st, 200, "{cmd} → {body}");
        assert!(body.get("errors").is_none(), "{cmd} → {body}");
        body
    }

    /// A command on collection `c` that must succeed.
    pub async fn c(&self, cmd: Value) -> Value {
        self.ok("/c", cmd).await
    }

    /// A command on `c` that must fail with 200 and an error of `code`; the error object.
    pub async fn fails(&self, cmd: Value, code: &str) -> Value {
        let (st, body) = self.send("/c", cmd.clone()).await;
        assert_eq!(st, 200, "{cmd} → {body}");
        error_of(&body, code, &cmd)
    }

    /// The `_id`s `find` returns for `filter` on `c` (one page).
    pub async fn ids(&self, filter: Value) -> Vec<Value> {
        let body = self.c(json!({"find": {"filter": filter}})).await;
        body["data"]["documents"]
            .as_array()
            .unwrap_or_else(|| panic!("{body}"))
            .iter()
            .map(|d| d["_id"].clone())
            .collect()
    }

    /// Every document of `c` in `region`, all pages, in `_id` order.
    pub async fn all_in(&self, region: &str) -> Vec<Value> {
        let mut out = vec![];
        let mut state: Option<String> = None;
        loop {
            let mut opts = json!({});
            if let Some(p) = &state {
                opts["pageState"] = json!(p);
            }
            let (st, body) = self
                .send_in(
                    region,
                    "/c",
                    json!({"find": {"sort": {"_id": 1}, "options": opts}}),
                )
                .await;
            assert_eq!(st, 200, "{body}");
            out.extend(
                body["data"]["documents"]
                    .as_array()
                    .unwrap()
                    .iter()
                    .cloned(),
            );
            match body["data"]["nextPageState"].as_str() {
                Some(p) => state = Some(p.to_string()),
                None => return out,
            }
        }
    }
}

/// The first error of an answer: it has `code` and every field clients read; returned whole.
pub fn error_of(body: &Value, code: &str, what: &Value) -> Value {
    let e = &body["errors"][0];
    assert_eq!(e["errorCode"], code, "{what} → {body}");
    for f in ["message", "family", "scope", "title", "id"] {
        assert!(e[f].is_string(), "error field {f} missing: {body}");
    }
    e.clone()
}

/// `v` as JSON numbers, for comparing `_id` lists.
pub fn nums(v: &[i64]) -> Vec<Value> {
    v.iter().map(|i| json!(i)).collect()
}
