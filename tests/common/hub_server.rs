//! A stand-in for the Hugging Face hub on 127.0.0.1, just enough for hf-hub 0.4's sync API (std only).
//!
//! - `GET|HEAD /{org}/{name}/resolve/{revision}/{file}` answers with `x-repo-commit` and `etag`, and
//!   honours `Range: bytes=a-[b]` (206 + `Content-Range`), which hf-hub needs for its `bytes=0-0`
//!   metadata request and for resuming a `.part` file.
//! - `*.safetensors` files are LFS files, as on the hub: a 302 to an absolute URL (`/cdn/{sha}` here,
//!   the CDN on the real hub) carrying `x-linked-etag` and `x-linked-size`.
//! - Errors carry the hub's `x-error-code`: `RepositoryNotFound` (404), `RevisionNotFound` and
//!   `EntryNotFound` (404), `GatedRepo` (401 without a token, 403 with a wrong one).
//! - Every request is recorded; [`HubServer::set_failing`] turns every answer into a 500, and
//!   [`HubServer::stop`] closes the port.
//! - Hostile behaviours ([`HubServer::set_mode`], [`Mode`]): a server that accepts and never
//!   answers, absurd or lying sizes, path-like commits and etags; [`HubServer::add_file`] serves
//!   any file, such as an index naming shards `../x` or `/abs/x`.

use std::collections::HashMap;
use std::hash::{Hash, Hasher};
use std::io::{BufRead, BufReader, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::Duration;

/// One request as the server saw it (header names lowercased).
#[derive(Debug, Clone)]
pub struct Request {
    pub method: String,
    pub path: String,
    pub headers: Vec<(String, String)>,
}

impl Request {
    /// The first value of header `name` (lowercase).
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.iter().find(|(k, _)| k == name).map(|(_, v)| v.as_str())
    }
}

struct HubRepo {
    commit: String,
    /// File name → etag (the key of `State::blobs`).
    files: HashMap<String, String>,
    /// Gated: only `Authorization: Bearer <token>` gets in.
    token: Option<String>,
}

/// How the server misbehaves (all of it on purpose, for the hostile tests).
#[derive(Debug, Clone, Default, PartialEq)]
pub enum Mode {
    /// A hub.
    #[default]
    Normal,
    /// Accepts the connection, reads the request, never answers.
    Silent,
    /// Every `Content-Range` announces 2⁵⁰ bytes.
    HugeSize,
    /// Whole-file answers send twice the bytes (and say so in `Content-Length`).
    LongBody,
    /// Whole-file answers announce the full length but stop halfway and close.
    ShortBody,
    /// `x-repo-commit` is this value.
    Commit(String),
    /// `etag` and `x-linked-etag` are this value.
    Etag(String),
}

#[derive(Default)]
struct State {
    mode: Mutex<Mode>,
    repos: Mutex<HashMap<String, HubRepo>>,
    blobs: Mutex<HashMap<String, Arc<Vec<u8>>>>,
    requests: Mutex<Vec<Request>>,
    failing: AtomicBool,
    stop: AtomicBool,
}

/// The server; stopped when dropped.
pub struct HubServer {
    addr: SocketAddr,
    state: Arc<State>,
    thread: Option<JoinHandle<()>>,
}

impl HubServer {
    /// Listens on 127.0.0.1 on a free port, one thread per connection.
    pub fn start() -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        let state = Arc::new(State::default());
        let st = state.clone();
        let thread = std::thread::spawn(move || {
            for conn in listener.incoming() {
                if st.stop.load(Ordering::SeqCst) {
                    break;
                }
                let Ok(stream) = conn else { continue };
                let st = st.clone();
                std::thread::spawn(move || {
                    let _ = handle(stream, &st, addr);
                });
            }
        });
        Self { addr, state, thread: Some(thread) }
    }

    /// The value for `HF_ENDPOINT`.
    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// Serves every file of `dir` as repository `id` (revision `main`); `token`: gated behind it.
    pub fn add_repo(&self, id: &str, dir: &Path, token: Option<&str>) {
        let mut files = HashMap::new();
        for entry in std::fs::read_dir(dir).unwrap() {
            let path = entry.unwrap().path();
            if path.is_file() {
                let bytes = std::fs::read(&path).unwrap();
                let etag = format!("{:016x}{:016x}", hash(&bytes), bytes.len());
                self.state.blobs.lock().unwrap().insert(etag.clone(), Arc::new(bytes));
                files.insert(path.file_name().unwrap().to_string_lossy().into_owned(), etag);
            }
        }
        let commit = format!("{:016x}{:016x}{:08x}", hash(id), hash(&files.len()), 0);
        self.state.repos.lock().unwrap().insert(id.into(), HubRepo { commit, files, token: token.map(String::from) });
    }

    /// Every request received so far.
    pub fn requests(&self) -> Vec<Request> {
        self.state.requests.lock().unwrap().clone()
    }

    /// Switches the server's behaviour (see [`Mode`]).
    pub fn set_mode(&self, mode: Mode) {
        *self.state.mode.lock().unwrap() = mode;
    }

    /// Adds (or replaces) file `name` of repository `id` with `bytes`.
    pub fn add_file(&self, id: &str, name: &str, bytes: &[u8]) {
        let etag = format!("{:016x}{:016x}", hash(bytes), bytes.len());
        self.state.blobs.lock().unwrap().insert(etag.clone(), Arc::new(bytes.to_vec()));
        self.state.repos.lock().unwrap().get_mut(id).unwrap().files.insert(name.into(), etag);
    }

    /// While on, every request gets a 500.
    pub fn set_failing(&self, on: bool) {
        self.state.failing.store(on, Ordering::SeqCst);
    }

    /// Closes the port (connections are then refused); idempotent.
    pub fn stop(&mut self) {
        if let Some(t) = self.thread.take() {
            self.state.stop.store(true, Ordering::SeqCst);
            // Wake the blocking accept so the loop sees the flag and drops the listener.
            let _ = TcpStream::connect(self.addr);
            t.join().unwrap();
        }
    }
}

impl Drop for HubServer {
    fn drop(&mut self) {
        self.stop();
    }
}

fn hash<T: Hash + ?Sized>(v: &T) -> u64 {
    let mut h = std::collections::hash_map::DefaultHasher::new();
    v.hash(&mut h);
    h.finish()
}

struct Response {
    status: u16,
    headers: Vec<(String, String)>,
    body: Arc<Vec<u8>>,
    range: Option<(usize, usize)>,
}

impl Response {
    fn new(status: u16) -> Self {
        Self { status, headers: vec![], body: Arc::new(vec![]), range: None }
    }

    fn header(mut self, k: &str, v: impl Into<String>) -> Self {
        self.headers.push((k.into(), v.into()));
        self
    }

    /// An error as the hub sends it: JSON body, `x-error-code`, `x-error-message`.
    fn error(status: u16, code: &str, message: &str) -> Self {
        let mut r = Self::new(status).header("Content-Type", "application/json");
        if !code.is_empty() {
            r = r.header("x-error-code", code).header("x-error-message", message);
        }
        r.body = Arc::new(format!("{{\"error\":\"{message}\"}}").into_bytes());
        r
    }

    /// The whole `body`, or the part `range` asks for (206; 416 when out of bounds).
    fn content(body: Arc<Vec<u8>>, range: Option<&str>) -> Self {
        let n = body.len();
        let Some((a, b)) = range.and_then(parse_range) else {
            let mut r = Self::new(200);
            r.body = body;
            return r;
        };
        let b = b.unwrap_or(usize::MAX).min(n.saturating_sub(1));
        if a >= n || a > b {
            return Self::new(416).header("Content-Range", format!("bytes */{n}"));
        }
        let mut r = Self::new(206).header("Content-Range", format!("bytes {a}-{b}/{n}"));
        r.body = body;
        r.range = Some((a, b + 1));
        r
    }
}

/// `bytes=a-` or `bytes=a-b`.
fn parse_range(h: &str) -> Option<(usize, Option<usize>)> {
    let (a, b) = h.trim().strip_prefix("bytes=")?.split_once('-')?;
    let b = if b.is_empty() { None } else { Some(b.parse().ok()?) };
    Some((a.parse().ok()?, b))
}

fn handle(stream: TcpStream, st: &State, addr: SocketAddr) -> std::io::Result<()> {
    stream.set_read_timeout(Some(Duration::from_secs(10)))?;
    let mut reader = BufReader::new(stream.try_clone()?);
    let mut line = String::new();
    if reader.read_line(&mut line)? == 0 {
        return Ok(()); // the wake-up connection of `stop`
    }
    let mut parts = line.split_whitespace();
    let method = parts.next().unwrap_or_default().to_string();
    let path = parts.next().unwrap_or_default().to_string();
    let mut headers = Vec::new();
    loop {
        let mut h = String::new();
        if reader.read_line(&mut h)? == 0 || h.trim_end().is_empty() {
            break;
        }
        if let Some((k, v)) = h.split_once(':') {
            headers.push((k.trim().to_ascii_lowercase(), v.trim().to_string()));
        }
    }
    let req = Request { method, path, headers };
    st.requests.lock().unwrap().push(req.clone());
    let mode = st.mode.lock().unwrap().clone();
    if mode == Mode::Silent {
        let until = std::time::Instant::now() + Duration::from_secs(60);
        while !st.stop.load(Ordering::SeqCst) && std::time::Instant::now() < until {
            std::thread::sleep(Duration::from_millis(20));
        }
        return Ok(());
    }
    let resp = misbehave(route(&req, st, addr), &mode);

    let reason = match resp.status {
        200 => "OK",
        206 => "Partial Content",
        302 => "Found",
        401 => "Unauthorized",
        403 => "Forbidden",
        404 => "Not Found",
        416 => "Range Not Satisfiable",
        _ => "Error",
    };
    let (a, b) = resp.range.unwrap_or((0, resp.body.len()));
    let whole = resp.status == 200 && req.method != "HEAD";
    let (announced, sent) = match mode {
        Mode::LongBody if whole => (2 * (b - a), 2 * (b - a)),
        Mode::ShortBody if whole => (b - a, (b - a) / 2),
        _ => (b - a, b - a),
    };
    let mut head = format!("HTTP/1.1 {} {reason}\r\nContent-Length: {announced}\r\nConnection: close\r\n", resp.status);
    for (k, v) in &resp.headers {
        head.push_str(&format!("{k}: {v}\r\n"));
    }
    head.push_str("\r\n");
    let mut w = std::io::BufWriter::new(stream);
    w.write_all(head.as_bytes())?;
    if req.method != "HEAD" {
        let body: Vec<u8> = resp.body[a..b].iter().chain(resp.body[a..b].iter()).copied().take(sent).collect();
        w.write_all(&body)?;
    }
    w.flush()
}

/// Applies a hostile [`Mode`] to the headers of an answer.
fn misbehave(mut resp: Response, mode: &Mode) -> Response {
    for (k, v) in resp.headers.iter_mut() {
        match (mode, k.to_ascii_lowercase().as_str()) {
            (Mode::HugeSize, "content-range") => {
                if let Some((range, _)) = v.rsplit_once('/') {
                    *v = format!("{range}/{}", 1u64 << 50);
                }
            }
            (Mode::Commit(c), "x-repo-commit") => *v = c.clone(),
            (Mode::Etag(e), "etag" | "x-linked-etag") => *v = format!("\"{e}\""),
            _ => {}
        }
    }
    resp
}

fn route(req: &Request, st: &State, addr: SocketAddr) -> Response {
    if st.failing.load(Ordering::SeqCst) {
        return Response::error(500, "", "Internal Error");
    }
    if req.method != "GET" && req.method != "HEAD" {
        return Response::error(405, "", "Method Not Allowed");
    }
    let path = req.path.split('?').next().unwrap_or_default();
    if let Some(etag) = path.strip_prefix("/cdn/") {
        return match st.blobs.lock().unwrap().get(etag) {
            Some(body) => Response::content(body.clone(), req.header("range")).header("ETag", format!("\"{etag}\"")),
            None => Response::error(404, "", "NoSuchKey"),
        };
    }
    // {org}/{name}/resolve/{revision}/{file}
    let segs: Vec<&str> = path.trim_start_matches('/').splitn(5, '/').collect();
    if segs.len() != 5 || segs[2] != "resolve" {
        return Response::error(404, "", "Not Found");
    }
    let (id, revision, file) = (format!("{}/{}", segs[0], segs[1]), segs[3], segs[4]);
    let repos = st.repos.lock().unwrap();
    let Some(repo) = repos.get(&id) else {
        return Response::error(404, "RepositoryNotFound", "Repository not found");
    };
    if let Some(token) = &repo.token {
        match req.header("authorization") {
            None => {
                return Response::error(401, "GatedRepo", &format!("Access to model {id} is restricted."));
            }
            Some(a) if a != format!("Bearer {token}") => {
                return Response::error(403, "GatedRepo", &format!("Access to model {id} is restricted."));
            }
            Some(_) => {}
        }
    }
    if revision != "main" && revision != repo.commit {
        return Response::error(404, "RevisionNotFound", "Invalid rev id");
    }
    let Some(etag) = repo.files.get(file) else {
        return Response::error(404, "EntryNotFound", "Entry not found");
    };
    let body = st.blobs.lock().unwrap()[etag].clone();
    if file.ends_with(".safetensors") {
        return Response::new(302)
            .header("Location", format!("http://{addr}/cdn/{etag}"))
            .header("x-repo-commit", repo.commit.as_str())
            .header("x-linked-etag", format!("\"{etag}\""))
            .header("x-linked-size", body.len().to_string())
            .header("ETag", format!("\"pointer-{etag}\""));
    }
    Response::content(body, req.header("range"))
        .header("x-repo-commit", repo.commit.as_str())
        .header("ETag", format!("\"{etag}\""))
}
