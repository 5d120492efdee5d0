//! Vertex AI: a deployment bundle (the registered files plus a container that runs
//! `medalign serve` under the custom-container contract: `AIP_HTTP_PORT`, `AIP_HEALTH_ROUTE`,
//! `AIP_PREDICT_ROUTE`) and the Model Registry `models:upload` request that would register it.
//! Nothing here sends anything: the request is written and printed; the upload itself is left
//! to `gcloud` with the user's credentials.

use std::path::Path;

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use serde_json::json;

use crate::files::{link_file, link_tree};
use medalign_registry::{Registration, RegistryError};

/// Where the model files live inside the serving image.
pub const CONTAINER_MODEL_DIR: &str = "/opt/medalign/model";
/// The health route the container declares.
pub const HEALTH_ROUTE: &str = "/health";
/// The predict route the container declares.
pub const PREDICT_ROUTE: &str = "/predict";
/// File name of the upload request inside a bundle.
pub const UPLOAD_REQUEST_FILE: &str = "upload_request.json";

/// Vertex AI settings of the register stage.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct VertexParams {
    /// Google Cloud project id.
    pub project: String,
    /// Region of the Model Registry and endpoint.
    #[serde(default = "default_region")]
    pub region: String,
    /// The serving image built from the bundle's Dockerfile, e.g.
    /// `us-docker.pkg.dev/PROJECT/medalign/medalign-server:0.1.0`.
    pub image: String,
    /// `gs://` folder the bundle's `model/` is copied to (Vertex's `artifactUri`); optional since
    /// the image already holds the files.
    #[serde(default)]
    pub artifact_uri: Option<String>,
    /// Port the container listens on (Vertex passes it as `AIP_HTTP_PORT`).
    #[serde(default = "default_port")]
    pub port: u16,
}

fn default_region() -> String {
    "us-central1".into()
}

fn default_port() -> u16 {
    8080
}

/// The `models:upload` request for a registration: method, URL and JSON body.
pub fn upload_request(
    reg: &Registration,
    params: &VertexParams,
    aliases: &[String],
    description: &str,
) -> serde_json::Value {
    let url = format!(
        "https://{r}-aiplatform.googleapis.com/v1/projects/{p}/locations/{r}/models:upload",
        r = params.region,
        p = params.project
    );
    let mut model = json!({
        "displayName": reg.name,
        "description": description,
        "versionAliases": aliases.iter().filter(|a| *a != "latest").collect::<Vec<_>>(),
        "labels": {
            "medalign-version": reg.version.to_string(),
            "base-model-hash": reg.base_model_hash.chars().take(63).collect::<String>(),
        },
        "containerSpec": {
            "imageUri": params.image,
            "command": ["medalign"],
            "args": ["serve", "--model", CONTAINER_MODEL_DIR, "--host", "0.0.0.0"],
            "ports": [{"containerPort": params.port}],
            "healthRoute": HEALTH_ROUTE,
            "predictRoute": PREDICT_ROUTE,
        },
    });
    if let Some(uri) = &params.artifact_uri {
        model["artifactUri"] = json!(uri);
    }
    json!({"method": "POST", "url": url, "body": {"model": model}})
}

/// The `gcloud` command that performs the same upload with the user's credentials.
pub fn gcloud_command(reg: &Registration, params: &VertexParams) -> String {
    format!(
        "gcloud ai models upload --project={p} --region={r} --display-name={n} \
         --container-image-uri={i} --container-command=medalign \
         --container-args=serve,--model,{m},--host,0.0.0.0 --container-ports={port} \
         --container-health-route={h} --container-predict-route={pr}",
        p = params.project,
        r = params.region,
        n = reg.name,
        i = params.image,
        m = CONTAINER_MODEL_DIR,
        port = params.port,
        h = HEALTH_ROUTE,
        pr = PREDICT_ROUTE,
    )
}

/// Writes a bundle into `bundle` (created): `model/` (the registered files, with the base model
/// copied in when it is a file), `Dockerfile`, `container.json` and `upload_request.json`.
/// Returns the upload request.
pub fn write_bundle(
    bundle: &Path,
    model_dir: &Path,
    base_file: Option<&Path>,
    reg: &Registration,
    params: &VertexParams,
    aliases: &[String],
    description: &str,
) -> Result<serde_json::Value, RegistryError> {
    let io = |p: &Path| {
        let p = p.to_path_buf();
        move |e| RegistryError::Io(p, e)
    };
    let files = bundle.join("model");
    std::fs::create_dir_all(&files).map_err(io(&files))?;
    let mut local = reg.clone();
    if let Some(adapter) = &reg.adapter {
        link_tree(&model_dir.join(adapter), &files.join(adapter))
            .map_err(io(&model_dir.join(adapter)))?;
    }
    for f in [&reg.merged, &reg.gguf].into_iter().flatten() {
        let src = model_dir.join(f);
        if src.is_dir() {
            link_tree(&src, &files.join(f)).map_err(io(&src))?;
        } else {
            link_file(&src, &files.join(f)).map_err(io(&src))?;
        }
    }
    if let (Some(base), None, None) = (base_file, &reg.merged, &reg.gguf) {
        let name = base
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_else(|| "base".into());
        if base.is_dir() {
            link_tree(base, &files.join(&name)).map_err(io(base))?;
        } else {
            link_file(base, &files.join(&name)).map_err(io(base))?;
        }
        local.base_model = format!("./{name}");
    }
    local.write(&files)?;
    let dockerfile = format!(
        "# The serving image for Vertex AI: `medalign serve` on the registered files.\n\
         # Build from the bundle directory with the medalign binary copied beside this file.\n\
         FROM debian:bookworm-slim\n\
         RUN apt-get update && apt-get install -y --no-install-recommends ca-certificates && rm -rf /var/lib/apt/lists/*\n\
         COPY medalign /usr/local/bin/medalign\n\
         COPY model {CONTAINER_MODEL_DIR}\n\
         ENV AIP_HTTP_PORT={port} AIP_HEALTH_ROUTE={HEALTH_ROUTE} AIP_PREDICT_ROUTE={PREDICT_ROUTE}\n\
         EXPOSE {port}\n\
         ENTRYPOINT [\"medalign\", \"serve\", \"--model\", \"{CONTAINER_MODEL_DIR}\", \"--host\", \"0.0.0.0\"]\n",
        port = params.port
    );
    let path = bundle.join("Dockerfile");
    std::fs::write(&path, dockerfile).map_err(io(&path))?;
    let request = upload_request(reg, params, aliases, description);
    let path = bundle.join("container.json");
    std::fs::write(
        &path,
        serde_json::to_vec_pretty(&request["body"]["model"]["containerSpec"]).expect("json"),
    )
    .map_err(io(&path))?;
    let path = bundle.join(UPLOAD_REQUEST_FILE);
    std::fs::write(&path, serde_json::to_vec_pretty(&request).expect("json")).map_err(io(&path))?;
    Ok(request)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn reg() -> Registration {
        Registration {
            name: "medalign".into(),
            version: 3,
            base_model: "smollm2-135m-instruct".into(),
            base_model_hash: "ab".repeat(32),
            adapter: None,
            merged: None,
            gguf: None,
        }
    }

    fn params() -> VertexParams {
        VertexParams {
            project: "p".into(),
            region: "europe-west4".into(),
            image: "img".into(),
            artifact_uri: None,
            port: 8080,
        }
    }

    #[test]
    fn upload_request_names_the_routes_and_region() {
        let r = upload_request(&reg(), &params(), &["latest".into(), "staging".into()], "d");
        assert_eq!(r["url"], "https://europe-west4-aiplatform.googleapis.com/v1/projects/p/locations/europe-west4/models:upload");
        let spec = &r["body"]["model"]["containerSpec"];
        assert_eq!(
            (spec["healthRoute"].as_str(), spec["predictRoute"].as_str()),
            (Some("/health"), Some("/predict"))
        );
        assert_eq!(r["body"]["model"]["versionAliases"], json!(["staging"]));
        assert_eq!(r["body"]["model"]["labels"]["base-model-hash"].as_str().unwrap().len(), 63);
    }

    #[test]
    fn bundle_copies_the_base_file_and_points_at_it() {
        let dir = tempfile::tempdir().unwrap();
        let base = dir.path().join("base.gguf");
        std::fs::write(&base, b"weights").unwrap();
        let bundle = dir.path().join("bundle");
        write_bundle(&bundle, dir.path(), Some(&base), &reg(), &params(), &[], "").unwrap();
        assert_eq!(std::fs::read(bundle.join("model/base.gguf")).unwrap(), b"weights");
        assert_eq!(Registration::read(&bundle.join("model")).unwrap().base_model, "./base.gguf");
        assert!(std::fs::read_to_string(bundle.join("Dockerfile"))
            .unwrap()
            .contains("AIP_HTTP_PORT=8080"));
        assert!(bundle.join(UPLOAD_REQUEST_FILE).is_file());
    }
}
