//! The per-key check in op-number order.
//!
//! When every completed operation on a key carries an op number and those numbers
//! respect real time, the completed operations already have the server's total order:
//! only the unknown-outcome operations remain to be placed. The check walks the key's
//! completed operations in op-number order and keeps the **frontier**: every
//! (value, unknown ops used so far) that some placement of unknown ops reaches, pruned
//! by dominance (same value, fewer unknown ops used). Before each completed op, unknown
//! ops that may already take effect there are applied (a bounded breadth-first closure),
//! and the completed op keeps only the states from which its reply is legal.
//!
//! Unknown ops with equal inputs are interchangeable, so they are grouped into
//! **classes** and a state counts how many of each class it used. An unknown op `u`
//! may be placed before the completed op at position `p` iff every completed op that
//! returned before `u` was called sits before `p`; once allowed it stays allowed, so at
//! each position a class has a number of available members and a state may use at most
//! that many.
//!
//! Why this is exact (no false "linearizable", and no violation that a placement of
//! unknown ops into the op-number order would avoid):
//!
//! * A surviving state is a witness: the completed ops in op-number order (which
//!   respects real time, checked first), with the used unknown ops placed where they
//!   were allowed. That is a linearization of the key's history.
//! * Every kv operation, when its reply is legal, either leaves the value unchanged
//!   (get, a failed cas, `del` of an absent key, an `incrby` error) or sets a value that
//!   does not depend on the one before (set, a successful cas, `del`, an `incrby` with a
//!   known result). So a closure state from which the next op is already legal needs no
//!   further unknown ops before it: the same ops can follow it instead (read-only), or
//!   they only cost unknown ops for the same result (blind write).
//! * Within one position, a set or del is only tried as the first unknown op (one
//!   after other unknown ops would make them useless); increments commute, and when
//!   only increments remain, values the next op cannot accept from any reachable sum
//!   are not expanded.
//! * Within one position, after the first unknown op only increments and cas ops
//!   follow, so a value from which no chain of the active increments and cas ops leads
//!   to a value the next op needs is not expanded (an over-approximation: it ignores
//!   how many members a state has left).
//! * A state `a` dominates `b` (same value) if `a` used no more of every class than
//!   `b`, or if the increments `a` used beyond `b` can be replaced one by one by
//!   disjoint groups of the increments `b` used beyond `a` with the same sums (e.g. one
//!   `+2` for two `+1`), and the cas ops `a` used beyond `b` by as many sets of the same
//!   values `b` used beyond `a` (a set of `v` does whatever a cas to `v` does): those
//!   are all available already, so any continuation of `b` is open to `a`.
//! * A non-integer value that no op from some position on can tell apart (no completed
//!   op returns or expects it there, no unknown cas expects it) *retires* there: states
//!   holding it hold a common stand-in instead, and the classes writing it merge into
//!   those writing the stand-in, adding up used and available members.
//!
//! A read answered without an op of its own (`KvReply::read`) sits after the op whose
//! number it carries; reads of the same state commute.
//!
//! A key whose completed ops lack an op number, or whose op numbers contradict real
//! time, or whose frontier grows beyond [`MAX_FRONTIER`] states, is left to the general
//! search (and the op-number checks report the latter).

use std::collections::{HashMap, HashSet};

use super::{apply_key, parse_canonical_int, Effect, KvInput, KvOp, KvOutput, KvValue};

/// The result for one key.
pub(crate) enum KeyOutcome {
    /// A placement of the unknown ops works.
    Linearizable,
    /// No placement works: after the completed ops `prefix` (history indices, op-number
    /// order), the op `blocked` cannot return its reply.
    Violation {
        prefix: Vec<usize>,
        blocked: usize,
        unknowns: usize,
    },
    /// More than `step_cap` states were expanded.
    StepCap,
    /// The op-number order cannot be used for this key.
    NotApplicable,
}

/// Beyond this many frontier states the key goes to the general search.
const MAX_FRONTIER: usize = 256;

enum Stop {
    StepCap,
    TooWide,
}

/// Units used per class, sorted by class.
type Used = Vec<(u32, u32)>;

#[derive(Clone, PartialEq, Eq)]
struct St {
    val: u32,
    used: Used,
    /// Set once an unknown op was applied at the current position: only increments and
    /// cas ops may follow (a set or del would make the ops before it useless).
    incr_phase: bool,
}

struct Class {
    input: KvInput,
    /// `Some(delta)` for an increment.
    incr: Option<i64>,
    cas: bool,
}

/// The id of absence (no value).
const ABSENT: u32 = 0;

/// The values of a key, interned: states hold ids.
struct Values {
    /// The id of each present value.
    ids: HashMap<String, u32>,
    /// The ids of integer values by integer (stepping an increment need not format it).
    int_ids: HashMap<i64, u32>,
    /// Each id's value (`None` = absent) and, if it is one, its integer.
    vals: Vec<(Option<KvValue>, Option<i64>)>,
    /// Values some op on the key can tell apart (see [`anonymous_values`]), each with
    /// the last position whose completed op does (`usize::MAX` if an unknown cas
    /// expects the value: that op may come at any later position).
    observed: HashMap<String, usize>,
    /// The current position: the index (in op-number order) of the next completed op.
    pos: usize,
    /// The stand-in for every other non-integer value.
    anon: KvValue,
}

impl Values {
    /// Whether `v` behaves like the stand-in from the current position on.
    fn canon(&self, v: &str) -> bool {
        parse_canonical_int(v).is_none() && self.observed.get(v).is_none_or(|&last| last < self.pos)
    }

    fn new(observed: HashMap<String, usize>, anon: KvValue) -> Values {
        Values {
            ids: HashMap::new(),
            int_ids: HashMap::new(),
            vals: vec![(None, None)], // ABSENT
            observed,
            pos: 0,
            anon,
        }
    }

    fn intern(&mut self, v: Option<&str>) -> u32 {
        let Some(mut v) = v else {
            return ABSENT;
        };
        if self.canon(v) {
            v = &*self.anon;
        }
        if let Some(&id) = self.ids.get(v) {
            return id;
        }
        let id = self.vals.len() as u32;
        let int = parse_canonical_int(v);
        if let Some(n) = int {
            self.int_ids.insert(n, id);
        }
        self.vals.push((Some(KvValue::from(v)), int));
        self.ids.insert(v.to_string(), id);
        id
    }

    fn intern_int(&mut self, n: i64) -> u32 {
        match self.int_ids.get(&n) {
            Some(&id) => id,
            None => self.intern(Some(&n.to_string())),
        }
    }

    fn get(&self, id: u32) -> Option<&str> {
        self.vals[id as usize].0.as_deref()
    }

    /// The value an id stands for, shared.
    fn get_value(&self, id: u32) -> Option<&KvValue> {
        self.vals[id as usize].0.as_ref()
    }

    /// The integer an id stands for, if it is one.
    fn int(&self, id: u32) -> Option<i64> {
        self.vals[id as usize].1
    }
}

fn used_of(used: &Used, class: u32) -> u32 {
    match used.binary_search_by_key(&class, |&(c, _)| c) {
        Ok(i) => used[i].1,
        Err(_) => 0,
    }
}

fn add_units(used: &mut Used, class: u32, n: u32) {
    match used.binary_search_by_key(&class, |&(c, _)| c) {
        Ok(i) => used[i].1 += n,
        Err(i) => used.insert(i, (class, n)),
    }
}

fn add_unit(used: &Used, class: u32) -> Used {
    let mut out = used.clone();
    add_units(&mut out, class, 1);
    out
}

/// Removes `class` from `used`, returning how many units of it were used.
fn take_units(used: &mut Used, class: u32) -> u32 {
    match used.binary_search_by_key(&class, |&(c, _)| c) {
        Ok(i) => used.remove(i).1,
        Err(_) => 0,
    }
}

/// The string an op of this input writes, if it writes one.
fn written_value(input: &KvInput) -> Option<&str> {
    match input {
        KvInput::Set { value, .. } | KvInput::Cas { new: value, .. } => Some(&**value),
        _ => None,
    }
}

/// The values from which one of the next completed op's required values can still be
/// reached after the first unknown op at a position, i.e. by increments and cas ops of
/// the active classes. An over-approximation (it ignores how many members of each
/// class a state has left), so a state holding any other value can be dropped.
struct Useful {
    strings: HashSet<KvValue>,
    absent: bool,
    /// Every integer and absence: increments may reach an integer target from them.
    ints: bool,
}

impl Useful {
    fn contains(&self, v: Option<&str>) -> bool {
        match v {
            None => self.absent || self.ints,
            Some(s) => (self.ints && parse_canonical_int(s).is_some()) || self.strings.contains(s),
        }
    }
}

/// What the next completed op needs from the value before it, for pruning.
enum Need {
    /// One of these values exactly.
    Exact(Vec<Option<KvValue>>),
    /// Something else (checked by stepping).
    Other,
}

fn need_of(input: &KvInput, output: &KvOutput) -> Need {
    match (input, output) {
        (KvInput::Get { .. }, KvOutput::Value(v)) => Need::Exact(vec![v.clone()]),
        (KvInput::IncrBy { delta, .. }, KvOutput::Int(n)) => match n.checked_sub(*delta) {
            Some(0) => Need::Exact(vec![Some(KvValue::from("0")), None]),
            Some(b) => Need::Exact(vec![Some(super::int_value(b))]),
            None => Need::Exact(Vec::new()),
        },
        (KvInput::Cas { expected, .. }, KvOutput::Swapped(true)) => {
            Need::Exact(vec![expected.clone()])
        }
        (KvInput::Del { .. }, KvOutput::Deleted(0)) => Need::Exact(vec![None]),
        _ => Need::Other,
    }
}

struct Checker<'h> {
    history: &'h [&'h KvOp],
    classes: Vec<Class>,
    class_of: HashMap<KvInput, u32>,
    /// The class each class was merged into when the value it writes retired (itself
    /// if it was not).
    merged_into: Vec<u32>,
    /// The classes that write each observed value (which retires at some position).
    writers: HashMap<String, Vec<u32>>,
    /// Available members per class at the current position.
    avail: Vec<u32>,
    /// Classes with at least one available member, in order of first availability.
    active: Vec<u32>,
    values: Values,
    steps: u64,
    step_cap: u64,
}

impl Checker<'_> {
    /// The class of unknown ops with this (canonical) input, created if new.
    fn class_for(&mut self, input: &KvInput) -> u32 {
        if let Some(&k) = self.class_of.get(input) {
            return k;
        }
        let k = self.classes.len() as u32;
        self.classes.push(Class {
            input: input.clone(),
            incr: match input {
                KvInput::IncrBy { delta, .. } => Some(*delta),
                _ => None,
            },
            cas: matches!(input, KvInput::Cas { .. }),
        });
        self.class_of.insert(input.clone(), k);
        self.merged_into.push(k);
        self.avail.push(0);
        if let Some(v) = written_value(input) {
            if self.values.observed.get(v) < Some(&usize::MAX) {
                self.writers.entry(v.to_string()).or_default().push(k);
            }
        }
        k
    }

    /// The class that stands for `class` now (after the merges of retired values).
    fn current_class(&self, mut class: u32) -> u32 {
        while self.merged_into[class as usize] != class {
            class = self.merged_into[class as usize];
        }
        class
    }

    /// Makes an available member of `class` (as created) usable from now on.
    fn make_available(&mut self, class: u32) {
        let k = self.current_class(class);
        if self.avail[k as usize] == 0 {
            self.active.push(k);
        }
        self.avail[k as usize] += 1;
    }

    /// Retires the observed value `v` at the current position: no op from here on can
    /// tell it from the stand-in (no completed op left compares or returns it, and no
    /// unknown cas expects it). States holding `v` now hold the stand-in, and the
    /// classes writing `v` merge into those writing the stand-in, adding up their
    /// available and used members (the ops of both are interchangeable from here on,
    /// and every member that was available stays so). Without this, states that used
    /// different long-dead writes would stay incomparable and multiply the frontier.
    fn retire(&mut self, v: &str, frontier: Vec<St>) -> Vec<St> {
        let anon = self.values.anon.clone();
        let anon_id = self.values.intern(Some(&*anon));
        let old_id = self.values.ids.get(v).copied();
        let mut moves: Vec<(u32, u32)> = Vec::new();
        for a in self.writers.remove(v).unwrap_or_default() {
            let mut input = self.classes[a as usize].input.clone();
            if let KvInput::Set { value, .. } | KvInput::Cas { new: value, .. } = &mut input {
                value.clone_from(&anon);
            }
            let b = self.class_for(&input);
            self.merged_into[a as usize] = b;
            let n = std::mem::take(&mut self.avail[a as usize]);
            if n > 0 {
                self.active.retain(|&k| k != a);
                if self.avail[b as usize] == 0 {
                    self.active.push(b);
                }
                self.avail[b as usize] += n;
            }
            moves.push((a, b));
        }
        if old_id.is_none() && moves.is_empty() {
            return frontier;
        }
        let mut out = Vec::with_capacity(frontier.len());
        for mut st in frontier {
            if Some(st.val) == old_id {
                st.val = anon_id;
            }
            for &(a, b) in &moves {
                let n = take_units(&mut st.used, a);
                if n > 0 {
                    add_units(&mut st.used, b, n);
                }
            }
            self.insert(&mut out, st);
        }
        out
    }

    fn free(&self, st: &St, class: u32) -> u32 {
        self.avail[class as usize] - used_of(&st.used, class)
    }

    /// `a` dominates `b`: any continuation of `b` is open to `a`.
    fn dominates(&self, a: &St, b: &St) -> bool {
        if a.val != b.val || (a.incr_phase && !b.incr_phase) {
            return false;
        }
        if a.used.iter().all(|&(k, n)| n <= used_of(&b.used, k)) {
            return true; // `a` used no more of any class
        }
        // Increment units `a` used beyond `b` (x) and `b` used beyond `a` (y); cas
        // classes `a` used more of and set classes `b` used more of, with the excess.
        let mut x: Vec<i64> = Vec::new();
        let mut y: Vec<i64> = Vec::new();
        let mut x_cas: Vec<(u32, u32)> = Vec::new();
        let mut y_set: Vec<(u32, u32)> = Vec::new();
        let (mut i, mut j) = (0, 0);
        let limit = 64;
        loop {
            let (ca, na) = a.used.get(i).copied().unwrap_or((u32::MAX, 0));
            let (cb, nb) = b.used.get(j).copied().unwrap_or((u32::MAX, 0));
            if ca == u32::MAX && cb == u32::MAX {
                break;
            }
            let (class, ua, ub) = if ca == cb {
                i += 1;
                j += 1;
                (ca, na, nb)
            } else if ca < cb {
                i += 1;
                (ca, na, 0)
            } else {
                j += 1;
                (cb, 0, nb)
            };
            let c = &self.classes[class as usize];
            if ua > ub {
                // `a` spent more of this class: only replaceable increments and cas ops.
                if c.cas {
                    x_cas.push((class, ua - ub));
                    continue;
                }
                let Some(d) = c.incr else {
                    return false;
                };
                if x.len() + (ua - ub) as usize > limit {
                    return false;
                }
                x.extend(std::iter::repeat_n(d, (ua - ub) as usize));
            } else if ub > ua {
                if let Some(d) = c.incr {
                    let n = ((ub - ua) as usize).min(limit);
                    y.extend(std::iter::repeat_n(d, n));
                } else if matches!(c.input, KvInput::Set { .. }) {
                    y_set.push((class, ub - ua));
                }
            }
        }
        // A set of `v` does whatever a cas to `v` does (wherever the cas takes effect,
        // the set does too, with the same result), so the cas ops `a` spent beyond `b`
        // are covered by as many extra sets of the same values spent by `b`.
        let writes = |k: u32| written_value(&self.classes[k as usize].input);
        for (i, &(k, _)) in x_cas.iter().enumerate() {
            let v = writes(k);
            if x_cas[..i].iter().any(|&(k2, _)| writes(k2) == v) {
                continue; // this value was already counted
            }
            let count = |units: &[(u32, u32)]| -> u32 {
                units
                    .iter()
                    .filter(|&&(k2, _)| writes(k2) == v)
                    .map(|&(_, n)| n)
                    .sum()
            };
            if count(&x_cas) > count(&y_set) {
                return false;
            }
        }
        if x.is_empty() {
            return true;
        }
        if y.len() > limit
            || !(x.iter().chain(&y).all(|&d| d > 0) || x.iter().chain(&y).all(|&d| d < 0))
        {
            return false;
        }
        let total = |v: &[i64]| v.iter().map(|d| d.unsigned_abs()).sum::<u64>();
        if total(&x) > total(&y) {
            return false;
        }
        // Greedy first fit, largest units first: a sufficient test (a failed cover
        // only keeps a state that might have been dropped).
        x.sort_unstable_by_key(|d| std::cmp::Reverse(d.abs()));
        y.sort_unstable_by_key(|d| std::cmp::Reverse(d.abs()));
        let mut taken = vec![false; y.len()];
        x.iter().all(|&want| {
            let mut need = want.abs();
            for (j, &d) in y.iter().enumerate() {
                if need == 0 {
                    break;
                }
                if !taken[j] && d.abs() <= need {
                    taken[j] = true;
                    need -= d.abs();
                }
            }
            need == 0
        })
    }

    /// Inserts `st` into `set` unless dominated; drops the states it dominates.
    fn insert(&self, set: &mut Vec<St>, st: St) -> bool {
        if set.iter().any(|s| self.dominates(s, &st)) {
            return false;
        }
        set.retain(|s| !self.dominates(&st, s));
        set.push(st);
        true
    }

    /// Whether a state in the increment phase (or with only increment classes left)
    /// can still reach a value in `targets`.
    fn may_reach(&self, st: &St, targets: &[Option<KvValue>]) -> bool {
        let mut lo: i128 = 0;
        let mut hi: i128 = 0;
        for &c in &self.active {
            let class = &self.classes[c as usize];
            let free = i128::from(self.free(st, c));
            if free == 0 {
                continue;
            }
            match class.incr {
                Some(d) if d >= 0 => hi += free * i128::from(d),
                Some(d) => lo += free * i128::from(d),
                None if class.cas && st.incr_phase => return true,
                None if !st.incr_phase => return true,
                None => {}
            }
        }
        let base = match (self.values.get(st.val), self.values.int(st.val)) {
            (None, _) => 0,
            (Some(_), Some(n)) => n,
            // Increments cannot change a non-integer value.
            (Some(_), None) => return false,
        };
        let (lo, hi) = (i128::from(base) + lo, i128::from(base) + hi);
        if lo < i128::from(i64::MIN) || hi > i128::from(i64::MAX) {
            return true; // overflow errors are possible: do not prune
        }
        targets.iter().any(|t| {
            t.as_deref()
                .and_then(parse_canonical_int)
                .is_some_and(|n| (lo..=hi).contains(&i128::from(n)))
        })
    }

    /// The values that lead to `targets` (see [`Useful`]): the targets, then backwards
    /// through cas ops (to its expected value if it writes a useful one) and
    /// increments, to a fixpoint.
    fn useful(&self, targets: &[Option<KvValue>]) -> Useful {
        let mut useful = Useful {
            strings: targets.iter().flatten().cloned().collect(),
            absent: targets.contains(&None),
            ints: false,
        };
        let incr = self
            .active
            .iter()
            .any(|&k| self.classes[k as usize].incr.is_some());
        loop {
            let mut changed = false;
            if incr
                && !useful.ints
                && useful
                    .strings
                    .iter()
                    .any(|s| parse_canonical_int(s).is_some())
            {
                useful.ints = true;
                changed = true;
            }
            for &k in &self.active {
                if let KvInput::Cas { expected, new, .. } = &self.classes[k as usize].input {
                    if useful.contains(Some(new)) && !useful.contains(expected.as_deref()) {
                        match expected {
                            Some(e) => useful.strings.insert(e.clone()),
                            None => std::mem::replace(&mut useful.absent, true),
                        };
                        changed = true;
                    }
                }
            }
            if !changed {
                return useful;
            }
        }
    }

    /// Steps the completed op from the value `val`: the next value if its reply is
    /// legal there. The same as [`apply_key`] for single-key ops, but without building
    /// the expected output: this runs once per state and position.
    fn step(&mut self, val: u32, input: &KvInput, output: &KvOutput) -> Option<u32> {
        let cur = self.values.get(val);
        match (input, output) {
            (KvInput::Get { .. }, KvOutput::Value(v)) => (cur == v.as_deref()).then_some(val),
            (KvInput::Set { value, .. }, KvOutput::Ok) => Some(self.values.intern(Some(value))),
            (KvInput::Del { .. }, KvOutput::Deleted(n)) => match (cur, n) {
                (Some(_), 1) => Some(ABSENT),
                (None, 0) => Some(val),
                _ => None,
            },
            (KvInput::IncrBy { delta, .. }, out) => {
                let base = match cur {
                    None => Some(0),
                    Some(_) => self.values.int(val),
                };
                match (base.and_then(|b| b.checked_add(*delta)), out) {
                    (Some(n), KvOutput::Int(m)) if n == *m => Some(self.values.intern_int(n)),
                    (None, KvOutput::Error) => Some(val),
                    _ => None,
                }
            }
            (KvInput::Cas { expected, new, .. }, KvOutput::Swapped(swapped)) => {
                let hit = cur == expected.as_deref();
                match (hit, swapped) {
                    (true, true) => Some(self.values.intern(Some(new))),
                    (false, false) => Some(val),
                    _ => None,
                }
            }
            _ => None,
        }
    }

    /// The frontier after completed op `c`, from the frontier before its position.
    fn advance(&mut self, frontier: Vec<St>, c: usize) -> Result<Vec<St>, Stop> {
        let history = self.history;
        let op = &history[c];
        let Some(reply) = &op.output else {
            return Ok(Vec::new());
        };
        let (input, output) = (&op.input, &reply.output);
        // The common case: the reply is legal from every state, so no unknown op need
        // be placed here (see the module documentation). Dominance between two states
        // depends on their used members and on whether their values are equal; the
        // op changes no used members, and maps equal values to equal values, so the
        // states stay pairwise non-dominated unless it maps different values to one.
        let uniform = frontier.iter().all(|st| st.val == frontier[0].val);
        let mut next: Vec<St> = Vec::with_capacity(frontier.len());
        let mut changed = false;
        for st in &frontier {
            let Some(val) = self.step(st.val, input, output) else {
                break;
            };
            changed |= val != st.val;
            next.push(St {
                val,
                used: Vec::new(), // filled below, once every state passed
                incr_phase: false,
            });
        }
        if next.len() == frontier.len() {
            self.steps += frontier.len() as u64;
            if self.steps > self.step_cap {
                return Err(Stop::StepCap);
            }
            for (n, st) in next.iter_mut().zip(frontier) {
                n.used = st.used;
            }
            if changed && !uniform {
                let all = std::mem::take(&mut next);
                for st in all {
                    self.insert(&mut next, st);
                }
            }
            return Ok(next);
        }
        next.clear();
        let need = need_of(input, output);
        let mut seen: HashMap<u32, Vec<St>> = HashMap::new();
        let mut queue: Vec<St> = Vec::new();
        for st in frontier {
            seen.entry(st.val).or_default().push(st.clone());
            queue.push(st);
        }
        let mut useful: Option<Useful> = None;
        let mut head = 0;
        while head < queue.len() {
            let st = queue[head].clone();
            head += 1;
            self.steps += 1;
            if self.steps > self.step_cap {
                return Err(Stop::StepCap);
            }
            if queue.len() > MAX_FRONTIER * 16 {
                return Err(Stop::TooWide);
            }
            if let Some(v) = self.step(st.val, input, output) {
                let after = St {
                    val: v,
                    used: st.used,
                    incr_phase: false,
                };
                self.insert(&mut next, after);
                continue;
            }
            if let Need::Exact(targets) = &need {
                let only_incr = st.incr_phase
                    || self.active.iter().all(|&k| {
                        self.classes[k as usize].incr.is_some() || self.free(&st, k) == 0
                    });
                if only_incr && !self.may_reach(&st, targets) {
                    continue;
                }
                if useful.is_none() {
                    useful = Some(self.useful(targets));
                }
            }
            for idx in 0..self.active.len() {
                let k = self.active[idx];
                if self.free(&st, k) == 0 {
                    continue;
                }
                let class = &self.classes[k as usize];
                if st.incr_phase && class.incr.is_none() && !class.cas {
                    continue;
                }
                let (_, effect) = apply_key(self.values.get_value(st.val), &class.input);
                let val = match effect {
                    Effect::Keep => continue, // no change: dominated by not applying it
                    Effect::Put(v) => self.values.intern(Some(&*v)),
                    Effect::Remove => ABSENT,
                };
                if val == st.val {
                    continue;
                }
                if useful
                    .as_ref()
                    .is_some_and(|u| !u.contains(self.values.get(val)))
                {
                    continue; // only increments and cas ops may follow: a dead end
                }
                let new = St {
                    val,
                    used: add_unit(&st.used, k),
                    incr_phase: true,
                };
                let bucket = seen.remove(&val).unwrap_or_default();
                let mut bucket = bucket;
                let inserted = self.insert(&mut bucket, new.clone());
                seen.insert(val, bucket);
                if inserted {
                    queue.push(new);
                }
            }
        }
        Ok(next)
    }
}

impl Values {
    fn canonical_input(&self, input: &KvInput) -> KvInput {
        let mut input = input.clone();
        if let KvInput::Set { value, .. } | KvInput::Cas { new: value, .. } = &mut input {
            if self.canon(value) {
                value.clone_from(&self.anon);
            }
        }
        input
    }
}

/// Non-integer values that no completed op on the key returns or compares against, and
/// no unknown cas expects, behave the same under every op on the key (gets and cas ops
/// compare against observed values only, del only asks presence, incrby fails on any
/// of them, set ignores them): they are all replaced by one stand-in, and unknown ops
/// writing them fall into one class. Without this, unknown writes that never took
/// effect would each be a class of their own and multiply the frontier.
///
/// The same holds from the position after the last completed op that tells a value
/// apart, unless an unknown cas expects it: the value then retires (see
/// [`Checker::retire`]).
fn anonymous_values(history: &[&KvOp], order: &[usize], unknown: &[usize]) -> Values {
    let mut observed: HashMap<String, usize> = HashMap::new();
    let positions = order.iter().enumerate().map(|(p, &i)| (p, i));
    let forever = unknown.iter().map(|&i| (usize::MAX, i));
    for (last, i) in positions.chain(forever) {
        let op = &history[i];
        let mut observe = |v: &KvValue| {
            if parse_canonical_int(v).is_some() {
                return; // integers are never replaced by the stand-in
            }
            let e = observed.entry(v.to_string()).or_insert(last);
            *e = (*e).max(last);
        };
        if let KvInput::Cas {
            expected: Some(e), ..
        } = &op.input
        {
            observe(e);
        }
        if let Some(KvOutput::Value(Some(v))) = op.output.as_ref().map(|r| &r.output) {
            observe(v);
        }
    }
    let mut anon = "\u{1}unobserved".to_string();
    while observed.contains_key(&anon) {
        anon.push('_');
    }
    Values::new(observed, KvValue::from(anon))
}

/// Checks one key (`members` index `history`, all single-key ops on the key).
pub(crate) fn check_key(history: &[&KvOp], members: &[usize], step_cap: u64) -> KeyOutcome {
    // Transactions and expiry are outside the classes below: the general search.
    if members.iter().any(|&i| {
        matches!(
            history[i].input,
            KvInput::Txn { .. } | KvInput::SetAt { .. } | KvInput::Tick { .. }
        )
    }) {
        return KeyOutcome::NotApplicable;
    }
    // Completed ops in op-number order: a read of the state after op `n`
    // (`KvReply::read`) after the op numbered `n`; reads of one state (which commute) by
    // return, which respects real time among them.
    let mut completed: Vec<((u64, bool), u64, usize)> = Vec::new();
    let mut unknown: Vec<usize> = Vec::new();
    for &i in members {
        match &history[i].output {
            Some(reply) => match reply.op_number {
                Some(n) => completed.push(((n, reply.read), history[i].ret, i)),
                None => return KeyOutcome::NotApplicable,
            },
            None => unknown.push(i),
        }
    }
    completed.sort_unstable();
    if completed.windows(2).any(|w| w[0].0 == w[1].0 && !w[0].0 .1) {
        return KeyOutcome::NotApplicable;
    }
    let order: Vec<usize> = completed.iter().map(|&(_, _, i)| i).collect();
    // Real time: no op may return before an op ordered earlier was called.
    let mut max_call = 0;
    for (p, &i) in order.iter().enumerate() {
        if p > 0 && history[i].ret < max_call {
            return KeyOutcome::NotApplicable;
        }
        max_call = max_call.max(history[i].call);
    }

    // Earliest position of each unknown op: after every completed op that returned
    // before its call.
    let mut by_ret: Vec<(u64, usize)> = order
        .iter()
        .enumerate()
        .map(|(p, &i)| (history[i].ret, p))
        .collect();
    by_ret.sort_unstable();
    let mut prefix_max: Vec<usize> = Vec::with_capacity(by_ret.len());
    let mut m = 0;
    for &(_, p) in &by_ret {
        m = m.max(p + 1);
        prefix_max.push(m);
    }
    let values = anonymous_values(history, &order, &unknown);
    // Observed values by the position at which they retire.
    let mut retiring: Vec<(usize, String)> = values
        .observed
        .iter()
        .filter(|&(_, &last)| last < order.len())
        .map(|(v, &last)| (last + 1, v.clone()))
        .collect();
    retiring.sort_unstable();
    let mut checker = Checker {
        history,
        classes: Vec::new(),
        class_of: HashMap::new(),
        merged_into: Vec::new(),
        writers: HashMap::new(),
        avail: Vec::new(),
        active: Vec::new(),
        values,
        steps: 0,
        step_cap,
    };
    let mut events: Vec<(usize, u32)> = Vec::new();
    for &u in &unknown {
        let input = checker.values.canonical_input(&history[u].input);
        if !input.may_write() {
            continue; // an unknown read changes nothing
        }
        let n = by_ret.partition_point(|&(r, _)| r < history[u].call);
        let earliest = if n == 0 { 0 } else { prefix_max[n - 1] };
        events.push((earliest, checker.class_for(&input)));
    }
    events.sort_unstable();
    let mut frontier = vec![St {
        val: ABSENT,
        used: Vec::new(),
        incr_phase: false,
    }];
    let (mut ev, mut rv) = (0, 0);
    for (p, &c) in order.iter().enumerate() {
        checker.values.pos = p;
        while rv < retiring.len() && retiring[rv].0 <= p {
            frontier = checker.retire(&retiring[rv].1, frontier);
            rv += 1;
        }
        while ev < events.len() && events[ev].0 <= p {
            checker.make_available(events[ev].1);
            ev += 1;
        }
        frontier = match checker.advance(frontier, c) {
            Ok(f) => f,
            Err(Stop::StepCap) => return KeyOutcome::StepCap,
            Err(Stop::TooWide) => return KeyOutcome::NotApplicable,
        };
        if frontier.len() > MAX_FRONTIER {
            // Many incomparable ways to have used unknown writes (e.g. which one made
            // the key present for a del): leave the key to the general search.
            return KeyOutcome::NotApplicable;
        }
        if frontier.is_empty() {
            return KeyOutcome::Violation {
                prefix: order[..p].to_vec(),
                blocked: c,
                unknowns: unknown.len(),
            };
        }
    }
    KeyOutcome::Linearizable
}
