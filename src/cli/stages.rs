//! `medalign stages`: the stage kinds, their slots and their params with docs and defaults.

use std::process::ExitCode;

use clap::Args;
use serde_json::Value;

use super::{print_json, registry};

/// List stage kinds.
#[derive(Args, Debug)]
pub struct StagesArgs {
    /// Show only this kind.
    kind: Option<String>,
    /// Print kinds with their params' JSON Schema on stdout.
    #[arg(long)]
    json: bool,
}

/// Prints the kinds.
pub fn stages(args: StagesArgs) -> anyhow::Result<ExitCode> {
    let registry = registry();
    let kinds: Vec<_> =
        registry.kinds().filter(|k| args.kind.as_deref().is_none_or(|n| n == k.name())).collect();
    if let (Some(name), true) = (&args.kind, kinds.is_empty()) {
        let names: Vec<&str> = registry.kinds().map(|k| k.name()).collect();
        anyhow::bail!("no stage kind \"{name}\"; kinds: {}", names.join(", "));
    }
    if args.json {
        let list: Vec<Value> = kinds
            .iter()
            .map(|k| {
                serde_json::json!({
                    "kind": k.name(), "version": k.version(), "doc": k.doc(),
                    "inputs": k.inputs().iter().map(|s| serde_json::json!({"name": s.name, "kinds": s.kinds, "arity": format!("{:?}", s.arity), "doc": s.doc})).collect::<Vec<_>>(),
                    "outputs": k.outputs().iter().map(|o| serde_json::json!({"name": o.name, "kind": o.kind, "doc": o.doc})).collect::<Vec<_>>(),
                    "params": k.params_schema(),
                })
            })
            .collect();
        print_json(&list)?;
        return Ok(ExitCode::SUCCESS);
    }
    for k in kinds {
        println!("{} (v{})\n  {}", k.name(), k.version(), k.doc());
        for s in k.inputs() {
            println!("  input  {:<12} {} ({:?}): {}", s.name, s.kinds.join("|"), s.arity, s.doc);
        }
        for o in k.outputs() {
            println!("  output {:<12} {}: {}", o.name, o.kind, o.doc);
        }
        let schema = k.params_schema();
        print_params(&schema, &schema, "    ");
        println!();
    }
    Ok(ExitCode::SUCCESS)
}

fn print_params(schema: &Value, root: &Value, indent: &str) {
    let Some(props) = schema.get("properties").and_then(Value::as_object) else { return };
    println!("{indent}params:");
    for (name, p) in props {
        let p = deref(p, root);
        let ty = p
            .get("type")
            .map(|t| t.to_string().replace('"', ""))
            .unwrap_or_else(|| "object".into());
        let default = p.get("default").map(|d| format!(" = {d}")).unwrap_or_default();
        let doc = p.get("description").and_then(Value::as_str).unwrap_or("").replace('\n', " ");
        println!("{indent}  {name}: {ty}{default}  {doc}");
    }
}

fn deref<'a>(p: &'a Value, root: &'a Value) -> &'a Value {
    let r =
        p.get("$ref").or_else(|| p.get("allOf").and_then(|a| a.get(0)).and_then(|x| x.get("$ref")));
    match r.and_then(Value::as_str).and_then(|r| r.strip_prefix("#/")) {
        Some(path) => path.split('/').fold(root, |v, seg| &v[seg]),
        None => p,
    }
}
