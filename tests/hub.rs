//! The hub path (`--model org/name`) against a local stand-in for the Hugging Face hub
//! (`common::hub_server`, 127.0.0.1 only) that hf-hub reaches through `HF_ENDPOINT`: download,
//! cache reuse (hub failing, hub gone, offline), offline without a cache, a gated model, a missing
//! model or file. Every run has `HF_TOKEN` set (unless a case removes it) and `-vv`, and every run
//! checks that the token never appears in stdout or stderr and that nothing panicked.
//!
//! Environment variables are set on the child `minilab` only (tests run in parallel), and each run
//! starts in an empty folder so that `org/name` is never a local path.

mod common;

use assert_cmd::Command;
use common::hub_server::HubServer;
use common::tiny::{write_text, write_tiny_model};
use std::path::{Path, PathBuf};
use tempfile::TempDir;

const TOKEN: &str = "hf_secret_test_token_123";

/// A served tiny model (public `org/tiny`, gated `org/gated`, `org/noweights` without weights),
/// its local copy, a text, an `HF_HOME` and an empty working folder.
struct Fixture {
    server: HubServer,
    home: TempDir,
    cwd: TempDir,
    files: TempDir,
}

impl Fixture {
    fn new() -> Self {
        let files = TempDir::new().unwrap();
        let model = files.path().join("tiny");
        std::fs::create_dir(&model).unwrap();
        write_tiny_model(&model, 7);
        write_text(&files.path().join("text.txt"), 1);
        let partial = files.path().join("noweights");
        std::fs::create_dir(&partial).unwrap();
        for f in ["config.json", "tokenizer.json"] {
            std::fs::copy(model.join(f), partial.join(f)).unwrap();
        }
        let server = HubServer::start();
        server.add_repo("org/tiny", &model, None);
        server.add_repo("org/gated", &model, Some(TOKEN));
        server.add_repo("org/noweights", &partial, None);
        Self { server, home: TempDir::new().unwrap(), cwd: TempDir::new().unwrap(), files }
    }

    fn local_model(&self) -> PathBuf {
        self.files.path().join("tiny")
    }

    /// `minilab [-vv] ARGS` in the empty folder, on the server, with HF_TOKEN and this `HF_HOME`;
    /// the caller's own hub, proxy and log settings removed (ureq ignores NO_PROXY, so a proxy
    /// variable would send 127.0.0.1 through the proxy).
    fn minilab(&self, verbose: bool, args: &[&str]) -> Command {
        let mut cmd = Command::cargo_bin("minilab").unwrap();
        cmd.current_dir(self.cwd.path());
        if verbose {
            cmd.arg("-vv");
        }
        cmd.args(args);
        for v in [
            "HF_HUB_OFFLINE",
            "RUST_LOG",
            "ALL_PROXY",
            "all_proxy",
            "HTTPS_PROXY",
            "https_proxy",
            "HTTP_PROXY",
            "http_proxy",
        ] {
            cmd.env_remove(v);
        }
        cmd.env("HF_ENDPOINT", self.server.url())
            .env("HF_HOME", self.home.path())
            .env("HF_TOKEN", TOKEN)
            .env("NO_COLOR", "1")
            .env("RUST_BACKTRACE", "1");
        cmd
    }

    fn eval(&self, model: &str) -> Command {
        let text = self.files.path().join("text.txt");
        let args = ["eval", "--model", model, "--text", s(&text), "--ctx", "64", "--max-tokens", "128", "--json"];
        self.minilab(true, &args)
    }

    fn inspect(&self, verbose: bool, model: &str) -> Command {
        self.minilab(verbose, &["inspect", "--model", model, "--json"])
    }

    /// The cached snapshot folder of `org/tiny`.
    fn snapshot(&self, home: &Path) -> PathBuf {
        let repo = home.join("hub/models--org--tiny");
        let commit = std::fs::read_to_string(repo.join("refs/main")).unwrap();
        repo.join("snapshots").join(commit.trim())
    }
}

fn s(p: &Path) -> &str {
    p.to_str().unwrap()
}

struct Out {
    code: i32,
    stdout: String,
    stderr: String,
}

/// Runs; every run: no panic, and the token appears in neither stdout nor stderr.
fn run(cmd: &mut Command) -> Out {
    let o = cmd.output().unwrap();
    let out = Out {
        code: o.status.code().unwrap_or(-1),
        stdout: String::from_utf8_lossy(&o.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&o.stderr).into_owned(),
    };
    assert!(
        !out.stdout.contains(TOKEN) && !out.stderr.contains(TOKEN),
        "the token leaked:\n{}\n{}",
        out.stdout,
        out.stderr
    );
    assert!(!out.stderr.contains("panicked") && !out.stderr.contains("stack backtrace"), "{}", out.stderr);
    out
}

/// A success: exit 0; returns stdout parsed as JSON.
fn succeeds(cmd: &mut Command) -> serde_json::Value {
    let out = run(cmd);
    assert_eq!(out.code, 0, "{}", out.stderr);
    serde_json::from_str(&out.stdout).unwrap_or_else(|e| panic!("{e}: {}", out.stdout))
}

/// A `tracing` log line (`-vv`, NO_COLOR): `<timestamp> <LEVEL> ...`.
fn is_log_line(l: &str) -> bool {
    l.split_whitespace().nth(1).is_some_and(|w| ["TRACE", "DEBUG", "INFO", "WARN", "ERROR"].contains(&w))
}

/// A failure, run with `-vv` (logs allowed around the error) and without (nothing but the error):
/// exit `code` and a one-line `error:` message both times; returns it.
fn fails(code: i32, make: impl Fn(bool) -> Command) -> String {
    let mut line = String::new();
    for verbose in [true, false] {
        let out = run(&mut make(verbose));
        assert_eq!(out.code, code, "-vv {verbose}: {}", out.stderr);
        let lines: Vec<&str> = out.stderr.lines().filter(|l| !(verbose && is_log_line(l))).collect();
        assert_eq!(lines.len(), 1, "-vv {verbose}: not one line: {}", out.stderr);
        assert!(lines[0].starts_with("error: "), "{}", out.stderr);
        assert!(out.stdout.is_empty(), "{}", out.stdout);
        line = lines[0].to_string();
    }
    line
}

fn resolve_requests(server: &HubServer, repo: &str) -> Vec<common::hub_server::Request> {
    server.requests().into_iter().filter(|r| r.path.starts_with(&format!("/{repo}/resolve/"))).collect()
}

/// 1. The download loads exactly like the same folder on disk, and fills the cache.
#[test]
fn download_equals_the_local_folder() {
    let fx = Fixture::new();
    let hub = succeeds(&mut fx.inspect(true, "org/tiny"));
    let local = succeeds(&mut fx.inspect(true, s(&fx.local_model())));
    assert_eq!(hub, local);

    let hub = succeeds(&mut fx.eval("org/tiny"));
    let local = succeeds(&mut fx.eval(s(&fx.local_model())));
    for k in ["ppl", "ppl_stderr", "tokens", "weight_bytes"] {
        assert_eq!(hub[k], local[k], "{k}");
    }
    assert!(hub["ppl"].as_f64().unwrap() > 1.0);

    let snap = fx.snapshot(fx.home.path());
    for f in ["config.json", "tokenizer.json", "model.safetensors"] {
        assert_eq!(std::fs::read(snap.join(f)).unwrap(), std::fs::read(fx.local_model().join(f)).unwrap(), "{f}");
    }
    // hf-hub's way: a `bytes=0-0` metadata request per file, the weights through the CDN redirect.
    let reqs = resolve_requests(&fx.server, "org/tiny");
    for f in ["config.json", "tokenizer.json", "model.safetensors"] {
        assert!(reqs.iter().any(|r| r.path.ends_with(f) && r.header("range") == Some("bytes=0-0")), "{f}");
    }
    assert!(fx.server.requests().iter().any(|r| r.path.starts_with("/cdn/")));
}

/// 2. A cached model needs no hub: not while it fails (500), not when it is gone, not offline. Without
///    a cache the same failures are a clear environment error (exit 1).
#[test]
fn cache_is_used_when_the_hub_fails_or_is_gone() {
    let mut fx = Fixture::new();
    let first = succeeds(&mut fx.eval("org/tiny"));
    let seen = fx.server.requests().len();

    fx.server.set_failing(true);
    assert_eq!(succeeds(&mut fx.eval("org/tiny"))["ppl"], first["ppl"]);
    assert_eq!(fx.server.requests().len(), seen, "a complete cache needs no request");
    let empty = TempDir::new().unwrap();
    let msg = fails(1, |v| {
        let mut c = fx.inspect(v, "org/tiny");
        c.env("HF_HOME", empty.path());
        c
    });
    assert!(msg.contains("HTTP 500") && msg.contains("HF_HUB_OFFLINE"), "{msg}");

    fx.server.stop();
    assert_eq!(succeeds(&mut fx.eval("org/tiny"))["ppl"], first["ppl"]);
    assert_eq!(succeeds(fx.eval("org/tiny").env("HF_HUB_OFFLINE", "1"))["ppl"], first["ppl"]);
    let msg = fails(1, |v| {
        let mut c = fx.inspect(v, "org/tiny");
        c.env("HF_HOME", empty.path());
        c
    });
    assert!(msg.contains("cannot reach the hub") && msg.contains("HF_ENDPOINT"), "{msg}");
}

/// 3. Offline without a cache (or with part of one): exit 2, names the missing file, no request.
#[test]
fn offline_without_a_cache_exits_2() {
    let fx = Fixture::new();
    let msg = fails(2, |v| {
        let mut c = fx.inspect(v, "org/tiny");
        c.env("HF_HUB_OFFLINE", "1");
        c
    });
    assert!(msg.contains("`config.json` is not in the local cache") && msg.contains("HF_HUB_OFFLINE"), "{msg}");
    assert!(fx.server.requests().is_empty());

    // A partial cache: the weights are gone.
    succeeds(&mut fx.inspect(true, "org/tiny"));
    std::fs::remove_file(fx.snapshot(fx.home.path()).join("model.safetensors")).unwrap();
    let msg = fails(2, |v| {
        let mut c = fx.inspect(v, "org/tiny");
        c.env("HF_HUB_OFFLINE", "true");
        c
    });
    assert!(msg.contains("`model.safetensors` is not in the local cache"), "{msg}");
}

/// 4. A gated model: without a token 401 → set HF_TOKEN; a wrong token 403 → HF_TOKEN has no access;
///    the right token downloads it.
#[test]
fn gated_model_asks_for_hf_token() {
    let fx = Fixture::new();
    let msg = fails(2, |v| {
        let mut c = fx.inspect(v, "org/gated");
        c.env_remove("HF_TOKEN");
        c
    });
    assert!(msg.contains("HTTP 401") && msg.contains("set HF_TOKEN"), "{msg}");
    assert!(resolve_requests(&fx.server, "org/gated").iter().all(|r| r.header("authorization").is_none()));

    let wrong = "hf_wrong_token_456";
    let msg = fails(2, |v| {
        let mut c = fx.inspect(v, "org/gated");
        c.env("HF_TOKEN", wrong);
        c
    });
    assert!(msg.contains("HTTP 403") && msg.contains("HF_TOKEN") && !msg.contains(wrong), "{msg}");

    succeeds(&mut fx.inspect(true, "org/gated"));
}

/// 5. A model or file the hub does not have: exit 2, "no such model or file".
#[test]
fn missing_model_or_file_exits_2() {
    let fx = Fixture::new();
    let msg = fails(2, |v| fx.inspect(v, "org/missing"));
    assert!(msg.contains("no such model or file") && msg.contains("org/missing"), "{msg}");
    let msg = fails(2, |v| fx.inspect(v, "org/noweights"));
    assert!(msg.contains("no such model or file") && msg.contains("`model.safetensors`"), "{msg}");
}

/// 6. The token is sent (as `Authorization: Bearer`) but never shown, even with every library's logs
///    on (`RUST_LOG=trace`: hf-hub and ureq log through `log`, bridged into tracing).
#[test]
fn token_is_sent_but_never_shown() {
    let fx = Fixture::new();
    succeeds(fx.inspect(true, "org/gated").env("RUST_LOG", "trace"));
    let reqs = resolve_requests(&fx.server, "org/gated");
    assert!(!reqs.is_empty());
    let bearer = format!("Bearer {TOKEN}");
    assert!(reqs.iter().all(|r| r.header("authorization") == Some(bearer.as_str())), "{reqs:?}");
    // An error that quotes the server's answer still hides it.
    let out = run(fx.inspect(true, "org/missing").env("RUST_LOG", "trace"));
    assert_eq!(out.code, 2, "{}", out.stderr);
}
