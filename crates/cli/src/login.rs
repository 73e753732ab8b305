//! `keyplane login` and `keyplane logout`: save (after checking it with the API) or forget the
//! API URL and token every API command falls back to. The token is never printed; only its
//! client ID is, which `admin list-tokens` and the audit log also show.
use anyhow::{Context, bail};
use clap::Args;
use keyplane_core::Token;
use zeroize::Zeroizing;

use crate::api_client::{ApiClient, ApiRefusal, ApiTarget, SecretArg};
use crate::user_config;

#[derive(Debug, Args)]
pub struct LoginArgs {
    /// keyplane's API URL, e.g. http://127.0.0.1:8080.
    #[arg(long, env = "KEYPLANE_API_URL")]
    pub api_url: String,
    /// The application token (`AstraCS:…`); `-` reads it from standard input, which keeps it
    /// out of the shell's history.
    #[arg(long, env = "KEYPLANE_TOKEN", hide_env_values = true)]
    pub token: SecretArg,
    /// Save without first checking the token with the API.
    #[arg(long)]
    pub no_verify: bool,
}

fn read_token(arg: &SecretArg) -> anyhow::Result<Zeroizing<String>> {
    if arg.0.as_str() != "-" {
        return Ok(Zeroizing::new(arg.0.trim().to_string()));
    }
    let mut s = Zeroizing::new(String::new());
    std::io::Read::read_to_string(&mut std::io::stdin(), &mut s)
        .context("reading the token from standard input")?;
    Ok(Zeroizing::new(s.trim().to_string()))
}

pub async fn login(args: LoginArgs) -> anyhow::Result<()> {
    let token = read_token(&args.token)?;
    let parsed = Token::parse(&token).map_err(|e| {
        anyhow::anyhow!("that is not an application token ({e}); nothing was saved")
    })?;
    let url = args.api_url.trim_end_matches('/').to_string();
    if !(url.starts_with("http://") || url.starts_with("https://")) {
        bail!("--api-url must start with http:// or https:// (got {url}); nothing was saved");
    }
    let mut org: Option<(String, String)> = None;
    if !args.no_verify {
        let api = ApiClient::new(ApiTarget {
            url: url.clone(),
            token: token.clone(),
            org: None,
        })?;
        match api.get("/v2/currentOrg").await {
            Ok(v) => {
                org = v["id"].as_str().map(|id| {
                    (
                        id.to_string(),
                        v["name"].as_str().unwrap_or_default().to_string(),
                    )
                })
            }
            // Authenticated, but the role may not read the organization: still a good token.
            Err(e)
                if e.downcast_ref::<ApiRefusal>()
                    .is_some_and(|r| r.status == reqwest::StatusCode::FORBIDDEN) => {}
            Err(e) if e.downcast_ref::<ApiRefusal>().is_some() => {
                return Err(e.context(format!("{url} refused the token; nothing was saved")));
            }
            Err(e) => {
                return Err(e.context(
                    "could not check the token; nothing was saved (--no-verify saves it unchecked)",
                ));
            }
        }
    }
    let path = user_config::save(&url, &token, org.as_ref().map(|(id, _)| id.as_str()))?;
    let who = match &org {
        Some((id, name)) if !name.is_empty() => format!("organization {name} ({id})"),
        Some((id, _)) => format!("organization {id}"),
        None if args.no_verify => "a token not checked yet".to_string(),
        None => "a token whose role cannot read its organization".to_string(),
    };
    println!(
        "Logged in to {url} as {who} with token {}; saved in {} (readable by you only).",
        parsed.client_id(),
        path.display()
    );
    Ok(())
}

pub fn logout() -> anyhow::Result<()> {
    match user_config::remove()? {
        Some(path) => println!("Logged out: removed {}.", path.display()),
        None => println!(
            "Not logged in: no saved login at {}.",
            user_config::path()
                .map(|p| p.display().to_string())
                .unwrap_or_else(|| "(no HOME or XDG_CONFIG_HOME)".to_string())
        ),
    }
    Ok(())
}
