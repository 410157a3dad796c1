//! Hub ids (`org/name`): fetched and cached with hf-hub; honours `HF_TOKEN`, `HF_ENDPOINT`, `HF_HOME`
//! and offline mode (`HF_HUB_OFFLINE=1`).
//!
//! A complete snapshot in the cache is used without touching the network (hf-hub's own `get` never
//! revalidates a cached file either), so a model downloaded once keeps loading when the hub is down.
//! Failures are classified from the HTTP status and the hub's `x-error-code` header, never by
//! searching the message text: 401/403/404 are the user's to fix (exit 2), an unreachable or failing
//! hub is an environment fault (exit 1).

use crate::error::{Error, Result};
use hf_hub::{Cache, CacheRepo, Repo};
use std::path::{Path, PathBuf};

const CONFIG_FILES: [&str; 2] = ["config.json", "tokenizer.json"];
const SINGLE: &str = "model.safetensors";
const INDEX: &str = "model.safetensors.index.json";

/// Files of a llama-family model repository, found in the cache or downloaded.
pub fn fetch(repo_id: &str) -> Result<PathBuf> {
    check_repo_id(repo_id)?;
    if !cache_known() {
        return Err(Error::input(format!("{repo_id}: no folder for the hub cache: set HF_HOME (or HOME)")));
    }
    let cache = Cache::from_env();
    let cached = cache.repo(Repo::model(repo_id.to_string()));
    match cached_snapshot(repo_id, &cached)? {
        Snapshot::Complete(dir) => {
            tracing::debug!("{repo_id}: using the cached snapshot {}", dir.display());
            return Ok(dir);
        }
        Snapshot::Missing(f) if offline() => {
            return Err(Error::input(format!(
                "{repo_id}: `{f}` is not in the local cache ({}) and HF_HUB_OFFLINE is set; unset HF_HUB_OFFLINE \
                 and run once online to download it",
                cache.path().display()
            )))
        }
        Snapshot::Missing(f) => tracing::debug!("{repo_id}: `{f}` is not cached; downloading"),
    }
    download(repo_id, &cache)?;
    // Re-read the snapshot so that every file comes from the one commit `refs/main` names.
    match cached_snapshot(repo_id, &cached)? {
        Snapshot::Complete(dir) => Ok(dir),
        Snapshot::Missing(f) => Err(Error::Runtime(format!(
            "{repo_id}: `{f}` is missing from the cache after the download (did the repository change meanwhile?); \
             run again"
        ))),
    }
}

/// What the cache holds of a repository at the revision `refs/main` points to.
enum Snapshot {
    /// Every file the loader needs, in this folder.
    Complete(PathBuf),
    /// The first file that is not cached.
    Missing(String),
}

/// Checks config, tokenizer and weights (the index and all its shards, or one safetensors file).
fn cached_snapshot(repo_id: &str, cache: &CacheRepo) -> Result<Snapshot> {
    let mut dir = None;
    for f in CONFIG_FILES {
        let Some(p) = cache.get(f) else { return Ok(Snapshot::Missing(f.to_string())) };
        dir = p.parent().map(PathBuf::from);
    }
    let weights = match cache.get(INDEX) {
        Some(index) => shard_names(repo_id, &index)?,
        None => vec![SINGLE.to_string()],
    };
    for w in weights {
        if cache.get(&w).is_none() {
            return Ok(Snapshot::Missing(w));
        }
    }
    Ok(dir.map_or_else(|| Snapshot::Missing(CONFIG_FILES[0].to_string()), Snapshot::Complete))
}

/// The shard files a `model.safetensors.index.json` names, sorted and deduplicated; a name that
/// would leave the snapshot folder (`../x`, `/etc/x`) is refused.
fn shard_names(repo_id: &str, index: &Path) -> Result<Vec<String>> {
    let text = crate::error::read_text_capped(index, crate::error::JSON_FILE_CAP)?;
    super::safetensors::shard_names(&text).map_err(|m| Error::input(format!("{repo_id}: safetensors index: {m}")))
}

/// `org/name` with the characters the hub allows, so that the id is safe in URLs and in the
/// cache's folder name.
fn check_repo_id(id: &str) -> Result<()> {
    let part_ok = |p: &str| {
        !p.is_empty()
            && p.len() <= 96
            && p != "."
            && p != ".."
            && p.bytes().all(|b| b.is_ascii_alphanumeric() || b"._-".contains(&b))
    };
    match id.split_once('/') {
        Some((org, name)) if part_ok(org) && part_ok(name) => Ok(()),
        _ => Err(Error::input(format!("`{id}` is not a hub id (org/name of letters, digits, `.`, `_`, `-`)"))),
    }
}

/// Downloads whatever of the repository is not cached yet.
fn download(repo_id: &str, cache: &Cache) -> Result<()> {
    let token = env_token().or_else(file_token);
    if token.is_some() {
        tracing::debug!("{repo_id}: authenticating with the token in HF_TOKEN");
    }
    let endpoint = std::env::var("HF_ENDPOINT").unwrap_or_else(|_| "https://huggingface.co".into());
    let repo = Repo::model(repo_id.to_string());
    let client = super::hub_download::Client::new(repo_id, &endpoint, token, cache.path().join(repo.folder_name()))?;
    let cached = cache.repo(repo);
    let get = |f: &str| match cached.get(f) {
        Some(p) => Ok(p),
        None => client.download(f).and_then(|()| {
            cached
                .get(f)
                .ok_or_else(|| Error::Runtime(format!("{repo_id}: `{f}` is not in the cache after its download")))
        }),
    };
    for f in CONFIG_FILES {
        get(f)?;
    }
    match get(INDEX) {
        Ok(index) => {
            for s in shard_names(repo_id, &index)? {
                get(&s)?;
            }
        }
        Err(e) => {
            // Not sharded (a 404), or the index failed like the weights will: their error is the one shown.
            tracing::debug!("{repo_id}: no `{INDEX}` ({e}); fetching `{SINGLE}`");
            get(SINGLE)?;
        }
    }
    Ok(())
}

/// Whether `HF_HUB_OFFLINE` is set to a true value (as huggingface_hub reads it).
fn offline() -> bool {
    std::env::var("HF_HUB_OFFLINE")
        .is_ok_and(|v| matches!(v.trim().to_ascii_lowercase().as_str(), "1" | "true" | "yes" | "on"))
}

/// The token in `HF_TOKEN`, if set and not blank.
fn env_token() -> Option<String> {
    std::env::var("HF_TOKEN").ok().map(|t| t.trim().to_string()).filter(|t| !t.is_empty())
}

/// The error for an HTTP status ≥ 400 with the hub's `x-error-code` (may be empty).
pub(super) fn status_error(repo: &str, what: &str, status: u16, code: &str, text: &str) -> Error {
    let has_token = env_token().is_some();
    match status {
        401 | 403 if code == "RepositoryNotFound" => Error::input(format!(
            "{repo}: no such model or file on the hub, or it is private (HTTP {status} for{what}): check the id, or \
             set HF_TOKEN to a token with access ({text})"
        )),
        401 | 403 if has_token => Error::input(format!(
            "{repo}: access denied (HTTP {status} for{what}): the token in HF_TOKEN has no access to this gated or \
             private model; request access on the model's page or set HF_TOKEN to another token ({text})"
        )),
        401 | 403 => Error::input(format!(
            "{repo}: access denied (HTTP {status} for{what}): the model is gated or private; set HF_TOKEN to a token \
             with access, after accepting the model's terms on its page ({text})"
        )),
        404 => {
            let detail = match code {
                "RepositoryNotFound" => "the repository does not exist",
                "RevisionNotFound" => "the revision does not exist",
                "EntryNotFound" => "the repository has no such file",
                _ => "check the model id",
            };
            Error::input(format!("{repo}: no such model or file on the hub (HTTP 404 for{what}): {detail} ({text})"))
        }
        429 => Error::Runtime(format!(
            "{repo}: the hub is rate-limiting requests (HTTP 429 for{what}); wait and retry, or set HF_TOKEN ({text})"
        )),
        _ => Error::Runtime(format!(
            "{repo}: the hub failed to serve{what} (HTTP {status}); try again later, or set HF_HUB_OFFLINE=1 to use \
             only the local cache ({text})"
        )),
    }
}

/// Removes the token (from `HF_TOKEN`, or the `$HF_HOME/token` file hf-hub falls back to) from any
/// text that might be shown.
pub fn redact(text: &str) -> String {
    let mut out = text.to_string();
    for t in [env_token(), file_token()].into_iter().flatten() {
        out = out.replace(&t, "<redacted>");
    }
    out
}

/// The token hf-hub reads from `$HF_HOME/token` (or `~/.cache/huggingface/token`).
fn file_token() -> Option<String> {
    cache_known().then(|| Cache::from_env().token()).flatten().map(|t| t.trim().to_string()).filter(|t| !t.is_empty())
}

/// `Cache::from_env` panics when neither HF_HOME nor a home folder is known: only ask when one is.
fn cache_known() -> bool {
    std::env::var_os("HF_HOME").is_some_and(|h| !h.is_empty())
        || std::env::var_os("HOME").is_some_and(|h| !h.is_empty())
}
