//! What the scanner is handed: every blob, commit, tag, tree's file names, push option and
//! thin-delta insert of a push, each named by oid, with the path (found by walking the pack's
//! trees from each pushed commit) and the commit that introduced it.

use crate::error::PackError;
use crate::oid::Oid;
use crate::pack::{Budget, ObjectType};
use crate::resolve::Resolved;
use std::collections::{HashMap, HashSet, VecDeque};

/// What a [`ScanItem`] holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ItemKind {
    /// A file's full content.
    Blob,
    /// A commit object: headers (author, committer) and message.
    Commit,
    /// An annotated tag object: headers and message.
    Tag,
    /// The entry names of a tree, one per line (a file name can carry a secret too).
    TreeNames,
    /// The bytes a delta inserts into a base that is not in the pack (thin pack): partial data.
    DeltaInsert,
    /// A `git push -o` value.
    PushOption,
    /// A signed push certificate.
    PushCert,
}

/// One piece of pushed text for the scanner.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ScanItem {
    pub kind: ItemKind,
    /// The object's id; `None` for a thin delta (its result cannot be named without the base),
    /// push options and certificates.
    pub oid: Option<Oid>,
    /// For [`ItemKind::DeltaInsert`]: the base the delta applies to, which the server holds.
    pub delta_base: Option<Oid>,
    /// The file path (blobs) or directory path (trees), when a pushed commit's trees in the
    /// pack reach it.
    pub path: Option<String>,
    /// The tag name, for [`ItemKind::Tag`].
    pub tag: Option<String>,
    /// The commit that introduced it: the earliest pushed commit whose tree reaches a blob or
    /// tree, the commit itself for a commit, the tagged commit for a tag.
    pub commit: Option<Oid>,
    pub data: Vec<u8>,
}

impl ScanItem {
    /// Where the item lives, for a message: a path, "commit message", "tag v1", ...
    pub fn location(&self) -> String {
        match (self.kind, &self.path, &self.tag) {
            (ItemKind::Commit, _, _) => "commit message".into(),
            (ItemKind::Tag, _, Some(t)) => format!("tag {t}"),
            (ItemKind::Tag, _, None) => "tag".into(),
            (ItemKind::PushOption, _, _) => "push option".into(),
            (ItemKind::PushCert, _, _) => "push certificate".into(),
            (ItemKind::TreeNames, Some(p), _) if !p.is_empty() => format!("file names in {p}"),
            (ItemKind::TreeNames, Some(_), _) => "file names at the top level".into(),
            (ItemKind::TreeNames, None, _) => "file names".into(),
            (ItemKind::DeltaInsert, _, _) => match self.delta_base {
                Some(b) => format!("an edit of object {}", b.short()),
                None => "an edit of an object not in the push".into(),
            },
            (ItemKind::Blob, Some(p), _) => p.clone(),
            (ItemKind::Blob, None, _) => match self.oid {
                Some(o) => format!("blob {}", o.short()),
                None => "blob".into(),
            },
        }
    }
}

/// One tree entry.
pub struct TreeEntry<'a> {
    pub mode: u32,
    pub name: &'a [u8],
    pub oid: Oid,
}

/// Parses a tree object: entries of `mode SP name NUL 20-byte-oid`.
pub fn parse_tree(data: &[u8]) -> Result<Vec<TreeEntry<'_>>, &'static str> {
    let mut out = Vec::new();
    let mut rest = data;
    while !rest.is_empty() {
        let sp = rest
            .iter()
            .position(|&b| b == b' ')
            .ok_or("entry without a mode")?;
        let mode_txt = rest.get(..sp).unwrap_or_default();
        if mode_txt.is_empty() || mode_txt.len() > 7 {
            return Err("bad mode");
        }
        let mut mode = 0u32;
        for &c in mode_txt {
            if !(b'0'..=b'7').contains(&c) {
                return Err("mode is not octal");
            }
            mode = (mode << 3) | u32::from(c - b'0');
        }
        let after = rest.get(sp + 1..).unwrap_or_default();
        let nul = after
            .iter()
            .position(|&b| b == 0)
            .ok_or("entry name not terminated")?;
        let name = after.get(..nul).unwrap_or_default();
        if name.is_empty() || name.contains(&b'/') {
            return Err("bad entry name");
        }
        let oid = after
            .get(nul + 1..)
            .and_then(Oid::from_bytes)
            .ok_or("entry id truncated")?;
        out.push(TreeEntry { mode, name, oid });
        rest = after.get(nul + 21..).unwrap_or_default();
    }
    Ok(out)
}

fn header_oid(line: &[u8], key: &[u8]) -> Option<Oid> {
    line.strip_prefix(key)?
        .strip_prefix(b" ")
        .and_then(Oid::from_hex)
}

/// A commit's tree and parents.
fn parse_commit(data: &[u8]) -> Result<(Oid, Vec<Oid>), &'static str> {
    let mut lines = data.split(|&b| b == b'\n');
    let tree = lines
        .next()
        .and_then(|l| header_oid(l, b"tree"))
        .ok_or("no tree line")?;
    let parents = lines.map_while(|l| header_oid(l, b"parent")).collect();
    Ok((tree, parents))
}

/// A tag's target (if it is a commit) and name. Lenient: a tag we cannot read is still scanned.
fn parse_tag(data: &[u8]) -> (Option<Oid>, Option<String>) {
    let (mut object, mut is_commit, mut name) = (None, false, None);
    for line in data.split(|&b| b == b'\n') {
        if line.is_empty() {
            break;
        }
        if let Some(o) = header_oid(line, b"object") {
            object = Some(o);
        } else if line == b"type commit" {
            is_commit = true;
        } else if let Some(n) = line.strip_prefix(b"tag ") {
            name = Some(String::from_utf8_lossy(n).into_owned());
        }
    }
    (object.filter(|_| is_commit), name)
}

/// Where each blob and tree was first reached: (path, introducing commit).
type Origins = HashMap<Oid, (String, Oid)>;

fn map_paths(
    res: &Resolved,
    by_oid: &HashMap<Oid, usize>,
    budget: &mut Budget,
) -> Result<Origins, PackError> {
    // Commits in the pack with their in-pack parents, ordered parents first (Kahn), so each
    // blob is credited to the earliest pushed commit that reaches it.
    let mut commits: Vec<(Oid, Oid, Vec<Oid>)> = Vec::new();
    for obj in res.objects.iter().filter(|o| o.kind == ObjectType::Commit) {
        let (tree, parents) = parse_commit(&obj.data).map_err(|reason| PackError::BadObject {
            kind: "commit",
            oid: obj.oid,
            reason,
        })?;
        commits.push((obj.oid, tree, parents));
    }
    let in_pack: HashMap<Oid, usize> = commits.iter().enumerate().map(|(i, c)| (c.0, i)).collect();
    let mut pending = vec![0usize; commits.len()];
    let mut children: Vec<Vec<usize>> = vec![Vec::new(); commits.len()];
    for (i, (_, _, parents)) in commits.iter().enumerate() {
        for p in parents {
            if let Some(&pi) = in_pack.get(p)
                && let (Some(n), Some(ch)) = (pending.get_mut(i), children.get_mut(pi))
            {
                *n += 1;
                ch.push(i);
            }
        }
    }
    let mut order = Vec::with_capacity(commits.len());
    let mut ready: VecDeque<usize> = pending
        .iter()
        .enumerate()
        .filter(|(_, n)| **n == 0)
        .map(|(i, _)| i)
        .collect();
    let mut placed = vec![false; commits.len()];
    while let Some(i) = ready.pop_front() {
        order.push(i);
        if let Some(p) = placed.get_mut(i) {
            *p = true;
        }
        for &c in children.get(i).map(Vec::as_slice).unwrap_or_default() {
            if let Some(n) = pending.get_mut(c) {
                *n = n.saturating_sub(1);
                if *n == 0 {
                    ready.push_back(c);
                }
            }
        }
    }
    // A parent cycle cannot be real (ids are hashes) but costs nothing to tolerate.
    order.extend((0..commits.len()).filter(|&i| !placed.get(i).copied().unwrap_or(true)));

    let mut origins: Origins = HashMap::new();
    let mut seen_trees: HashSet<Oid> = HashSet::new();
    for i in order {
        let Some((commit, root, _)) = commits.get(i) else {
            continue;
        };
        let mut stack = vec![(*root, String::new())];
        while let Some((tree_oid, prefix)) = stack.pop() {
            if !seen_trees.insert(tree_oid) {
                continue;
            }
            let Some(tree) = by_oid.get(&tree_oid).and_then(|&ix| res.objects.get(ix)) else {
                continue;
            };
            if tree.kind != ObjectType::Tree {
                continue;
            }
            origins
                .entry(tree_oid)
                .or_insert_with(|| (prefix.trim_end_matches('/').to_owned(), *commit));
            let entries = parse_tree(&tree.data).map_err(|reason| PackError::BadObject {
                kind: "tree",
                oid: tree_oid,
                reason,
            })?;
            for e in entries {
                let path = format!("{prefix}{}", String::from_utf8_lossy(e.name));
                // Paths are memory too: deep trees must not make them quadratic.
                budget.charge(path.len())?;
                match e.mode & 0o170000 {
                    0o040000 => stack.push((e.oid, format!("{path}/"))),
                    0o100000 | 0o120000 => {
                        origins.entry(e.oid).or_insert((path, *commit));
                    }
                    _ => {} // gitlinks (submodules) name commits of another repository
                }
            }
        }
    }
    Ok(origins)
}

/// Builds the scan items from resolved objects.
pub fn build_items(res: Resolved, budget: &mut Budget) -> Result<Vec<ScanItem>, PackError> {
    let by_oid: HashMap<Oid, usize> = {
        let mut m = HashMap::new();
        for (i, o) in res.objects.iter().enumerate() {
            m.entry(o.oid).or_insert(i);
        }
        m
    };
    let origins = map_paths(&res, &by_oid, budget)?;
    let mut items = Vec::with_capacity(res.objects.len() + res.thin.len());
    let mut emitted = HashSet::new();
    let mut tree_names = Vec::new();
    for obj in &res.objects {
        if obj.kind != ObjectType::Tree || !emitted.insert(obj.oid) {
            continue;
        }
        let entries = parse_tree(&obj.data).map_err(|reason| PackError::BadObject {
            kind: "tree",
            oid: obj.oid,
            reason,
        })?;
        let mut names = Vec::new();
        for e in entries {
            names.extend_from_slice(e.name);
            names.push(b'\n');
        }
        let origin = origins.get(&obj.oid);
        tree_names.push(ScanItem {
            kind: ItemKind::TreeNames,
            oid: Some(obj.oid),
            delta_base: None,
            path: origin.map(|o| o.0.clone()),
            tag: None,
            commit: origin.map(|o| o.1),
            data: names,
        });
    }
    for obj in res.objects {
        let (kind, path, tag, commit) = match obj.kind {
            ObjectType::Tree => continue,
            ObjectType::Blob => {
                let origin = origins.get(&obj.oid);
                (
                    ItemKind::Blob,
                    origin.map(|o| o.0.clone()),
                    None,
                    origin.map(|o| o.1),
                )
            }
            ObjectType::Commit => (ItemKind::Commit, None, None, Some(obj.oid)),
            ObjectType::Tag => {
                let (target, name) = parse_tag(&obj.data);
                (ItemKind::Tag, None, name, target)
            }
        };
        if !emitted.insert(obj.oid) {
            continue;
        }
        items.push(ScanItem {
            kind,
            oid: Some(obj.oid),
            delta_base: None,
            path,
            tag,
            commit,
            data: obj.data,
        });
    }
    items.extend(tree_names);
    for thin in res.thin {
        items.push(ScanItem {
            kind: ItemKind::DeltaInsert,
            oid: None,
            delta_base: thin.base,
            path: None,
            tag: None,
            commit: None,
            data: thin.inserted,
        });
    }
    Ok(items)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tree_parse_and_reject() {
        let mut t = b"100644 a.txt\0".to_vec();
        t.extend_from_slice(&[1u8; 20]);
        t.extend_from_slice(b"40000 dir\0");
        t.extend_from_slice(&[2u8; 20]);
        let e = parse_tree(&t).expect("tree");
        assert_eq!(e.len(), 2);
        assert_eq!(e.get(1).map(|x| x.mode), Some(0o40000));
        assert!(parse_tree(t.get(..t.len() - 1).unwrap_or_default()).is_err());
        assert!(parse_tree(b"10x644 a\0aaaaaaaaaaaaaaaaaaaa").is_err());
        assert!(parse_tree(b"100644 a/b\0aaaaaaaaaaaaaaaaaaaa").is_err());
    }

    #[test]
    fn tag_target_and_name() {
        let t = b"object 1111111111111111111111111111111111111111\ntype commit\ntag v1\ntagger x\n\nmsg\n";
        let (target, name) = parse_tag(t);
        assert!(target.is_some());
        assert_eq!(name.as_deref(), Some("v1"));
    }
}
