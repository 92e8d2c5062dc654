//! Turns pack entries into named objects: applies OFS_DELTA and REF_DELTA chains whose bases
//! are in the pack (in dependency order, depth-bounded, without recursion) and leaves the
//! deltas whose base is missing (thin packs) for insert-only scanning.

use crate::delta;
use crate::error::PackError;
use crate::limits::Limits;
use crate::oid::Oid;
use crate::pack::{Budget, Entry, EntryKind, ObjectType};
use std::collections::{HashMap, VecDeque};

/// A fully known object.
#[derive(Debug, Clone)]
pub struct Object {
    pub kind: ObjectType,
    pub oid: Oid,
    pub data: Vec<u8>,
    pub depth: u32,
}

/// A delta that could not be applied because its base is not in the pack.
#[derive(Debug, Clone)]
pub struct ThinDelta {
    /// The missing base, when the delta names it (REF_DELTA); `None` when it is an OFS_DELTA on
    /// top of another unresolvable delta.
    pub base: Option<Oid>,
    /// The bytes the delta inserts.
    pub inserted: Vec<u8>,
}

/// The objects of a pack after delta resolution, in pack order.
#[derive(Debug, Default)]
pub struct Resolved {
    pub objects: Vec<Object>,
    pub thin: Vec<ThinDelta>,
    pub ofs_deltas: usize,
    pub ref_deltas: usize,
    pub max_depth: u32,
}

enum Slot {
    Done(Object),
    Pending {
        kind: EntryKind,
        offset: usize,
        delta: Vec<u8>,
    },
}

pub fn resolve(
    entries: Vec<Entry>,
    limits: &Limits,
    budget: &mut Budget,
) -> Result<Resolved, PackError> {
    let mut out = Resolved::default();
    let mut slots: Vec<Slot> = Vec::with_capacity(entries.len());
    let mut index_of_offset: HashMap<usize, usize> = HashMap::new();
    let mut index_of_oid: HashMap<Oid, usize> = HashMap::new();
    let mut ofs_children: HashMap<usize, Vec<usize>> = HashMap::new();
    let mut ref_children: HashMap<Oid, Vec<usize>> = HashMap::new();
    let mut queue = VecDeque::new();

    for (i, e) in entries.into_iter().enumerate() {
        index_of_offset.insert(e.offset, i);
        match e.kind {
            EntryKind::Whole(kind) => {
                let oid = Oid::hash_object(kind.name(), &e.data);
                index_of_oid.entry(oid).or_insert(i);
                slots.push(Slot::Done(Object {
                    kind,
                    oid,
                    data: e.data,
                    depth: 0,
                }));
                queue.push_back(i);
            }
            EntryKind::OfsDelta { base_offset } => {
                out.ofs_deltas += 1;
                let base = *index_of_offset.get(&base_offset).ok_or_else(|| PackError::Object {
                    offset: e.offset,
                    reason: format!("OFS_DELTA base offset {base_offset} is not the start of an earlier object"),
                })?;
                ofs_children.entry(base).or_default().push(i);
                slots.push(Slot::Pending {
                    kind: e.kind,
                    offset: e.offset,
                    delta: e.data,
                });
            }
            EntryKind::RefDelta { base } => {
                out.ref_deltas += 1;
                ref_children.entry(base).or_default().push(i);
                slots.push(Slot::Pending {
                    kind: e.kind,
                    offset: e.offset,
                    delta: e.data,
                });
            }
        }
    }

    while let Some(i) = queue.pop_front() {
        let Some(Slot::Done(base)) = slots.get(i) else {
            continue;
        };
        let (base_oid, base_kind, base_depth) = (base.oid, base.kind, base.depth);
        let mut children = ofs_children.remove(&i).unwrap_or_default();
        if index_of_oid.get(&base_oid) == Some(&i) {
            children.extend(ref_children.remove(&base_oid).unwrap_or_default());
        }
        for c in children {
            let Some(Slot::Pending { offset, delta, .. }) = slots.get(c) else {
                continue;
            };
            let offset = *offset;
            let bad = |reason: &str| PackError::Delta {
                offset,
                reason: reason.to_owned(),
            };
            let depth = base_depth.saturating_add(1);
            if depth > limits.max_delta_depth {
                return Err(PackError::DeltaTooDeep {
                    offset,
                    limit: limits.max_delta_depth,
                });
            }
            let head = delta::header(delta).map_err(bad)?;
            if head.result_size > limits.max_object_bytes {
                return Err(PackError::ObjectTooLarge {
                    offset,
                    size: head.result_size,
                    limit: limits.max_object_bytes,
                });
            }
            let Some(Slot::Done(base)) = slots.get(i) else {
                continue;
            };
            let data = delta::apply(&base.data, delta, &head).map_err(bad)?;
            budget.charge(data.len())?;
            let oid = Oid::hash_object(base_kind.name(), &data);
            index_of_oid.entry(oid).or_insert(c);
            out.max_depth = out.max_depth.max(depth);
            if let Some(slot) = slots.get_mut(c) {
                *slot = Slot::Done(Object {
                    kind: base_kind,
                    oid,
                    data,
                    depth,
                });
            }
            queue.push_back(c);
        }
    }

    for slot in slots {
        match slot {
            Slot::Done(obj) => out.objects.push(obj),
            Slot::Pending {
                kind,
                offset,
                delta,
            } => {
                let bad = |reason: &str| PackError::Delta {
                    offset,
                    reason: reason.to_owned(),
                };
                let head = delta::header(&delta).map_err(bad)?;
                if head.result_size > limits.max_object_bytes {
                    return Err(PackError::ObjectTooLarge {
                        offset,
                        size: head.result_size,
                        limit: limits.max_object_bytes,
                    });
                }
                let inserted = delta::inserted_bytes(&delta, &head).map_err(bad)?;
                let base = match kind {
                    EntryKind::RefDelta { base } => Some(base),
                    _ => None,
                };
                out.thin.push(ThinDelta { base, inserted });
            }
        }
    }
    Ok(out)
}
