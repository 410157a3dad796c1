//! A bounded walk over a GGUF header before candle parses it.
//!
//! candle checks every length against the bytes left in the file, but it keeps each array element
//! as a `Value` (tens of bytes for a one-byte `u8`): a 1 GB file holding one array of a billion
//! bytes would need about 30 GB of memory. Real files hold arrays of at most a few hundred thousand
//! entries (vocabularies and merges), so this walk refuses anything far larger before any
//! allocation, reading only the header and skipping over values.

use std::io::{BufReader, Read, Seek, SeekFrom};

/// Most elements one metadata array may hold: 64× the largest vocabulary in use.
pub const MAX_ARRAY_ELEMENTS: u64 = 1 << 24;
/// Most metadata entries and tensors a header may declare.
const MAX_ENTRIES: u64 = 1 << 20;
/// Arrays of arrays deeper than this are refused (real files nest none).
const MAX_DEPTH: usize = 4;

/// Walks the metadata of the GGUF at the reader's start; `Err` says what is out of bounds.
pub fn check<R: Read + Seek>(r: &mut BufReader<R>) -> Result<(), String> {
    let start = r.stream_position().map_err(|e| e.to_string())?;
    let mut w = Walker { r, wide: true };
    let magic = w.u32()?;
    if magic != u32::from_le_bytes(*b"GGUF") {
        return Ok(()); // candle names what is wrong with the magic
    }
    w.wide = w.u32()? >= 2; // version 1 has 32-bit lengths
    let tensors = w.len()?;
    let entries = w.len()?;
    if tensors > MAX_ENTRIES || entries > MAX_ENTRIES {
        return Err(format!("header declares {tensors} tensors and {entries} metadata entries"));
    }
    for _ in 0..entries {
        let key_len = w.len()?;
        w.skip(key_len)?;
        let ty = w.u32()?;
        w.value(ty, 0)?;
    }
    w.r.seek(SeekFrom::Start(start)).map_err(|e| e.to_string())?;
    Ok(())
}

fn eof(e: std::io::Error) -> String {
    if e.kind() == std::io::ErrorKind::UnexpectedEof {
        "the header is cut short (a truncated file)".into()
    } else {
        e.to_string()
    }
}

struct Walker<'a, R> {
    r: &'a mut BufReader<R>,
    wide: bool,
}

impl<R: Read + Seek> Walker<'_, R> {
    fn u32(&mut self) -> Result<u32, String> {
        let mut b = [0u8; 4];
        self.r.read_exact(&mut b).map_err(eof)?;
        Ok(u32::from_le_bytes(b))
    }

    fn len(&mut self) -> Result<u64, String> {
        if !self.wide {
            return self.u32().map(u64::from);
        }
        let mut b = [0u8; 8];
        self.r.read_exact(&mut b).map_err(eof)?;
        Ok(u64::from_le_bytes(b))
    }

    fn skip(&mut self, n: u64) -> Result<(), String> {
        let n = i64::try_from(n).map_err(|_| format!("a length of {n} bytes"))?;
        // Within the buffer where it can: a vocabulary is a few hundred thousand short strings.
        self.r.seek_relative(n).map_err(|e| e.to_string())
    }

    /// Skips one value of GGUF type `ty`; unknown types are left for candle to name.
    fn value(&mut self, ty: u32, depth: usize) -> Result<(), String> {
        match ty {
            0 | 1 | 7 => self.skip(1),
            2 | 3 => self.skip(2),
            4..=6 => self.skip(4),
            10..=12 => self.skip(8),
            8 => {
                let n = self.len()?;
                self.skip(n)
            }
            9 => {
                let elem = self.u32()?;
                let n = self.len()?;
                if n > MAX_ARRAY_ELEMENTS {
                    return Err(format!("a metadata array of {n} elements (at most {MAX_ARRAY_ELEMENTS})"));
                }
                if elem == 9 && depth >= MAX_DEPTH {
                    return Err(format!("metadata arrays nested deeper than {MAX_DEPTH}"));
                }
                (0..n).try_for_each(|_| self.value(elem, depth + 1))
            }
            _ => Err(format!("unknown metadata value type {ty}")),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Cursor;

    fn header(entries: &[(&str, u32, Vec<u8>)]) -> Vec<u8> {
        let mut b = b"GGUF".to_vec();
        b.extend(3u32.to_le_bytes());
        b.extend(0u64.to_le_bytes());
        b.extend((entries.len() as u64).to_le_bytes());
        for (k, ty, v) in entries {
            b.extend((k.len() as u64).to_le_bytes());
            b.extend(k.as_bytes());
            b.extend(ty.to_le_bytes());
            b.extend(v);
        }
        b
    }

    fn array(elem: u32, n: u64, body: &[u8]) -> Vec<u8> {
        let mut v = elem.to_le_bytes().to_vec();
        v.extend(n.to_le_bytes());
        v.extend(body);
        v
    }

    #[test]
    fn ordinary_headers_pass_and_the_reader_is_rewound() {
        let mut s = 5u64.to_le_bytes().to_vec();
        s.extend(b"llama");
        let strings = array(8, 2, &[1, 0, 0, 0, 0, 0, 0, 0, b'a', 1, 0, 0, 0, 0, 0, 0, 0, b'b']);
        let b = header(&[("general.architecture", 8, s), ("n", 4, vec![1, 0, 0, 0]), ("tokens", 9, strings)]);
        let mut c = BufReader::new(Cursor::new(b));
        assert_eq!(check(&mut c), Ok(()));
        assert_eq!(c.stream_position().unwrap(), 0);
    }

    #[test]
    fn a_huge_array_is_refused_before_any_allocation() {
        let b = header(&[("big", 9, array(0, MAX_ARRAY_ELEMENTS + 1, &[]))]);
        let e = check(&mut BufReader::new(Cursor::new(b))).unwrap_err();
        assert!(e.contains("16777217 elements"), "{e}");
    }

    #[test]
    fn deep_nesting_and_unknown_types_are_refused() {
        let mut v = array(0, 0, &[]);
        for _ in 0..=MAX_DEPTH {
            v = array(9, 1, &v);
        }
        assert!(check(&mut BufReader::new(Cursor::new(header(&[("deep", 9, v)])))).unwrap_err().contains("nested"));
        assert!(check(&mut BufReader::new(Cursor::new(header(&[("odd", 99, vec![])]))))
            .unwrap_err()
            .contains("type 99"));
    }
}
