//! Downloads from a Hugging Face hub into hf-hub's cache layout (`blobs/ETAG`,
//! `snapshots/COMMIT/FILE` → the blob, `refs/main`), with ureq directly so that a hostile or broken
//! server cannot harm the machine:
//!
//! - every connection has connect, read and write timeouts (`MINILAB_HUB_TIMEOUT_S`, default 30 s):
//!   a server that accepts and never answers is "cannot reach the hub", not a hang;
//! - file names (from the safetensors index), the commit (`x-repo-commit`) and the etag, all of
//!   which become paths, must be plain names: nothing is written outside the cache;
//! - the announced size is checked against the free space before writing, and a body longer or
//!   shorter than announced is an error (a blob whose etag is a sha256 is also checked against it);
//! - data goes to an exclusively created temp file with an unpredictable name, renamed when whole;
//! - the token is sent to the endpoint's host only, never to the CDN a download is redirected to.
//!
//! The requests are hf-hub's: a `Range: bytes=0-0` metadata request per file (relative redirects
//! followed, an absolute one is the CDN), then the body.

use super::hub::{redact, status_error};
use crate::error::{Error, Result};
use sha2::Digest;
use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::time::Duration;

/// Config, tokenizer and index files are small; weights may be large but not absurd.
const SMALL_CAP: u64 = crate::error::JSON_FILE_CAP;
const FILE_CAP: u64 = 1 << 40;
const MAX_REDIRECTS: usize = 5;

/// What the metadata request says about one file.
struct Meta {
    commit: String,
    etag: String,
    size: u64,
    body_url: String,
}

/// A client for one repository of one hub.
pub struct Client {
    agent: ureq::Agent,
    endpoint: url::Url,
    token: Option<String>,
    repo_id: String,
    /// `HF_HOME/hub/models--org--name`.
    repo_dir: PathBuf,
}

/// The connect/read/write timeout: `MINILAB_HUB_TIMEOUT_S` seconds (tests use 1), default 30.
fn timeout() -> Duration {
    let secs = std::env::var("MINILAB_HUB_TIMEOUT_S").ok().and_then(|v| v.trim().parse::<f64>().ok());
    Duration::from_secs_f64(secs.filter(|s| s.is_finite() && *s > 0.0).unwrap_or(30.0).min(3600.0))
}

impl Client {
    /// A client for `repo_id` on `endpoint` (HF_ENDPOINT), caching under `repo_dir`.
    pub fn new(repo_id: &str, endpoint: &str, token: Option<String>, repo_dir: PathBuf) -> Result<Self> {
        let endpoint = url::Url::parse(endpoint.trim_end_matches('/'))
            .ok()
            .filter(|u| matches!(u.scheme(), "http" | "https") && u.host_str().is_some())
            .ok_or_else(|| Error::input(format!("HF_ENDPOINT `{endpoint}` is not an http(s) URL")))?;
        let t = timeout();
        let agent = ureq::AgentBuilder::new()
            .try_proxy_from_env(true)
            .timeout_connect(t)
            .timeout_read(t)
            .timeout_write(t)
            .redirects(0)
            .user_agent(concat!("minilab/", env!("CARGO_PKG_VERSION")))
            .build();
        Ok(Self { agent, endpoint, token, repo_id: repo_id.to_string(), repo_dir })
    }

    /// Downloads `file` into the cache (the caller checked it is not cached yet).
    pub fn download(&self, file: &str) -> Result<()> {
        let url_safe = file.bytes().all(|b| b.is_ascii_alphanumeric() || b"._-/".contains(&b));
        if !super::safetensors::safe_relative(file) || !url_safe {
            return Err(Error::Runtime(format!("{}: refusing to fetch `{file}`: not a plain file name", self.repo_id)));
        }
        tracing::debug!("{}: fetching `{file}`", self.repo_id);
        let meta = self.metadata(file)?;
        let cap = if file.ends_with(".safetensors") { FILE_CAP } else { SMALL_CAP };
        if meta.size > cap {
            return Err(
                self.bad_answer(file, &format!("it announces {} bytes, more than the {cap} allowed", meta.size))
            );
        }
        let blobs = self.repo_dir.join("blobs");
        std::fs::create_dir_all(&blobs).map_err(|e| Error::io(&blobs, e))?;
        check_free_space(&blobs, meta.size)?;
        let blob = blobs.join(&meta.etag);
        if !blob.is_file() {
            self.fetch_body(file, &meta, &blobs)?;
        }
        self.link(file, &meta)
    }

    /// The `bytes=0-0` request: commit, etag, size and where the body is.
    fn metadata(&self, file: &str) -> Result<Meta> {
        let path = format!("{}/{}/resolve/main/{file}", self.endpoint.path().trim_end_matches('/'), self.repo_id);
        let mut url = self.endpoint.join(&path).map_err(|e| self.bad_answer(file, &e.to_string()))?;
        for _ in 0..MAX_REDIRECTS {
            let resp = self.get(&url, true).map_err(|e| self.request_error(file, e))?;
            match self.location(&resp, &url, file)? {
                // Relative redirects stay on the hub (renamed repositories): follow them, as hf-hub.
                Some((next, true)) => url = next,
                Some((cdn, false)) => return self.meta_from(file, &resp, Some(cdn), url),
                None => return self.meta_from(file, &resp, None, url),
            }
        }
        Err(self.bad_answer(file, "too many redirects"))
    }

    fn meta_from(&self, file: &str, resp: &ureq::Response, cdn: Option<url::Url>, url: url::Url) -> Result<Meta> {
        let etag = resp.header("x-linked-etag").or(resp.header("etag")).unwrap_or_default();
        let etag = etag.trim().trim_start_matches("W/").replace('"', "");
        let commit = resp.header("x-repo-commit").unwrap_or_default().trim().to_string();
        // Both become path components in the cache: plain ASCII names only.
        let plain = |s: &str, max: usize, extra: &[u8]| {
            !s.is_empty() && s.len() <= max && s.bytes().all(|b| b.is_ascii_alphanumeric() || extra.contains(&b))
        };
        if !plain(&commit, 64, b"") {
            return Err(self.bad_answer(file, &format!("missing or malformed x-repo-commit `{commit}`")));
        }
        if !plain(&etag, 128, b"-_") {
            return Err(self.bad_answer(file, &format!("missing or malformed etag `{etag}`")));
        }
        let (size, body_url) = match cdn {
            None => (content_size(resp), url),
            Some(cdn) => self.cdn_size(file, cdn)?,
        };
        let size = size.ok_or_else(|| self.bad_answer(file, "no Content-Range with the file size"))?;
        Ok(Meta { commit, etag, size, body_url: body_url.to_string() })
    }

    /// The size the CDN announces for a redirected file, following its own redirects.
    fn cdn_size(&self, file: &str, mut cdn: url::Url) -> Result<(Option<u64>, url::Url)> {
        for _ in 0..MAX_REDIRECTS {
            let r = self.get(&cdn, true).map_err(|e| self.request_error(file, e))?;
            match self.location(&r, &cdn, file)? {
                Some((next, _)) => cdn = next,
                None => return Ok((content_size(&r), cdn)),
            }
        }
        Err(self.bad_answer(file, "too many redirects"))
    }

    /// The redirect target of a 3xx answer resolved against `base`, and whether the Location was
    /// relative (no scheme and host of its own).
    fn location(&self, resp: &ureq::Response, base: &url::Url, file: &str) -> Result<Option<(url::Url, bool)>> {
        if !(300..400).contains(&resp.status()) {
            return Ok(None);
        }
        let loc = resp.header("location").ok_or_else(|| self.bad_answer(file, "a redirect without Location"))?;
        let relative = url::Url::parse(loc).is_err() && !loc.starts_with("//");
        let next = base.join(loc).map_err(|e| self.bad_answer(file, &format!("bad Location `{loc}`: {e}")))?;
        if !matches!(next.scheme(), "http" | "https") {
            return Err(self.bad_answer(file, &format!("a redirect to `{loc}`")));
        }
        Ok(Some((next, relative)))
    }

    /// A GET (the token only for the endpoint's own host; `range0`: just the first byte).
    fn get(&self, url: &url::Url, range0: bool) -> std::result::Result<ureq::Response, Box<ureq::Error>> {
        let mut req = self.agent.request_url("GET", url);
        if range0 {
            req = req.set("Range", "bytes=0-0");
        }
        let same_host = url.host_str() == self.endpoint.host_str() && url.port() == self.endpoint.port();
        if let Some(t) = self.token.as_ref().filter(|_| same_host) {
            req = req.set("Authorization", &format!("Bearer {t}"));
        }
        req.call().map_err(Box::new)
    }

    /// Streams the body into a temp file in `blobs`, exactly `meta.size` bytes, then renames it.
    fn fetch_body(&self, file: &str, meta: &Meta, blobs: &Path) -> Result<()> {
        let url = url::Url::parse(&meta.body_url).map_err(|e| self.bad_answer(file, &e.to_string()))?;
        let resp = self.get(&url, false).map_err(|e| self.request_error(file, e))?;
        if resp.status() != 200 {
            return Err(self.bad_answer(file, &format!("HTTP {} for the file's content", resp.status())));
        }
        let (mut out, tmp) = crate::report::create_temp(blobs, &meta.etag).map_err(|e| Error::io(blobs, e))?;
        let result = self.copy_body(file, meta, resp.into_reader(), &mut out).and_then(|()| {
            drop(out);
            std::fs::rename(&tmp, blobs.join(&meta.etag)).map_err(|e| Error::io(blobs, e))
        });
        if result.is_err() {
            let _ = std::fs::remove_file(&tmp);
        }
        result
    }

    fn copy_body(&self, file: &str, meta: &Meta, body: impl Read, out: &mut std::fs::File) -> Result<()> {
        let pb = crate::progress::bar(meta.size, file);
        let mut sha = sha2::Sha256::new();
        let mut reader = body.take(meta.size.saturating_add(1));
        let mut buf = vec![0u8; 1 << 16];
        let mut got = 0u64;
        loop {
            let n = match reader.read(&mut buf) {
                Ok(0) => break,
                Ok(n) => n,
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
                Err(e) => return Err(self.unreachable(file, &e.to_string())),
            };
            got += n as u64;
            if got > meta.size {
                return Err(self.bad_answer(file, &format!("it sent more than the {} bytes it announced", meta.size)));
            }
            sha.update(&buf[..n]);
            out.write_all(&buf[..n]).map_err(|e| Error::io(&self.repo_dir, e))?;
            pb.inc(n as u64);
        }
        pb.finish_and_clear();
        if got < meta.size {
            return Err(self.unreachable(file, &format!("the download stopped at {got} of {} bytes", meta.size)));
        }
        // LFS etags are the content's sha256: check it when the etag has that form.
        let is_sha = meta.etag.len() == 64 && meta.etag.bytes().all(|b| b.is_ascii_hexdigit());
        let digest: String = sha.finalize().iter().map(|b| format!("{b:02x}")).collect();
        if is_sha && !digest.eq_ignore_ascii_case(&meta.etag) {
            return Err(self.bad_answer(file, "its content does not match its sha256 etag"));
        }
        out.sync_all().map_err(|e| Error::io(&self.repo_dir, e))
    }

    /// `snapshots/COMMIT/FILE` → `blobs/ETAG` and `refs/main` = COMMIT, as hf-hub lays them out.
    fn link(&self, file: &str, meta: &Meta) -> Result<()> {
        let pointer = self.repo_dir.join("snapshots").join(&meta.commit).join(file);
        if let Some(dir) = pointer.parent() {
            std::fs::create_dir_all(dir).map_err(|e| Error::io(dir, e))?;
        }
        let _ = std::fs::remove_file(&pointer);
        let blob = self.repo_dir.join("blobs").join(&meta.etag);
        #[cfg(unix)]
        {
            let ups = "../".repeat(2 + file.matches('/').count());
            let target = format!("{ups}blobs/{}", meta.etag);
            std::os::unix::fs::symlink(target, &pointer).map_err(|e| Error::io(&pointer, e))?;
        }
        #[cfg(not(unix))]
        std::fs::copy(&blob, &pointer).map_err(|e| Error::io(&pointer, e))?;
        debug_assert!(blob.is_file());
        let refs = self.repo_dir.join("refs");
        std::fs::create_dir_all(&refs).map_err(|e| Error::io(&refs, e))?;
        crate::report::write_atomic(&refs.join("main"), meta.commit.as_bytes()).map_err(|e| Error::io(&refs, e))
    }

    /// A failed request: HTTP status errors as the hub's, transport errors as unreachable.
    fn request_error(&self, file: &str, e: Box<ureq::Error>) -> Error {
        let text = redact(&e.to_string());
        match *e {
            ureq::Error::Status(status, resp) => {
                let code = resp.header("x-error-code").unwrap_or_default().to_string();
                status_error(&self.repo_id, &format!(" `{file}`"), status, &code, &text)
            }
            ureq::Error::Transport(_) => self.unreachable(file, &text),
        }
    }

    fn unreachable(&self, file: &str, why: &str) -> Error {
        Error::Runtime(format!(
            "{}: cannot reach the hub to fetch `{file}` ({}); check the network and HF_ENDPOINT, or set \
             HF_HUB_OFFLINE=1 to use only the local cache",
            self.repo_id,
            redact(why)
        ))
    }

    fn bad_answer(&self, file: &str, why: &str) -> Error {
        Error::Runtime(format!(
            "{}: the server's answer for `{file}` is not a Hugging Face hub's ({}); check HF_ENDPOINT",
            self.repo_id,
            redact(why)
        ))
    }
}

/// The total size from `Content-Range: bytes 0-0/N`, or `Content-Length` of a whole answer.
fn content_size(resp: &ureq::Response) -> Option<u64> {
    match resp.header("content-range") {
        Some(r) => r.rsplit('/').next()?.trim().parse().ok(),
        None if resp.status() == 200 => resp.header("content-length")?.trim().parse().ok(),
        None => None,
    }
}

/// Refuses a download that cannot fit in the free space of `dir`'s file system.
fn check_free_space(dir: &Path, need: u64) -> Result<()> {
    #[cfg(unix)]
    {
        use std::os::unix::ffi::OsStrExt;
        let Ok(c) = std::ffi::CString::new(dir.as_os_str().as_bytes()) else { return Ok(()) };
        // SAFETY: statvfs writes into the zeroed struct we own; the path is NUL-terminated.
        let mut st: libc::statvfs = unsafe { std::mem::zeroed() };
        if unsafe { libc::statvfs(c.as_ptr(), &mut st) } == 0 {
            // The field types differ between platforms (u32 on some 32-bit ones).
            #[allow(clippy::unnecessary_cast)]
            let free = (st.f_bavail as u64).saturating_mul(st.f_frsize as u64);
            if need > free {
                return Err(Error::Runtime(format!(
                    "{}: the download needs {need} bytes but only {free} are free there",
                    dir.display()
                )));
            }
        }
    }
    Ok(())
}
