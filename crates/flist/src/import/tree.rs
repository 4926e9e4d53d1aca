//! The tree an import builds in memory: tar entries applied in order (layers with OCI whiteout
//! rules), file contents chunked into the store as they stream past, then the whole tree written
//! into an flist in `pack`'s layout (root inode 1, then depth first in name order; hardlinks
//! share an inode), so the same input always gives the same flist.

use std::collections::{BTreeMap, HashMap};
use std::io::Read;

use nix::sys::stat::SFlag;

use super::entry::{self, Action, entry_err, escape};
use super::{ImportError, read_err, split};
use crate::meta::{ChunkRef, Flist, Inode, MetaError, ROOT};
use crate::pack::{PackSummary, put_chunks};
use crate::store::DirStore;

/// A whiteout's name prefix: `.wh.NAME` hides `NAME` of the layers below.
const WHITEOUT: &[u8] = b".wh.";
/// After [`WHITEOUT`]: the marker that hides everything the layers below have in its directory.
const OPAQUE: &[u8] = b".wh..opq";
/// The root's index in [`Tree::nodes`].
const ROOT_NODE: usize = 0;

/// Attributes of a node.
#[derive(Debug, Clone)]
pub(super) struct Attrs {
    /// `st_mode`: type and permission bits.
    pub mode: u32,
    /// Owner.
    pub uid: u32,
    /// Group.
    pub gid: u32,
    /// Modification time, whole seconds (see `Inode::canonical`).
    pub mtime: i64,
    /// Device number of a device node.
    pub rdev: u64,
    /// Extended attributes.
    pub xattrs: BTreeMap<Vec<u8>, Vec<u8>>,
}

impl Attrs {
    /// A directory the archive does not describe (its parents, the root): 0755, root's.
    fn implicit_dir() -> Self {
        Attrs { mode: SFlag::S_IFDIR.bits() | 0o755, uid: 0, gid: 0, mtime: 0, rdev: 0, xattrs: BTreeMap::new() }
    }
}

/// What a node is, with what only that kind has.
#[derive(Debug)]
pub(super) enum Body {
    /// A directory and its entries.
    Dir(BTreeMap<Vec<u8>, Child>),
    /// A regular file's chunks, already stored.
    File(Vec<ChunkRef>),
    /// A symlink's target.
    Symlink(Vec<u8>),
    /// A device node or fifo.
    Special,
}

/// A name in a directory: the node it names and the layer that last wrote it.
#[derive(Debug, Clone, Copy)]
pub(super) struct Child {
    node: usize,
    layer: usize,
}

/// A file, directory, symlink, device or fifo.
#[derive(Debug)]
pub(super) struct Node {
    /// Its attributes.
    pub attrs: Attrs,
    /// What it is.
    pub body: Body,
}

/// A root filesystem being assembled. Nodes are never freed: one named by several entries is a
/// hardlink, one no entry names any more is ignored when writing.
#[derive(Debug)]
pub(super) struct Tree {
    nodes: Vec<Node>,
}

impl Default for Tree {
    fn default() -> Self {
        Self { nodes: vec![Node { attrs: Attrs::implicit_dir(), body: Body::Dir(BTreeMap::new()) }] }
    }
}

impl Tree {
    /// Apply tar `reader` (named `what` in errors): a whole root filesystem (`layer` None) or
    /// layer number `layer` of an image, whose whiteouts hide what the layers below have.
    pub(super) fn apply(
        &mut self,
        reader: impl Read,
        layer: Option<usize>,
        what: &str,
        store: &DirStore,
        summary: &mut PackSummary,
    ) -> Result<(), ImportError> {
        let mut archive = tar::Archive::new(reader);
        for entry in archive.entries().map_err(read_err(what))? {
            self.add(&mut entry.map_err(read_err(what))?, layer, what, store, summary)?;
        }
        Ok(())
    }

    /// Lay the whole tree of `flist` over this one as layer `layer`: its entries replace
    /// what is at their paths, directories merge. Its chunks are referenced, not copied.
    pub(super) fn graft(&mut self, flist: &Flist, layer: usize) -> Result<(), MetaError> {
        // The root is a directory over a directory: it takes the new attributes.
        let root = flist.inode(ROOT)?.ok_or_else(|| MetaError::Corrupt("no root inode".into()))?;
        self.nodes[ROOT_NODE].attrs = Self::attrs_of(flist, &root)?;
        // Source inode -> node here, so hardlinks stay hardlinks.
        let mut nodes: HashMap<u64, usize> = HashMap::new();
        let mut stack: Vec<(u64, Vec<Vec<u8>>)> = vec![(ROOT, Vec::new())];
        while let Some((dir, path)) = stack.pop() {
            for (name, ino) in flist.entries(dir)? {
                let inode =
                    flist.inode(ino)?.ok_or_else(|| MetaError::Corrupt(format!("entry names missing inode {ino}")))?;
                let kind = SFlag::from_bits_truncate(inode.mode & SFlag::S_IFMT.bits());
                if kind == SFlag::S_IFSOCK {
                    continue; // older packers recorded sockets; an image has none (see `pack`)
                }
                let placed = match nodes.get(&ino) {
                    Some(&node) if kind != SFlag::S_IFDIR => self.put(&path, &name, node, layer),
                    _ => {
                        let body = match kind {
                            SFlag::S_IFDIR => Body::Dir(BTreeMap::new()),
                            SFlag::S_IFREG => Body::File(flist.chunks(ino)?),
                            SFlag::S_IFLNK => Body::Symlink(inode.target.clone().unwrap_or_default()),
                            _ => Body::Special,
                        };
                        let attrs = Self::attrs_of(flist, &inode)?;
                        let placed = self.put_node(&path, &name, Node { attrs, body }, layer);
                        if placed.is_ok() && kind != SFlag::S_IFDIR {
                            let mut full = path.clone();
                            full.push(name.clone());
                            nodes.insert(ino, self.lookup(&full).expect("just placed"));
                        }
                        placed
                    }
                };
                placed.map_err(MetaError::Corrupt)?;
                if kind == SFlag::S_IFDIR {
                    let mut full = path.clone();
                    full.push(name);
                    stack.push((ino, full));
                }
            }
        }
        Ok(())
    }

    /// The attributes of `inode` of `flist`.
    fn attrs_of(flist: &Flist, inode: &Inode) -> Result<Attrs, MetaError> {
        Ok(Attrs {
            mode: inode.mode,
            uid: inode.uid,
            gid: inode.gid,
            mtime: inode.mtime,
            rdev: inode.rdev,
            xattrs: flist.xattrs(inode.ino)?.into_iter().collect(),
        })
    }

    /// Apply one entry of the tar `apply` reads.
    fn add(
        &mut self,
        entry: &mut tar::Entry<impl Read>,
        layer: Option<usize>,
        what: &str,
        store: &DirStore,
        summary: &mut PackSummary,
    ) -> Result<(), ImportError> {
        let raw = entry.path_bytes().into_owned();
        let path = split(&raw).ok_or_else(|| escape(what, &raw))?;
        let bad = |reason: String| entry_err(what, &raw, reason);
        let stamp = layer.unwrap_or(0);
        if layer.is_some()
            && let Some((name, parents)) = path.split_last()
            && let Some(hidden) = name.strip_prefix(WHITEOUT)
        {
            self.whiteout(parents, hidden, stamp);
            return Ok(());
        }
        let Some(action) = entry::read(entry, what, store, summary)? else { return Ok(()) };
        let Some((name, parents)) = path.split_last() else {
            return match action {
                Action::Add(Node { attrs, body: Body::Dir(_) }) => {
                    self.nodes[ROOT_NODE].attrs = attrs;
                    Ok(())
                }
                _ => Err(bad("the root is not a directory".into())),
            };
        };
        match action {
            Action::Link(target) => {
                let node = self.lookup(&target).ok_or_else(|| {
                    bad(format!("hardlink to {}, which the archive does not have before it", target_text(&target)))
                })?;
                if matches!(self.nodes[node].body, Body::Dir(_)) {
                    return Err(bad("hardlink to a directory".into()));
                }
                self.put(parents, name, node, stamp).map_err(bad)
            }
            Action::Add(node) => self.put_node(parents, name, node, stamp).map_err(bad),
        }
    }

    /// Put `node` at `parents`/`name`: a directory over a directory keeps the children (as
    /// overlay does); anything else replaces what was there.
    fn put_node(&mut self, parents: &[Vec<u8>], name: &[u8], node: Node, layer: usize) -> Result<(), String> {
        let dir = self.dir(parents, layer)?;
        let id = match self.children(dir).get(name).map(|c| c.node) {
            Some(old) if matches!((&node.body, &self.nodes[old].body), (Body::Dir(_), Body::Dir(_))) => {
                self.nodes[old].attrs = node.attrs;
                old
            }
            _ => {
                self.nodes.push(node);
                self.nodes.len() - 1
            }
        };
        self.children_mut(dir).insert(name.to_vec(), Child { node: id, layer });
        Ok(())
    }

    /// Name `node` `parents`/`name`, replacing what was there.
    fn put(&mut self, parents: &[Vec<u8>], name: &[u8], node: usize, layer: usize) -> Result<(), String> {
        let dir = self.dir(parents, layer)?;
        self.children_mut(dir).insert(name.to_vec(), Child { node, layer });
        Ok(())
    }

    /// The directory at `path`, made where missing; everything on the way counts as written by
    /// `layer` (a layer that has entries in a directory has that directory).
    fn dir(&mut self, path: &[Vec<u8>], layer: usize) -> Result<usize, String> {
        let mut dir = ROOT_NODE;
        for (depth, part) in path.iter().enumerate() {
            let next = self.nodes.len();
            let child = self.children_mut(dir).entry(part.clone()).or_insert(Child { node: next, layer });
            child.layer = layer;
            let node = child.node;
            if node == next {
                self.nodes.push(Node { attrs: Attrs::implicit_dir(), body: Body::Dir(BTreeMap::new()) });
            } else if !matches!(self.nodes[node].body, Body::Dir(_)) {
                return Err(format!("{} is not a directory", target_text(&path[..=depth])));
            }
            dir = node;
        }
        Ok(dir)
    }

    fn children(&self, dir: usize) -> &BTreeMap<Vec<u8>, Child> {
        match &self.nodes[dir].body {
            Body::Dir(children) => children,
            _ => unreachable!("only directories are walked into"),
        }
    }

    fn children_mut(&mut self, dir: usize) -> &mut BTreeMap<Vec<u8>, Child> {
        match &mut self.nodes[dir].body {
            Body::Dir(children) => children,
            _ => unreachable!("only directories are walked into"),
        }
    }

    /// The node at `path`, if any.
    fn lookup(&self, path: &[Vec<u8>]) -> Option<usize> {
        path.iter().try_fold(ROOT_NODE, |dir, part| match &self.nodes[dir].body {
            Body::Dir(children) => children.get(part).map(|c| c.node),
            _ => None,
        })
    }

    /// Apply whiteout `.wh.<hidden>` of `layer` in directory `parents`: hide `hidden` (or, for
    /// the opaque marker, everything there) as far as lower layers put it there.
    fn whiteout(&mut self, parents: &[Vec<u8>], hidden: &[u8], layer: usize) {
        let Some(dir) = self.lookup(parents).filter(|&d| matches!(self.nodes[d].body, Body::Dir(_))) else { return };
        if hidden == OPAQUE {
            return self.hide_lower(dir, layer);
        }
        match self.children(dir).get(hidden).copied() {
            Some(child) if child.layer != layer => {
                self.children_mut(dir).remove(hidden);
            }
            // Written by this layer too: only what lower layers put inside it goes.
            Some(child) if matches!(self.nodes[child.node].body, Body::Dir(_)) => self.hide_lower(child.node, layer),
            _ => {}
        }
    }

    /// Drop everything under `dir` that layers below `layer` put there.
    fn hide_lower(&mut self, dir: usize, layer: usize) {
        let mut dirs = vec![dir];
        while let Some(dir) = dirs.pop() {
            let Body::Dir(children) = &mut self.nodes[dir].body else { continue };
            children.retain(|_, c| c.layer == layer);
            dirs.extend(children.values().map(|c| c.node));
        }
    }

    /// Write the tree into `flist`, counting in `summary`.
    pub(super) fn write(&self, flist: &Flist, summary: &mut PackSummary) -> Result<(), MetaError> {
        self.record(flist, ROOT_NODE, ROOT, summary)?;
        let mut inos: HashMap<usize, u64> = HashMap::new();
        let mut next = ROOT + 1;
        let mut stack = vec![(ROOT, self.children(ROOT_NODE).iter())];
        while let Some((parent, items)) = stack.last_mut() {
            let parent = *parent;
            let Some((name, child)) = items.next() else {
                stack.pop();
                continue;
            };
            let ino = match inos.get(&child.node) {
                Some(&ino) => ino,
                None => {
                    let ino = next;
                    next += 1;
                    inos.insert(child.node, ino);
                    self.record(flist, child.node, ino, summary)?;
                    if let Body::Dir(children) = &self.nodes[child.node].body {
                        stack.push((ino, children.iter()));
                    }
                    ino
                }
            };
            flist.put_entry(parent, name, ino)?;
        }
        Ok(())
    }

    /// Record node `node` as inode `ino`.
    fn record(&self, flist: &Flist, node: usize, ino: u64, summary: &mut PackSummary) -> Result<(), MetaError> {
        let Node { attrs, body } = &self.nodes[node];
        let (size, target) = match body {
            Body::File(chunks) => (chunks.iter().map(|c| c.size).sum(), None),
            Body::Symlink(target) => (target.len() as u64, Some(target.clone())),
            Body::Dir(_) | Body::Special => (0, None),
        };
        flist.put_inode(&Inode {
            ino,
            mode: attrs.mode,
            uid: attrs.uid,
            gid: attrs.gid,
            size,
            mtime: attrs.mtime,
            mtime_nsec: 0,
            rdev: attrs.rdev,
            target,
        })?;
        for (name, value) in &attrs.xattrs {
            flist.put_xattr(ino, name, value)?;
        }
        if let Body::File(chunks) = body {
            put_chunks(flist, ino, chunks, summary)?;
        }
        summary.inodes += 1;
        Ok(())
    }
}

fn target_text(path: &[Vec<u8>]) -> String {
    String::from_utf8_lossy(&path.join(&b'/')).into_owned()
}
