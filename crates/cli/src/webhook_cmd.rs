//! `keyplane webhook`: the organization's webhooks for key events over the API.
use anyhow::Result;
use clap::Subcommand;
use reqwest::Method;
use serde_json::json;

use crate::api_client::ApiClient;

#[derive(Subcommand)]
pub enum WebhookCommand {
    /// Add an endpoint that is sent key events, signed; prints its secret, once.
    Create {
        /// The https URL events are POSTed to.
        #[arg(long)]
        url: String,
        /// An event to send (repeat for more; none: every event), e.g. datacenter.suspend.
        #[arg(long = "event", value_name = "EVENT")]
        events: Vec<String>,
    },
    /// List the organization's webhooks.
    List,
    /// Remove a webhook and its delivery log.
    Delete {
        /// The webhook's ID.
        id: String,
    },
    /// A webhook's latest deliveries with every attempt.
    Deliveries {
        /// The webhook's ID.
        id: String,
        /// How many (1 to 200).
        #[arg(long, default_value_t = 20)]
        limit: u32,
    },
}

pub async fn run(api: &ApiClient, command: WebhookCommand) -> Result<()> {
    let out = match command {
        WebhookCommand::Create { url, events } => {
            let mut body = json!({ "url": url });
            if !events.is_empty() {
                body["events"] = json!(events);
            }
            api.call(Method::POST, "/v2/webhooks", Some(body)).await?
        }
        WebhookCommand::List => api.get("/v2/webhooks").await?,
        WebhookCommand::Delete { id } => {
            api.call(Method::DELETE, &format!("/v2/webhooks/{id}"), None)
                .await?;
            json!({ "deleted": id })
        }
        WebhookCommand::Deliveries { id, limit } => {
            api.get(&format!("/v2/webhooks/{id}/deliveries?limit={limit}"))
                .await?
        }
    };
    println!("{}", serde_json::to_string_pretty(&out)?);
    Ok(())
}
