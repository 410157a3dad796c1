//! Hub ids (`org/name`): fetched and cached with hf-hub; honours `HF_TOKEN`, `HF_ENDPOINT`, `HF_HOME`
//! and offline mode (`HF_HUB_OFFLINE=1`).
//!
//! A complete snapshot in the cache is used without touching the network (hf-hub's own `get` never
//! revalidates a cached file either), so a model downloaded once keeps loading when the hub is down.
//! Failures are classified from the HTTP status and the hub's `x-error-code` header, never by
//! searching the message text: 401/403/404 are the user's to fix (exit 2), an unreachable or failing
//! hub is an environment fault (exit 1).

use crate::error::{Error, Result};
use hf_hub::api::sync::{ApiBuilder, ApiError};
use hf_hub::{Cache, CacheRepo, Repo};
use std::path::{Path, PathBuf};

const CONFIG_FILES: [&str; 2] = ["config.json", "tokenizer.json"];
const SINGLE: &str = "model.safetensors";
const INDEX: &str = "model.safetensors.index.json";

/// Files of a llama-family model repository, found in the cache or downloaded.
pub fn fetch(repo_id: &str) -> Result<PathBuf> {
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
    download(repo_id)?;
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

/// The shard files a `model.safetensors.index.json` names, sorted and deduplicated.
fn shard_names(repo_id: &str, index: &Path) -> Result<Vec<String>> {
    let text = std::fs::read_to_string(index).map_err(|e| Error::io(index, e))?;
    let v: serde_json::Value =
        serde_json::from_str(&text).map_err(|e| Error::input(format!("{repo_id}: invalid safetensors index: {e}")))?;
    let mut shards: Vec<String> = v["weight_map"]
        .as_object()
        .map(|m| m.values().filter_map(|s| s.as_str().map(String::from)).collect())
        .unwrap_or_default();
    shards.sort();
    shards.dedup();
    if shards.is_empty() {
        return Err(Error::input(format!("{repo_id}: the safetensors index names no shard")));
    }
    Ok(shards)
}

/// Downloads whatever of the repository is not cached yet (hf-hub's `get` is cache-first).
fn download(repo_id: &str) -> Result<()> {
    let mut builder = ApiBuilder::from_env().with_progress(std::io::IsTerminal::is_terminal(&std::io::stderr()));
    if let Some(token) = env_token() {
        tracing::debug!("{repo_id}: authenticating with the token in HF_TOKEN");
        builder = builder.with_token(Some(token));
    }
    let api = builder.build().map_err(|e| hub_error(repo_id, "", e))?;
    let repo = api.model(repo_id.to_string());
    let get = |f: &str| {
        tracing::debug!("{repo_id}: fetching `{f}`");
        repo.get(f).map_err(|e| hub_error(repo_id, f, e))
    };
    for f in CONFIG_FILES {
        get(f)?;
    }
    match repo.get(INDEX) {
        Ok(index) => {
            for s in shard_names(repo_id, &index)? {
                get(&s)?;
            }
        }
        Err(e) => {
            // Not sharded (a 404), or the index failed like the weights will: their error is the one shown.
            tracing::debug!("{repo_id}: no `{INDEX}` ({}); fetching `{SINGLE}`", redact(&e.to_string()));
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

/// A readable, token-free message for a hub failure: exit 2 for what the user can fix (access, ids),
/// exit 1 for an unreachable or failing hub.
fn hub_error(repo: &str, file: &str, e: ApiError) -> Error {
    let text = redact(&e.to_string());
    let what = if file.is_empty() { String::new() } else { format!(" `{file}`") };
    match e {
        ApiError::TooManyRetries(inner) => hub_error(repo, file, *inner),
        ApiError::RequestError(err) => match (*err).into_response() {
            Some(resp) => {
                let code = resp.header("x-error-code").unwrap_or_default().to_string();
                status_error(repo, &what, resp.status(), &code, &text)
            }
            None => Error::Runtime(format!(
                "{repo}: cannot reach the hub to fetch{what} ({text}); check the network and HF_ENDPOINT, or set \
                 HF_HUB_OFFLINE=1 to use only the local cache"
            )),
        },
        ApiError::MissingHeader(_) | ApiError::InvalidHeader(_) | ApiError::ParseIntError(_) => Error::Runtime(
            format!("{repo}: the server's answer for{what} is not a Hugging Face hub's ({text}); check HF_ENDPOINT"),
        ),
        _ => Error::Runtime(format!("{repo}: cannot fetch{what} from the hub: {text}")),
    }
}

/// The error for an HTTP status ≥ 400 with the hub's `x-error-code` (may be empty).
fn status_error(repo: &str, what: &str, status: u16, code: &str, text: &str) -> Error {
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
    // `Cache::from_env` panics when neither HF_HOME nor a home folder is known: only ask when one is.
    let known = std::env::var_os("HF_HOME").is_some() || std::env::var_os("HOME").is_some_and(|h| !h.is_empty());
    known.then(|| Cache::from_env().token()).flatten()
}
