//! `keyplane db …`: databases over keyplane's DevOps API, with the same URL and token as
//! `keyplane key …`. `create`, `add-region` and `terminate` wait for the end state with a
//! progress display (see `progress`) unless `--no-wait`, and fail with the database's own
//! message when it ends in ERROR. A database is named by its ID or, when unambiguous, its name.
use std::io::IsTerminal;
use std::time::Duration;

use anyhow::{Context, bail};
use clap::{Args, Subcommand, ValueEnum};
use reqwest::Method;
use serde_json::{Value, json};
use uuid::Uuid;

use crate::api_client::{ApiClient, ApiRefusal};
use crate::output::{OutputArgs, OutputFormat, Table};
use crate::progress::{DisplayMode, Observation, wait_for};

const POLL_EVERY: Duration = Duration::from_millis(500);

#[derive(Debug, Clone, Copy, ValueEnum)]
pub enum CloudArg {
    Aws,
    Gcp,
    Azure,
    /// The platform's own sites, where OpenBao / Vault keys serve.
    Openbao,
}

impl CloudArg {
    fn api_name(self) -> &'static str {
        match self {
            CloudArg::Aws => "AWS",
            CloudArg::Gcp => "GCP",
            CloudArg::Azure => "AZURE",
            CloudArg::Openbao => "OPENBAO",
        }
    }
}

#[derive(Debug, Clone, Copy, ValueEnum)]
pub enum IncludeArg {
    /// Every database but terminated ones.
    Nonterminated,
    /// Terminated ones too.
    All,
    /// Only terminated ones.
    Terminated,
}

#[derive(Debug, Clone, Copy, Args)]
pub struct WaitArgs {
    /// Return as soon as the API accepted the request, without waiting for the end state.
    #[arg(long)]
    pub no_wait: bool,
    /// Seconds to wait for the end state before giving up (the operation goes on).
    #[arg(long, default_value_t = 900, value_name = "SECS")]
    pub timeout: u64,
}

#[derive(Debug, Subcommand)]
pub enum DbCommand {
    /// Create a database and wait until it is ACTIVE. It is encrypted with the customer key
    /// registered for its type, provider and region, if there is one.
    Create {
        /// 1 to 50 letters, digits, '-' and '_', starting with a letter.
        #[arg(long)]
        name: String,
        /// The first keyspace (letters, digits and '_', starting with a letter).
        #[arg(long)]
        keyspace: String,
        /// The cloud region to deploy in, e.g. us-east-2.
        #[arg(long)]
        region: String,
        /// The cloud provider.
        #[arg(long, value_enum, default_value = "aws")]
        provider: CloudArg,
        /// C10, C20, C40, D10, D20 or D40 (Managed Clusters), or serverless.
        #[arg(long, default_value = "C10")]
        tier: String,
        /// Capacity units (1 to 12 at creation).
        #[arg(long, default_value_t = 1)]
        capacity_units: u32,
        #[command(flatten)]
        wait: WaitArgs,
        #[command(flatten)]
        out: OutputArgs,
    },
    /// List the organization's databases, one line per region with the key encrypting it.
    List {
        /// Which databases, by whether they are terminated.
        #[arg(long, value_enum, default_value = "nonterminated")]
        include: IncludeArg,
        #[command(flatten)]
        out: OutputArgs,
    },
    /// Show one database: its status and, per region, the key encrypting it and the Data API
    /// endpoint.
    Get {
        /// The database's ID or name.
        database: String,
        #[command(flatten)]
        out: OutputArgs,
    },
    /// Add a region to a database and wait until it is ACTIVE there. A database encrypted with
    /// customer keys needs a customer key registered in that region first.
    AddRegion {
        /// The database's ID or name.
        database: String,
        /// The region to add, e.g. eu-west-1.
        #[arg(long)]
        region: String,
        /// The new region's tier [default: the database's].
        #[arg(long)]
        tier: Option<String>,
        #[command(flatten)]
        wait: WaitArgs,
        #[command(flatten)]
        out: OutputArgs,
    },
    /// Terminate a database and wait until it is TERMINATED; its data and data keys are
    /// deleted.
    Terminate {
        /// The database's ID or name.
        database: String,
        /// Do not ask to type the database's name first (needed when standard input is not a
        /// terminal).
        #[arg(long, short = 'y')]
        yes: bool,
        #[command(flatten)]
        wait: WaitArgs,
        #[command(flatten)]
        out: OutputArgs,
    },
    /// Move a database's data keys to the customer key now registered in each region (after
    /// `keyplane key replace`); a region already under its key is left as it is.
    Rewrap {
        /// The database's ID or name.
        database: String,
        /// Only this region [default: every region].
        #[arg(long)]
        region: Option<String>,
        #[command(flatten)]
        out: OutputArgs,
    },
    /// Rotate a database's data keys now: each region's file is re-encrypted under a new data
    /// key, online (the schedule does it every 30 days by default).
    RotateDataKey {
        /// The database's ID or name.
        database: String,
        /// Only this region [default: every region].
        #[arg(long)]
        region: Option<String>,
        #[command(flatten)]
        out: OutputArgs,
    },
    /// Add or remove a keyspace of a database.
    Keyspace {
        #[command(subcommand)]
        command: KeyspaceCommand,
    },
}

#[derive(Debug, Subcommand)]
pub enum KeyspaceCommand {
    /// Add a keyspace to a database.
    Create {
        /// The database's ID or name.
        database: String,
        /// The keyspace's name.
        keyspace: String,
    },
    /// Remove a keyspace from a database, with its collections.
    Delete {
        /// The database's ID or name.
        database: String,
        /// The keyspace's name.
        keyspace: String,
    },
}

fn s(v: &Value) -> String {
    match v {
        Value::String(s) => s.clone(),
        Value::Null => String::new(),
        other => other.to_string(),
    }
}

/// The datacenters still deployed, or all of them for a terminated database.
fn live_datacenters(db: &Value) -> Vec<&Value> {
    let all: Vec<&Value> = db["info"]["datacenters"]
        .as_array()
        .map(|a| a.iter().collect())
        .unwrap_or_default();
    let live: Vec<&Value> = all
        .iter()
        .copied()
        .filter(|d| d["terminationTime"].is_null())
        .collect();
    if live.is_empty() { all } else { live }
}

fn list_table(dbs: &[Value]) -> String {
    let mut t = Table::new(&["ID", "NAME", "STATUS", "REGION", "REGION STATUS", "KEY"]);
    for db in dbs {
        let dcs = live_datacenters(db);
        let head = vec![s(&db["id"]), s(&db["info"]["name"]), s(&db["status"])];
        if dcs.is_empty() {
            t.row(head);
            continue;
        }
        for (i, dc) in dcs.iter().enumerate() {
            let mut row = if i == 0 {
                head.clone()
            } else {
                vec![String::new(); 3]
            };
            row.extend([
                s(&dc["region"]),
                s(&dc["status"]),
                s(&dc["encryption"]["keyID"]),
            ]);
            t.row(row);
        }
    }
    t.render()
}

fn get_table(db: &Value) -> String {
    let info = &db["info"];
    let mut out = String::new();
    let mut field = |k: &str, v: String| {
        if !v.is_empty() {
            out.push_str(&format!("{k:<15} {v}\n"));
        }
    };
    field("ID:", s(&db["id"]));
    field("Name:", s(&info["name"]));
    field("Keyspace:", s(&info["keyspace"]));
    // Every keyspace, the first one included, when the server lists them.
    if let Some(all) = info["keyspaces"].as_array().filter(|a| a.len() > 1) {
        field(
            "Keyspaces:",
            all.iter().map(s).collect::<Vec<_>>().join(", "),
        );
    }
    field("Status:", s(&db["status"]));
    field("Message:", s(&db["message"]));
    field("Provider:", s(&info["cloudProvider"]));
    field(
        "Tier:",
        format!(
            "{} ({} capacity unit{})",
            s(&info["tier"]),
            s(&info["capacityUnits"]),
            if info["capacityUnits"] == 1 { "" } else { "s" }
        ),
    );
    field(
        "Encryption:",
        if db["customerKeyed"] == true {
            "customer keys".to_string()
        } else {
            "platform-managed".to_string()
        },
    );
    field("Created:", s(&db["creationTime"]));
    field("Terminated:", s(&db["terminationTime"]));
    let dcs = live_datacenters(db);
    let with_messages = dcs.iter().any(|d| !s(&d["message"]).is_empty());
    let mut header = vec!["REGION", "STATUS", "KEY", "DATA API ENDPOINT"];
    if with_messages {
        header.push("MESSAGE");
    }
    let mut t = Table::new(&header);
    for dc in dcs {
        let mut row = vec![
            s(&dc["region"]),
            s(&dc["status"]),
            s(&dc["encryption"]["keyID"]),
            s(&dc["dataEndpointUrl"]),
        ];
        if with_messages {
            row.push(s(&dc["message"]));
        }
        t.row(row);
    }
    out.push('\n');
    out.push_str(&t.render());
    out
}

fn print_one(db: &Value, out: OutputFormat) -> anyhow::Result<()> {
    match out {
        OutputFormat::Json => println!("{}", serde_json::to_string_pretty(db)?),
        OutputFormat::Table => print!("{}", get_table(db)),
    }
    Ok(())
}

/// Every database of the organization (all pages) matching `include`.
async fn list_all(api: &ApiClient, include: &str) -> anyhow::Result<Vec<Value>> {
    let mut out: Vec<Value> = Vec::new();
    loop {
        let mut path = format!("/v2/databases?include={include}&limit=100");
        if let Some(last) = out.last() {
            path.push_str(&format!("&starting_after={}", s(&last["id"])));
        }
        let page = api.get(&path).await?;
        let items = page
            .as_array()
            .context("GET /v2/databases did not answer a list")?
            .clone();
        let n = items.len();
        out.extend(items);
        if n < 100 {
            return Ok(out);
        }
    }
}

/// A database's ID from its ID or its name among the organization's live databases.
async fn resolve(api: &ApiClient, database: &str) -> anyhow::Result<Uuid> {
    if let Ok(id) = database.parse::<Uuid>() {
        return Ok(id);
    }
    let dbs = list_all(api, "nonterminated").await?;
    let found: Vec<&Value> = dbs
        .iter()
        .filter(|d| d["info"]["name"] == database)
        .collect();
    match found.as_slice() {
        [one] => s(&one["id"])
            .parse()
            .context("the API gave a database ID that is not a UUID"),
        [] => bail!(
            "no database is named {database:?} (terminated ones aside); `keyplane db list` shows them"
        ),
        several => bail!(
            "{} databases are named {database:?}: {}; give the ID instead",
            several.len(),
            several
                .iter()
                .map(|d| s(&d["id"]))
                .collect::<Vec<_>>()
                .join(", ")
        ),
    }
}

async fn get(api: &ApiClient, id: Uuid) -> anyhow::Result<Value> {
    api.get(&format!("/v2/databases/{id}")).await
}

fn status(db: &Value) -> String {
    s(&db["status"])
}

/// The message of a database (or of its failed regions) that did not reach its end state.
fn failure(db: &Value, what: &str) -> String {
    let name = s(&db["info"]["name"]);
    let mut msg = s(&db["message"]);
    if msg.is_empty() {
        msg = live_datacenters(db)
            .iter()
            .map(|d| s(&d["message"]))
            .filter(|m| !m.is_empty())
            .collect::<Vec<_>>()
            .join("; ");
    }
    if msg.is_empty() {
        msg = "the API gave no reason".to_string();
    }
    format!("database {name} is {} {what}: {msg}", status(db))
}

/// Waits until the database is ACTIVE; ERROR, SUSPENDED or a termination end the wait.
async fn wait_active(
    api: &ApiClient,
    id: Uuid,
    label: &str,
    initial: &str,
    wait: WaitArgs,
) -> anyhow::Result<()> {
    wait_for(
        DisplayMode::detect(),
        label,
        &id.to_string(),
        initial,
        Duration::from_secs(wait.timeout),
        POLL_EVERY,
        || async move {
            let db = get(api, id).await?;
            Ok(match status(&db).as_str() {
                "ACTIVE" => Observation::Done("ACTIVE".into()),
                "ERROR" | "SUSPENDED" | "TERMINATING" | "TERMINATED" => {
                    Observation::Failed(failure(&db, "instead of ACTIVE"))
                }
                other => Observation::Waiting(other.to_string()),
            })
        },
    )
    .await
    .map(drop)
}

/// Waits until the database's datacenter in `region` is ACTIVE.
async fn wait_region(
    api: &ApiClient,
    id: Uuid,
    region: &str,
    label: &str,
    wait: WaitArgs,
) -> anyhow::Result<()> {
    wait_for(
        DisplayMode::detect(),
        label,
        &id.to_string(),
        &format!("adding {region}"),
        Duration::from_secs(wait.timeout),
        POLL_EVERY,
        || async move {
            let db = get(api, id).await?;
            let dc = live_datacenters(&db)
                .into_iter()
                .find(|d| d["region"] == region && d["terminationTime"].is_null())
                .cloned();
            let Some(dc) = dc else {
                return Ok(Observation::Failed(format!(
                    "database {} has no datacenter in {region} (any more)",
                    s(&db["info"]["name"])
                )));
            };
            let shown = format!("{} ({region}: {})", status(&db), s(&dc["status"]));
            Ok(match s(&dc["status"]).as_str() {
                "ACTIVE" => Observation::Done(shown),
                "ERROR" | "SUSPENDED" | "TERMINATING" | "TERMINATED" => {
                    let msg = s(&dc["message"]);
                    Observation::Failed(format!(
                        "region {region} of database {} is {}: {}",
                        s(&db["info"]["name"]),
                        s(&dc["status"]),
                        if msg.is_empty() {
                            failure(&db, "")
                        } else {
                            msg
                        }
                    ))
                }
                _ => Observation::Waiting(shown),
            })
        },
    )
    .await
    .map(drop)
}

async fn wait_terminated(
    api: &ApiClient,
    id: Uuid,
    label: &str,
    wait: WaitArgs,
) -> anyhow::Result<()> {
    wait_for(
        DisplayMode::detect(),
        label,
        &id.to_string(),
        "TERMINATING",
        Duration::from_secs(wait.timeout),
        POLL_EVERY,
        || async move {
            let db = get(api, id).await?;
            Ok(match status(&db).as_str() {
                "TERMINATED" => Observation::Done("TERMINATED".into()),
                "ERROR" => Observation::Failed(failure(&db, "instead of TERMINATED")),
                other => Observation::Waiting(other.to_string()),
            })
        },
    )
    .await
    .map(drop)
}

/// Prints the database as it ended, whether or not the wait succeeded, so a script reading
/// `--output json` sees the final state either way.
async fn finish(
    api: &ApiClient,
    id: Uuid,
    out: OutputFormat,
    waited: anyhow::Result<()>,
) -> anyhow::Result<()> {
    if waited
        .as_ref()
        .is_err_and(|e| e.downcast_ref::<crate::progress::Interrupted>().is_some())
    {
        return waited;
    }
    if let Ok(db) = get(api, id).await {
        print_one(&db, out)?;
    }
    waited
}

/// Asks for the database's name before terminating it, as the portal does.
fn confirm_terminate(name: &str, id: Uuid) -> anyhow::Result<()> {
    if !std::io::stdin().is_terminal() {
        bail!(
            "not terminating {name} ({id}) without confirmation: pass --yes (standard input is not a terminal to ask on)"
        );
    }
    eprint!("Terminating {name} ({id}) deletes its data. Type its name to confirm: ");
    let mut answer = String::new();
    std::io::stdin()
        .read_line(&mut answer)
        .context("reading the confirmation")?;
    if answer.trim() != name {
        bail!("the name did not match; nothing was terminated");
    }
    Ok(())
}

fn keyspace_route_missing(e: anyhow::Error, method: &str, id: Uuid, ks: &str) -> anyhow::Error {
    if e.downcast_ref::<ApiRefusal>()
        .is_some_and(ApiRefusal::is_route_not_found)
    {
        return anyhow::anyhow!(
            "this keyplane server does not offer keyspace management yet: it has no route {method} /v2/databases/{id}/keyspaces/{ks} \
             (it answered 404, route not found). Upgrade the server; the database's first keyspace is the one given to `keyplane db create --keyspace`."
        );
    }
    e
}

pub async fn run(api: &ApiClient, cmd: DbCommand) -> anyhow::Result<()> {
    match cmd {
        DbCommand::Create {
            name,
            keyspace,
            region,
            provider,
            tier,
            capacity_units,
            wait,
            out,
        } => {
            let body = json!({
                "name": name,
                "keyspace": keyspace,
                "cloudProvider": provider.api_name(),
                "tier": tier,
                "capacityUnits": capacity_units,
                "region": region,
            });
            let created = api
                .call(Method::POST, "/v2/databases", Some(body))
                .await
                .with_context(|| format!("creating database {name}"))?;
            let id: Uuid = s(&created["id"])
                .parse()
                .context("the API gave a database ID that is not a UUID")?;
            if wait.no_wait {
                return print_one(&created, out.output);
            }
            let waited = wait_active(api, id, &name, &status(&created), wait).await;
            finish(api, id, out.output, waited).await
        }
        DbCommand::List { include, out } => {
            let include = match include {
                IncludeArg::Nonterminated => "nonterminated",
                IncludeArg::All => "all",
                IncludeArg::Terminated => "terminated",
            };
            let dbs = list_all(api, include).await?;
            match out.output {
                OutputFormat::Json => println!("{}", serde_json::to_string_pretty(&dbs)?),
                OutputFormat::Table => print!("{}", list_table(&dbs)),
            }
            Ok(())
        }
        DbCommand::Get { database, out } => {
            let id = resolve(api, &database).await?;
            print_one(&get(api, id).await?, out.output)
        }
        DbCommand::AddRegion {
            database,
            region,
            tier,
            wait,
            out,
        } => {
            let id = resolve(api, &database).await?;
            let db = get(api, id).await?;
            let name = s(&db["info"]["name"]);
            let body = json!([{
                "tier": tier.unwrap_or_else(|| s(&db["info"]["tier"])),
                "cloudProvider": s(&db["info"]["cloudProvider"]),
                "region": region,
            }]);
            api.call(
                Method::POST,
                &format!("/v2/databases/{id}/datacenters"),
                Some(body),
            )
            .await
            .map_err(|e| {
                // The refusal names what is missing; say which command provides it.
                let hint = e.downcast_ref::<ApiRefusal>().is_some_and(|r| {
                    r.status == reqwest::StatusCode::UNPROCESSABLE_ENTITY
                        && r.message.contains("customer key")
                });
                let e = e.context(format!("adding region {region} to database {name}"));
                if hint {
                    e.context(format!(
                        "`keyplane key register --region {region} --key-id ARN` registers a key there first"
                    ))
                } else {
                    e
                }
            })?;
            if wait.no_wait {
                return print_one(&get(api, id).await?, out.output);
            }
            let waited = wait_region(api, id, &region, &name, wait).await;
            finish(api, id, out.output, waited).await
        }
        DbCommand::Terminate {
            database,
            yes,
            wait,
            out,
        } => {
            let id = resolve(api, &database).await?;
            let db = get(api, id).await?;
            let name = s(&db["info"]["name"]);
            if !yes {
                confirm_terminate(&name, id)?;
            }
            api.call(Method::POST, &format!("/v2/databases/{id}/terminate"), None)
                .await
                .with_context(|| format!("terminating database {name}"))?;
            if wait.no_wait {
                return print_one(&get(api, id).await?, out.output);
            }
            let waited = wait_terminated(api, id, &name, wait).await;
            finish(api, id, out.output, waited).await
        }
        DbCommand::Rewrap {
            database,
            region,
            out,
        } => {
            let id = resolve(api, &database).await?;
            for dc in chosen_datacenters(api, id, region.as_deref()).await? {
                let dc_id = s(&dc["id"]);
                api.call(
                    Method::POST,
                    &format!("/v2/databases/{id}/datacenters/{dc_id}/rewrap"),
                    None,
                )
                .await
                .with_context(|| format!("rewrapping datacenter {dc_id} ({})", s(&dc["region"])))?;
            }
            print_one(&get(api, id).await?, out.output)
        }
        DbCommand::RotateDataKey {
            database,
            region,
            out,
        } => {
            let id = resolve(api, &database).await?;
            for dc in chosen_datacenters(api, id, region.as_deref()).await? {
                let dc_id = s(&dc["id"]);
                let r = api
                    .call(
                        Method::POST,
                        &format!("/v2/databases/{id}/datacenters/{dc_id}/rotate-data-key"),
                        None,
                    )
                    .await
                    .with_context(|| {
                        format!(
                            "rotating the data key of datacenter {dc_id} ({})",
                            s(&dc["region"])
                        )
                    })?;
                eprintln!(
                    "{}: data key rotated, {} bytes re-encrypted in {} ms (writes waited {} ms, reads {} ms)",
                    s(&dc["region"]),
                    r["bytes"],
                    r["tookMs"],
                    r["writesPausedMs"],
                    r["readsPausedMs"]
                );
            }
            print_one(&get(api, id).await?, out.output)
        }
        DbCommand::Keyspace { command } => {
            let (method, database, ks) = match command {
                KeyspaceCommand::Create { database, keyspace } => {
                    (Method::POST, database, keyspace)
                }
                KeyspaceCommand::Delete { database, keyspace } => {
                    (Method::DELETE, database, keyspace)
                }
            };
            keyplane_core::databases::check_keyspace(&ks).map_err(anyhow::Error::msg)?;
            let id = resolve(api, &database).await?;
            let verb = if method == Method::POST {
                "added to"
            } else {
                "removed from"
            };
            api.call(
                method.clone(),
                &format!("/v2/databases/{id}/keyspaces/{ks}"),
                None,
            )
            .await
            .map_err(|e| keyspace_route_missing(e, method.as_str(), id, &ks))?;
            println!("keyspace {ks} {verb} database {database} ({id})");
            Ok(())
        }
    }
}

/// The database's live datacenters, or only the one in `region`; an error when none is.
async fn chosen_datacenters(
    api: &ApiClient,
    id: Uuid,
    region: Option<&str>,
) -> anyhow::Result<Vec<Value>> {
    let db = get(api, id).await?;
    let chosen: Vec<Value> = db["info"]["datacenters"]
        .as_array()
        .cloned()
        .unwrap_or_default()
        .into_iter()
        .filter(|dc| dc["status"] != "TERMINATED")
        .filter(|dc| region.is_none_or(|r| dc["region"] == r))
        .collect();
    if chosen.is_empty() {
        bail!(
            "database {} has no live datacenter{}",
            s(&db["info"]["name"]),
            region.map(|r| format!(" in {r}")).unwrap_or_default()
        );
    }
    Ok(chosen)
}
