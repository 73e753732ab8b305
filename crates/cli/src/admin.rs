//! Operator commands: organizations, enterprises, tokens and unlocked regions, run
//! against the same store as the server. A new token is printed once.
use anyhow::{Context, bail};
use clap::Subcommand;
use keyplane_core::{Provider, Role};
use uuid::Uuid;

use crate::settings::{StoreArgs, resolve};

#[derive(Subcommand)]
pub enum AdminCommand {
    /// Create an enterprise (a group of organizations).
    CreateEnterprise {
        /// The enterprise's name.
        name: String,
    },
    /// Create an organization.
    CreateOrg {
        /// The organization's name.
        name: String,
        /// The enterprise it belongs to.
        #[arg(long)]
        enterprise: Option<Uuid>,
    },
    /// List organizations.
    ListOrgs {
        /// Only the organizations of this enterprise.
        #[arg(long)]
        enterprise: Option<Uuid>,
    },
    /// Create an application token and print it (only this once).
    CreateToken {
        /// The organization the token acts for.
        #[arg(long)]
        org: Uuid,
        /// "Organization Administrator" (org-admin), "Database Administrator" (db-admin),
        /// "Read Only User" (read-only), or custom:<permission>,<permission>,…
        #[arg(long)]
        role: String,
        /// What the token is for, shown when listing tokens.
        #[arg(long, default_value = "")]
        description: String,
    },
    /// List an organization's tokens (without secrets).
    ListTokens {
        /// The organization whose tokens to list.
        #[arg(long)]
        org: Uuid,
    },
    /// Revoke a token; it is refused from the next request on.
    RevokeToken {
        /// The token's organization.
        #[arg(long)]
        org: Uuid,
        /// The token's client ID (the part after `AstraCS:`, as `list-tokens` shows it).
        #[arg(long)]
        client_id: String,
    },
    /// Verify the audit log's hash chain: detects a changed, inserted or missing entry.
    VerifyAudit,
    /// Restrict the regions of a provider an organization may use, or unlock all again.
    SetRegions {
        /// The organization.
        #[arg(long)]
        org: Uuid,
        /// aws, gcp or azure.
        #[arg(long)]
        provider: Provider,
        /// Comma-separated regions; omit with --all.
        #[arg(long, value_delimiter = ',', required_unless_present = "all")]
        regions: Vec<String>,
        /// Unlock every region of the provider's catalog again.
        #[arg(long, conflicts_with = "regions")]
        all: bool,
    },
}

pub async fn run(store_args: &StoreArgs, cmd: AdminCommand) -> anyhow::Result<()> {
    let resolved = resolve(store_args, None)?;
    if !resolved.database_url.starts_with("postgres") {
        // Owner-only whatever the umask: it holds the store, the dev credentials and the
        // datacenter files. A folder that exists already is left as it is (it may be shared).
        keyplane_store::create_private_dir(&resolved.data_dir)?;
    }
    let store = keyplane_store::open(&resolved.database_url).await?;
    let out = match cmd {
        AdminCommand::CreateEnterprise { name } => {
            let e = store.create_enterprise(name.trim()).await?;
            serde_json::json!({"id": e.id, "name": e.name})
        }
        AdminCommand::CreateOrg { name, enterprise } => {
            if let Some(eid) = enterprise {
                store
                    .get_enterprise(eid)
                    .await?
                    .with_context(|| format!("no enterprise {eid}"))?;
            }
            let o = store.create_org(name.trim(), enterprise).await?;
            serde_json::json!({"id": o.id, "name": o.name, "enterpriseId": o.enterprise_id})
        }
        AdminCommand::ListOrgs { enterprise } => {
            let orgs = store.list_orgs(enterprise).await?;
            serde_json::Value::Array(
                orgs.into_iter()
                    .map(|o| serde_json::json!({"id": o.id, "name": o.name, "enterpriseId": o.enterprise_id}))
                    .collect(),
            )
        }
        AdminCommand::CreateToken {
            org,
            role,
            description,
        } => {
            store
                .get_org(org)
                .await?
                .with_context(|| format!("no organization {org}"))?;
            let role = Role::parse(&role)?;
            let (token, record) = keyplane_app::tokens::issue_token(
                store.as_ref(),
                org,
                &role,
                &description,
            )
            .await?;
            serde_json::json!({
                "clientId": record.client_id,
                "orgId": org,
                "role": role.name(),
                "permissions": role.permissions().iter().map(|p| p.as_str()).collect::<Vec<_>>(),
                "token": token.expose().as_str(),
            })
        }
        AdminCommand::ListTokens { org } => serde_json::Value::Array(
            store
                .list_tokens(org)
                .await?
                .into_iter()
                .map(|t| {
                    serde_json::json!({
                        "clientId": t.client_id, "role": t.role.to_storage(), "description": t.description,
                        "generatedOn": t.created_at, "revokedOn": t.revoked_at,
                    })
                })
                .collect(),
        ),
        AdminCommand::RevokeToken { org, client_id } => {
            if !store.revoke_token(org, &client_id).await? {
                bail!("organization {org} has no active token {client_id}");
            }
            serde_json::json!({"revoked": client_id})
        }
        AdminCommand::VerifyAudit => verify_audit(store.as_ref()).await?,
        AdminCommand::SetRegions {
            org,
            provider,
            regions,
            all,
        } => {
            let list = if all {
                None
            } else {
                for r in &regions {
                    if !resolved.config.regions(provider).contains(r) {
                        bail!(
                            "{r:?} is not a {provider} region of the catalog; catalog: {}",
                            resolved.config.regions(provider).join(", ")
                        );
                    }
                }
                Some(regions)
            };
            store
                .set_unlocked_regions(org, provider, list.clone())
                .await?;
            serde_json::json!({"orgId": org, "provider": provider, "unlockedRegions": list.map_or(serde_json::json!("all"), |l| serde_json::json!(l))})
        }
    };
    println!("{}", serde_json::to_string_pretty(&out)?);
    Ok(())
}

/// Walks the whole chain in sequence order, recomputing every hash.
async fn verify_audit(store: &dyn keyplane_store::Store) -> anyhow::Result<serde_json::Value> {
    use keyplane_core::audit::{AuditFields, GENESIS, entry_hash};
    let mut prev = GENESIS.to_string();
    let mut last_seq = 0i64;
    let mut count = 0u64;
    loop {
        let page = store.audit_after(last_seq, 1000).await?;
        if page.is_empty() {
            break;
        }
        for e in page {
            if e.seq != last_seq + 1 {
                bail!(
                    "audit log broken: entry {} is missing (found {} after {last_seq})",
                    last_seq + 1,
                    e.seq
                );
            }
            let at = e.at.to_rfc3339_opts(chrono::SecondsFormat::Millis, true);
            let org = e.org_id.to_string();
            let fields = AuditFields {
                seq: e.seq,
                org_id: &org,
                at: &at,
                actor: &e.actor,
                action: e.action.as_str(),
                target: &e.target,
                outcome: e.outcome.as_str(),
                reason: &e.reason,
            };
            if e.prev_hash != prev {
                bail!(
                    "audit log broken at entry {}: it does not follow the entry before it",
                    e.seq
                );
            }
            if entry_hash(&prev, &fields) != e.hash {
                bail!(
                    "audit log broken at entry {}: its content was changed after it was written",
                    e.seq
                );
            }
            prev = e.hash;
            last_seq = e.seq;
            count += 1;
        }
    }
    Ok(serde_json::json!({"verified": count, "lastSeq": last_seq, "head": prev}))
}
