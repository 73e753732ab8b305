//! Data-key pairs (generate + decrypt) through the Azure adapter against the built-in vault
//! over TLS, many tasks at once, next to the same number of raw SDK `wrap_key` + `unwrap_key`
//! pairs against the same vault in the same run (the baseline: what the adapter adds is the
//! envelope, the context tag, the retry wrapper and the type lookup). Prints pairs per second.
//! `cargo bench -p keyplane-kms-azure`; AZURE_BENCH_SECS (default 5), AZURE_BENCH_TASKS
//! (default 16).

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use azure_security_keyvault_keys::KeyClient;
use azure_security_keyvault_keys::models::{
    CreateKeyParameters, EncryptionAlgorithm, KeyOperationParameters, KeyType,
};
use keyplane_core::Provider;
use keyplane_devkms::{AzureVaultConfig, DevKms, DevKmsConfig};
use keyplane_kms::{EncryptionContext, KeyProvider, PlatformIdentity};
use keyplane_kms_azure::arm::RoleAssignments;
use keyplane_kms_azure::{
    AzureConnector, AzureCredentialConfig, AzureSettings, StaticTokenCredential, VaultClients,
};

type BoxError = Box<dyn std::error::Error + Send + Sync>;

fn env_num(name: &str, default: u64) -> u64 {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

/// Runs `tasks` loops of `pair` for `secs` seconds; pairs per second.
async fn rate<F, Fut>(secs: u64, tasks: u64, pair: F) -> Result<f64, BoxError>
where
    F: Fn() -> Fut + Send + Sync + 'static,
    Fut: std::future::Future<Output = Result<(), BoxError>> + Send,
{
    let pair = Arc::new(pair);
    let done = Arc::new(AtomicU64::new(0));
    let deadline = Instant::now() + Duration::from_secs(secs);
    let started = Instant::now();
    let mut set = tokio::task::JoinSet::new();
    for _ in 0..tasks {
        let (pair, done) = (pair.clone(), done.clone());
        set.spawn(async move {
            while Instant::now() < deadline {
                pair().await?;
                done.fetch_add(1, Ordering::Relaxed);
            }
            Ok::<(), BoxError>(())
        });
    }
    while let Some(r) = set.join_next().await {
        r??;
    }
    Ok(done.load(Ordering::Relaxed) as f64 / started.elapsed().as_secs_f64())
}

fn main() -> Result<(), BoxError> {
    let secs = env_num("AZURE_BENCH_SECS", 5);
    let tasks = env_num("AZURE_BENCH_TASKS", 16);
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    rt.block_on(async move {
        let tmp = tempfile::tempdir()?;
        let kms = DevKms::open(DevKmsConfig {
            data_dir: tmp.path().join("kms"),
            extra_identities: vec![],
            allow_clock_control: false,
        })?;
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
        let vault = kms.azure_vault(AzureVaultConfig::default(), listener)?;
        let (url, authority, ca, creds) = (
            vault.url().to_string(),
            vault.authority().to_string(),
            vault.ca_pem().to_string(),
            vault.credentials().clone(),
        );
        let (tx, rx) = tokio::sync::oneshot::channel::<()>();
        let server = tokio::spawn(vault.run(async {
            let _ = rx.await;
        }));
        let clients = VaultClients::new(Some(&ca), vec![authority.clone()], Duration::from_secs(5))?;
        let customer: KeyClient =
            clients.key_client(&url, Arc::new(StaticTokenCredential::new(&creds.customer.token)))?;
        let roles = RoleAssignments::new(&clients, &url, Arc::new(StaticTokenCredential::new(&creds.customer.token)));
        roles
            .create(&creds.vault_scope, "e147488a-f6f5-4113-8e2d-b22465e65bf6", &creds.platform.object_id, "ServicePrincipal")
            .await?;
        let mut settings = AzureSettings {
            ca_bundle_pem: Some(ca.clone()),
            dev_hosts: vec![authority.clone()],
            ..Default::default()
        };
        settings.credentials.insert(
            creds.platform.client_id.clone(),
            AzureCredentialConfig::StaticToken {
                token: zeroize::Zeroizing::new(creds.platform.token.clone()),
            },
        );
        let identity = PlatformIdentity {
            provider: Provider::Azure,
            region: "eastus".into(),
            account_id: creds.platform.client_id.clone(),
            principal: creds.platform.object_id.clone(),
        };
        let adapter: Arc<dyn KeyProvider> = AzureConnector::new(settings)?.provider(&identity)?;
        let platform_sdk =
            Arc::new(clients.key_client(&url, Arc::new(StaticTokenCredential::new(&creds.platform.token)))?);

        println!("azure data-key pairs over TLS, {tasks} tasks, {secs} s each, client and vault in one process");
        for (name, kty, size, alg) in [
            ("rsa2048", KeyType::Rsa, 2048, EncryptionAlgorithm::RsaOaep256),
            ("aes256", KeyType::OctHsm, 256, EncryptionAlgorithm::A256Kw),
        ] {
            let p = CreateKeyParameters {
                kty: Some(kty),
                key_size: Some(size),
                ..Default::default()
            };
            customer.create_key(name, p.try_into()?, None).await?;
            let key_id = format!("{url}/keys/{name}");

            let sdk = platform_sdk.clone();
            let alg2 = alg.clone();
            let baseline = rate(secs, tasks, move || {
                let (sdk, alg) = (sdk.clone(), alg2.clone());
                async move {
                    let mut dk = [0u8; 32];
                    rand::RngCore::fill_bytes(&mut rand::rng(), &mut dk);
                    let p = KeyOperationParameters {
                        algorithm: Some(alg.clone()),
                        value: Some(dk.to_vec()),
                        ..Default::default()
                    };
                    let w = sdk.wrap_key(name, p.try_into()?, None).await?.into_model()?;
                    let version = w.kid.as_deref().and_then(|k| k.rsplit('/').next()).unwrap_or("").to_string();
                    let p = KeyOperationParameters {
                        algorithm: Some(alg),
                        value: w.result,
                        ..Default::default()
                    };
                    let u = sdk.unwrap_key(name, &version, p.try_into()?, None).await?.into_model()?;
                    if u.result.as_deref() != Some(&dk[..]) {
                        return Err("raw SDK round trip returned another key".into());
                    }
                    Ok(())
                }
            })
            .await?;

            let a = adapter.clone();
            let measured = rate(secs, tasks, move || {
                let (a, key_id) = (a.clone(), key_id.clone());
                async move {
                    let ctx: EncryptionContext = [("organization".to_string(), "bench".to_string())].into_iter().collect();
                    let dk = a.generate_data_key(&key_id, &ctx).await?;
                    let back = a.decrypt(&key_id, &dk.ciphertext, &ctx).await?;
                    if back[..] != dk.plaintext[..] {
                        return Err("adapter round trip returned another key".into());
                    }
                    Ok(())
                }
            })
            .await?;
            println!(
                "  {name}: raw SDK wrap+unwrap {baseline:8.0} pairs/s   adapter generate+decrypt {measured:8.0} pairs/s   ({:.0}% of baseline)",
                100.0 * measured / baseline
            );
        }
        let _ = tx.send(());
        server.await??;
        Ok(())
    })
}
