//! A crash-simulating, fault-injecting storage backend (feature `sim`).
//!
//! [`SimStorage`] performs every operation on the real file system (the *live* state, which the
//! running store sees) and tracks on the side what would survive a power cut (the *durable*
//! state), following the durability model of the storage backend:
//! - bytes written through a mapping become durable when a flush covers them;
//! - `write_synced` / `overwrite_synced` make a file's content durable, `write_unsynced` does
//!   not;
//! - a new, renamed or removed directory entry becomes durable only when its parent directory
//!   is synced.
//!
//! Files and directories are modelled as inodes: a file inode holds its durable content
//! (sparse, in 4 KiB pages), a directory inode holds two name → inode maps, its live entries
//! and its durable entries (the live ones as of its last sync). A file survives a crash if it
//! is reachable from the root through durable entries only.
//!
//! [`SimStorage::power_cut`] freezes the durable state (every later mutating operation fails
//! with EIO); [`SimStorage::restart`] replaces the real directory tree with what a disk would
//! hold after the crash, so a new store can be opened on it. [`SimStorage::fail_nth`] and
//! [`SimStorage::fail_from`] inject errors at chosen operations; [`SimStorage::count`] counts
//! operations, so a test can first count the I/O points of a scenario and then fail each.
//!
//! Paths outside the root given to [`SimStorage::new`] are passed through untracked.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::ffi::OsString;
use std::fmt;
use std::fs::{self, File};
use std::io;
use std::os::unix::fs::FileExt;
use std::path::{Component, Path, PathBuf};
use std::sync::Arc;

use memmap2::MmapRaw;
use parking_lot::Mutex;

pub use crate::storage::backend::OpKind;
use crate::storage::backend::{DirEntry, FileStorage, Storage};

/// Page size of the content model (and of the pages [`Keep::RandomPages`] picks from).
const PAGE: usize = super::PAGE_SIZE as usize;
/// Bytes read at a time when copying live content.
const CHUNK: usize = 1 << 20;
/// The root directory's inode.
const ROOT: u64 = 0;

/// What a [`SimStorage::restart`] keeps beyond the durable state.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Keep {
    /// Only what was made durable.
    Nothing,
    /// Also each 4 KiB page of a surviving file whose live content differs from its durable
    /// content, with probability `probability`, as a disk writing back dirty pages on its own
    /// would. The choice is deterministic for a given `seed` and sequence of operations.
    RandomPages {
        /// Seed of the page choice.
        seed: u64,
        /// Chance of each differing page to be kept (0.0: none, 1.0: all).
        probability: f64,
    },
}

/// A storage backend over the real file system that tracks what would survive a power cut
/// and fails chosen operations. Cheap to clone: clones share the same state.
#[derive(Clone)]
pub struct SimStorage {
    inner: Arc<Inner>,
}

struct Inner {
    /// The root as given to [`SimStorage::new`].
    root: PathBuf,
    /// The root with symlinks resolved, to recognise paths spelled through it.
    canonical_root: PathBuf,
    state: Mutex<State>,
}

impl fmt::Debug for SimStorage {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SimStorage")
            .field("root", &self.inner.root)
            .finish_non_exhaustive()
    }
}

/// File content, sparse: missing pages are zeros.
#[derive(Default)]
struct Content {
    len: u64,
    pages: BTreeMap<u64, Box<[u8; PAGE]>>,
}

impl Content {
    fn zeros(len: u64) -> Content {
        Content {
            len,
            pages: BTreeMap::new(),
        }
    }

    fn from_bytes(data: &[u8]) -> Content {
        let mut c = Content::default();
        c.write(0, data);
        c
    }

    /// Writes `data` at `offset`, extending the length if needed.
    fn write(&mut self, offset: u64, data: &[u8]) {
        let mut pos = offset;
        let mut rest = data;
        while !rest.is_empty() {
            let idx = pos / PAGE as u64;
            let within = (pos % PAGE as u64) as usize;
            let n = (PAGE - within).min(rest.len());
            let (chunk, tail) = rest.split_at(n);
            if chunk.iter().all(|&b| b == 0) {
                if let Some(page) = self.pages.get_mut(&idx) {
                    page[within..within + n].fill(0);
                    if page.iter().all(|&b| b == 0) {
                        self.pages.remove(&idx);
                    }
                }
            } else {
                let page = self.pages.entry(idx).or_insert_with(|| Box::new([0; PAGE]));
                page[within..within + n].copy_from_slice(chunk);
            }
            pos += n as u64;
            rest = tail;
        }
        self.len = self.len.max(offset + data.len() as u64);
    }

    /// Bytes of page `idx` inside the length.
    fn page_len(&self, idx: u64) -> usize {
        let start = idx * PAGE as u64;
        (self.len.saturating_sub(start)).min(PAGE as u64) as usize
    }

    fn page_count(&self) -> u64 {
        self.len.div_ceil(PAGE as u64)
    }

    /// Reads the whole content of `file`.
    fn read_from(file: &File) -> io::Result<Content> {
        let mut c = Content::default();
        let mut buf = vec![0; CHUNK];
        let mut pos = 0;
        loop {
            let n = read_full_at(file, &mut buf, pos)?;
            c.write(pos, &buf[..n]);
            pos += n as u64;
            if n < buf.len() {
                return Ok(c);
            }
        }
    }
}

/// Reads into `buf` at `pos` until it is full or the file ends; returns the bytes read.
fn read_full_at(file: &File, buf: &mut [u8], pos: u64) -> io::Result<usize> {
    let mut done = 0;
    while done < buf.len() {
        match file.read_at(&mut buf[done..], pos + done as u64) {
            Ok(0) => break,
            Ok(n) => done += n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(done)
}

struct FileNode {
    /// What survives a crash.
    content: Content,
    /// The real file, opened read-only when it is mapped, to read back what was written
    /// through the mapping (the page cache is coherent with shared mappings). Keeps reading
    /// the same inode after the file is renamed or removed.
    reader: Option<File>,
}

#[derive(Default)]
struct DirNode {
    live: BTreeMap<OsString, u64>,
    durable: BTreeMap<OsString, u64>,
}

enum Node {
    File(FileNode),
    Dir(DirNode),
}

/// One fault plan of [`SimStorage::fail_nth`] / [`SimStorage::fail_from`].
struct Fault {
    kind: OpKind,
    /// Operations of `kind` until it fires (1: the next one).
    remaining: u64,
    errno: i32,
    sticky: bool,
}

/// A directory tree with contents: what [`SimStorage::new`] imports and what
/// [`SimStorage::restart`] writes.
enum Image {
    Dir(BTreeMap<OsString, Image>),
    File(Content),
}

struct State {
    nodes: HashMap<u64, Node>,
    next_id: u64,
    power_cut: bool,
    counts: HashMap<OpKind, u64>,
    faults: Vec<Fault>,
}

impl State {
    /// A state whose live and durable trees are both `image` (a directory).
    fn from_image(image: Image) -> State {
        let mut st = State {
            nodes: HashMap::new(),
            next_id: ROOT + 1,
            power_cut: false,
            counts: HashMap::new(),
            faults: Vec::new(),
        };
        let root = st.add_image(image);
        if let Some(node) = st.nodes.remove(&root) {
            st.nodes.insert(ROOT, node);
        }
        st
    }

    fn add_image(&mut self, image: Image) -> u64 {
        let node = match image {
            Image::File(content) => Node::File(FileNode {
                content,
                reader: None,
            }),
            Image::Dir(children) => {
                let mut dir = DirNode::default();
                for (name, child) in children {
                    let id = self.add_image(child);
                    dir.live.insert(name.clone(), id);
                    dir.durable.insert(name, id);
                }
                Node::Dir(dir)
            }
        };
        self.add(node)
    }

    fn add(&mut self, node: Node) -> u64 {
        let id = self.next_id;
        self.next_id += 1;
        self.nodes.insert(id, node);
        id
    }

    /// Accounts for one operation of `kind`: counts it, advances the fault plans and fails
    /// it if one fires or, for a mutating operation, if the power is cut.
    fn enter(&mut self, kind: OpKind) -> io::Result<()> {
        *self.counts.entry(kind).or_default() += 1;
        let mut fired = None;
        self.faults.retain_mut(|f| {
            if f.kind != kind {
                return true;
            }
            if f.remaining > 1 {
                f.remaining -= 1;
                return true;
            }
            fired.get_or_insert(f.errno);
            f.sticky
        });
        if self.power_cut && kind != OpKind::Read {
            return Err(io::Error::from_raw_os_error(libc::EIO));
        }
        match fired {
            Some(errno) => Err(io::Error::from_raw_os_error(errno)),
            None => Ok(()),
        }
    }

    fn dir(&self, id: u64) -> Option<&DirNode> {
        match self.nodes.get(&id) {
            Some(Node::Dir(d)) => Some(d),
            _ => None,
        }
    }

    fn dir_mut(&mut self, id: u64) -> Option<&mut DirNode> {
        match self.nodes.get_mut(&id) {
            Some(Node::Dir(d)) => Some(d),
            _ => None,
        }
    }

    fn file_mut(&mut self, id: u64) -> Option<&mut FileNode> {
        match self.nodes.get_mut(&id) {
            Some(Node::File(f)) => Some(f),
            _ => None,
        }
    }

    /// The inode at `comps` from the root, through live or through durable entries.
    fn resolve(&self, comps: &[OsString], durable: bool) -> Option<u64> {
        let mut id = ROOT;
        for name in comps {
            let dir = self.dir(id)?;
            let entries = if durable { &dir.durable } else { &dir.live };
            id = *entries.get(name)?;
        }
        Some(id)
    }

    /// The live directory at `comps`, creating missing ones (live only); `None` if a
    /// component is a file.
    fn live_dir(&mut self, comps: &[OsString]) -> Option<u64> {
        let mut id = ROOT;
        for name in comps {
            let next = self.dir(id)?.live.get(name).copied();
            id = match next {
                Some(next) => next,
                None => {
                    let new = self.add(Node::Dir(DirNode::default()));
                    self.dir_mut(id)?.live.insert(name.clone(), new);
                    new
                }
            };
        }
        self.dir(id).map(|_| id)
    }

    /// The live file at `comps`.
    fn live_file(&mut self, comps: &[OsString]) -> Option<&mut FileNode> {
        let id = self.resolve(comps, false)?;
        self.file_mut(id)
    }

    /// Makes `comps` name `id` in the live tree (replacing what it named).
    fn link_live(&mut self, comps: &[OsString], id: u64) {
        if let Some((name, parent)) = comps.split_last()
            && let Some(dir) = self.live_dir(parent)
            && let Some(dir) = self.dir_mut(dir)
        {
            dir.live.insert(name.clone(), id);
        }
    }

    /// Removes the live entry `comps`, returning the inode it named.
    fn unlink_live(&mut self, comps: &[OsString]) -> Option<u64> {
        let (name, parent) = comps.split_last()?;
        let dir = self.resolve(parent, false)?;
        self.dir_mut(dir)?.live.remove(name)
    }

    /// Drops the inodes no live or durable entry reaches any more.
    fn collect_garbage(&mut self) {
        let mut reached = HashSet::from([ROOT]);
        let mut todo = vec![ROOT];
        while let Some(id) = todo.pop() {
            if let Some(dir) = self.dir(id) {
                for &child in dir.live.values().chain(dir.durable.values()) {
                    if reached.insert(child) {
                        todo.push(child);
                    }
                }
            }
        }
        self.nodes.retain(|id, _| reached.contains(id));
    }

    /// What a disk would hold after a crash now: the durable tree, plus live pages per `keep`.
    fn crash_image(&self, id: u64, rng: &mut Option<(SplitMix64, f64)>) -> io::Result<Image> {
        match self.nodes.get(&id) {
            Some(Node::Dir(dir)) => {
                let mut children = BTreeMap::new();
                for (name, &child) in &dir.durable {
                    children.insert(name.clone(), self.crash_image(child, rng)?);
                }
                Ok(Image::Dir(children))
            }
            Some(Node::File(file)) => {
                let mut content = Content {
                    len: file.content.len,
                    pages: file.content.pages.clone(),
                };
                if let (Some((rng, probability)), Some(reader)) = (rng.as_mut(), &file.reader) {
                    keep_random_pages(&mut content, reader, rng, *probability)?;
                }
                Ok(Image::File(content))
            }
            None => Ok(Image::Dir(BTreeMap::new())),
        }
    }
}

/// Takes each page of `live` that differs from `content` with the given probability.
fn keep_random_pages(
    content: &mut Content,
    live: &File,
    rng: &mut SplitMix64,
    probability: f64,
) -> io::Result<()> {
    let zeros = [0u8; PAGE];
    let mut buf = [0u8; PAGE];
    for idx in 0..content.page_count() {
        let len = content.page_len(idx);
        buf.fill(0);
        read_full_at(live, &mut buf[..len], idx * PAGE as u64)?;
        let durable = content.pages.get(&idx).map_or(&zeros, |p| p);
        if buf[..len] != durable[..len] && rng.next_f64() < probability {
            content.write(idx * PAGE as u64, &buf[..len]);
        }
    }
    Ok(())
}

/// A small deterministic PRNG (SplitMix64).
struct SplitMix64(u64);

impl SplitMix64 {
    fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// Uniform in `[0, 1)`.
    fn next_f64(&mut self) -> f64 {
        (self.next_u64() >> 11) as f64 / (1u64 << 53) as f64
    }
}

/// Reads the real tree under `dir` (files and directories; anything else is skipped).
fn import(dir: &Path) -> io::Result<Image> {
    let mut children = BTreeMap::new();
    for entry in fs::read_dir(dir)? {
        let entry = entry?;
        let path = entry.path();
        let kind = entry.file_type()?;
        if kind.is_dir() {
            children.insert(entry.file_name(), import(&path)?);
        } else if kind.is_file() {
            let content = Content::read_from(&File::open(&path)?)?;
            children.insert(entry.file_name(), Image::File(content));
        }
    }
    Ok(Image::Dir(children))
}

/// Writes `image` (a directory's children) under the existing, empty directory `dir`.
fn write_image(dir: &Path, image: &Image) -> io::Result<()> {
    let Image::Dir(children) = image else {
        return Ok(());
    };
    for (name, child) in children {
        let path = dir.join(name);
        match child {
            Image::Dir(_) => {
                fs::create_dir(&path)?;
                write_image(&path, child)?;
            }
            Image::File(content) => {
                let file = File::create(&path)?;
                file.set_len(content.len)?;
                for (&idx, page) in &content.pages {
                    let len = content.page_len(idx);
                    file.write_all_at(&page[..len], idx * PAGE as u64)?;
                }
            }
        }
    }
    Ok(())
}

/// Removes everything inside `dir`, keeping `dir`.
fn clear_dir(dir: &Path) -> io::Result<()> {
    for entry in fs::read_dir(dir)? {
        let entry = entry?;
        if entry.file_type()?.is_dir() {
            fs::remove_dir_all(entry.path())?;
        } else {
            fs::remove_file(entry.path())?;
        }
    }
    Ok(())
}

fn open_reader(path: &Path) -> Option<File> {
    File::open(path).ok()
}

impl SimStorage {
    /// A simulator over the directory `root` (created if missing). Whatever is already under
    /// it is taken as both live and durable.
    pub fn new(root: &Path) -> io::Result<SimStorage> {
        fs::create_dir_all(root)?;
        let canonical_root = root.canonicalize()?;
        let state = State::from_image(import(root)?);
        Ok(SimStorage {
            inner: Arc::new(Inner {
                root: root.to_path_buf(),
                canonical_root,
                state: Mutex::new(state),
            }),
        })
    }

    /// The root directory given to [`SimStorage::new`].
    pub fn root(&self) -> &Path {
        &self.inner.root
    }

    /// Cuts the power: from now on every operation that writes (including flushes) fails with
    /// EIO and changes nothing, so the durable state stays as it is at this instant. Reads
    /// still work. Bytes the store writes through its mappings still reach the live files
    /// (see [`Keep::RandomPages`]).
    pub fn power_cut(&self) {
        self.inner.state.lock().power_cut = true;
    }

    /// Whether [`SimStorage::power_cut`] was called since the last restart.
    pub fn is_power_cut(&self) -> bool {
        self.inner.state.lock().power_cut
    }

    /// Simulates the machine coming back after a crash at this instant (with or without a
    /// [`SimStorage::power_cut`] first): replaces everything under the root with what would
    /// have survived (durable directories and files, plus pages per `keep`), then makes that
    /// the live and durable state, turns the power back on and clears the fault plans
    /// (operation counts are kept). Call it after the store using this backend was dropped.
    ///
    /// On an I/O error the real tree may be left half rewritten.
    pub fn restart(&self, keep: Keep) -> io::Result<()> {
        let mut st = self.inner.state.lock();
        let mut rng = match keep {
            Keep::Nothing => None,
            Keep::RandomPages { seed, probability } => Some((SplitMix64(seed), probability)),
        };
        let image = st.crash_image(ROOT, &mut rng)?;
        clear_dir(&self.inner.root)?;
        write_image(&self.inner.root, &image)?;
        let counts = std::mem::take(&mut st.counts);
        *st = State::from_image(image);
        st.counts = counts;
        Ok(())
    }

    /// The durable length of the file `path`, `None` unless it would survive a crash now.
    pub fn durable_len(&self, path: &Path) -> Option<u64> {
        let comps = self.components(path)?;
        let st = self.inner.state.lock();
        match st.nodes.get(&st.resolve(&comps, true)?)? {
            Node::File(f) => Some(f.content.len),
            Node::Dir(_) => None,
        }
    }

    /// Whether the file or directory `path` would survive a crash now.
    pub fn is_durable(&self, path: &Path) -> bool {
        self.components(path)
            .is_some_and(|comps| self.inner.state.lock().resolve(&comps, true).is_some())
    }

    /// Makes the `n`-th next operation of `kind` (1: the very next one) fail with
    /// `errno` without being performed. Later operations succeed again. `n` = 0 counts as 1.
    pub fn fail_nth(&self, kind: OpKind, n: u64, errno: i32) {
        self.plan(kind, n, errno, false);
    }

    /// Makes the `n`-th next operation of `kind` (1: the very next one) and every later one
    /// fail with `errno` without being performed, until [`SimStorage::clear_faults`] or
    /// [`SimStorage::restart`]. `n` = 0 counts as 1.
    pub fn fail_from(&self, kind: OpKind, n: u64, errno: i32) {
        self.plan(kind, n, errno, true);
    }

    /// Drops all fault plans of [`SimStorage::fail_nth`] and [`SimStorage::fail_from`].
    pub fn clear_faults(&self) {
        self.inner.state.lock().faults.clear();
    }

    /// How many operations of `kind` were attempted (including the ones that failed) since
    /// [`SimStorage::new`] or [`SimStorage::reset_counts`]. The `n`-th operation counted
    /// from a given moment is the one `fail_nth(kind, n, ..)` called at that moment fails.
    pub fn count(&self, kind: OpKind) -> u64 {
        self.inner
            .state
            .lock()
            .counts
            .get(&kind)
            .copied()
            .unwrap_or(0)
    }

    /// Sets all operation counts back to zero.
    pub fn reset_counts(&self) {
        self.inner.state.lock().counts.clear();
    }

    fn plan(&self, kind: OpKind, n: u64, errno: i32, sticky: bool) {
        self.inner.state.lock().faults.push(Fault {
            kind,
            remaining: n.max(1),
            errno,
            sticky,
        });
    }

    /// `path` relative to the root, as normalised components; `None` outside the root.
    fn components(&self, path: &Path) -> Option<Vec<OsString>> {
        let rel = path
            .strip_prefix(&self.inner.root)
            .or_else(|_| path.strip_prefix(&self.inner.canonical_root))
            .ok()?;
        let mut comps = Vec::new();
        for c in rel.components() {
            match c {
                Component::Normal(name) => comps.push(name.to_os_string()),
                Component::CurDir => {}
                Component::ParentDir => {
                    comps.pop()?;
                }
                Component::RootDir | Component::Prefix(_) => return None,
            }
        }
        Some(comps)
    }

    /// A read-only operation: accounted, then performed without holding the state lock.
    fn read_op(&self) -> io::Result<()> {
        self.inner.state.lock().enter(OpKind::Read)
    }

    /// Copies `[from, from + len)` of the live file into its durable content.
    fn persist_range(file: &mut FileNode, path: &Path, from: u64, len: u64) -> io::Result<()> {
        if file.reader.is_none() {
            file.reader = Some(File::open(path)?);
        }
        let Some(reader) = &file.reader else {
            return Ok(());
        };
        let end = from.saturating_add(len);
        let mut buf = vec![0; CHUNK.min(usize::try_from(len).unwrap_or(CHUNK))];
        let mut pos = from;
        while pos < end {
            let want = buf
                .len()
                .min(usize::try_from(end - pos).unwrap_or(usize::MAX));
            let n = read_full_at(reader, &mut buf[..want], pos)?;
            file.content.write(pos, &buf[..n]);
            if n < want {
                break;
            }
            pos += n as u64;
        }
        Ok(())
    }
}

impl Storage for SimStorage {
    fn create_mapped(&self, path: &Path, size: u64) -> io::Result<MmapRaw> {
        let mut st = self.inner.state.lock();
        st.enter(OpKind::Allocate)?;
        let map = FileStorage.create_mapped(path, size)?;
        if let Some(comps) = self.components(path) {
            let id = st.add(Node::File(FileNode {
                content: Content::zeros(size),
                reader: open_reader(path),
            }));
            st.link_live(&comps, id);
        }
        Ok(map)
    }

    fn open_mapped(&self, path: &Path) -> io::Result<(MmapRaw, u64)> {
        self.read_op()?;
        let mapped = FileStorage.open_mapped(path)?;
        if let Some(comps) = self.components(path)
            && let Some(file) = self.inner.state.lock().live_file(&comps)
            && file.reader.is_none()
        {
            file.reader = open_reader(path);
        }
        Ok(mapped)
    }

    fn flush_mapped(&self, path: &Path, map: &MmapRaw, from: usize, len: usize) -> io::Result<()> {
        let mut st = self.inner.state.lock();
        st.enter(OpKind::Flush)?;
        FileStorage.flush_mapped(path, map, from, len)?;
        if let Some(comps) = self.components(path)
            && let Some(file) = st.live_file(&comps)
        {
            Self::persist_range(file, path, from as u64, len as u64)?;
        }
        Ok(())
    }

    fn read(&self, path: &Path) -> io::Result<Vec<u8>> {
        self.read_op()?;
        FileStorage.read(path)
    }

    fn read_at(&self, path: &Path, offset: u64, buf: &mut [u8]) -> io::Result<u64> {
        self.read_op()?;
        FileStorage.read_at(path, offset, buf)
    }

    fn write_synced(&self, path: &Path, data: &[u8]) -> io::Result<()> {
        let mut st = self.inner.state.lock();
        st.enter(OpKind::Write)?;
        FileStorage.write_synced(path, data)?;
        if let Some(comps) = self.components(path) {
            if let Some(file) = st.live_file(&comps) {
                file.content = Content::from_bytes(data);
            } else {
                let id = st.add(Node::File(FileNode {
                    content: Content::from_bytes(data),
                    reader: None,
                }));
                st.link_live(&comps, id);
            }
        }
        Ok(())
    }

    fn write_unsynced(&self, path: &Path, data: &[u8]) -> io::Result<()> {
        let mut st = self.inner.state.lock();
        st.enter(OpKind::Write)?;
        FileStorage.write_unsynced(path, data)?;
        // The durable content stays as it was (nothing, for a new file).
        if let Some(comps) = self.components(path)
            && st.live_file(&comps).is_none()
        {
            let id = st.add(Node::File(FileNode {
                content: Content::default(),
                reader: None,
            }));
            st.link_live(&comps, id);
        }
        Ok(())
    }

    fn overwrite_synced(&self, path: &Path, data: &[u8]) -> io::Result<()> {
        let mut st = self.inner.state.lock();
        st.enter(OpKind::Write)?;
        FileStorage.overwrite_synced(path, data)?;
        if let Some(comps) = self.components(path) {
            if let Some(file) = st.live_file(&comps) {
                file.content.write(0, data);
            } else {
                let id = st.add(Node::File(FileNode {
                    content: Content::from_bytes(data),
                    reader: None,
                }));
                st.link_live(&comps, id);
            }
        }
        Ok(())
    }

    fn rename(&self, from: &Path, to: &Path) -> io::Result<()> {
        let mut st = self.inner.state.lock();
        st.enter(OpKind::Metadata)?;
        FileStorage.rename(from, to)?;
        let moved = self.components(from).and_then(|c| st.unlink_live(&c));
        if let Some(to) = self.components(to) {
            match moved {
                Some(id) => st.link_live(&to, id),
                // Renamed from outside the model: `to` names something untracked now.
                None => {
                    st.unlink_live(&to);
                }
            }
        }
        st.collect_garbage();
        Ok(())
    }

    fn remove(&self, path: &Path) -> io::Result<()> {
        let mut st = self.inner.state.lock();
        st.enter(OpKind::Metadata)?;
        FileStorage.remove(path)?;
        if let Some(comps) = self.components(path) {
            st.unlink_live(&comps);
            st.collect_garbage();
        }
        Ok(())
    }

    fn create_dir_all(&self, path: &Path) -> io::Result<()> {
        let mut st = self.inner.state.lock();
        st.enter(OpKind::Metadata)?;
        FileStorage.create_dir_all(path)?;
        if let Some(comps) = self.components(path) {
            st.live_dir(&comps);
        }
        Ok(())
    }

    fn sync_dir(&self, path: &Path) -> io::Result<()> {
        let mut st = self.inner.state.lock();
        st.enter(OpKind::SyncDir)?;
        FileStorage.sync_dir(path)?;
        if let Some(comps) = self.components(path)
            && let Some(id) = st.resolve(&comps, false)
            && let Some(dir) = st.dir_mut(id)
        {
            dir.durable = dir.live.clone();
            st.collect_garbage();
        }
        Ok(())
    }

    fn list(&self, path: &Path) -> io::Result<Vec<DirEntry>> {
        self.read_op()?;
        FileStorage.list(path)
    }

    fn exists(&self, path: &Path) -> io::Result<bool> {
        self.read_op()?;
        FileStorage.exists(path)
    }
}

#[cfg(test)]
mod tests {
    use std::fs::OpenOptions;

    use super::*;

    fn write_live(path: &Path, offset: u64, data: &[u8]) {
        let f = OpenOptions::new().write(true).open(path).unwrap();
        f.write_all_at(data, offset).unwrap();
    }

    fn errno(r: io::Result<impl Sized>) -> Option<i32> {
        r.err().and_then(|e| e.raw_os_error())
    }

    #[test]
    fn flushed_bytes_survive_unflushed_do_not() {
        let dir = tempfile::tempdir().unwrap();
        let sim = SimStorage::new(dir.path()).unwrap();
        let seg = dir.path().join("seg");
        let map = sim.create_mapped(&seg, 4 * PAGE as u64).unwrap();
        sim.sync_dir(dir.path()).unwrap();
        write_live(&seg, 0, b"hello");
        sim.flush_mapped(&seg, &map, 0, 5).unwrap();
        write_live(&seg, 2 * PAGE as u64, b"world");
        write_live(&seg, 5, b"!");
        drop(map);
        sim.power_cut();
        sim.restart(Keep::Nothing).unwrap();
        let data = fs::read(&seg).unwrap();
        assert_eq!(data.len(), 4 * PAGE);
        assert_eq!(&data[..6], b"hello\0");
        assert!(data[5..].iter().all(|&b| b == 0));
        assert_eq!(sim.durable_len(&seg), Some(4 * PAGE as u64));
    }

    #[test]
    fn entries_need_their_directory_synced() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path();
        let sim = SimStorage::new(root).unwrap();
        sim.create_dir_all(&root.join("a")).unwrap();
        sim.sync_dir(root).unwrap();
        let f = root.join("a/f");
        drop(sim.create_mapped(&f, PAGE as u64).unwrap());
        assert!(!sim.is_durable(&f));
        sim.restart(Keep::Nothing).unwrap();
        assert!(root.join("a").is_dir());
        assert!(!f.exists());

        drop(sim.create_mapped(&f, PAGE as u64).unwrap());
        sim.sync_dir(&root.join("a")).unwrap();
        assert!(sim.is_durable(&f));
        sim.restart(Keep::Nothing).unwrap();
        assert_eq!(fs::metadata(&f).unwrap().len(), PAGE as u64);

        // A synced directory whose own entry is not durable loses its files.
        let g = root.join("x/y/g");
        sim.create_dir_all(&root.join("x/y")).unwrap();
        sim.write_synced(&g, b"g").unwrap();
        sim.sync_dir(&root.join("x/y")).unwrap();
        sim.sync_dir(&root.join("x")).unwrap();
        assert!(!sim.is_durable(&g));
        sim.power_cut();
        sim.restart(Keep::Nothing).unwrap();
        assert!(!root.join("x").exists());
        assert!(f.exists());
    }

    #[test]
    fn an_unsynced_write_keeps_only_the_entry_a_directory_sync_made_durable() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path();
        let sim = SimStorage::new(root).unwrap();
        let (m, n) = (root.join("m"), root.join("n"));
        sim.write_unsynced(&m, b"marker").unwrap();
        sim.sync_dir(root).unwrap();
        sim.write_unsynced(&n, b"lost").unwrap();
        assert!(sim.is_durable(&m) && !sim.is_durable(&n));
        sim.power_cut();
        sim.restart(Keep::Nothing).unwrap();
        // The entry survives, the bytes were never synced.
        assert_eq!(fs::read(&m).unwrap(), b"");
        assert!(!n.exists());
    }

    #[test]
    fn rename_is_durable_after_dir_sync() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path();
        let sim = SimStorage::new(root).unwrap();
        let (old, new) = (root.join("old"), root.join("new"));
        sim.write_synced(&old, b"A").unwrap();
        sim.sync_dir(root).unwrap();
        sim.rename(&old, &new).unwrap();
        sim.power_cut();
        sim.restart(Keep::Nothing).unwrap();
        assert_eq!(fs::read(&old).unwrap(), b"A");
        assert!(!new.exists());

        sim.rename(&old, &new).unwrap();
        sim.sync_dir(root).unwrap();
        sim.power_cut();
        sim.restart(Keep::Nothing).unwrap();
        assert_eq!(fs::read(&new).unwrap(), b"A");
        assert!(!old.exists());

        // Replacing a file by renaming a new one over it.
        let tmp = root.join("tmp");
        sim.write_synced(&tmp, b"B").unwrap();
        sim.rename(&tmp, &new).unwrap();
        sim.restart(Keep::Nothing).unwrap();
        assert_eq!(fs::read(&new).unwrap(), b"A");
        assert!(!tmp.exists());
    }

    #[test]
    fn synced_content_survives_only_with_a_durable_entry() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path();
        let sim = SimStorage::new(root).unwrap();
        let f = root.join("f");
        sim.write_synced(&f, b"1").unwrap();
        sim.restart(Keep::Nothing).unwrap();
        assert!(!f.exists());

        sim.write_synced(&f, b"1").unwrap();
        sim.sync_dir(root).unwrap();
        sim.restart(Keep::Nothing).unwrap();
        assert_eq!(fs::read(&f).unwrap(), b"1");

        // Content of a durable entry needs no directory sync.
        sim.write_synced(&f, b"22").unwrap();
        sim.restart(Keep::Nothing).unwrap();
        assert_eq!(fs::read(&f).unwrap(), b"22");

        sim.overwrite_synced(&f, b"3").unwrap();
        sim.restart(Keep::Nothing).unwrap();
        assert_eq!(fs::read(&f).unwrap(), b"32");
        assert_eq!(sim.durable_len(&f), Some(2));
    }

    #[test]
    fn power_cut_fails_writes_with_eio() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path();
        let sim = SimStorage::new(root).unwrap();
        let seg = root.join("seg");
        let map = sim.create_mapped(&seg, PAGE as u64).unwrap();
        sim.sync_dir(root).unwrap();
        sim.power_cut();
        assert!(sim.is_power_cut());
        write_live(&seg, 0, b"x");
        assert_eq!(errno(sim.flush_mapped(&seg, &map, 0, 1)), Some(libc::EIO));
        assert_eq!(
            errno(sim.write_synced(&root.join("f"), b"f")),
            Some(libc::EIO)
        );
        assert_eq!(errno(sim.create_dir_all(&root.join("d"))), Some(libc::EIO));
        assert_eq!(errno(sim.sync_dir(root)), Some(libc::EIO));
        assert!(!root.join("f").exists());
        // Reads still work and see the live state.
        assert_eq!(sim.read(&seg).unwrap()[0], b'x');
        assert!(sim.exists(&seg).unwrap());
        assert_eq!(sim.list(root).unwrap().len(), 1);
        drop(map);
        sim.restart(Keep::Nothing).unwrap();
        assert!(!sim.is_power_cut());
        assert_eq!(fs::read(&seg).unwrap()[0], 0);
        sim.write_synced(&root.join("f"), b"f").unwrap();
    }

    #[test]
    fn injected_faults() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path();
        let sim = SimStorage::new(root).unwrap();
        let seg = root.join("seg");
        let map = sim.create_mapped(&seg, PAGE as u64).unwrap();
        sim.sync_dir(root).unwrap();

        sim.fail_nth(OpKind::Flush, 2, libc::EIO);
        write_live(&seg, 0, b"a");
        sim.flush_mapped(&seg, &map, 0, 1).unwrap();
        write_live(&seg, 1, b"b");
        assert_eq!(errno(sim.flush_mapped(&seg, &map, 1, 1)), Some(libc::EIO));
        write_live(&seg, 2, b"c");
        sim.flush_mapped(&seg, &map, 2, 1).unwrap();
        assert_eq!(sim.count(OpKind::Flush), 3);
        drop(map);

        let other = root.join("other");
        sim.fail_nth(OpKind::Allocate, 1, libc::ENOSPC);
        assert_eq!(
            errno(sim.create_mapped(&other, PAGE as u64)),
            Some(libc::ENOSPC)
        );
        assert!(!other.exists());
        drop(sim.create_mapped(&other, PAGE as u64).unwrap());
        assert_eq!(sim.count(OpKind::Allocate), 3);

        sim.reset_counts();
        sim.fail_from(OpKind::Write, 2, libc::ENOSPC);
        sim.write_synced(&root.join("w1"), b"1").unwrap();
        assert_eq!(
            errno(sim.write_synced(&root.join("w2"), b"2")),
            Some(libc::ENOSPC)
        );
        assert_eq!(
            errno(sim.overwrite_synced(&root.join("w3"), b"3")),
            Some(libc::ENOSPC)
        );
        assert!(!root.join("w2").exists() && !root.join("w3").exists());
        sim.clear_faults();
        sim.write_synced(&root.join("w2"), b"2").unwrap();
        assert_eq!(sim.count(OpKind::Write), 4);

        sim.fail_nth(OpKind::Read, 1, libc::EIO);
        assert_eq!(errno(sim.read(&root.join("w1"))), Some(libc::EIO));
        assert_eq!(sim.read(&root.join("w1")).unwrap(), b"1");

        sim.sync_dir(root).unwrap();
        sim.restart(Keep::Nothing).unwrap();
        assert_eq!(&fs::read(&seg).unwrap()[..3], b"a\0c");
    }

    fn random_pages_run(probability: f64, seed: u64) -> Vec<u8> {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path();
        let sim = SimStorage::new(root).unwrap();
        let seg = root.join("seg");
        let map = sim.create_mapped(&seg, 8 * PAGE as u64).unwrap();
        sim.sync_dir(root).unwrap();
        for i in 0..8u8 {
            write_live(&seg, u64::from(i) * PAGE as u64 + 7, &[i + 1; 10]);
        }
        drop(map);
        sim.power_cut();
        sim.restart(Keep::RandomPages { seed, probability })
            .unwrap();
        fs::read(&seg).unwrap()
    }

    #[test]
    fn random_pages() {
        let all = random_pages_run(1.0, 7);
        for i in 0..8u8 {
            let at = usize::from(i) * PAGE + 7;
            assert_eq!(&all[at..at + 10], &[i + 1; 10]);
        }
        assert!(random_pages_run(0.0, 7).iter().all(|&b| b == 0));
        let half = random_pages_run(0.5, 42);
        assert_eq!(half, random_pages_run(0.5, 42));
        let kept = (0..8).filter(|i| half[i * PAGE + 7] != 0).count();
        assert!(0 < kept && kept < 8, "kept {kept} of 8 pages");
    }

    #[test]
    fn removed_but_durable_file_keeps_its_live_pages() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path();
        let sim = SimStorage::new(root).unwrap();
        let seg = root.join("seg");
        let map = sim.create_mapped(&seg, PAGE as u64).unwrap();
        sim.sync_dir(root).unwrap();
        write_live(&seg, 0, b"z");
        drop(map);
        sim.remove(&seg).unwrap();
        assert!(sim.is_durable(&seg));
        sim.restart(Keep::RandomPages {
            seed: 1,
            probability: 1.0,
        })
        .unwrap();
        assert_eq!(fs::read(&seg).unwrap()[0], b'z');
    }

    #[test]
    fn existing_tree_is_imported_as_durable() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path();
        fs::create_dir(root.join("d")).unwrap();
        fs::write(root.join("d/f"), b"old").unwrap();
        let sim = SimStorage::new(root).unwrap();
        assert!(sim.is_durable(&root.join("d/f")));
        assert_eq!(sim.durable_len(&root.join("d/f")), Some(3));
        let (map, len) = sim.open_mapped(&root.join("d/f")).unwrap();
        assert_eq!(len, 3);
        write_live(&root.join("d/f"), 0, b"new");
        sim.flush_mapped(&root.join("d/f"), &map, 0, 2).unwrap();
        drop(map);
        sim.restart(Keep::Nothing).unwrap();
        assert_eq!(fs::read(root.join("d/f")).unwrap(), b"ned");
    }
}
