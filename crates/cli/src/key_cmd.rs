//! Customer-side commands on customer keys, over keyplane's API: the policy statements to
//! paste, a check of a whole key policy, registration, listing and status. They use
//! `dev-credentials.json` (written by `serve --dev`) unless given `--api-url` and `--token`.
use std::path::PathBuf;

use anyhow::{Context, bail};
use clap::{Args, Subcommand, ValueEnum};
use serde_json::{Value, json};

#[derive(Debug, Clone, Copy, ValueEnum)]
pub enum DbTypeArg {
    Classic,
    Serverless,
}

#[derive(Debug, Args)]
pub struct ApiArgs {
    /// keyplane's API URL [default: apiUrl of the credentials file].
    #[arg(long, env = "KEYPLANE_API_URL", global = true)]
    pub api_url: Option<String>,
    /// Application token [default: token of the credentials file].
    #[arg(long, env = "KEYPLANE_TOKEN", global = true, hide_env_values = true)]
    pub token: Option<String>,
    #[arg(
        long,
        global = true,
        default_value = "./keyplane-data/dev-credentials.json"
    )]
    pub credentials_file: PathBuf,
}

#[derive(Debug, Subcommand)]
pub enum KeyCommand {
    /// Print the key-policy statements to paste, with your provider ID filled in.
    Policy {
        #[arg(long, value_enum, default_value = "classic")]
        r#type: DbTypeArg,
        #[arg(long)]
        region: String,
    },
    /// Check a whole key policy document: what the platform's role would be denied, and why.
    CheckPolicy {
        #[arg(long)]
        file: PathBuf,
        #[arg(long, value_enum, default_value = "classic")]
        r#type: DbTypeArg,
        #[arg(long)]
        region: String,
        /// The key ARN the policy belongs to.
        #[arg(long)]
        key_id: Option<String>,
    },
    /// Register a key (every check runs first; --dry-run stores nothing).
    Register {
        #[arg(long, value_enum, default_value = "classic")]
        r#type: DbTypeArg,
        #[arg(long)]
        region: String,
        /// The key ARN.
        #[arg(long)]
        key_id: String,
        #[arg(long)]
        dry_run: bool,
    },
    /// List registered keys.
    List {
        #[arg(long, value_enum, default_value = "classic")]
        r#type: DbTypeArg,
    },
    /// A key's status and last check.
    Status {
        #[arg(long, value_enum, default_value = "classic")]
        r#type: DbTypeArg,
        #[arg(long)]
        region: String,
    },
}

struct Api {
    url: String,
    token: String,
    org: Option<String>,
    client: reqwest::Client,
}

impl Api {
    fn new(args: &ApiArgs) -> anyhow::Result<Api> {
        let file: Option<Value> = std::fs::read_to_string(&args.credentials_file)
            .ok()
            .map(|t| serde_json::from_str(&t))
            .transpose()
            .with_context(|| format!("parsing {}", args.credentials_file.display()))?;
        let get = |k: &str| {
            file.as_ref()
                .and_then(|f| f[k].as_str())
                .map(str::to_string)
        };
        let (Some(url), Some(token)) = (
            args.api_url.clone().or_else(|| get("apiUrl")),
            args.token.clone().or_else(|| get("token")),
        ) else {
            bail!(
                "no API URL or token: pass --api-url and --token, or run `keyplane serve --dev` (which writes {})",
                args.credentials_file.display()
            );
        };
        Ok(Api {
            url: url.trim_end_matches('/').to_string(),
            token,
            org: get("orgId"),
            client: reqwest::Client::new(),
        })
    }

    async fn call(
        &self,
        method: reqwest::Method,
        path: &str,
        body: Option<Value>,
    ) -> anyhow::Result<Value> {
        let mut req = self
            .client
            .request(method, format!("{}{path}", self.url))
            .bearer_auth(&self.token);
        if let Some(b) = body {
            req = req.json(&b);
        }
        let res = req
            .send()
            .await
            .with_context(|| format!("calling {}{path}", self.url))?;
        let status = res.status();
        let text = res.text().await?;
        let v: Value = serde_json::from_str(&text).unwrap_or(Value::String(text));
        if !status.is_success() {
            let msg = v["errors"][0]["message"]
                .as_str()
                .map(str::to_string)
                .unwrap_or_else(|| v.to_string());
            bail!("{status}: {msg}");
        }
        Ok(v)
    }

    async fn org_id(&self) -> anyhow::Result<String> {
        match &self.org {
            Some(o) => Ok(o.clone()),
            None => Ok(self
                .call(reqwest::Method::GET, "/v2/currentOrg", None)
                .await?["id"]
                .as_str()
                .unwrap_or_default()
                .to_string()),
        }
    }
}

fn base(t: DbTypeArg) -> &'static str {
    match t {
        DbTypeArg::Classic => "/v2/kms/classic",
        DbTypeArg::Serverless => "/v2/kms",
    }
}

fn helper_base(t: DbTypeArg) -> &'static str {
    match t {
        DbTypeArg::Classic => "/v2/kms/classic",
        DbTypeArg::Serverless => "/v2/kms/serverless",
    }
}

pub async fn run(api: &ApiArgs, cmd: KeyCommand) -> anyhow::Result<()> {
    use reqwest::Method;
    let api = Api::new(api)?;
    let out = match cmd {
        KeyCommand::Policy { r#type, region } => {
            api.call(
                Method::GET,
                &format!(
                    "{}/provider/aws/region/{region}/policy",
                    helper_base(r#type)
                ),
                None,
            )
            .await?
        }
        KeyCommand::CheckPolicy {
            file,
            r#type,
            region,
            key_id,
        } => {
            let text = std::fs::read_to_string(&file)
                .with_context(|| format!("reading {}", file.display()))?;
            let doc: Value = serde_json::from_str(&text)
                .with_context(|| format!("{} is not JSON", file.display()))?;
            let q = key_id.map(|k| format!("?keyID={k}")).unwrap_or_default();
            let v = api
                .call(
                    Method::POST,
                    &format!(
                        "{}/provider/aws/region/{region}/policy/check{q}",
                        helper_base(r#type)
                    ),
                    Some(doc),
                )
                .await?;
            if v["verdict"] != "ok" {
                println!("{}", serde_json::to_string_pretty(&v)?);
                bail!("the policy does not let the platform use the key; see the findings above");
            }
            v
        }
        KeyCommand::Register {
            r#type,
            region,
            key_id,
            dry_run,
        } => {
            let body =
                json!({"orgId": api.org_id().await?, "aws": {"keyID": key_id, "region": region}});
            let q = if dry_run { "?dryRun=true" } else { "" };
            api.call(Method::POST, &format!("{}{q}", base(r#type)), Some(body))
                .await?
        }
        KeyCommand::List { r#type } => api.call(Method::GET, base(r#type), None).await?,
        KeyCommand::Status { r#type, region } => {
            api.call(
                Method::GET,
                &format!("{}/provider/aws/region/{region}/status", base(r#type)),
                None,
            )
            .await?
        }
    };
    println!("{}", serde_json::to_string_pretty(&out)?);
    Ok(())
}
