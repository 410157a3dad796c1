//! A hostile hub (issue 13), served on 127.0.0.1 by `common::hub_server`: shard names and
//! headers that try to leave the cache, a server that accepts and never answers, sizes that lie,
//! content that does not match its hash, and a full disk. Each case exits with its code and one
//! `error:` line, never a panic, and nothing outside `HF_HOME` changes.

mod common;

use common::hostile::{run_case, snapshot, Case};
use common::hub_server::{HubServer, Mode};
use common::tiny::write_tiny_model;

/// A tiny model served as `org/tiny`, and the folder it came from.
fn served() -> (HubServer, tempfile::TempDir) {
    let files = tempfile::tempdir().unwrap();
    write_tiny_model(files.path(), 7);
    let server = HubServer::start();
    server.add_repo("org/tiny", files.path(), None);
    (server, files)
}

/// Runs `minilab inspect --model ID` against `server` with a fresh `HF_HOME` inside a fresh
/// parent folder; checks the case and that nothing but `HF_HOME` changed in the parent.
fn check(server: &HubServer, id: &str, code: i32, wants: &[&str], mode: Mode) -> Vec<String> {
    server.set_mode(mode);
    let parent = tempfile::tempdir().unwrap();
    let (home, cwd) = (parent.path().join("home"), parent.path().join("cwd"));
    std::fs::create_dir_all(&cwd).unwrap();
    let case = Case::new(id, &["inspect", "--model", id, "--json"], code, wants)
        .env("HF_ENDPOINT", &server.url())
        .env("HF_HOME", home.to_str().unwrap())
        .env("HF_TOKEN", "hf_hostile_test_token")
        .env("MINILAB_HUB_TIMEOUT_S", "1");
    let t = std::time::Instant::now();
    let (mut problems, _) = run_case(&case, &cwd);
    if t.elapsed().as_secs() > 20 {
        problems.push(format!("took {:?}", t.elapsed()));
    }
    let outside: Vec<_> = snapshot(parent.path()).into_iter().filter(|(p, ..)| !p.starts_with(&home)).collect();
    if outside.len() != 1 {
        problems.push(format!("files outside HF_HOME: {outside:?}"));
    }
    problems
}

#[test]
fn a_hostile_hub_cannot_write_outside_the_cache_nor_hang() {
    let (server, files) = served();
    let abs = std::env::temp_dir().join(format!("minilab-hostile-{}.safetensors", std::process::id()));
    for (id, shard) in [("org/dotdot", "../../../../escape.safetensors"), ("org/abs", abs.to_str().unwrap())] {
        server.add_repo(id, files.path(), None);
        let idx = serde_json::json!({"weight_map": {"model.embed_tokens.weight": shard}});
        server.add_file(id, "model.safetensors.index.json", idx.to_string().as_bytes());
    }
    let sha = "0".repeat(64);
    let cases: Vec<(&str, &str, i32, Vec<&str>, Mode)> = vec![
        ("index shard ../", "org/dotdot", 2, vec!["leaves the model folder", "../../../../escape"], Mode::Normal),
        ("index shard absolute", "org/abs", 2, vec!["leaves the model folder"], Mode::Normal),
        ("commit ../", "org/tiny", 1, vec!["x-repo-commit", "HF_ENDPOINT"], Mode::Commit("../../../../evil".into())),
        ("etag ../", "org/tiny", 1, vec!["etag"], Mode::Etag("../../evil".into())),
        ("never answers", "org/tiny", 1, vec!["cannot reach the hub", "HF_ENDPOINT"], Mode::Silent),
        ("announces 2^50 bytes", "org/tiny", 1, vec!["announces 1125899906842624 bytes"], Mode::HugeSize),
        ("sends more than announced", "org/tiny", 1, vec!["more than the"], Mode::LongBody),
        ("stops halfway", "org/tiny", 1, vec!["cannot reach the hub"], Mode::ShortBody),
        ("content does not match its sha256", "org/tiny", 1, vec!["sha256"], Mode::Etag(sha)),
        ("id with ..", "org/..", 2, vec!["not a hub id"], Mode::Normal),
        ("id with a space", "org/a b", 2, vec!["not a hub id"], Mode::Normal),
    ];
    let mut failures = Vec::new();
    for (name, id, code, wants, mode) in cases {
        let p = check(&server, id, code, &wants, mode);
        if p.is_empty() {
            eprintln!("ok  [{name}]");
        } else {
            failures.push(format!("[{name}] {}", p.join("; ")));
        }
    }
    server.set_mode(Mode::Normal);
    assert!(!abs.exists(), "wrote {}", abs.display());
    let escaped: Vec<_> = server.requests().into_iter().filter(|r| r.path.contains("escape")).collect();
    assert!(escaped.is_empty(), "asked the hub for a traversal path: {escaped:?}");
    // The same server behaving normally serves the model (the checks above are not a broken setup).
    let home = tempfile::tempdir().unwrap();
    let ok = common::hostile::command(home.path(), &["inspect".into(), "--model".into(), "org/tiny".into()])
        .env("HF_ENDPOINT", server.url())
        .env("HF_HOME", home.path())
        .output()
        .unwrap();
    assert!(ok.status.success(), "{}", String::from_utf8_lossy(&ok.stderr));
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

#[test]
fn a_bad_hf_endpoint_is_an_input_error() {
    let (server, _files) = served();
    let parent = tempfile::tempdir().unwrap();
    let case = Case::new("file endpoint", &["inspect", "--model", "org/tiny"], 2, &["HF_ENDPOINT", "file:///etc"])
        .env("HF_ENDPOINT", "file:///etc")
        .env("HF_HOME", parent.path().join("home").to_str().unwrap());
    let (p, _) = run_case(&case, parent.path());
    assert!(p.is_empty(), "{p:?}");
    assert!(server.requests().is_empty());
}

/// A download into a full file system is refused before writing (exit 1), leaving no partial
/// blob. Needs root for a small tmpfs; skipped with a message otherwise.
#[test]
fn a_download_into_a_full_disk_is_refused() {
    let Some(mnt) = common::hostile::small_tmpfs() else { return };
    let (server, _files) = served();
    let home = mnt.path().join("home");
    std::fs::create_dir_all(home.join("hub")).unwrap();
    common::hostile::fill(mnt.path());
    let cwd = tempfile::tempdir().unwrap();
    let case = Case::new("full disk", &["inspect", "--model", "org/tiny"], 1, &[])
        .env("HF_ENDPOINT", &server.url())
        .env("HF_HOME", home.to_str().unwrap());
    let (p, out) = run_case(&case, cwd.path());
    assert!(p.is_empty(), "{p:?}");
    let temps: Vec<_> = snapshot(&home).into_iter().filter(|(p, ..)| p.to_string_lossy().contains(".tmp.")).collect();
    assert!(temps.is_empty(), "temp files left: {temps:?} {}", String::from_utf8_lossy(&out.stderr));
}
