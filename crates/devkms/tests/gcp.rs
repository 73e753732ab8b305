//! The Cloud KMS surface on the wire, with hand-made HTTP requests for what the official
//! clients never send (bad input, unknown fields, enum spellings, pagination) and the exact
//! shape of Google's error body. The clients' own behaviour is covered by kms-gcp's tests and
//! tests/conformance-gcp.

use keyplane_devkms::{GCP_CUSTOMER, GCP_PLATFORM};
use keyplane_testkit::DevKmsServer;
use serde_json::{Value, json};

const LOC: &str = "projects/customer-project/locations/us-east1";

struct Gcp<'a> {
    s: &'a DevKmsServer,
    http: reqwest::Client,
}

impl Gcp<'_> {
    fn new(s: &DevKmsServer) -> Gcp<'_> {
        Gcp {
            s,
            http: reqwest::Client::new(),
        }
    }

    async fn call(
        &self,
        who: Option<&str>,
        method: &str,
        path: &str,
        body: Option<Value>,
    ) -> (u16, Value) {
        let mut r = self.http.request(
            method.parse().unwrap(),
            format!("{}/v1/{path}", self.s.endpoint),
        );
        if let Some(m) = who {
            r = r.bearer_auth(self.s.kms.gcp_token(m).unwrap().as_str());
        }
        if let Some(b) = body {
            r = r.json(&b);
        }
        let resp = r.send().await.unwrap();
        let status = resp.status().as_u16();
        (status, resp.json().await.unwrap_or(Value::Null))
    }

    async fn customer(&self, method: &str, path: &str, body: Option<Value>) -> (u16, Value) {
        self.call(Some(GCP_CUSTOMER), method, path, body).await
    }

    /// Key ring `ring` and symmetric key `key`; returns the key's name.
    async fn key(&self, ring: &str, key: &str) -> String {
        let (st, _) = self
            .customer(
                "POST",
                &format!("{LOC}/keyRings?keyRingId={ring}"),
                Some(json!({})),
            )
            .await;
        assert!(st == 200 || st == 409, "{st}");
        let (st, k) = self
            .customer(
                "POST",
                &format!("{LOC}/keyRings/{ring}/cryptoKeys?cryptoKeyId={key}"),
                Some(json!({ "purpose": "ENCRYPT_DECRYPT" })),
            )
            .await;
        assert_eq!(st, 200, "{k}");
        k["name"].as_str().unwrap().to_string()
    }
}

fn assert_error(got: &(u16, Value), status: u16, name: &str) {
    assert_eq!(got.0, status, "{}", got.1);
    let e = &got.1["error"];
    assert_eq!(e["code"], status, "{}", got.1);
    assert_eq!(e["status"], name, "{}", got.1);
    assert!(
        e["message"].as_str().is_some_and(|m| !m.is_empty()),
        "{}",
        got.1
    );
}

#[tokio::test]
async fn errors_have_google_shape_and_status() {
    let s = DevKmsServer::start().await;
    let g = Gcp::new(&s);
    let key = g.key("r", "k").await;

    assert_error(
        &g.call(None, "GET", &key, None).await,
        401,
        "UNAUTHENTICATED",
    );
    let denied = g.call(Some(GCP_PLATFORM), "GET", &key, None).await;
    assert_error(&denied, 403, "PERMISSION_DENIED");
    assert_eq!(
        denied.1["error"]["details"][0]["reason"],
        "IAM_PERMISSION_DENIED"
    );
    assert_eq!(
        denied.1["error"]["details"][0]["metadata"]["permission"],
        "cloudkms.cryptoKeys.get"
    );
    assert_error(
        &g.customer("GET", &format!("{key}x"), None).await,
        404,
        "NOT_FOUND",
    );
    assert_error(
        &g.customer("GET", "projects/p/nothing", None).await,
        404,
        "NOT_FOUND",
    );
    assert_error(
        &g.customer(
            "POST",
            &format!("{LOC}/keyRings?keyRingId=r"),
            Some(json!({})),
        )
        .await,
        409,
        "ALREADY_EXISTS",
    );
    assert_error(
        &g.customer("POST", &format!("{key}:asymmetricSign"), Some(json!({})))
            .await,
        501,
        "UNIMPLEMENTED",
    );
    // Bad input: 400 INVALID_ARGUMENT, never a 500 or a partial write.
    for (method, path, body) in [
        (
            "POST",
            format!("{key}:encrypt"),
            json!({ "plaintext": "aGk=", "bogus": 1 }),
        ),
        (
            "POST",
            format!("{key}:encrypt"),
            json!({ "plaintext": "%%%" }),
        ),
        ("POST", format!("{key}:encrypt"), json!({ "plaintext": 12 })),
        ("POST", format!("{key}:encrypt"), json!({})),
        (
            "POST",
            format!("{key}:decrypt"),
            json!({ "ciphertext": "aGk=" }),
        ),
        (
            "POST",
            format!("{LOC}/keyRings/r/cryptoKeys?cryptoKeyId=bad.id"),
            json!({ "purpose": 1 }),
        ),
        (
            "POST",
            format!("{LOC}/keyRings/r/cryptoKeys?cryptoKeyId=k2"),
            json!({}),
        ),
        (
            "POST",
            format!("{LOC}/keyRings/r/cryptoKeys?cryptoKeyId=k2"),
            json!({ "purpose": "NOPE" }),
        ),
        (
            "POST",
            format!("{LOC}/keyRings/r/cryptoKeys?cryptoKeyId=k2"),
            json!({ "purpose": 1, "rotationPeriod": "60s", "nextRotationTime": "2030-01-01T00:00:00Z" }),
        ),
        (
            "POST",
            "projects/customer-project/locations/mars-1/keyRings?keyRingId=x".to_string(),
            json!({}),
        ),
        (
            "PATCH",
            format!("{key}/cryptoKeyVersions/1?updateMask=algorithm"),
            json!({ "state": 2 }),
        ),
        (
            "PATCH",
            format!("{key}/cryptoKeyVersions/1?updateMask=state"),
            json!({ "state": "DESTROYED" }),
        ),
        (
            "PATCH",
            format!("{key}?updateMask=purpose"),
            json!({ "purpose": 5 }),
        ),
    ] {
        let got = g.customer(method, &path, Some(body.clone())).await;
        assert_error(&got, 400, "INVALID_ARGUMENT");
    }
    let got = g.customer("POST", &format!("{key}:encrypt"), None).await;
    assert_error(&got, 400, "INVALID_ARGUMENT");
    let (st, list) = g
        .customer("GET", &format!("{LOC}/keyRings/r/cryptoKeys"), None)
        .await;
    assert_eq!(
        (st, list["totalSize"].as_u64()),
        (200, Some(1)),
        "no partial key was written: {list}"
    );
    s.stop().await;
}

#[tokio::test]
async fn enums_follow_alt_and_requests_take_names_or_numbers() {
    let s = DevKmsServer::start().await;
    let g = Gcp::new(&s);
    let key = g.key("r", "k").await;
    let (_, by_name) = g.customer("GET", &key, None).await;
    assert_eq!(by_name["purpose"], "ENCRYPT_DECRYPT");
    assert_eq!(by_name["primary"]["state"], "ENABLED");
    let (_, by_number) = g
        .customer(
            "GET",
            &format!("{key}?%24alt=json%3Benum-encoding%3Dint"),
            None,
        )
        .await;
    assert_eq!(by_number["purpose"], 1);
    assert_eq!(by_number["primary"]["state"], 1);
    assert_eq!(by_number["versionTemplate"]["algorithm"], 1);

    // snake_case field names and numeric enums are accepted, as by Google's front end.
    let (st, v) = g
        .customer(
            "PATCH",
            &format!("{key}/cryptoKeyVersions/1?updateMask=state"),
            Some(json!({ "state": 2 })),
        )
        .await;
    assert_eq!((st, v["state"].as_str()), (200, Some("DISABLED")), "{v}");
    let (st, r) = g
        .customer(
            "POST",
            &format!("{LOC}/keyRings/r/cryptoKeys?cryptoKeyId=k2&skipInitialVersionCreation=true"),
            Some(json!({ "purpose": "ENCRYPT_DECRYPT", "destroy_scheduled_duration": "86400s", "labels": { "env": "dev" } })),
        )
        .await;
    assert_eq!(st, 200, "{r}");
    assert_eq!(r["destroyScheduledDuration"], "86400s");
    assert!(r.get("primary").is_none(), "{r}");
    let (st, _) = g
        .customer(
            "POST",
            &format!("{}:encrypt", r["name"].as_str().unwrap()),
            Some(json!({ "plaintext": "aGk=" })),
        )
        .await;
    assert_eq!(st, 400, "a key without versions has no primary");
    s.stop().await;
}

#[tokio::test]
async fn lists_page_through_everything() {
    let s = DevKmsServer::start().await;
    let g = Gcp::new(&s);
    let key = g.key("r", "k").await;
    for _ in 0..4 {
        let (st, _) = g
            .customer("POST", &format!("{key}/cryptoKeyVersions"), Some(json!({})))
            .await;
        assert_eq!(st, 200);
    }
    let mut seen = Vec::new();
    let mut token = String::new();
    loop {
        let (st, page) = g
            .customer(
                "GET",
                &format!("{key}/cryptoKeyVersions?pageSize=2&pageToken={token}"),
                None,
            )
            .await;
        assert_eq!(st, 200, "{page}");
        assert_eq!(page["totalSize"], 5);
        for v in page["cryptoKeyVersions"].as_array().unwrap() {
            seen.push(
                v["name"]
                    .as_str()
                    .unwrap()
                    .rsplit('/')
                    .next()
                    .unwrap()
                    .to_string(),
            );
        }
        match page["nextPageToken"].as_str() {
            Some(t) => token = t.to_string(),
            None => break,
        }
    }
    assert_eq!(seen, ["1", "2", "3", "4", "5"]);
    let (_, all) = g
        .customer("GET", &format!("{key}/cryptoKeyVersions?pageSize=0"), None)
        .await;
    assert_eq!(all["cryptoKeyVersions"].as_array().unwrap().len(), 5);
    assert_error(
        &g.customer(
            "GET",
            &format!("{key}/cryptoKeyVersions?pageToken=99"),
            None,
        )
        .await,
        400,
        "INVALID_ARGUMENT",
    );
    s.stop().await;
}

#[tokio::test]
async fn iam_policies_are_validated_and_versioned_by_etag() {
    let s = DevKmsServer::start().await;
    let g = Gcp::new(&s);
    let key = g.key("r", "k").await;
    let (_, p0) = g
        .customer("GET", &format!("{key}:getIamPolicy"), None)
        .await;
    assert_eq!(p0["etag"], "ACAB");
    let sa = "serviceAccount:keyplane-platform@keyplane-dev.iam.gserviceaccount.com";
    for bad in [
        json!({ "bindings": [{ "role": "roles/cloudkms.viewer", "members": ["keyplane@x"] }] }),
        json!({ "bindings": [{ "role": "projects/p/roles/custom", "members": [sa] }] }),
        json!({ "bindings": [{ "role": "roles/cloudkms.viewer", "members": [sa], "condition": { "expression": "true" } }] }),
        json!({ "version": 2, "bindings": [] }),
    ] {
        let got = g
            .customer(
                "POST",
                &format!("{key}:setIamPolicy"),
                Some(json!({ "policy": bad })),
            )
            .await;
        assert_error(&got, 400, "INVALID_ARGUMENT");
    }
    let set = json!({ "policy": { "etag": "ACAB", "bindings": [{ "role": "roles/cloudkms.viewer", "members": [sa] }] } });
    let (st, p1) = g
        .customer("POST", &format!("{key}:setIamPolicy"), Some(set.clone()))
        .await;
    assert_eq!(st, 200, "{p1}");
    assert_ne!(p1["etag"], "ACAB");
    assert_error(
        &g.customer("POST", &format!("{key}:setIamPolicy"), Some(set))
            .await,
        409,
        "ABORTED",
    );
    let (_, got) = g
        .customer("POST", &format!("{key}:getIamPolicy"), Some(json!({})))
        .await;
    assert_eq!(got, p1);
    let (_, t) = g
        .call(Some(GCP_PLATFORM), "POST", &format!("{key}:testIamPermissions"), Some(json!({ "permissions": ["cloudkms.cryptoKeys.get", "cloudkms.cryptoKeyVersions.useToEncrypt"] })))
        .await;
    assert_eq!(t, json!({ "permissions": ["cloudkms.cryptoKeys.get"] }));
    // A key that does not exist: the platform (no read on the ring) learns nothing.
    let (st, t) = g
        .call(
            Some(GCP_PLATFORM),
            "POST",
            &format!("{key}nope:testIamPermissions"),
            Some(json!({ "permissions": ["cloudkms.cryptoKeys.get"] })),
        )
        .await;
    assert_eq!((st, t), (200, json!({})));
    s.stop().await;
}

#[tokio::test]
async fn identities_are_added_by_the_admin_route_and_own_their_projects() {
    let s = DevKmsServer::start().await;
    let g = Gcp::new(&s);
    let add = |body: Value, token: Option<String>| {
        let mut r = g
            .http
            .post(format!("{}/_admin/gcp/identities", s.endpoint))
            .json(&body);
        if let Some(t) = token {
            r = r.header("x-keyplane-admin-token", t);
        }
        r.send()
    };
    let who = json!({ "member": "serviceAccount:second@keyplane-dev.iam.gserviceaccount.com", "ownedProjects": ["second-project"] });
    assert_eq!(add(who.clone(), None).await.unwrap().status(), 401);
    assert_eq!(
        add(json!({ "member": "nobody" }), Some(s.kms.admin_token()))
            .await
            .unwrap()
            .status(),
        400
    );
    let r = add(who.clone(), Some(s.kms.admin_token())).await.unwrap();
    assert_eq!(r.status(), 201);
    let token = r.json::<Value>().await.unwrap()["token"]
        .as_str()
        .unwrap()
        .to_string();
    assert_eq!(
        add(who, Some(s.kms.admin_token())).await.unwrap().status(),
        200
    );
    let creds: Value =
        serde_json::from_str(&std::fs::read_to_string(s.dir.join("credentials.json")).unwrap())
            .unwrap();
    assert!(
        creds["gcp"]["identities"]
            .as_array()
            .unwrap()
            .iter()
            .any(|i| i["token"] == token.as_str())
    );

    let mk = |project: &str| {
        g.http
            .post(format!(
                "{}/v1/projects/{project}/locations/us-east1/keyRings?keyRingId=r",
                s.endpoint
            ))
            .bearer_auth(&token)
            .json(&json!({}))
            .send()
    };
    assert_eq!(mk("second-project").await.unwrap().status(), 200);
    assert_eq!(mk("customer-project").await.unwrap().status(), 403);
    s.stop().await;
}
