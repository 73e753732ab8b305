//! keyplane's API as the customer-side commands (`key`, `db`, `kms put-key-policy --merge`) call
//! it: where and as whom, and one call helper that turns the API's error body into a message.
//!
//! The URL and token come from, in order: the flags, the `KEYPLANE_API_URL`/`KEYPLANE_TOKEN`
//! variables, a `--credentials-file` given explicitly, the user config `keyplane login` wrote,
//! and the `./keyplane-data/dev-credentials.json` that `keyplane serve --dev` writes. A token is
//! taken from a file only for the URL that file names, so a saved token never goes to a server
//! it was not saved for.
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{Context, bail};
use clap::Args;
use serde_json::Value;
use zeroize::Zeroizing;

use crate::user_config;

/// Where `keyplane serve --dev` writes its credentials, relative to where it runs.
pub const DEV_CREDENTIALS_FILE: &str = "./keyplane-data/dev-credentials.json";

/// The API's error ID for a route it does not have (as opposed to 4000, a missing resource).
pub const ROUTE_NOT_FOUND_ID: u64 = 4001;

/// A secret given on the command line or in the environment (a token, a secret access key):
/// wiped when dropped and never shown by `Debug`.
#[derive(Clone, Default)]
pub struct SecretArg(pub Zeroizing<String>);

impl std::str::FromStr for SecretArg {
    type Err = std::convert::Infallible;
    fn from_str(s: &str) -> Result<SecretArg, Self::Err> {
        Ok(SecretArg(Zeroizing::new(s.to_string())))
    }
}

impl std::fmt::Debug for SecretArg {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("<redacted>")
    }
}

#[derive(Debug, Args, Clone, Default)]
pub struct ApiArgs {
    /// keyplane's API URL [default: the one `keyplane login` saved, else apiUrl of the dev
    /// credentials file].
    #[arg(
        long,
        env = "KEYPLANE_API_URL",
        global = true,
        help_heading = "API access"
    )]
    pub api_url: Option<String>,
    /// Application token [default: the one `keyplane login` saved for the API URL, else token of
    /// the dev credentials file].
    #[arg(
        long,
        env = "KEYPLANE_TOKEN",
        global = true,
        hide_env_values = true,
        help_heading = "API access"
    )]
    pub token: Option<SecretArg>,
    /// The credentials file `keyplane serve --dev` writes; given here, it is read before what
    /// `keyplane login` saved [default: ./keyplane-data/dev-credentials.json, read after it].
    #[arg(long, global = true, value_name = "FILE", help_heading = "API access")]
    pub credentials_file: Option<PathBuf>,
}

/// One place a URL and token may come from, for resolving and for messages.
struct Source {
    name: String,
    url: Option<String>,
    token: Option<Zeroizing<String>>,
    org: Option<String>,
}

fn normalize(url: &str) -> String {
    url.trim_end_matches('/').to_string()
}

/// The dev credentials file as a source; `None` when it does not exist and was not asked for.
fn dev_file(path: &Path, explicit: bool) -> anyhow::Result<Option<Source>> {
    let text = match std::fs::read_to_string(path) {
        Ok(t) => Zeroizing::new(t),
        Err(e) if !explicit && e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(e).with_context(|| format!("reading {}", path.display())),
    };
    let v: Value =
        serde_json::from_str(&text).with_context(|| format!("parsing {}", path.display()))?;
    let get = |k: &str| v[k].as_str().map(str::to_string);
    Ok(Some(Source {
        name: path.display().to_string(),
        url: get("apiUrl").map(|u| normalize(&u)),
        token: get("token").map(Zeroizing::new),
        org: get("orgId"),
    }))
}

/// The resolved API URL and token (never shown by `Debug`).
pub struct ApiTarget {
    pub url: String,
    pub token: Zeroizing<String>,
    /// The organization the token's source names, when it names one.
    pub org: Option<String>,
}

impl std::fmt::Debug for ApiTarget {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ApiTarget")
            .field("url", &self.url)
            .field("token", &"<redacted>")
            .field("org", &self.org)
            .finish()
    }
}

impl ApiTarget {
    pub fn resolve(args: &ApiArgs) -> anyhow::Result<ApiTarget> {
        let mut files = Vec::new();
        if let Some(path) = &args.credentials_file {
            files.extend(dev_file(path, true)?);
        }
        if let Some(cfg) = user_config::load()? {
            files.push(Source {
                name: cfg.path.display().to_string(),
                url: Some(normalize(&cfg.api_url)),
                token: Some(cfg.token.clone()),
                org: cfg.org_id.clone(),
            });
        }
        if args.credentials_file.is_none() {
            files.extend(dev_file(Path::new(DEV_CREDENTIALS_FILE), false)?);
        }
        let Some(url) = args
            .api_url
            .as_deref()
            .map(normalize)
            .or_else(|| files.iter().find_map(|s| s.url.clone()))
        else {
            bail!(
                "no API URL: pass --api-url (or set KEYPLANE_API_URL), save one with `keyplane login --api-url URL --token TOKEN`, \
                 or run `keyplane serve --dev` in this directory (it writes {DEV_CREDENTIALS_FILE})"
            );
        };
        let from_file = files
            .iter()
            .find(|s| s.url.as_deref() == Some(url.as_str()) && s.token.is_some());
        let (token, org) = match (&args.token, from_file) {
            (Some(t), _) => (t.0.clone(), None),
            (None, Some(s)) => (s.token.clone().unwrap_or_default(), s.org.clone()),
            (None, None) => {
                let looked = files
                    .iter()
                    .map(|s| s.name.as_str())
                    .collect::<Vec<_>>()
                    .join(", ");
                bail!(
                    "no token for {url}: pass --token (or set KEYPLANE_TOKEN), or save one with `keyplane login --api-url {url} --token TOKEN`{}",
                    if looked.is_empty() {
                        String::new()
                    } else {
                        format!(" (no token saved for this URL in {looked})")
                    }
                );
            }
        };
        Ok(ApiTarget { url, token, org })
    }
}

/// The API refused a call: its status, error ID and message, kept so callers can tell a
/// missing route from a missing resource.
#[derive(Debug, thiserror::Error)]
#[error("{status}: {message}")]
pub struct ApiRefusal {
    pub status: reqwest::StatusCode,
    pub id: Option<u64>,
    pub message: String,
}

impl ApiRefusal {
    pub fn is_route_not_found(&self) -> bool {
        self.status == reqwest::StatusCode::NOT_FOUND && self.id == Some(ROUTE_NOT_FOUND_ID)
    }
}

/// A client for one API URL and token.
pub struct ApiClient {
    pub url: String,
    token: Zeroizing<String>,
    org: Option<String>,
    http: reqwest::Client,
}

impl ApiClient {
    pub fn new(target: ApiTarget) -> anyhow::Result<ApiClient> {
        let http = reqwest::Client::builder()
            .connect_timeout(Duration::from_secs(10))
            .timeout(Duration::from_secs(60))
            .build()
            .context("building the HTTP client")?;
        Ok(ApiClient {
            url: target.url,
            token: target.token,
            org: target.org,
            http,
        })
    }

    pub fn from_args(args: &ApiArgs) -> anyhow::Result<ApiClient> {
        ApiClient::new(ApiTarget::resolve(args)?)
    }

    /// Calls `path`; a non-2xx answer becomes an [`ApiRefusal`] (inside the error, for
    /// `downcast_ref`). An empty body reads as `null`.
    pub async fn call(
        &self,
        method: reqwest::Method,
        path: &str,
        body: Option<Value>,
    ) -> anyhow::Result<Value> {
        let mut req = self
            .http
            .request(method, format!("{}{path}", self.url))
            .bearer_auth(self.token.as_str());
        if let Some(b) = body {
            req = req.json(&b);
        }
        let res = req.send().await.with_context(|| {
            format!(
                "could not reach keyplane at {} (is `keyplane serve` running there?)",
                self.url
            )
        })?;
        let status = res.status();
        let text = res
            .text()
            .await
            .with_context(|| format!("reading the answer of {}{path}", self.url))?;
        let v: Value = if text.trim().is_empty() {
            Value::Null
        } else {
            serde_json::from_str(&text).unwrap_or(Value::String(text))
        };
        if !status.is_success() {
            let first = &v["errors"][0];
            return Err(ApiRefusal {
                status,
                id: first["ID"].as_u64(),
                message: first["message"]
                    .as_str()
                    .map(str::to_string)
                    .unwrap_or_else(|| v.to_string()),
            }
            .into());
        }
        Ok(v)
    }

    pub async fn get(&self, path: &str) -> anyhow::Result<Value> {
        self.call(reqwest::Method::GET, path, None).await
    }

    /// The token's organization: from where the token came, else asked of the API.
    pub async fn org_id(&self) -> anyhow::Result<String> {
        if let Some(o) = &self.org {
            return Ok(o.clone());
        }
        self.get("/v2/currentOrg").await?["id"]
            .as_str()
            .map(str::to_string)
            .context("GET /v2/currentOrg gave no organization id")
    }
}
