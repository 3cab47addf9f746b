//! Fixed-size chunking of blob bodies: the one rule every backend that stores a blob as chunks
//! (SQLite and Postgres rows, keyspace entries, P2P content-addressed files) uses both ways.

/// Cuts a body arriving in pieces of any size into chunks of exactly `size` bytes (the last one
/// may be shorter), holding at most one partial chunk in memory.
pub struct Chunker {
    size: usize,
    pending: Vec<u8>,
}

impl Chunker {
    pub fn new(size: usize) -> Self {
        Chunker {
            size,
            pending: Vec::new(),
        }
    }

    /// Takes the next piece; returns the chunks it completed, in order.
    pub fn push(&mut self, piece: Vec<u8>) -> Vec<Vec<u8>> {
        if self.pending.is_empty() && piece.len() == self.size {
            return vec![piece];
        }
        // Each chunk is its own allocation of `size` bytes and each byte is copied once (a large
        // piece cut by `split_off` was copied again for every chunk, and every chunk kept the
        // capacity of all that followed it).
        let mut full = Vec::new();
        let mut rest: &[u8] = &piece;
        if !self.pending.is_empty() {
            let take = (self.size - self.pending.len()).min(rest.len());
            self.pending.extend_from_slice(&rest[..take]);
            rest = &rest[take..];
            if self.pending.len() == self.size {
                full.push(std::mem::take(&mut self.pending));
            }
        }
        while rest.len() >= self.size {
            let (chunk, after) = rest.split_at(self.size);
            full.push(chunk.to_vec());
            rest = after;
        }
        self.pending.extend_from_slice(rest);
        full
    }

    /// The last, partial chunk; None when the body ended on a chunk boundary (or was empty).
    pub fn finish(&mut self) -> Option<Vec<u8>> {
        (!self.pending.is_empty()).then(|| std::mem::take(&mut self.pending))
    }
}

/// Where a read at byte `pos` of a range ending at `end` finds its bytes in a body of
/// `size`-byte chunks: the chunk's index, the offset in it, and how many bytes to take from it.
pub fn locate(pos: u64, end: u64, size: usize) -> (u64, usize, usize) {
    let index = pos / size as u64;
    let offset = (pos % size as u64) as usize;
    let want = (end - pos).min((size - offset) as u64) as usize;
    (index, offset, want)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn chunks_are_exact_whatever_the_pieces() {
        let body: Vec<u8> = (0..1000u32).map(|i| (i % 251) as u8).collect();
        for piece in [1, 7, 64, 100, 333, 1000] {
            let mut c = Chunker::new(100);
            let mut chunks = Vec::new();
            for p in body.chunks(piece) {
                chunks.extend(c.push(p.to_vec()));
            }
            chunks.extend(c.finish());
            assert!(chunks.iter().all(|ch| ch.len() == 100), "piece {piece}");
            assert_eq!(chunks.concat(), body);
        }
        let mut c = Chunker::new(100);
        assert_eq!(c.push(vec![1; 150]).len(), 1);
        assert_eq!(c.finish().map(|l| l.len()), Some(50));
        assert_eq!(c.finish(), None);
    }

    #[test]
    fn a_large_piece_becomes_chunks_of_their_own_size() {
        let mut chunker = Chunker::new(100);
        assert!(chunker.push(vec![1; 30]).is_empty());
        let full = chunker.push(vec![2; 1050]);
        assert_eq!(full.len(), 10);
        assert!(full.iter().all(|c| c.len() == 100 && c.capacity() <= 200));
        assert_eq!(&full[0][..31], &[[1u8; 30].as_slice(), &[2]].concat()[..]);
        assert_eq!(chunker.finish(), Some(vec![2; 80]));
    }

    #[test]
    fn locate_splits_ranges_at_chunk_edges() {
        assert_eq!(locate(0, 1000, 100), (0, 0, 100));
        assert_eq!(locate(95, 1000, 100), (0, 95, 5));
        assert_eq!(locate(100, 105, 100), (1, 0, 5));
        assert_eq!(locate(250, 1000, 100), (2, 50, 50));
    }
}
