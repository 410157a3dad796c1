//! Hub ids (`org/name`): fetched and cached with hf-hub; honours `HF_TOKEN`, `HF_ENDPOINT`, `HF_HOME`
//! and offline mode (`HF_HUB_OFFLINE=1`).

use crate::error::{Error, Result};
use hf_hub::api::sync::{ApiBuilder, ApiError};
use hf_hub::{Cache, Repo};
use std::path::PathBuf;

/// Files of a llama-family model repository, downloaded or found in the cache.
pub fn fetch(repo_id: &str) -> Result<PathBuf> {
    let offline = std::env::var("HF_HUB_OFFLINE").is_ok_and(|v| v == "1" || v.eq_ignore_ascii_case("true"));
    let files = ["config.json", "tokenizer.json"];
    if offline {
        let cache = Cache::from_env().repo(Repo::model(repo_id.to_string()));
        let mut dir = None;
        for f in files.iter().chain(["model.safetensors"].iter()) {
            let p = cache
                .get(f)
                .or_else(|| (*f == "model.safetensors").then(|| cache.get("model.safetensors.index.json")).flatten());
            match p {
                Some(p) => dir = p.parent().map(PathBuf::from),
                None => {
                    return Err(Error::input(format!(
                    "{repo_id}: `{f}` is not in the local cache and HF_HUB_OFFLINE is set; run once online or unset it"
                )))
                }
            }
        }
        return dir.ok_or_else(|| Error::input(format!("{repo_id}: not in the local cache")));
    }
    let mut builder = ApiBuilder::from_env().with_progress(std::io::IsTerminal::is_terminal(&std::io::stderr()));
    if let Ok(token) = std::env::var("HF_TOKEN") {
        builder = builder.with_token(Some(token));
    }
    let api = builder.build().map_err(|e| hub_error(repo_id, "", e))?;
    let repo = api.model(repo_id.to_string());
    let mut dir = None;
    for f in files {
        let p = repo.get(f).map_err(|e| hub_error(repo_id, f, e))?;
        dir = p.parent().map(PathBuf::from);
    }
    match repo.get("model.safetensors.index.json") {
        Ok(index) => {
            let text = std::fs::read_to_string(&index).map_err(|e| Error::io(&index, e))?;
            let v: serde_json::Value = serde_json::from_str(&text)
                .map_err(|e| Error::input(format!("{repo_id}: invalid safetensors index: {e}")))?;
            let mut shards: Vec<String> = v["weight_map"]
                .as_object()
                .map(|m| m.values().filter_map(|s| s.as_str().map(String::from)).collect())
                .unwrap_or_default();
            shards.sort();
            shards.dedup();
            for s in shards {
                repo.get(&s).map_err(|e| hub_error(repo_id, &s, e))?;
            }
        }
        Err(_) => {
            repo.get("model.safetensors").map_err(|e| hub_error(repo_id, "model.safetensors", e))?;
        }
    }
    dir.ok_or_else(|| Error::input(format!("{repo_id}: nothing downloaded")))
}

/// A readable, token-free message for a hub failure.
fn hub_error(repo: &str, file: &str, e: ApiError) -> Error {
    let text = e.to_string();
    let hint = if text.contains("401") || text.contains("403") {
        " (the model is gated or private: set HF_TOKEN to a token with access)"
    } else if text.contains("404") {
        " (no such model or file on the hub)"
    } else {
        ""
    };
    let msg = format!("{repo}: cannot fetch `{file}` from the hub: {}{hint}", redact(&text));
    Error::input(msg)
}

/// Removes the value of `HF_TOKEN` from any text that might be shown.
pub fn redact(text: &str) -> String {
    match std::env::var("HF_TOKEN") {
        Ok(t) if !t.is_empty() => text.replace(&t, "<redacted>"),
        _ => text.to_string(),
    }
}
