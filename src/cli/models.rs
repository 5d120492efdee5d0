//! `medalign models list | show REF | promote NAME:VERSION ALIAS | upload REF --dry-run`: the
//! registry from the command line. Output for people goes to stderr, `--json` output to stdout.

use std::path::{Path, PathBuf};

use clap::{Args, Subcommand};
use medalign_engine::Store;

use medalign_stages::register::vertex::{gcloud_command, upload_request, VertexParams, UPLOAD_REQUEST_FILE};
use medalign_registry::{
    ModelRef, ModelVersion, Registration, Registry, RegistryError, DEFAULT_STORE,
};

/// Where the registry lives.
#[derive(Args, Debug, Clone)]
pub struct StoreArgs {
    /// The store directory holding registry.sqlite.
    #[arg(long, env = "MEDALIGN_STORE", default_value = DEFAULT_STORE, global = true)]
    pub store: PathBuf,
}

/// Registered models: list, show, promote, upload.
#[derive(Args, Debug)]
pub struct ModelsArgs {
    /// Where the registry lives.
    #[command(flatten)]
    pub store: StoreArgs,
    /// What to do.
    #[command(subcommand)]
    pub command: ModelsCommand,
}

/// The `models` subcommands.
#[derive(Subcommand, Debug)]
pub enum ModelsCommand {
    /// Every registered version with its aliases and metrics.
    List(ListArgs),
    /// One version: files, base model, metrics, aliases and the lineage of its artifact.
    Show(ShowArgs),
    /// Point an alias (`staging`, `production`, any name) at a version.
    Promote(PromoteArgs),
    /// The Vertex AI Model Registry upload request for a version (printed with --dry-run).
    Upload(UploadArgs),
}

/// `models list`.
#[derive(Args, Debug)]
pub struct ListArgs {
    /// Print JSON on stdout.
    #[arg(long)]
    pub json: bool,
}

/// `models show`.
#[derive(Args, Debug)]
pub struct ShowArgs {
    /// NAME, NAME:VERSION or NAME@ALIAS.
    pub model: String,
    /// Print JSON on stdout.
    #[arg(long)]
    pub json: bool,
}

/// `models promote`.
#[derive(Args, Debug)]
pub struct PromoteArgs {
    /// NAME:VERSION.
    pub model: String,
    /// The alias to move.
    pub alias: String,
}

/// `models upload`.
#[derive(Args, Debug)]
pub struct UploadArgs {
    /// NAME, NAME:VERSION or NAME@ALIAS.
    pub model: String,
    /// Google Cloud project (default: the register stage's `vertex.project`).
    #[arg(long)]
    pub project: Option<String>,
    /// Region (default: the stage's, else us-central1).
    #[arg(long)]
    pub region: Option<String>,
    /// Serving image URI (default: the stage's).
    #[arg(long)]
    pub image: Option<String>,
    /// Print the request; send nothing.
    #[arg(long)]
    pub dry_run: bool,
}

/// Runs a `models` subcommand.
pub fn run(args: &ModelsArgs) -> Result<(), RegistryError> {
    let store = &args.store.store;
    let registry = Registry::open_existing(store)?.ok_or_else(|| RegistryError::NotFound {
        reference: format!("in {}", store.display()),
        known: vec![],
    })?;
    match &args.command {
        ModelsCommand::List(a) => list(&registry, a),
        ModelsCommand::Show(a) => show(store, &registry, a),
        ModelsCommand::Promote(a) => promote(registry, a),
        ModelsCommand::Upload(a) => upload(&registry, a),
    }
}

fn list(registry: &Registry, args: &ListArgs) -> Result<(), RegistryError> {
    let versions = registry.list()?;
    if args.json {
        println!("{}", serde_json::to_string_pretty(&versions).expect("json"));
        return Ok(());
    }
    eprintln!("{:<20} {:>7}  {:<26} {:<24} metrics", "NAME", "VERSION", "ALIASES", "BASE MODEL");
    for v in &versions {
        let metrics: Vec<String> = v
            .metrics
            .iter()
            .filter(|(_, x)| x.is_number())
            .map(|(k, x)| format!("{k}={x}"))
            .collect();
        eprintln!(
            "{:<20} {:>7}  {:<26} {:<24} {}",
            v.name,
            v.version,
            v.aliases.join(","),
            short(&v.base_model),
            metrics.join(" ")
        );
    }
    if versions.is_empty() {
        eprintln!("(no registered models: run a pipeline with a register stage)");
    }
    Ok(())
}

fn short(s: &str) -> String {
    Path::new(s)
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_else(|| s.to_string())
}

fn show(store: &Path, registry: &Registry, args: &ShowArgs) -> Result<(), RegistryError> {
    let v = registry.get(&args.model.parse::<ModelRef>()?)?;
    let lineage = match &v.artifact_key {
        Some(k) => {
            let store = Store::open(store).map_err(|e| RegistryError::Registry(e.to_string()))?;
            Some(
                medalign_engine::lineage(&store, k)
                    .map_err(|e| RegistryError::Registry(e.to_string()))?,
            )
        }
        None => None,
    };
    if args.json {
        let mut j = serde_json::to_value(&v).expect("json");
        j["lineage"] = serde_json::to_value(&lineage).unwrap_or_default();
        println!("{}", serde_json::to_string_pretty(&j).expect("json"));
        return Ok(());
    }
    eprint!("{}", describe(&v));
    if let Some(l) = &lineage {
        eprintln!("lineage:\n{}", medalign_engine::render_text(l));
    }
    Ok(())
}

/// The human description of a version, as `models show` prints it.
pub fn describe(v: &ModelVersion) -> String {
    let opt = |p: &Option<PathBuf>| p.as_ref().map_or("-".to_string(), |p| p.display().to_string());
    let mut s = format!(
        "{}:{}  aliases: {}\n  registered   {}\n  base model   {} (blake3 {})\n  files        {}\n  adapter      {}\n  merged       {}\n  gguf         {}\n  artifact     {}\n  pin          {}\n",
        v.name,
        v.version,
        v.aliases.join(", "),
        v.created,
        v.base_model,
        &v.base_model_hash[..v.base_model_hash.len().min(16)],
        v.model_dir.display(),
        opt(&v.adapter),
        opt(&v.merged),
        opt(&v.gguf),
        v.artifact_key.as_deref().unwrap_or("-"),
        v.pin,
    );
    if !v.description.is_empty() {
        s.push_str(&format!("  description  {}\n", v.description));
    }
    s.push_str("  metrics\n");
    for (k, x) in &v.metrics {
        s.push_str(&format!("    {k:<28} {x}\n"));
    }
    s
}

fn promote(mut registry: Registry, args: &PromoteArgs) -> Result<(), RegistryError> {
    let Ok(ModelRef::Version(name, version)) = args.model.parse::<ModelRef>() else {
        return Err(RegistryError::Invalid(format!(
            "{:?}: promote takes NAME:VERSION",
            args.model
        )));
    };
    let before = registry.promote(&name, version, &args.alias)?;
    match before {
        Some(b) if b != version => eprintln!("{name}@{}: v{b} -> v{version}", args.alias),
        Some(_) => eprintln!("{name}@{} already points at v{version}", args.alias),
        None => eprintln!("{name}@{}: v{version}", args.alias),
    }
    Ok(())
}

fn upload(registry: &Registry, args: &UploadArgs) -> Result<(), RegistryError> {
    let v = registry.get(&args.model.parse::<ModelRef>()?)?;
    let stage = stored_vertex(&v.model_dir);
    let pick = |flag: &Option<String>, from: Option<&str>, what: &str| {
        flag.clone().or_else(|| from.map(str::to_string)).ok_or_else(|| {
            RegistryError::Invalid(format!(
                "--{what} is needed (the register stage had no vertex.{what})"
            ))
        })
    };
    let params = VertexParams {
        project: pick(&args.project, stage.as_ref().map(|p| p.project.as_str()), "project")?,
        region: args
            .region
            .clone()
            .or_else(|| stage.as_ref().map(|p| p.region.clone()))
            .unwrap_or_else(|| "us-central1".into()),
        image: pick(&args.image, stage.as_ref().map(|p| p.image.as_str()), "image")?,
        artifact_uri: stage.as_ref().and_then(|p| p.artifact_uri.clone()),
        port: stage.as_ref().map_or(8080, |p| p.port),
    };
    let reg = Registration::read(&v.model_dir)?;
    let request = upload_request(&reg, &params, &v.aliases, &v.description);
    println!("{}", serde_json::to_string_pretty(&request).expect("json"));
    if args.dry_run {
        eprintln!(
            "dry run: nothing sent. The bundle to build the image from: {}",
            v.model_dir.join("vertex").display()
        );
        return Ok(());
    }
    Err(RegistryError::Invalid(format!(
        "medalign does not hold Google Cloud credentials; send the request above with them, e.g.\n  {}",
        gcloud_command(&reg, &params)
    )))
}

/// The vertex params the register stage used, read back from its bundle.
fn stored_vertex(model_dir: &Path) -> Option<VertexParams> {
    let text =
        std::fs::read_to_string(model_dir.join("vertex").join(UPLOAD_REQUEST_FILE))
            .ok()?;
    let r: serde_json::Value = serde_json::from_str(&text).ok()?;
    let url = r["url"].as_str()?;
    let project = url.split("/projects/").nth(1)?.split('/').next()?.to_string();
    let region = url.split("/locations/").nth(1)?.split('/').next()?.to_string();
    let spec = &r["body"]["model"]["containerSpec"];
    Some(VertexParams {
        project,
        region,
        image: spec["imageUri"].as_str()?.to_string(),
        artifact_uri: r["body"]["model"]["artifactUri"].as_str().map(str::to_string),
        port: spec["ports"][0]["containerPort"].as_u64().unwrap_or(8080) as u16,
    })
}
