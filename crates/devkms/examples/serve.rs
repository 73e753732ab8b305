//! Runs keyplane's dev KMS alone, for the Python conformance suite and manual poking:
//! `cargo run -p keyplane-devkms --example serve -- --listen 127.0.0.1:4599 --data-dir /tmp/kms [--allow-clock-control]`.
//! Prints one JSON line with the endpoint and the customer's credentials once it listens; all
//! identities are also in `<data-dir>/credentials.json`.

use std::path::PathBuf;

use keyplane_devkms::{DevKms, DevKmsConfig};

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mut listen = "127.0.0.1:4599".to_string();
    let mut data_dir = PathBuf::from("./keyplane-data/kms");
    let mut allow_clock_control = false;
    let mut args = std::env::args().skip(1);
    while let Some(a) = args.next() {
        match a.as_str() {
            "--listen" => listen = args.next().ok_or("--listen needs a value")?,
            "--data-dir" => {
                data_dir = PathBuf::from(args.next().ok_or("--data-dir needs a value")?)
            }
            "--allow-clock-control" => allow_clock_control = true,
            other => return Err(format!("unknown argument {other}").into()),
        }
    }
    let kms = DevKms::open(DevKmsConfig {
        data_dir: data_dir.clone(),
        extra_identities: vec![],
        allow_clock_control,
    })?;
    let listener = tokio::net::TcpListener::bind(&listen).await?;
    let endpoint = format!("http://{}", listener.local_addr()?);
    let customer = kms
        .credentials("arn:aws:iam::111111111111:user/admin")
        .ok_or("no customer identity")?;
    println!(
        "{}",
        serde_json::json!({
            "endpoint": endpoint,
            "region": "us-east-2",
            "credentialsFile": data_dir.join("credentials.json"),
            "customer": {
                "accountId": customer.account,
                "accessKeyId": customer.access_key_id,
                "secretAccessKey": customer.secret_access_key,
                "principalArn": customer.principal_arn,
            }
        })
    );
    kms.run(listener, async {
        let _ = tokio::signal::ctrl_c().await;
    })
    .await?;
    Ok(())
}
