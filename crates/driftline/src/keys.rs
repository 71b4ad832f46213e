//! `driftline keys`: create, list and revoke API keys.

use clap::Subcommand;
use driftline_core::time::now_ms;
use driftline_store::{NewKey, Scope};

use crate::cli::StoreArgs;

#[derive(Debug, Subcommand)]
pub(crate) enum KeysCommand {
    /// Create a key and print it once; only its hash is stored.
    Create {
        /// A name for people ("replica-eu", "notebook").
        #[arg(long, env = "DRIFTLINE_KEY_NAME")]
        name: String,
        /// read, write, admin or govern (appends governance events).
        #[arg(long, env = "DRIFTLINE_KEY_SCOPE", value_parser = crate::cli::parse_scope)]
        scope: Scope,
        /// Limit the key to one deployment.
        #[arg(long, env = "DRIFTLINE_KEY_DEPLOYMENT")]
        deployment: Option<String>,
        #[command(flatten)]
        store: StoreArgs,
    },
    /// List keys (never their secrets).
    List {
        #[command(flatten)]
        store: StoreArgs,
    },
    /// Revoke a key by its id.
    Revoke {
        /// The key's id, as `keys list` shows it.
        #[arg(env = "DRIFTLINE_KEY_ID")]
        id: String,
        #[command(flatten)]
        store: StoreArgs,
    },
}

pub(crate) async fn run(command: KeysCommand) -> anyhow::Result<()> {
    match command {
        KeysCommand::Create { name, scope, deployment, store } => {
            let store = store.open().await?;
            let new = NewKey::generate(&name, scope, deployment, now_ms());
            store.insert_key(&new.key, &new.hash).await?;
            store.close().await;
            eprintln!("created key {} ({scope}); it is shown once and stored only as a hash:", new.key.id);
            println!("{}", new.secret);
        }
        KeysCommand::List { store } => {
            let store = store.open().await?;
            let keys = store.list_keys().await?;
            store.close().await;
            let mut rows = vec![["ID", "NAME", "SCOPE", "DEPLOYMENT", "CREATED", "STATUS"].map(String::from)];
            rows.extend(keys.iter().map(|k| {
                [
                    k.id.clone(),
                    k.name.clone(),
                    k.scope.to_string(),
                    k.deployment.clone().unwrap_or_else(|| "*".into()),
                    driftline_core::time::date_string(k.created_at_ms),
                    if k.revoked_at_ms.is_some() { "revoked".into() } else { "active".into() },
                ]
            }));
            print!("{}", driftline_drift::report::text::text_table(&rows));
        }
        KeysCommand::Revoke { id, store } => {
            let store = store.open().await?;
            let revoked = store.revoke_key(&id).await?;
            store.close().await;
            if !revoked {
                anyhow::bail!("no active key has id `{id}`; see `driftline keys list`");
            }
            println!("revoked key {id}");
        }
    }
    Ok(())
}
