//! The simulated disk: per madsim node, in memory, surviving kill/restart, with faults.
//!
//! Each file keeps two images: `current` (what reads see: every completed write) and `durable`
//! (what survives a power loss), plus the ordered list of writes not yet synced. A sync moves
//! the pending writes into `durable`; a kill (madsim calls `World::reset_node`) decides for each
//! pending write whether it is lost, kept or torn, then `current` becomes `durable`.
//! Directory operations (create, remove, rename) are durable at once.
//!
//! The images are sparse ([`Image`]): a data file is up to 64 MiB in the production geometry
//! but a seed writes little of it, and dense images made the simulator spend its time zeroing,
//! copying and faulting in pages nobody reads.

use std::collections::{BTreeMap, BTreeSet};
use std::io;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Weak};

use madsim::rand::Rng;
use madsim::task::NodeId;

use super::SECTOR_SIZE;
use crate::fault::{self, WorldState};

#[derive(Clone, Debug)]
enum Pending {
    /// `misdirected`: the write landed at `offset` though it was meant for elsewhere.
    Write {
        offset: u64,
        data: Vec<u8>,
        misdirected: bool,
    },
    SetLen(u64),
}

/// Page size of an [`Image`] (the OS page size: any size would do).
const PAGE: usize = 4096;

/// A file's content as a sparse image: a logical length and the pages written so far; a page
/// never written reads as zeros. Sparse because a seed writes a small part of a large data file
/// (formatting only sets its length): a dense `Vec<u8>` cost zeroing the whole file on
/// `set_len`, copying it whole between `current` and `durable` at a power loss and for
/// `copy_durable`, and the page faults of all that. Pages are shared (`Arc`) between an image
/// and its clones, and copied on the first write after: cloning an image copies no bytes.
///
/// Invariant: every byte of a page at or past `len` is zero, so growing the length (by
/// `set_len` or a write past the end) exposes zeros, as a dense image's `resize` did.
#[derive(Clone, Default)]
struct Image {
    len: u64,
    pages: BTreeMap<u64, Arc<[u8; PAGE]>>,
}

/// The pieces of the byte range `[offset, offset + len)` that fall in one page each: (page
/// index, offset in the page, offset in the range, length).
fn pieces(offset: u64, len: usize) -> impl Iterator<Item = (u64, usize, usize, usize)> {
    let mut done = 0;
    std::iter::from_fn(move || {
        if done >= len {
            return None;
        }
        let at = offset + done as u64;
        let in_page = (at % PAGE as u64) as usize;
        let n = (PAGE - in_page).min(len - done);
        let piece = (at / PAGE as u64, in_page, done, n);
        done += n;
        Some(piece)
    })
}

impl Image {
    fn len(&self) -> u64 {
        self.len
    }

    /// Page `page`, writable: created zeroed if never written, copied if shared with a clone.
    fn page_mut(&mut self, page: u64) -> &mut [u8; PAGE] {
        Arc::make_mut(
            self.pages
                .entry(page)
                .or_insert_with(|| Arc::new([0; PAGE])),
        )
    }

    /// Truncate, or extend with zeros.
    fn set_len(&mut self, len: u64) {
        if len < self.len {
            // Drop the pages wholly past the end and zero the tail of the last one (the
            // invariant), so a later extension reads zeros there.
            self.pages.split_off(&len.div_ceil(PAGE as u64));
            let tail = (len % PAGE as u64) as usize;
            if tail > 0 && self.pages.contains_key(&(len / PAGE as u64)) {
                self.page_mut(len / PAGE as u64)[tail..].fill(0);
            }
        }
        self.len = len;
    }

    /// Write `data` at `offset`, extending the image (with zeros before `offset`) if it ends
    /// past the end — even an empty write, as a dense image's `resize` did.
    fn write(&mut self, offset: u64, data: &[u8]) {
        for (page, at, from, n) in pieces(offset, data.len()) {
            self.page_mut(page)[at..at + n].copy_from_slice(&data[from..from + n]);
        }
        self.len = self.len.max(offset + data.len() as u64);
    }

    fn apply(&mut self, pending: &Pending) {
        match pending {
            Pending::Write { offset, data, .. } => self.write(*offset, data),
            Pending::SetLen(len) => self.set_len(*len),
        }
    }

    /// Read `buf.len()` bytes at `offset`, which the caller checked lie within the image.
    fn read(&self, offset: u64, buf: &mut [u8]) {
        for (page, at, to, n) in pieces(offset, buf.len()) {
            match self.pages.get(&page) {
                Some(p) => buf[to..to + n].copy_from_slice(&p[at..at + n]),
                None => buf[to..to + n].fill(0),
            }
        }
    }

    /// Whether the image holds exactly `data` at `offset` (false if it ends before).
    fn holds(&self, offset: u64, data: &[u8]) -> bool {
        offset + data.len() as u64 <= self.len
            && pieces(offset, data.len()).all(|(page, at, from, n)| {
                let want = &data[from..from + n];
                match self.pages.get(&page) {
                    Some(p) => &p[at..at + n] == want,
                    None => want.iter().all(|&b| b == 0),
                }
            })
    }

    /// Share with `other` each page of `pages` whose bytes are the same in both (memory only:
    /// the content is unchanged, and a later write to either copies the page again). After a
    /// sync the durable image holds what the current one does on every page no unsynced write
    /// touched, so the synced pages are stored once, not twice.
    fn share_equal_pages(&mut self, other: &Image, pages: impl Iterator<Item = u64>) {
        for page in pages {
            if let (Some(mine), Some(theirs)) = (self.pages.get_mut(&page), other.pages.get(&page))
            {
                if !Arc::ptr_eq(mine, theirs) && **mine == **theirs {
                    *mine = Arc::clone(theirs);
                }
            }
        }
    }

    /// Store each page of `pages` once across the simulation ([`PageStore`]), and let `other`
    /// follow where it shared the page replaced. Memory only: no byte changes.
    fn intern_pages(&mut self, store: &mut PageStore, other: &mut Image, pages: &[u64]) {
        for page in pages {
            let Some(mine) = self.pages.get_mut(page) else {
                continue;
            };
            let was = Arc::as_ptr(mine);
            store.intern(mine);
            if let Some(theirs) = other.pages.get_mut(page) {
                if std::ptr::eq(Arc::as_ptr(theirs), was) {
                    *theirs = Arc::clone(mine);
                }
            }
        }
    }

    /// Flip the bits `bit` of byte `byte` (which lies within the image).
    fn flip(&mut self, byte: u64, bit: u8) {
        self.page_mut(byte / PAGE as u64)[(byte % PAGE as u64) as usize] ^= bit;
    }

    /// Copy `[lo, hi)` from `src` (both images at least `hi` long).
    fn copy_from(&mut self, src: &Image, lo: u64, hi: u64) {
        for (page, at, _, n) in pieces(lo, (hi - lo) as usize) {
            match src.pages.get(&page) {
                // A whole page: share it (or drop ours: both read as zeros).
                Some(p) if n == PAGE => {
                    self.pages.insert(page, Arc::clone(p));
                }
                None if n == PAGE => {
                    self.pages.remove(&page);
                }
                Some(p) => self.page_mut(page)[at..at + n].copy_from_slice(&p[at..at + n]),
                None => {
                    if let Some(ours) = self.pages.get_mut(&page) {
                        Arc::make_mut(ours)[at..at + n].fill(0);
                    }
                }
            }
        }
    }
}

/// Synced pages with equal bytes, stored once across every file of a simulation: the replicas
/// of a cluster write the same prepares and checkpoints at the same offsets, and a large value
/// fills pages alike, so with large payloads the disks held the same pages many times over (a
/// seed's largest cost in memory). Keyed by xxh3-128 of the bytes; a hit is compared byte for
/// byte before it is shared, so a collision only costs the sharing. Weak: a page no image holds
/// any more is freed, and its entry swept when the map has doubled since the last sweep. A
/// `BTreeMap` and no `HashMap`: a `HashMap`'s random state would draw on the simulation's
/// randomness.
#[derive(Default)]
pub(crate) struct PageStore {
    pages: BTreeMap<u128, Weak<[u8; PAGE]>>,
    /// Entries after the last sweep.
    swept: usize,
}

impl PageStore {
    /// Replace `page` by the stored page with the same bytes, or store it.
    fn intern(&mut self, page: &mut Arc<[u8; PAGE]>) {
        let hash = xxhash_rust::xxh3::xxh3_128(&page[..]);
        match self.pages.get(&hash).and_then(Weak::upgrade) {
            Some(stored) if Arc::ptr_eq(&stored, page) => {}
            Some(stored) if *stored == **page => *page = stored,
            // Absent, freed, or (in theory) another page with the same hash: ours from now.
            _ => {
                self.pages.insert(hash, Arc::downgrade(page));
                if self.pages.len() > 2 * self.swept.max(1024) {
                    self.pages.retain(|_, p| p.strong_count() > 0);
                    self.swept = self.pages.len();
                }
            }
        }
    }
}

#[derive(Default)]
struct SimFile {
    current: Image,
    durable: Image,
    pending: Vec<Pending>,
    /// Writes (and resizes) completed since the file was created: `pending[i]` is number
    /// `pending_base + i`. A sync covers exactly the writes completed before it was called.
    completed: u64,
    /// The number of the first write still in `pending`.
    pending_base: u64,
    /// Sectors (by index) with a latent error: reads fail until the sector is rewritten.
    bad_sectors: BTreeSet<u64>,
    /// Copies of redundancy groups (`DiskFaults::redundant_copies`: group, copy) damaged by an
    /// injected fault and not rewritten since.
    damaged_copies: BTreeSet<(usize, usize)>,
    /// `current` may differ from `durable` outside the ranges of `pending` (a failed sync
    /// dropped some writes): the next power loss copies the whole durable image back.
    diverged: bool,
    /// Disk oracle: sectors whose content an injected fault made differ from what was written
    /// there (bit rot; the landing place of a misdirected write), not rewritten since — in
    /// `current`, and in `durable` (what a power loss leaves).
    damaged: Ranges,
    damaged_durable: Ranges,
    /// Disk oracle: writes torn by a power loss, not rewritten since.
    torn: Vec<Torn>,
    /// Disk oracle: byte ranges whose durable content a fault left uncertain — writes pending
    /// at a power loss (kept, lost or torn: a crash may also fall between two related writes),
    /// writes a failed sync may have dropped, the place a misdirected write was meant for —
    /// until a synced rewrite. What may explain an item storage reports faulty there.
    uncertain: Ranges,
}

/// A write torn by a power loss: of its bytes, `kept` landed and `lost` kept their older
/// content (whole sectors each). An item storage accepts must not lie on both sides.
#[derive(Clone, Debug, Default)]
struct Torn {
    kept: Ranges,
    lost: Ranges,
}

/// A set of disjoint byte ranges `[start, end)`, keyed by start. Byte-exact on purpose: a
/// 138-byte WAL entry written over part of a damaged sector is intact even though the rest
/// of the sector is not.
#[derive(Clone, Debug, Default)]
struct Ranges(BTreeMap<u64, u64>);

impl Ranges {
    fn insert(&mut self, lo: u64, hi: u64) {
        if lo >= hi {
            return;
        }
        self.remove(lo, hi);
        self.0.insert(lo, hi);
    }

    fn remove(&mut self, lo: u64, hi: u64) {
        if lo >= hi {
            return;
        }
        let hit: Vec<(u64, u64)> = self
            .0
            .range(..hi)
            .filter(|&(_, &end)| end > lo)
            .map(|(&a, &b)| (a, b))
            .collect();
        for (a, b) in hit {
            self.0.remove(&a);
            if a < lo {
                self.0.insert(a, lo);
            }
            if b > hi {
                self.0.insert(hi, b);
            }
        }
    }

    /// The parts of `[lo, hi)` in the set.
    fn within(&self, lo: u64, hi: u64) -> Vec<(u64, u64)> {
        self.0
            .range(..hi)
            .filter(|&(_, &end)| end > lo)
            .map(|(&a, &b)| (a.max(lo), b.min(hi)))
            .collect()
    }

    fn intersects(&self, lo: u64, hi: u64) -> bool {
        self.0
            .range(..hi)
            .next_back()
            .is_some_and(|(_, &end)| end > lo)
    }

    fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

/// Bound on recorded oracle violations per simulation.
const ORACLE_VIOLATIONS_MAX: usize = 64;

fn violation(s: &mut WorldState, what: String) {
    s.counters.disk_oracle_findings += 1;
    if s.disk_oracle.len() < ORACLE_VIOLATIONS_MAX {
        s.disk_oracle.push(what);
    }
}

impl SimFile {
    /// A write of `[offset, offset + len)` replaced the sectors it covers entirely: whatever
    /// a fault did to them before is gone.
    /// A pending write reached `durable` (synced, or kept by a power loss).
    fn durable_rewritten(&mut self, offset: u64, len: u64, misdirected: bool) {
        self.damaged_durable.remove(offset, offset + len);
        self.uncertain.remove(offset, offset + len);
        if misdirected {
            self.damaged_durable.insert(offset, offset + len);
        }
    }

    fn durable_apply(&mut self, pending: &Pending) {
        self.durable.apply(pending);
        if let Pending::Write {
            offset,
            data,
            misdirected,
        } = pending
        {
            self.durable_rewritten(*offset, data.len() as u64, *misdirected);
        }
    }

    fn rewritten(&mut self, offset: u64, len: u64) {
        let (lo, hi) = (offset, offset + len);
        self.damaged.remove(lo, hi);
        for t in &mut self.torn {
            t.kept.remove(lo, hi);
            t.lost.remove(lo, hi);
        }
        self.torn
            .retain(|t| !t.kept.is_empty() && !t.lost.is_empty());
    }

    /// Whether a fault damaging every range of `ranges` may be injected under the
    /// one-fault-per-structure model of `groups` (all or nothing); if so, the copies it
    /// touches are marked damaged.
    fn admit_damage(&mut self, groups: &[Vec<(u64, u64)>], ranges: &[(u64, u64)]) -> bool {
        let mut touched = Vec::new();
        for &(lo, hi) in ranges {
            for (g, copies) in groups.iter().enumerate() {
                for (c, &(offset, len)) in copies.iter().enumerate() {
                    if lo < offset + len && offset < hi {
                        touched.push((g, c));
                    }
                }
            }
        }
        let conflict = touched.iter().any(|&(g, c)| {
            self.damaged_copies
                .iter()
                .chain(touched.iter())
                .any(|&(dg, dc)| dg == g && dc != c)
        });
        if conflict {
            return false;
        }
        self.damaged_copies.extend(touched);
        true
    }

    /// A write of `[lo, hi)` repairs the damaged copies it covers entirely.
    fn repair_copies(&mut self, groups: &[Vec<(u64, u64)>], lo: u64, hi: u64) {
        self.damaged_copies.retain(|&(g, c)| {
            let (offset, len) = groups
                .get(g)
                .and_then(|cs| cs.get(c))
                .copied()
                .unwrap_or((0, 0));
            !(lo <= offset && offset + len <= hi)
        });
    }
}

#[derive(Default)]
pub(crate) struct NodeDisk {
    names: BTreeMap<PathBuf, u64>,
    files: BTreeMap<u64, SimFile>,
    dirs: BTreeSet<PathBuf>,
    next_inode: u64,
}

impl NodeDisk {
    /// Space used, for the disk-full knob: the files' lengths, holes included (as the dense
    /// images counted it; a sparse image does not change what a seed sees).
    fn bytes_used(&self) -> u64 {
        self.files.values().map(|f| f.current.len()).sum()
    }
}

fn sectors(offset: u64, len: u64) -> std::ops::Range<u64> {
    if len == 0 {
        return 0..0;
    }
    offset / SECTOR_SIZE..(offset + len).div_ceil(SECTOR_SIZE)
}

/// Power loss on `node`: each unsynced write is lost, kept or torn per the node's knobs.
pub(crate) fn power_loss(state: &mut WorldState, node: NodeId) {
    state.killed.insert(node);
    let faults = state.disk_faults(node);
    let Some(mut disk) = state.disks.remove(&node) else {
        return;
    };
    for (inode, file) in disk.files.iter_mut() {
        let pending = std::mem::take(&mut file.pending);
        file.pending_base = file.completed;
        // Outside the pending writes' ranges `current` equals `durable` (unless a failed
        // sync or a pending resize says otherwise): only those ranges are copied back below.
        let whole = file.diverged || pending.iter().any(|p| matches!(p, Pending::SetLen(_)));
        let ranges: Vec<(u64, u64)> = pending
            .iter()
            .filter_map(|p| match p {
                Pending::Write { offset, data, .. } => Some((*offset, data.len() as u64)),
                Pending::SetLen(_) => None,
            })
            .collect();
        for pending in pending {
            let Pending::Write {
                offset,
                data,
                misdirected,
            } = &pending
            else {
                file.durable.apply(&pending);
                continue;
            };
            let draw: f64 = state.rng.gen();
            if draw < faults.crash_lost_probability {
                state.counters.crash_lost_writes += 1;
                state.record(
                    "disk.crash_lost",
                    format!(
                        "node {node} inode {inode} offset {offset} len {}",
                        data.len()
                    ),
                );
            } else if draw < faults.crash_lost_probability + faults.crash_torn_probability {
                state.counters.crash_torn_writes += 1;
                let mut kept = Vec::new();
                let mut torn = Torn::default();
                let end = offset + data.len() as u64;
                let mut start = *offset;
                while start < end {
                    let sector_end = ((start / SECTOR_SIZE + 1) * SECTOR_SIZE).min(end);
                    let slice = &data[(start - offset) as usize..(sector_end - offset) as usize];
                    // A sector that already held these bytes (a rewrite of the same content: a
                    // repair, or an entry re-prepared with the same body under a new header)
                    // reads the same kept or lost: neither old nor new, nothing to mix.
                    let same = file.durable.holds(start, slice);
                    if state.rng.gen_bool(0.5) {
                        file.durable.write(start, slice);
                        file.durable_rewritten(start, sector_end - start, *misdirected);
                        file.rewritten(start, sector_end - start);
                        kept.push(start / SECTOR_SIZE);
                        if !same {
                            torn.kept.insert(start, sector_end);
                        }
                    } else if !same {
                        torn.lost.insert(start, sector_end);
                    }
                    start = sector_end;
                }
                if !torn.kept.is_empty() && !torn.lost.is_empty() {
                    file.torn.push(torn);
                }
                state.record(
                    "disk.crash_torn",
                    format!(
                        "node {node} inode {inode} offset {offset} len {} sectors kept {kept:?}",
                        data.len()
                    ),
                );
            } else {
                state.counters.crash_kept_writes += 1;
                file.durable_apply(&pending);
                file.rewritten(*offset, data.len() as u64);
            }
        }
        file.damaged = file.damaged_durable.clone();
        for &(offset, n) in &ranges {
            file.uncertain.insert(offset, offset + n);
        }
        if whole {
            file.current = file.durable.clone();
            file.diverged = false;
        } else {
            let len = file.durable.len();
            file.current.set_len(len);
            for (offset, n) in ranges {
                let (lo, hi) = (offset.min(len), (offset + n).min(len));
                file.current.copy_from(&file.durable, lo, hi);
            }
        }
    }
    state.disks.insert(node, disk);
}

/// A file on the simulated disk of the node that opened it.
#[derive(Clone, Debug)]
pub struct File {
    node: NodeId,
    inode: u64,
    path: PathBuf,
}

fn not_found(path: &Path) -> io::Error {
    io::Error::new(
        io::ErrorKind::NotFound,
        format!("{}: no such file", path.display()),
    )
}

async fn latency(node: NodeId, sync: bool) {
    let delay = fault::with(|s| {
        let faults = s.disk_faults(node);
        let range = if sync {
            faults.sync_latency
        } else {
            faults.io_latency
        };
        s.uniform(range)
    });
    if !delay.is_zero() {
        crate::time::sleep(delay).await;
    }
}

impl File {
    /// Open `path` for reading and writing, creating it if missing; never truncates.
    pub async fn open(path: impl AsRef<Path>) -> io::Result<File> {
        let node = madsim::plugin::node();
        let path = path.as_ref().to_path_buf();
        let inode = fault::with(|s| {
            let disk = s.disks.entry(node).or_default();
            if let Some(inode) = disk.names.get(&path) {
                return *inode;
            }
            disk.next_inode += 1;
            let inode = disk.next_inode;
            disk.names.insert(path.clone(), inode);
            disk.files.insert(inode, SimFile::default());
            inode
        });
        Ok(File { node, inode, path })
    }

    /// The path this file was opened at.
    pub fn path(&self) -> &Path {
        &self.path
    }

    fn with_file<T>(
        &self,
        f: impl FnOnce(&mut SimFile, &mut WorldState) -> io::Result<T>,
    ) -> io::Result<T> {
        fault::with(|s| {
            let mut disk = s.disks.remove(&self.node).unwrap_or_default();
            let result = match disk.files.get_mut(&self.inode) {
                Some(file) => f(file, s),
                None => Err(not_found(&self.path)),
            };
            s.disks.insert(self.node, disk);
            result
        })
    }

    /// Read exactly `buf.len()` bytes at `offset`.
    pub async fn read_at(&self, buf: &mut [u8], offset: u64) -> io::Result<()> {
        latency(self.node, false).await;
        let node = self.node;
        let path = self.path.display(); // formatted only into a message that needs it
        self.with_file(|file, s| {
            let len = buf.len() as u64;
            if offset + len > file.current.len() {
                return Err(io::Error::new(
                    io::ErrorKind::UnexpectedEof,
                    format!("{path}: read of {len} bytes at {offset} past the end"),
                ));
            }
            if len == 0 {
                return Ok(());
            }
            let faults = s.disk_faults(node);
            if s.chance(faults.latent_error_probability) {
                let range = sectors(offset, len);
                let sector = s.rng.gen_range(range);
                let lo = sector * SECTOR_SIZE;
                if file.admit_damage(&faults.redundant_copies, &[(lo, lo + SECTOR_SIZE)]) {
                    file.bad_sectors.insert(sector);
                    s.counters.latent_errors_injected += 1;
                    s.record(
                        "disk.latent_error",
                        format!("node {node} {path} sector {sector}"),
                    );
                }
            }
            if s.chance(faults.bit_rot_probability) {
                let byte = s.rng.gen_range(offset..offset + len) as usize;
                let bit = 1u8 << s.rng.gen_range(0..8);
                if file.admit_damage(&faults.redundant_copies, &[(byte as u64, byte as u64 + 1)]) {
                    file.current.flip(byte as u64, bit);
                    if (byte as u64) < file.durable.len() {
                        file.durable.flip(byte as u64, bit);
                    }
                    file.damaged.insert(byte as u64, byte as u64 + 1);
                    if (byte as u64) < file.durable.len() {
                        file.damaged_durable.insert(byte as u64, byte as u64 + 1);
                    }
                    s.counters.bit_rots += 1;
                    s.record(
                        "disk.bit_rot",
                        format!("node {node} {path} byte {byte} bit {bit:#04x}"),
                    );
                }
            }
            if file
                .bad_sectors
                .range(sectors(offset, len))
                .next()
                .is_some()
            {
                s.counters.latent_error_reads += 1;
                return Err(io::Error::other(format!(
                    "{path}: latent sector error reading {len} bytes at {offset}"
                )));
            }
            file.current.read(offset, buf);
            Ok(())
        })
    }

    /// Write all of `data` at `offset` (not durable until [`File::sync`]).
    pub async fn write_at(&self, data: &[u8], offset: u64) -> io::Result<()> {
        latency(self.node, false).await;
        let node = self.node;
        let path = self.path.display(); // formatted only into a message that needs it
        let used = fault::with(|s| s.disks.get(&node).map_or(0, NodeDisk::bytes_used));
        self.with_file(|file, s| {
            let faults = s.disk_faults(node);
            let len = data.len() as u64;
            let growth = (offset + len).saturating_sub(file.current.len());
            let over_capacity = faults.capacity_bytes.is_some_and(|cap| used + growth > cap);
            if over_capacity || s.chance(faults.disk_full_probability) {
                s.counters.disk_full_errors += 1;
                s.record("disk.full", format!("node {node} {path} offset {offset}"));
                return Err(io::Error::new(
                    io::ErrorKind::StorageFull,
                    format!("{path}: no space left on device"),
                ));
            }
            let mut target = offset;
            if len > 0 && s.chance(faults.misdirect_probability) {
                let extent = file.current.len().max(offset + len);
                let slots = extent.div_ceil(SECTOR_SIZE).max(2);
                target = s.rng.gen_range(0..slots) * SECTOR_SIZE;
                if target == offset {
                    target += SECTOR_SIZE;
                }
                // The data lands at `target` and the copy it was meant to rewrite stays stale:
                // both count as damage.
                if file.admit_damage(
                    &faults.redundant_copies,
                    &[(target, target + len), (offset, offset + len)],
                ) {
                    s.counters.misdirected_writes += 1;
                    s.record(
                        "disk.misdirect",
                        format!("node {node} {path} offset {offset} landed at {target} len {len}"),
                    );
                } else {
                    target = offset;
                }
            }
            file.current.write(target, data);
            file.rewritten(target, len);
            if target != offset {
                // The landing place holds bytes written for another: damaged (the meant place
                // keeps older bytes that were written there: stale, not damaged).
                file.damaged.insert(target, target + len);
                file.uncertain.insert(offset, offset + len);
            }
            file.repair_copies(&faults.redundant_copies, target, target + len);
            // A write to a sector clears its latent error: the OS writes whole pages and the
            // drive remaps the sector on write.
            if len > 0 {
                let cleared: Vec<u64> = file
                    .bad_sectors
                    .range(sectors(target, len))
                    .copied()
                    .collect();
                for sector in cleared {
                    file.bad_sectors.remove(&sector);
                }
            }
            file.completed += 1;
            file.pending.push(Pending::Write {
                offset: target,
                data: data.to_vec(),
                misdirected: target != offset,
            });
            Ok(())
        })
    }

    /// Make every write completed before this call durable (not those completed while the
    /// sync is in flight: the caller may keep writing, and only a later sync covers those).
    /// The writes covered are fixed when `sync` is called, before the returned future is
    /// first polled. On an injected failure, a random subset of the covered writes persists
    /// and the rest are dropped, as after a real `fsync` error.
    pub fn sync(&self) -> impl std::future::Future<Output = io::Result<()>> + Send + use<> {
        let covers = self.with_file(|file, _| Ok(file.completed)).unwrap_or(0);
        let file = self.clone();
        async move { file.sync_covering(covers).await }
    }

    async fn sync_covering(&self, covers: u64) -> io::Result<()> {
        latency(self.node, true).await;
        let node = self.node;
        let stall = fault::with(|s| {
            let faults = s.disk_faults(node);
            s.chance(faults.sync_stall_probability).then(|| {
                let stall = s.log_uniform(faults.sync_latency.1, faults.sync_stall_max);
                s.counters.syncs_stalled += 1;
                s.record(
                    "disk.sync_stall",
                    format!("node {node} {} {stall:?}", self.path.display()),
                );
                stall
            })
        });
        if let Some(stall) = stall {
            crate::time::sleep(stall).await;
        }
        let crash = fault::with(|s| {
            let p = s.disk_faults(node).crash_during_sync_probability;
            let crash = s.armed.remove(&node) || s.chance(p);
            if crash {
                s.counters.crashes_during_sync += 1;
                s.record(
                    "disk.crash_during_sync",
                    format!("node {node} {}", self.path.display()),
                );
            }
            crash
        });
        if crash {
            // Power loss now: the kill drops this task; the sync never returns.
            crate::sim::kill(node);
            std::future::pending::<()>().await;
        }
        let path = self.path.display(); // formatted only into a message that needs it
        self.with_file(|file, s| {
            let faults = s.disk_faults(node);
            // The writes completed before the call (a power loss since may have taken some).
            let count = covers.saturating_sub(file.pending_base) as usize;
            let count = count.min(file.pending.len());
            let pending: Vec<Pending> = file.pending.drain(..count).collect();
            file.pending_base += count as u64;
            if s.chance(faults.sync_error_probability) {
                let mut persisted = 0;
                for p in &pending {
                    if s.rng.gen_bool(0.5) {
                        file.durable_apply(p);
                        persisted += 1;
                    } else if let Pending::Write { offset, data, .. } = p {
                        file.uncertain.insert(*offset, *offset + data.len() as u64);
                    }
                }
                file.diverged = true;
                s.counters.sync_errors += 1;
                s.record(
                    "disk.sync_error",
                    format!(
                        "node {node} {path} persisted {persisted} of {}",
                        pending.len()
                    ),
                );
                return Err(io::Error::other(format!("{path}: fsync failed")));
            }
            for p in &pending {
                file.durable_apply(p);
            }
            let touched = pending
                .iter()
                .filter_map(|p| match p {
                    Pending::Write { offset, data, .. } if !data.is_empty() => Some(
                        *offset / PAGE as u64..=(*offset + data.len() as u64 - 1) / PAGE as u64,
                    ),
                    _ => None,
                })
                .flatten();
            let mut touched: Vec<u64> = touched.collect();
            touched.sort_unstable();
            touched.dedup();
            let SimFile {
                durable, current, ..
            } = file;
            durable.share_equal_pages(current, touched.iter().copied());
            durable.intern_pages(&mut s.pages, current, &touched);
            Ok(())
        })
    }

    /// The file's length in bytes.
    pub async fn len(&self) -> io::Result<u64> {
        self.with_file(|file, _| Ok(file.current.len()))
    }

    /// Whether the file is empty.
    pub async fn is_empty(&self) -> io::Result<bool> {
        Ok(self.len().await? == 0)
    }

    /// Take an advisory exclusive lock on the file. A no-op in simulation: each simulated
    /// node is one process that opens its data file once, and a kill ends the process (and
    /// would release a real lock).
    pub fn try_lock(&self) -> io::Result<()> {
        Ok(())
    }

    /// Truncate or extend (with zeros) to `len` bytes (not durable until [`File::sync`]).
    pub async fn set_len(&self, len: u64) -> io::Result<()> {
        self.with_file(|file, _| {
            file.current.set_len(len);
            file.completed += 1;
            file.pending.push(Pending::SetLen(len));
            Ok(())
        })
    }
}

fn with_disk<T>(f: impl FnOnce(&mut NodeDisk) -> T) -> T {
    let node = madsim::plugin::node();
    fault::with(|s| f(s.disks.entry(node).or_default()))
}

/// Remove a file (durably).
pub async fn remove(path: impl AsRef<Path>) -> io::Result<()> {
    let path = path.as_ref();
    with_disk(|disk| match disk.names.remove(path) {
        Some(inode) => {
            disk.files.remove(&inode);
            Ok(())
        }
        None => Err(not_found(path)),
    })
}

/// Rename a file, replacing any file at `to` (durably).
pub async fn rename(from: impl AsRef<Path>, to: impl AsRef<Path>) -> io::Result<()> {
    let (from, to) = (from.as_ref(), to.as_ref());
    with_disk(|disk| {
        let inode = disk.names.remove(from).ok_or_else(|| not_found(from))?;
        if let Some(old) = disk.names.insert(to.to_path_buf(), inode) {
            disk.files.remove(&old);
        }
        Ok(())
    })
}

/// Create a directory and its parents (durably).
pub async fn create_dir_all(path: impl AsRef<Path>) -> io::Result<()> {
    let path = path.as_ref();
    with_disk(|disk| {
        for ancestor in path.ancestors() {
            if !ancestor.as_os_str().is_empty() {
                disk.dirs.insert(ancestor.to_path_buf());
            }
        }
        Ok(())
    })
}

/// Whether a file or directory exists at `path`.
pub async fn exists(path: impl AsRef<Path>) -> io::Result<bool> {
    let path = path.as_ref();
    Ok(with_disk(|disk| {
        disk.names.contains_key(path) || disk.dirs.contains(path)
    }))
}

/// The names of the files in directory `dir`, sorted.
pub async fn list(dir: impl AsRef<Path>) -> io::Result<Vec<String>> {
    let dir = dir.as_ref();
    with_disk(|disk| {
        if !disk.dirs.contains(dir) && !disk.names.keys().any(|p| p.parent() == Some(dir)) {
            return Err(not_found(dir));
        }
        Ok(disk
            .names
            .keys()
            .filter(|p| p.parent() == Some(dir))
            .filter_map(|p| p.file_name().map(|n| n.to_string_lossy().into_owned()))
            .collect())
    })
}

/// Give node `to` a disk holding exactly what survives a power loss of node `from` now: each
/// file's durable image (unsynced writes dropped, none torn), with its latent sector errors.
/// For offline examination of a running node's disk without disturbing it (the VOPR reads
/// every replica's durable state back at the end of a seed); `to` should be a fresh node
/// without disk faults.
pub fn copy_durable(from: NodeId, to: NodeId) {
    fault::with(|s| {
        let copy = s.disks.get(&from).map(|disk| NodeDisk {
            names: disk.names.clone(),
            files: disk
                .files
                .iter()
                .map(|(&inode, f)| {
                    let file = SimFile {
                        current: f.durable.clone(),
                        durable: f.durable.clone(),
                        pending: Vec::new(),
                        completed: f.completed,
                        pending_base: f.completed,
                        bad_sectors: f.bad_sectors.clone(),
                        damaged_copies: f.damaged_copies.clone(),
                        diverged: false,
                        damaged: f.damaged_durable.clone(),
                        damaged_durable: f.damaged_durable.clone(),
                        torn: f.torn.clone(),
                        uncertain: f.uncertain.clone(),
                    };
                    (inode, file)
                })
                .collect(),
            dirs: disk.dirs.clone(),
            next_inode: disk.next_inode,
        });
        match copy {
            Some(disk) => s.disks.insert(to, disk),
            None => s.disks.remove(&to),
        };
    })
}

/// Disk oracle (issue 12): storage accepted `[offset, offset + len)` of `file` as a valid
/// `what` after its own checks. The simulator knows the ground truth: the item must not
/// contain a byte an injected fault damaged (bit rot, a misdirected write's landing place)
/// nor straddle the kept and lost sectors of a write torn by a power loss. Otherwise storage's
/// validation let damage through (a checksum not covering a field, a read path that skips a
/// check): a violation, found by [`oracle_violations`]. Stale bytes (an older write never
/// overwritten, e.g. after a lost or misdirected write) are not the oracle's business: they
/// were written there, and the protocol's hash chains judge them.
pub fn accepted(file: &File, offset: u64, len: u64, what: &str) {
    let (lo, hi) = (offset, offset + len);
    oracle(
        file,
        |s| &mut s.counters.disk_items_accepted,
        |f| {
            let rotten = f.damaged.within(lo, hi);
            if !rotten.is_empty() {
                return Some(format!(
                    "storage accepted {what} ({len} bytes at {offset}) containing bytes \
                 {rotten:?} damaged by an injected fault"
                ));
            }
            let straddles = f
                .torn
                .iter()
                .any(|t| t.kept.intersects(lo, hi) && t.lost.intersects(lo, hi));
            straddles.then(|| {
                format!(
                    "storage accepted {what} ({len} bytes at {offset}) that is half of a write \
                 torn by a power loss (some sectors new, some old)"
                )
            })
        },
    )
}

/// Disk oracle, accountability (issue 12): storage found one item of `file` faulty — `what`,
/// stored in the byte ranges `ranges` (e.g. a WAL slot's prepare and its redundant header).
/// It must be explained by an injected fault there: a damaged byte, a latent sector error, or
/// a range a fault left uncertain (a write pending at a power loss, dropped by a failed sync,
/// or meant for there and misdirected). Otherwise storage called good data faulty: a
/// violation.
pub fn reported_faulty(file: &File, ranges: &[(u64, u64)], what: &str) {
    oracle(
        file,
        |s| &mut s.counters.disk_items_reported_faulty,
        |f| {
            let explained = ranges.iter().any(|&(offset, len)| {
                let (lo, hi) = (offset, offset + len);
                f.damaged.intersects(lo, hi)
                    || f.uncertain.intersects(lo, hi)
                    || f.bad_sectors.range(sectors(offset, len)).next().is_some()
            });
            (!explained).then(|| {
                format!(
                    "storage reported {what} (at {ranges:?}) faulty, but no injected fault \
                 damaged those bytes or left them uncertain"
                )
            })
        },
    )
}

/// One disk-oracle judgement of `file`: count it (`counter`), and record what `judge` finds
/// wrong with the file's ground truth, prefixed with where.
fn oracle(
    file: &File,
    counter: impl FnOnce(&mut WorldState) -> &mut u64,
    judge: impl FnOnce(&SimFile) -> Option<String>,
) {
    fault::with(|s| {
        *counter(s) += 1;
        let finding = s
            .disks
            .get(&file.node)
            .and_then(|d| d.files.get(&file.inode))
            .and_then(judge);
        if let Some(finding) = finding {
            let where_ = format!("node {} {}", file.node, file.path.display());
            violation(s, format!("{where_}: {finding}"));
        }
    })
}

/// Everything the disk oracle found wrong in this simulation, in order.
pub fn oracle_violations() -> Vec<String> {
    fault::with(|s| s.disk_oracle.clone())
}

/// Drop node `node`'s whole disk (its files are gone, as after a disk swap): frees a copy made
/// by [`copy_durable`] once it has been examined.
pub fn discard_disk(node: NodeId) {
    fault::with(|s| {
        s.disks.remove(&node);
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The dense image the sparse one replaced, as the reference: what every operation of
    /// [`Image`] must do.
    #[derive(Clone, Default)]
    struct Dense(Vec<u8>);

    impl Dense {
        fn write(&mut self, offset: u64, data: &[u8]) {
            let (start, end) = (offset as usize, offset as usize + data.len());
            if self.0.len() < end {
                self.0.resize(end, 0);
            }
            self.0[start..end].copy_from_slice(data);
        }
    }

    /// A small deterministic generator (xorshift64*), enough to drive the comparison.
    struct Gen(u64);

    impl Gen {
        fn below(&mut self, n: u64) -> u64 {
            self.0 ^= self.0 >> 12;
            self.0 ^= self.0 << 25;
            self.0 ^= self.0 >> 27;
            self.0.wrapping_mul(0x2545_f491_4f6c_dd1d) % n.max(1)
        }
    }

    fn same(sparse: &Image, dense: &Dense) {
        assert_eq!(sparse.len(), dense.0.len() as u64);
        let mut buf = vec![0xaa; dense.0.len()];
        sparse.read(0, &mut buf);
        assert!(buf == dense.0, "contents differ");
    }

    /// Pages shared after a sync hold the same bytes once, and a write to either image after
    /// copies the page again: the other one keeps its bytes. Pages that differ stay apart.
    #[test]
    fn shared_equal_pages_are_stored_once_and_copied_on_write() {
        let (mut durable, mut current) = (Image::default(), Image::default());
        for image in [&mut durable, &mut current] {
            image.write(0, &[1; 2 * PAGE]);
        }
        current.write(PAGE as u64 + 7, &[2; 3]);
        durable.share_equal_pages(&current, 0..=1);
        assert!(Arc::ptr_eq(&durable.pages[&0], &current.pages[&0]));
        assert!(!Arc::ptr_eq(&durable.pages[&1], &current.pages[&1]));
        current.write(3, &[9]);
        let (mut d, mut c) = ([0; 8], [0; 8]);
        durable.read(0, &mut d);
        current.read(0, &mut c);
        assert_eq!((d, c), ([1; 8], [1, 1, 1, 9, 1, 1, 1, 1]));
        assert!(!Arc::ptr_eq(&durable.pages[&0], &current.pages[&0]));
    }

    /// Pages with equal bytes in different files are stored once after their syncs (and the
    /// current image that shared the durable page follows); a write to one copies it again,
    /// and the other keeps its bytes. Pages that differ stay apart.
    #[test]
    fn equal_pages_of_different_files_are_stored_once() {
        let mut store = PageStore::default();
        let (mut a, mut a_current) = (Image::default(), Image::default());
        let (mut b, mut b_current) = (Image::default(), Image::default());
        for image in [&mut a, &mut b, &mut a_current] {
            image.write(0, &[7; 2 * PAGE]);
        }
        b.write(PAGE as u64, &[8]);
        b_current.write(0, &[7; PAGE]);
        a_current.share_equal_pages(&a, 0..=1);
        a.intern_pages(&mut store, &mut a_current, &[0, 1]);
        b.intern_pages(&mut store, &mut b_current, &[0, 1]);
        assert!(Arc::ptr_eq(&a.pages[&0], &b.pages[&0]));
        assert!(Arc::ptr_eq(&a.pages[&0], &a_current.pages[&0]));
        assert!(!Arc::ptr_eq(&a.pages[&1], &b.pages[&1]));
        // `b_current` held its own page, not `b`'s: it is left alone.
        assert!(!Arc::ptr_eq(&b.pages[&0], &b_current.pages[&0]));
        b.write(1, &[9]);
        let (mut x, mut y) = ([0; 4], [0; 4]);
        a.read(0, &mut x);
        b.read(0, &mut y);
        assert_eq!((x, y), ([7; 4], [7, 9, 7, 7]));
        drop((b, b_current));
        // Freed pages' entries go at a sweep; the live ones stay.
        for n in 0..3000u32 {
            let mut bytes = [0; PAGE];
            bytes[..4].copy_from_slice(&n.to_le_bytes());
            store.intern(&mut Arc::new(bytes));
        }
        assert!(store.pages.len() < 3000);
        let mut again = Arc::new([7; PAGE]);
        store.intern(&mut again);
        assert!(Arc::ptr_eq(&again, &a.pages[&0]));
    }

    /// Random writes, resizes, bit flips, range copies and clones across page boundaries:
    /// the sparse image reads exactly as the dense one, byte for byte.
    #[test]
    fn sparse_image_reads_as_the_dense_one() {
        let mut g = Gen(0x9e37_79b9_7f4a_7c15);
        let span = 5 * PAGE as u64;
        for _ in 0..200 {
            let (mut a, mut da) = (Image::default(), Dense::default());
            let (mut b, mut db) = (Image::default(), Dense::default());
            for _ in 0..60 {
                match g.below(7) {
                    0 | 1 => {
                        let offset = g.below(span);
                        let len = g.below(2 * PAGE as u64 + 10) as usize;
                        let data: Vec<u8> = (0..len).map(|_| g.below(256) as u8).collect();
                        a.write(offset, &data);
                        da.write(offset, &data);
                    }
                    2 => {
                        let len = g.below(span + 100);
                        a.set_len(len);
                        da.0.resize(len as usize, 0);
                    }
                    3 if da.0.is_empty() => {}
                    3 => {
                        let byte = g.below(da.0.len() as u64);
                        let bit = 1u8 << g.below(8);
                        a.flip(byte, bit);
                        da.0[byte as usize] ^= bit;
                    }
                    4 => {
                        // As at a power loss: `b` takes `a`'s length, then ranges of `a`.
                        let len = a.len();
                        b.set_len(len);
                        db.0.resize(len as usize, 0);
                        for _ in 0..3 {
                            let lo = g.below(len + 1);
                            let hi = (lo + g.below(2 * PAGE as u64)).min(len);
                            b.copy_from(&a, lo, hi);
                            db.0[lo as usize..hi as usize]
                                .copy_from_slice(&da.0[lo as usize..hi as usize]);
                        }
                    }
                    5 => {
                        (b, db) = (a.clone(), da.clone());
                    }
                    _ => {
                        let offset = g.below(span);
                        let len = g.below(PAGE as u64) as usize;
                        let end = offset as usize + len;
                        let data = match da.0.get(offset as usize..end) {
                            Some(d) if g.below(2) == 0 => d.to_vec(),
                            _ => (0..len).map(|_| g.below(2) as u8).collect(),
                        };
                        assert_eq!(
                            a.holds(offset, &data),
                            da.0.get(offset as usize..end) == Some(&data[..])
                        );
                    }
                }
                same(&a, &da);
                same(&b, &db);
            }
        }
    }
}
