//! `dvault migrate` and `dvault model`: the schema and the registered model.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Args, Subcommand};

use super::CliResult;
use crate::config::Config;
use crate::db::{self, Target};
use crate::mapping::{Mappings, registry};
use crate::status;

#[derive(Debug, Args)]
pub struct MigrateArgs {
    /// A directory of user mapping files (*.toml, added to the built-in ones) and user
    /// migrations (`V<n>__<what>.sql`): apply the migrations, register the mappings.
    #[arg(long = "mappings", env = "DVAULT_MIGRATE_MAPPINGS", value_name = "DIR")]
    pub mappings: Option<PathBuf>,
}

#[derive(Debug, Subcommand)]
pub enum ModelAction {
    /// Apply the user migrations of DIR and register its mapping files as the model.
    Apply {
        #[arg(value_name = "DIR")]
        dir: PathBuf,
    },
    /// Show the registered model: files, user migrations, held-back events.
    Show,
    /// Stop holding back events of a type no mapping knows: pass them over.
    Skip {
        #[arg(value_name = "EVENT_TYPE")]
        event_type: String,
    },
}

pub(super) async fn migrate(config: &Config, args: MigrateArgs) -> CliResult {
    let target = Target::resolve(config).await?;
    let mut client = db::connect(&target.url).await?;
    let done = db::migrate(&mut client).await?;
    if let Some(dir) = &args.mappings {
        let applied = registry::apply(&mut client, dir, "dvault migrate --mappings").await?;
        print_applied(&applied)?;
    }
    outln!("database: {}", target.describe())?;
    if done.applied.is_empty() {
        outln!("schema is current")?;
    } else {
        for m in &done.applied {
            outln!("applied {m}")?;
        }
    }
    outln!(
        "schema version {}, {} view files applied",
        done.version.unwrap_or(0),
        done.views
    )?;
    Ok(ExitCode::SUCCESS)
}

pub(super) fn print_applied(a: &registry::Applied) -> Result<(), std::io::Error> {
    for m in &a.migrations {
        outln!("applied user migration {m}")?;
    }
    outln!(
        "model: {} ({})",
        if a.files.is_empty() {
            "the built-in mappings only".to_string()
        } else {
            format!("built-in mappings + {}", a.files.join(", "))
        },
        if a.changed {
            "registered"
        } else {
            "already registered"
        }
    )?;
    if a.releasable > 0 {
        outln!(
            "{} held-back events are mapped now: the next load loads them",
            crate::human::thousands(a.releasable as u64)
        )?;
    }
    Ok(())
}

pub(super) async fn model(config: &Config, action: ModelAction) -> CliResult {
    let target = Target::resolve(config).await?;
    let mut client = db::connect_migrated(&target).await?;
    match action {
        ModelAction::Apply { dir } => {
            let applied = registry::apply(&mut client, &dir, "dvault model apply").await?;
            print_applied(&applied)?;
        }
        ModelAction::Show => out!("{}", status::model(&client).await?)?,
        ModelAction::Skip { event_type } => {
            client
                .execute(
                    "INSERT INTO ops.skipped_event_types (event_type) VALUES ($1) ON CONFLICT DO NOTHING",
                    &[&event_type],
                )
                .await?;
            let n = client
                .execute(
                    "DELETE FROM ops.held_events WHERE event_type = $1",
                    &[&event_type],
                )
                .await?;
            outln!(
                "events of type \"{event_type}\" are passed over from now on ({} held back forgotten)",
                crate::human::thousands(n)
            )?;
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// The model registered in the database; `dir` (`--mappings`) must be the same files.
/// A database that never had a model registered registers `dir` on first use, once
/// its mappings fit the catalog.
pub(super) async fn active_model(
    client: &mut tokio_postgres::Client,
    dir: Option<&std::path::Path>,
) -> Result<Mappings, Box<dyn std::error::Error + Send + Sync>> {
    let active = registry::active(&*client, dir).await?;
    if let Some(files) = &active.to_register {
        crate::mapping::catalog::check(&*client, &active.mappings).await??;
        registry::register(client, files, "first use of --mappings").await?;
    }
    Ok(active.mappings)
}
