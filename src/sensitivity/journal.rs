//! `scan.jsonl`: a header line with the settings hash, then one line per finished (layer, format),
//! appended and synced as the scan goes, so a killed run loses at most the item in progress.

use super::scan::ScanItem;
use crate::error::{Error, Result};
use serde::{Deserialize, Serialize};
use std::io::Write;
use std::path::{Path, PathBuf};

/// The first line of `scan.jsonl`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Header {
    pub minilab_scan: u32,
    pub settings_hash: String,
    pub settings: serde_json::Value,
    /// The slice of the scan this journal holds (not part of the settings: shards of one run
    /// share their hash).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub shard: Option<super::shard::Shard>,
}

impl Header {
    /// A header for `settings`, hashed (sha256 of their canonical JSON).
    pub fn new(settings: serde_json::Value) -> Self {
        use sha2::Digest;
        let hash = sha2::Sha256::digest(settings.to_string().as_bytes());
        let hex: String = hash.iter().take(12).map(|b| format!("{b:02x}")).collect();
        Self { minilab_scan: 1, settings_hash: hex, settings, shard: None }
    }
}

/// An open journal.
pub struct Journal {
    path: PathBuf,
}

impl Journal {
    /// Opens `path`: a new journal, or with `resume` the finished items of an earlier run with the
    /// same settings. Refuses to touch an existing journal without `resume`, or one whose settings
    /// differ.
    pub fn open(path: &Path, header: &Header, resume: bool) -> Result<(Self, Vec<ScanItem>)> {
        let journal = Self { path: path.to_path_buf() };
        let meta = std::fs::symlink_metadata(path);
        if meta.as_ref().is_ok_and(|m| !m.file_type().is_file()) {
            // A link planted at the journal's name would have us read and append to its target.
            return Err(Error::input(format!(
                "{}: not a regular file; minilab only writes journals it created",
                path.display()
            )));
        }
        if meta.is_err() {
            let line = serde_json::to_string(header).map_err(|e| Error::Runtime(e.to_string()))? + "\n";
            crate::report::write_atomic(path, line.as_bytes()).map_err(|e| Error::io(path, e))?;
            return Ok((journal, vec![]));
        }
        if !resume {
            return Err(Error::input(format!(
                "{} already exists: pass --resume to continue that run, or choose another --out",
                path.display()
            )));
        }
        let (old, items, valid_len, len) = parse(path)?;
        if old.settings_hash != header.settings_hash {
            return Err(Error::input(format!(
                "{}: --resume with a different model or settings ({}); use another --out",
                path.display(),
                differences(&old.settings, &header.settings)
            )));
        }
        if old.shard != header.shard {
            return Err(Error::input(format!("{}: this journal belongs to another shard", path.display())));
        }
        if valid_len < len {
            // Only an unterminated last line (a write cut by a kill) is dropped.
            crate::report::console::note(&format!(
                "note: {}: dropping an unfinished last line (cut by a kill)",
                path.display()
            ));
            let f = no_follow(std::fs::OpenOptions::new().write(true)).open(path).map_err(|e| Error::io(path, e))?;
            f.set_len(valid_len as u64).map_err(|e| Error::io(path, e))?;
        }
        Ok((journal, items))
    }

    /// Appends one finished item and syncs it to disk.
    pub fn append(&self, item: &ScanItem) -> Result<()> {
        let line = serde_json::to_string(item).map_err(|e| Error::Runtime(e.to_string()))? + "\n";
        let mut f = no_follow(std::fs::OpenOptions::new().append(true))
            .open(&self.path)
            .map_err(|e| Error::io(&self.path, e))?;
        f.write_all(line.as_bytes()).map_err(|e| Error::io(&self.path, e))?;
        f.sync_data().map_err(|e| Error::io(&self.path, e))
    }
}

/// Opens never through a symlink (one swapped in after the check at `open` fails with ELOOP).
fn no_follow(opts: &mut std::fs::OpenOptions) -> &mut std::fs::OpenOptions {
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::custom_flags(opts, libc::O_NOFOLLOW);
    opts
}

/// Most bytes a journal may hold (about a million items): larger is not a scan journal.
const MAX_JOURNAL_BYTES: u64 = 256 << 20;

/// Reads a journal: its header and finished items (an unfinished last line is ignored).
pub fn read(path: &Path) -> Result<(Header, Vec<ScanItem>)> {
    let (h, items, _, _) = parse(path)?;
    Ok((h, items))
}

/// Header, items, the length of the well-formed part and the file length. A complete line that
/// is not an item is refused (exit 2, naming it) rather than dropped with what follows it.
fn parse(path: &Path) -> Result<(Header, Vec<ScanItem>, usize, usize)> {
    use std::io::Read;
    // Read at most one byte past the cap: a device file (/dev/zero) reports no size.
    let f = std::fs::File::open(path).map_err(|e| Error::io(path, e))?;
    let mut bytes = Vec::new();
    f.take(MAX_JOURNAL_BYTES + 1).read_to_end(&mut bytes).map_err(|e| Error::io(path, e))?;
    if bytes.len() as u64 > MAX_JOURNAL_BYTES {
        return Err(Error::input(format!("{}: too large for a scan journal", path.display())));
    }
    let text = String::from_utf8(bytes).map_err(|_| Error::input(format!("{}: not UTF-8 text", path.display())))?;
    let mut lines = text.split_inclusive('\n');
    let first = lines.next().unwrap_or_default();
    let old: Header = serde_json::from_str(first.trim())
        .map_err(|e| Error::input(format!("{}: not a minilab scan journal: {e}", path.display())))?;
    if old.minilab_scan != 1 {
        return Err(Error::input(format!("{}: journal version {} (expected 1)", path.display(), old.minilab_scan)));
    }
    let mut items = Vec::new();
    let mut valid_len = first.len();
    for (n, line) in lines.enumerate() {
        if !line.ends_with('\n') {
            break;
        }
        let item: ScanItem = serde_json::from_str(line.trim()).map_err(|e| {
            Error::input(format!(
                "{} line {}: not a scan item ({e}); fix or delete that line, then --resume again",
                path.display(),
                n + 2
            ))
        })?;
        if !(item.score.is_finite() && item.kld_mean.is_finite() && item.ppl.is_finite()) {
            return Err(Error::input(format!("{} line {}: non-finite metrics", path.display(), n + 2)));
        }
        items.push(item);
        valid_len += line.len();
    }
    Ok((old, items, valid_len, text.len()))
}

/// The settings keys whose values differ between two headers, for a refusal a user can act on.
pub fn differences(old: &serde_json::Value, now: &serde_json::Value) -> String {
    let (Some(a), Some(b)) = (old.as_object(), now.as_object()) else { return "the settings differ".into() };
    let mut keys: Vec<&String> = a.keys().chain(b.keys()).collect();
    keys.sort();
    keys.dedup();
    let show = |v: Option<&serde_json::Value>| {
        let s = v.map_or("(none)".to_string(), |v| v.to_string());
        if s.len() > 60 {
            format!("{}…", s.chars().take(60).collect::<String>())
        } else {
            s
        }
    };
    let diffs: Vec<String> = keys
        .into_iter()
        .filter(|k| a.get(*k) != b.get(*k))
        .map(|k| format!("{k} was {} and is now {}", show(a.get(k)), show(b.get(k))))
        .collect();
    if diffs.is_empty() {
        "the settings differ".into()
    } else {
        diffs.join("; ")
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::quant::Precision;

    fn item(layer: &str) -> ScanItem {
        ScanItem {
            layer: layer.into(),
            format: Precision::Nf4,
            score: 0.5,
            kld_mean: 0.5,
            ppl: 10.0,
            top1_agreement: 0.9,
            bytes: 10,
            seconds: 1.0,
        }
    }

    #[cfg(unix)]
    #[test]
    fn a_link_planted_at_the_journal_is_refused_and_its_target_untouched() {
        let dir = tempfile::tempdir().unwrap();
        let h = Header::new(serde_json::json!({"model": "m", "ctx": 512}));
        let victim = dir.path().join("victim.jsonl");
        let (j, _) = Journal::open(&victim, &h, false).unwrap();
        j.append(&item("blk.0.attn_q")).unwrap();
        let before = std::fs::read(&victim).unwrap();
        let p = dir.path().join("scan.jsonl");
        std::os::unix::fs::symlink(&victim, &p).unwrap();
        for resume in [false, true] {
            let e = Journal::open(&p, &h, resume).err().expect("a planted link is refused");
            assert!(matches!(e, Error::Input(_)), "{e}");
            assert!(e.to_string().contains("not a regular file"), "{e}");
        }
        assert_eq!(std::fs::read(&victim).unwrap(), before);
    }

    #[test]
    fn resume_keeps_finished_items_and_drops_a_cut_line() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("scan.jsonl");
        let h = Header::new(serde_json::json!({"model": "m", "ctx": 512}));
        let (j, items) = Journal::open(&p, &h, false).unwrap();
        assert!(items.is_empty());
        j.append(&item("blk.0.attn_q")).unwrap();
        j.append(&item("blk.0.attn_k")).unwrap();
        // a kill in the middle of a write
        let mut f = std::fs::OpenOptions::new().append(true).open(&p).unwrap();
        f.write_all(b"{\"layer\":\"blk.0.at").unwrap();
        assert!(Journal::open(&p, &h, false).is_err(), "no --resume: refuse");
        let (j, items) = Journal::open(&p, &h, true).unwrap();
        assert_eq!(items, vec![item("blk.0.attn_q"), item("blk.0.attn_k")]);
        j.append(&item("blk.0.attn_v")).unwrap();
        let (_, items) = Journal::open(&p, &h, true).unwrap();
        assert_eq!(items.len(), 3);
        let other = Header::new(serde_json::json!({"model": "other", "ctx": 512}));
        let e = Journal::open(&p, &other, true).err().unwrap();
        assert_eq!(e.exit_code(), 2);
        assert!(e.to_string().contains("different model or settings"));
    }
}
