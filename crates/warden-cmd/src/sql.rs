//! `warden sql rewrite` and `warden sql explain`: what the SQL PEP does to one statement.
//!
//! Both read one statement on stdin, analyse it, ask the policy (a Rego policy directory) and
//! rewrite it. `rewrite` prints the statement to run (exit 0), or the reason on stderr (exit 1
//! when denied, 2 for bad arguments or a statement that does not parse, 3 for a policy or
//! catalog that does not fit). `explain` prints the access requests, decisions and
//! obligations, then the rewrite or the reason, with the same exit codes.
//!
//! A policy package extends the function allow-list with `sql-functions.txt` (every dialect)
//! and `sql-functions.<dialect>.txt` beside its `warden.toml`: the functions its rules and
//! its callers' statements need, in the format of the dialects' own lists.

use std::io::Read;
use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Args, Subcommand};
use serde_json::Value;
use warden_decision::{Decision, Obligation, Pdp, Properties, Subject};
use warden_rego::RegoPdp;
use warden_sql::adapters::{DriverError, SqlxMySql, SqlxPostgres, SqlxSqlite};
use warden_sql::{Catalog, DenyReason, Dialect, SqlError, SqlPolicy, SqlValue, StringSettings};

use crate::exit::Exit;

/// SQL PEP commands.
#[derive(Debug, Subcommand)]
pub(crate) enum SqlCommand {
    /// Print the statement read from stdin as the SQL PEP would run it (exit 0), or why it is
    /// refused (exit 1 denied, 2 bad arguments or unparseable, 3 a policy or catalog that does
    /// not fit the statement, 4 PDP unavailable).
    Rewrite(SqlArgs),
    /// Print the access requests, decisions and obligations for the statement read from stdin,
    /// then its rewrite or the reason it is refused (same exit codes as `rewrite`).
    Explain(SqlArgs),
}

/// What the SQL PEP needs to know.
#[derive(Debug, Args)]
pub(crate) struct SqlArgs {
    /// The Rego policy directory (with `warden.toml`, policies, data).
    #[arg(long, value_name = "DIR")]
    policy: PathBuf,
    /// The subject, as JSON: `{"type": "user", "id": "nina", "properties": {...}}` (`type`
    /// defaults to `user`).
    #[arg(long, value_name = "JSON")]
    subject: String,
    /// The context of the access requests, as a JSON object.
    #[arg(long, value_name = "JSON")]
    context: Option<String>,
    /// The SQL dialect.
    #[arg(long, value_parser = parse_dialect)]
    dialect: Dialect,
    /// The schema catalog, a JSON file: `{"public.patients": ["id", ...], ...}`, or
    /// `{"default_schema": "clinic", "tables": {...}}`.
    #[arg(long, value_name = "FILE", conflicts_with = "database_url")]
    schema: Option<PathBuf>,
    /// Read the catalog from the database instead (`postgres://…`, `mysql://…`,
    /// `sqlite:path`): the columns of the current schema's tables, the current schema or
    /// database as the default schema, and the server's string-lexing settings.
    #[arg(long, value_name = "URL")]
    database_url: Option<String>,
    /// The schema unqualified names belong to (required for MySQL unless the schema file names
    /// it).
    #[arg(long, value_name = "NAME")]
    default_schema: Option<String>,
    /// The bind parameters, as a JSON array (needed when written rows carry parameters).
    #[arg(long, value_name = "JSON")]
    params: Option<String>,
    /// The rule to evaluate (default: the manifest's `entrypoint`).
    #[arg(long, value_name = "RULE")]
    entrypoint: Option<String>,
}

fn parse_dialect(s: &str) -> Result<Dialect, String> {
    s.parse::<Dialect>().map_err(|e| e.to_string())
}

pub(crate) fn run(command: SqlCommand) -> ExitCode {
    let (args, explain) = match command {
        SqlCommand::Rewrite(args) => (args, false),
        SqlCommand::Explain(args) => (args, true),
    };
    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(e) => {
            eprintln!("warden sql: cannot start the async runtime: {e}");
            return Exit::Config.into();
        }
    };
    let setup = match runtime.block_on(Setup::new(&args)) {
        Ok(setup) => setup,
        Err((exit, message)) => {
            eprintln!("warden sql: {message}");
            return exit.into();
        }
    };
    let mut out = String::new();
    let exit = runtime.block_on(setup.run(explain, &mut out));
    print!("{out}");
    exit.into()
}

struct Setup {
    pdp: RegoPdp,
    policy: SqlPolicy,
    subject: Subject,
    context: Properties,
    params: Vec<SqlValue>,
    statement: String,
}

#[derive(serde::Deserialize)]
struct SchemaFile {
    #[serde(default)]
    default_schema: Option<String>,
    tables: Catalog,
}

impl Setup {
    async fn new(args: &SqlArgs) -> Result<Self, (Exit, String)> {
        let usage = |message: String| (Exit::Usage, message);
        let mut subject: Value = serde_json::from_str(&args.subject)
            .map_err(|e| usage(format!("`--subject` is not JSON: {e}")))?;
        if let Value::Object(fields) = &mut subject {
            fields
                .entry("type")
                .or_insert_with(|| Value::String("user".into()));
        }
        let subject: Subject = serde_json::from_value(subject)
            .map_err(|e| usage(format!("`--subject` is not a subject: {e}")))?;
        let context: Properties = match &args.context {
            Some(text) => serde_json::from_str(text)
                .map_err(|e| usage(format!("`--context` is not a JSON object: {e}")))?,
            None => Properties::new(),
        };
        let params: Vec<SqlValue> = match &args.params {
            Some(text) => serde_json::from_str(text)
                .map_err(|e| usage(format!("`--params` is not a JSON array of values: {e}")))?,
            None => Vec::new(),
        };
        let (catalog, file_schema) = match &args.schema {
            Some(path) => {
                let text = std::fs::read_to_string(path)
                    .map_err(|e| usage(format!("cannot read `{}`: {e}", path.display())))?;
                let value: Value = serde_json::from_str(&text)
                    .map_err(|e| usage(format!("`{}` is not JSON: {e}", path.display())))?;
                if value.get("tables").is_some() {
                    let file: SchemaFile = serde_json::from_value(value).map_err(|e| {
                        usage(format!("`{}` is not a schema file: {e}", path.display()))
                    })?;
                    (file.tables, file.default_schema)
                } else {
                    let catalog: Catalog = serde_json::from_value(value).map_err(|e| {
                        usage(format!("`{}` is not a schema file: {e}", path.display()))
                    })?;
                    (catalog, None)
                }
            }
            None => (Catalog::new(), None),
        };
        let (catalog, file_schema, settings) = match &args.database_url {
            Some(url) => {
                let (catalog, schema, settings) = from_database(args.dialect, url).await?;
                (catalog, Some(schema), settings)
            }
            None => (catalog, file_schema, None),
        };
        let mut builder = SqlPolicy::builder(args.dialect)
            .catalog(catalog)
            .cache_capacity(0);
        if let Some(settings) = settings {
            builder = builder.string_settings(settings);
        }
        if let Some(schema) = args.default_schema.clone().or(file_schema) {
            builder = builder.default_schema(schema);
        }
        for name in [
            "sql-functions.txt".to_owned(),
            format!("sql-functions.{}.txt", args.dialect),
        ] {
            let path = args.policy.join(&name);
            let text = match std::fs::read_to_string(&path) {
                Ok(text) => text,
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => continue,
                Err(e) => {
                    return Err((
                        Exit::Config,
                        format!("cannot read `{}`: {e}", path.display()),
                    ));
                }
            };
            let names = warden_sql::functions::parse_list(&text)
                .map_err(|e| (Exit::Config, format!("`{}`, {e}", path.display())))?;
            builder = builder.allow_functions(names);
        }
        let policy = builder.build().map_err(|e| {
            let message = match e {
                // The library's message names the builder call; a CLI user needs the flag.
                warden_sql::ConfigError::NoDefaultSchema(dialect) => format!(
                    "the {dialect} dialect needs a default schema (the current database): pass \
                 `--default-schema NAME`, or give `default_schema` in the catalog file"
                ),
                e => e.to_string(),
            };
            (Exit::Config, message)
        })?;
        let mut pdp = RegoPdp::builder().directory(&args.policy);
        if let Some(rule) = &args.entrypoint {
            pdp = pdp.entrypoint(rule.clone());
        }
        let pdp = pdp.build().map_err(|e| (Exit::Config, e.to_string()))?;
        let mut statement = String::new();
        std::io::stdin()
            .read_to_string(&mut statement)
            .map_err(|e| usage(format!("cannot read the statement from stdin: {e}")))?;
        Ok(Self {
            pdp,
            policy,
            subject,
            context,
            params,
            statement,
        })
    }

    async fn run(&self, explain: bool, out: &mut String) -> Exit {
        let analysis = match self.policy.analyze(&self.statement) {
            Ok(a) => a,
            Err(e) => return refuse(&e, explain, out),
        };
        let requests = analysis.access_requests(&self.subject, &self.context);
        let mut decisions = Vec::with_capacity(requests.len());
        if !requests.is_empty() {
            for result in self.pdp.decide_batch(&requests).await {
                match result {
                    Ok(d) => decisions.push(d),
                    Err(e) => return refuse(&SqlError::Pdp(e), explain, out),
                }
            }
        }
        if explain {
            describe(&requests, &decisions, out);
        }
        let rewrite = match self.policy.rewrite(&analysis, &decisions, &self.subject) {
            Ok((rewrite, obligations, _)) => {
                if explain {
                    describe_obligations(&obligations, out);
                }
                rewrite
            }
            Err(e) => return refuse(&e, explain, out),
        };
        if let Err(reason) = rewrite.check(&self.params) {
            return refuse(&SqlError::Denied(reason), explain, out);
        }
        if explain {
            out.push_str("rewritten:\n  ");
        }
        out.push_str(rewrite.sql());
        out.push('\n');
        Exit::Ok
    }
}

/// The catalog, the default schema and the string settings of the database at `url`. A
/// database that cannot be read is a configuration error (exit 3), never a deny.
async fn from_database(
    dialect: Dialect,
    url: &str,
) -> Result<(Catalog, String, Option<StringSettings>), (Exit, String)> {
    let config = |e: DriverError| {
        (
            Exit::Config,
            format!(
                "cannot read the catalog from `--database-url`: {}",
                e.message
            ),
        )
    };
    let scheme = url.split(':').next().unwrap_or_default();
    match (dialect, scheme) {
        (Dialect::Postgres, "postgres" | "postgresql") => {
            let db = SqlxPostgres::connect(url).await.map_err(config)?;
            let schema = db.current_schema().await.map_err(config)?;
            let catalog = db.load_catalog(&[schema.as_str()]).await.map_err(config)?;
            let settings = db.string_settings().await.map_err(config)?;
            Ok((catalog, schema, Some(settings)))
        }
        (Dialect::MySql, "mysql" | "mariadb") => {
            let db = SqlxMySql::connect(url).await.map_err(config)?;
            let schema = db.current_database().await.map_err(config)?;
            let catalog = db.load_catalog().await.map_err(config)?;
            let settings = db.string_settings().await.map_err(config)?;
            Ok((catalog, schema, Some(settings)))
        }
        (Dialect::Sqlite, "sqlite") => {
            let db = SqlxSqlite::connect(url).await.map_err(config)?;
            let catalog = db.load_catalog().await.map_err(config)?;
            Ok((catalog, "main".into(), None))
        }
        _ => Err((
            Exit::Usage,
            format!("`--database-url` `{scheme}:…` is not a {dialect} database"),
        )),
    }
}

fn refuse(error: &SqlError, explain: bool, out: &mut String) -> Exit {
    if explain {
        out.push_str(&format!("refused ({}): {error}\n", error.code()));
    }
    let exit = exit_of(error);
    match error.reason() {
        Some(DenyReason::UnknownColumns(_)) => {
            eprintln!("warden sql: {error} (pass `--schema FILE` with the columns of each table)")
        }
        _ => eprintln!("warden sql: {error}"),
    }
    exit
}

/// The exit status of a refusal: 1 for a statement the policy refuses, 2 for one that does
/// not parse or lacks a parameter, 3 when the policy or the catalog does not fit the statement
/// (a missing catalog is a configuration error, not a deny), 3 or 4 for a PDP error.
fn exit_of(error: &SqlError) -> Exit {
    match error {
        SqlError::Parse(_) => Exit::Usage,
        SqlError::Pdp(e) => Exit::of_pdp_error(e),
        SqlError::Denied(reason) => match reason {
            DenyReason::Parameter(_) => Exit::Usage,
            reason if reason.is_configuration() => Exit::Config,
            _ => Exit::Deny,
        },
        _ => Exit::Deny,
    }
}

fn describe(requests: &[warden_decision::AccessRequest], decisions: &[Decision], out: &mut String) {
    if requests.is_empty() {
        out.push_str("access requests: none (the statement reads no relation)\n");
        return;
    }
    out.push_str("access requests:\n");
    for (i, (request, decision)) in requests.iter().zip(decisions).enumerate() {
        let columns = request
            .resource
            .properties
            .get("columns")
            .and_then(Value::as_array)
            .map(|c| {
                c.iter()
                    .filter_map(Value::as_str)
                    .collect::<Vec<_>>()
                    .join(", ")
            })
            .unwrap_or_default();
        out.push_str(&format!(
            "  {}. {} {} [{}]\n",
            i + 1,
            request.action.name,
            request.resource.id,
            columns
        ));
        out.push_str(&format!(
            "     decision: {} (policy {} {})\n",
            if decision.allowed { "permit" } else { "deny" },
            decision.policy.id,
            decision.policy.revision
        ));
        for reason in &decision.reasons {
            out.push_str(&format!("     reason: {}\n", reason.message));
        }
        for diagnostic in &decision.diagnostics {
            out.push_str(&format!("     diagnostic: {}\n", diagnostic.message));
        }
        for obligation in &decision.obligations {
            out.push_str(&format!("     obligation: {}\n", obligation.to_json()));
        }
    }
}

fn describe_obligations(obligations: &[Obligation], out: &mut String) {
    if obligations.is_empty() {
        out.push_str("obligations: none\n");
        return;
    }
    out.push_str("obligations carried out (merged):\n");
    for obligation in obligations {
        out.push_str(&format!("  - {}\n", obligation.to_json()));
    }
}
