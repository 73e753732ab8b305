//! The `keyplane` binary: wires the store backend, the server and the built-in KMS
//! together, and offers the operators' admin commands and the customer's commands (keys,
//! databases, login, completions).
#![forbid(unsafe_code)]

mod admin;
mod api_client;
mod completions;
mod data_dir_lock;
mod db_cmd;
mod dev;
mod key_cmd;
mod kms_azure;
mod kms_cmd;
mod kms_gcp;
mod login;
mod output;
mod policy_merge;
mod progress;
mod sealing_key;
mod settings;
mod user_config;
mod webhook_cmd;
mod wiring;

use clap::{CommandFactory, Parser, Subcommand};
use settings::{LogFormat, RoleFlag, ServeArgs, StoreArgs};

#[derive(Parser)]
#[command(
    name = "keyplane",
    version,
    about = "Bring-your-own-key for managed databases"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run the API server.
    Serve(ServeArgs),
    /// Operator commands against the same data dir or database URL as the server.
    Admin {
        #[command(flatten)]
        store: StoreArgs,
        #[command(subcommand)]
        command: admin::AdminCommand,
    },
    /// The built-in KMS (development and tests only): serve it, or act as its sample
    /// customer (create a key, put its policy, disable it, …).
    Kms {
        #[command(subcommand)]
        command: kms_cmd::KmsCommand,
    },
    /// Customer keys over the API: the policy to paste, a policy check, register, list, status.
    Key {
        #[command(flatten)]
        api: key_cmd::ApiArgs,
        #[command(subcommand)]
        command: key_cmd::KeyCommand,
    },
    /// Databases over the API: create, list, get, add a region, terminate, keyspaces.
    Db {
        #[command(flatten)]
        api: api_client::ApiArgs,
        #[command(subcommand)]
        command: db_cmd::DbCommand,
    },
    /// Webhooks for key events over the API: create (the secret is printed once), list,
    /// delete, deliveries.
    Webhook {
        #[command(flatten)]
        api: api_client::ApiArgs,
        #[command(subcommand)]
        command: webhook_cmd::WebhookCommand,
    },
    /// Save an API URL and token for every command that calls the API (checked first).
    Login(login::LoginArgs),
    /// Forget the API URL and token `keyplane login` saved.
    Logout,
    /// Print the shell completion script for bash, zsh or fish.
    Completions {
        /// The shell to complete in.
        #[arg(value_enum)]
        shell: completions::CompletionShell,
    },
}

fn init_logging(format: LogFormat) {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    match format {
        LogFormat::Json => builder.json().init(),
        LogFormat::Human => builder.init(),
    }
}

#[tokio::main]
async fn main() -> std::process::ExitCode {
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Serve(args) => serve(args).await,
        Command::Admin { store, command } => {
            init_logging(LogFormat::Human);
            admin::run(&store, command).await
        }
        Command::Key { api, command } => key_cmd::run(&api, command).await,
        Command::Db { api, command } => match api_client::ApiClient::from_args(&api) {
            Ok(client) => db_cmd::run(&client, command).await,
            Err(e) => Err(e),
        },
        Command::Webhook { api, command } => match api_client::ApiClient::from_args(&api) {
            Ok(client) => webhook_cmd::run(&client, command).await,
            Err(e) => Err(e),
        },
        Command::Login(args) => login::login(args).await,
        Command::Logout => login::logout(),
        Command::Completions { shell } => {
            completions::print(shell, Cli::command());
            Ok(())
        }
        Command::Kms { command } => {
            init_logging(LogFormat::Human);
            kms_cmd::run(command).await
        }
    };
    match result {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            if e.downcast_ref::<progress::Interrupted>().is_some() {
                // What a shell reports for a command stopped by Ctrl-C.
                return std::process::ExitCode::from(130);
            }
            std::process::ExitCode::FAILURE
        }
    }
}

async fn serve(args: ServeArgs) -> anyhow::Result<()> {
    let resolved = settings::resolve(&args.store, Some(&args))?;
    init_logging(resolved.log_format);
    if resolved.role == RoleFlag::Data {
        anyhow::bail!(
            "--role data is not available yet: data nodes, which own the datacenters' files, come with \
             issue 11 part 2. Run --role all (one process: API, jobs and Data API), or --role api for \
             replicas of the API and jobs on one PostgreSQL"
        );
    }
    // Owner-only whatever the umask: it holds the store, the dev credentials and the
    // datacenter files. A folder that exists already is left as it is (it may be shared).
    keyplane_store::create_private_dir(&resolved.data_dir)?;
    let sqlite_file = keyplane_store::sqlite_path(&resolved.database_url);
    // Held until the process ends: no second serve on this data dir (or this SQLite file).
    let _locks = data_dir_lock::lock_for_serve(
        &resolved.data_dir,
        sqlite_file.as_deref(),
        &resolved.config.replica_id,
    )?;
    let store = keyplane_store::open(&resolved.database_url).await?;
    let (key_file, create) =
        sealing_key::path(resolved.sealing_key_file.as_deref(), &resolved.data_dir);
    let sealing = sealing_key::load(&key_file, create)?;
    sealing_key::check_against_store(&sealing, store.as_ref()).await?;
    tracing::info!(
        backend = store.backend(),
        role = resolved.config.role.as_str(),
        replica = %resolved.config.replica_id,
        "store opened"
    );

    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    let shutdown = move |mut rx: tokio::sync::watch::Receiver<bool>| async move {
        let _ = rx.wait_for(|stop| *stop).await;
    };

    let listener = tokio::net::TcpListener::bind(resolved.listen).await?;
    let local = listener.local_addr()?;
    let mut config = resolved.config.clone();
    config.sealing_key = Some(sealing);
    // With SQLite the lock above makes this the only process running jobs on the store: a
    // restart resumes the jobs a crashed run left without waiting out their leases.
    config.sole_job_runner = sqlite_file.is_some();
    if args.public_url.is_none() && resolved.listen.port() == 0 {
        config.public_url = format!("http://{local}");
    }

    let mut tasks = tokio::task::JoinSet::new();
    let dev_kms = if resolved.dev {
        let kms = dev::start_kms(&resolved, stop_rx.clone(), &mut tasks).await?;
        let creds = dev::bootstrap(
            store.as_ref(),
            &resolved.data_dir,
            &config.public_url,
            Some(&kms),
        )
        .await?;
        // A sign-in link for the portal, valid until this process stops.
        let code = keyplane_server::portal::session::random_hex();
        println!(
            "  portal:       {}/portal/signin/dev?code={code}",
            config.public_url.trim_end_matches('/')
        );
        config.dev_signin = Some(keyplane_app::DevSignin {
            code,
            token: creds.token.clone(),
        });
        Some(kms)
    } else {
        None
    };
    if let Some(kms) = &dev_kms
        && !config
            .platform_keys
            .contains_key(&keyplane_core::Provider::Aws)
    {
        let regions = config.regions(keyplane_core::Provider::Aws).to_vec();
        let keys = dev::ensure_platform_keys(kms, &regions).await?;
        config
            .platform_keys
            .insert(keyplane_core::Provider::Aws, keys);
    }
    if let Some(kms) = &dev_kms {
        kms.azure.configure(&mut config);
    }
    // OpenBao JWT roles trust a key derived from the sealing key.
    let openbao_jwt = config
        .sealing_key
        .as_ref()
        .map(keyplane_core::platform_jwt::PlatformJwtKey::derive)
        .transpose()?
        .map(|key| std::sync::Arc::new(keyplane_kms_openbao::JwtSigner { key }));
    let connector = wiring::kms_connector(
        &resolved.aws,
        &resolved.gcp,
        &resolved.azure,
        dev_kms.as_ref(),
        openbao_jwt,
    )?;
    let sender = keyplane_server::webhook_sender::HttpWebhookSender::new(&config.webhooks)?;
    let app = keyplane_app::App::new(store, config, connector)
        .with_webhook_sender(std::sync::Arc::new(sender));
    for handle in app.spawn_background(stop_rx.clone()) {
        tasks.spawn(async move { handle.await.map_err(std::io::Error::other) });
    }
    tracing::info!(%local, "keyplane API listening");
    tasks.spawn(keyplane_server::run(
        listener,
        app,
        shutdown(stop_rx.clone()),
    ));

    tokio::spawn(async move {
        wait_for_signal().await;
        tracing::info!("shutting down");
        let _ = stop_tx.send(true);
    });
    while let Some(res) = tasks.join_next().await {
        res??;
    }
    Ok(())
}

/// Ctrl-C or SIGTERM: what ends `serve` and the built-in KMS and vault commands.
pub(crate) async fn wait_for_signal() {
    let ctrl_c = tokio::signal::ctrl_c();
    #[cfg(unix)]
    {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut term) => {
                tokio::select! {
                    _ = ctrl_c => {},
                    _ = term.recv() => {},
                }
            }
            Err(_) => {
                let _ = ctrl_c.await;
            }
        }
    }
    #[cfg(not(unix))]
    {
        let _ = ctrl_c.await;
    }
}
