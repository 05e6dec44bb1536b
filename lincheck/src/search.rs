//! The Wing–Gong / Lowe search over one partition.

use std::collections::hash_map::Entry;
use std::collections::HashMap;

use crate::hash::{hash_one, mix64, zobrist, BuildIdentity};
use crate::{Model, Operation};

/// Result of searching one partition. Indices are into the full history.
pub(crate) enum Outcome {
    Linearizable,
    StepCap,
    Violation { prefix: Vec<usize>, blocked: usize },
}

const NIL: usize = usize::MAX;
const HEAD: usize = 0;
const NO_CHAIN: u32 = u32::MAX;

/// Memo of visited configurations (linearized set, state), stored in flat arenas so
/// that inserting does not allocate per entry.
struct Cache<S> {
    words: usize,
    heads: HashMap<u64, u32, BuildIdentity>,
    bits: Vec<u64>,
    states: Vec<S>,
    chain: Vec<u32>,
}

impl<S: Eq + Clone> Cache<S> {
    fn new(words: usize) -> Self {
        Cache {
            words,
            heads: HashMap::default(),
            bits: Vec::new(),
            states: Vec::new(),
            chain: Vec::new(),
        }
    }

    /// Inserts the configuration; returns `false` if it was already present.
    fn insert(&mut self, hash: u64, bits: &[u64], state: &S) -> bool {
        let new_index = self.states.len() as u32;
        match self.heads.entry(hash) {
            Entry::Occupied(mut e) => {
                let mut idx = *e.get();
                while idx != NO_CHAIN {
                    let i = idx as usize;
                    if self.states[i] == *state
                        && self.bits[i * self.words..(i + 1) * self.words] == *bits
                    {
                        return false;
                    }
                    idx = self.chain[i];
                }
                self.chain.push(*e.get());
                e.insert(new_index);
            }
            Entry::Vacant(e) => {
                self.chain.push(NO_CHAIN);
                e.insert(new_index);
            }
        }
        self.bits.extend_from_slice(bits);
        self.states.push(state.clone());
        true
    }
}

struct Frame<S> {
    op: usize,
    prev_state: S,
    alt: usize,
}

struct Search<'a, M: Model> {
    model: &'a M,
    ops: Vec<&'a Operation<M::Input, M::Output>>,
    // Linked list of entries; node 0 is the head sentinel.
    next: Vec<usize>,
    prev: Vec<usize>,
    node_op: Vec<usize>,
    node_is_call: Vec<bool>,
    call_node: Vec<usize>,
    ret_node: Vec<usize>,
    zob: Vec<u64>,
    // Current configuration.
    bits: Vec<u64>,
    bits_hash: u64,
    state: M::State,
    known_remaining: usize,
    stack: Vec<Frame<M::State>>,
    cache: Cache<M::State>,
    // Diagnostics.
    best_prefix: Vec<usize>,
    blocked: Option<usize>,
}

impl<'a, M: Model> Search<'a, M> {
    fn new(
        model: &'a M,
        history: &[&'a Operation<M::Input, M::Output>],
        members: &[usize],
    ) -> Self {
        let n = members.len();
        let ops: Vec<_> = members.iter().map(|&i| history[i]).collect();
        let mut events: Vec<(u64, bool, usize)> = Vec::with_capacity(2 * n);
        let mut known = 0;
        for (j, op) in ops.iter().enumerate() {
            // `false` sorts before `true`: calls before returns at equal times, so
            // equal timestamps are concurrent.
            events.push((op.call, false, j));
            if op.output.is_some() {
                events.push((op.ret, true, j));
                known += 1;
            }
        }
        events.sort_unstable();
        let m = events.len();
        let mut next = vec![NIL; m + 1];
        let mut prev = vec![NIL; m + 1];
        let mut node_op = vec![NIL; m + 1];
        let mut node_is_call = vec![false; m + 1];
        let mut call_node = vec![NIL; n];
        let mut ret_node = vec![NIL; n];
        for (k, &(_, is_ret, j)) in events.iter().enumerate() {
            let node = k + 1;
            prev[node] = k;
            next[k] = node;
            node_op[node] = j;
            node_is_call[node] = !is_ret;
            if is_ret {
                ret_node[j] = node;
            } else {
                call_node[j] = node;
            }
        }
        let words = n.div_ceil(64);
        Search {
            model,
            ops,
            next,
            prev,
            node_op,
            node_is_call,
            call_node,
            ret_node,
            zob: (0..n).map(zobrist).collect(),
            bits: vec![0; words],
            bits_hash: 0,
            state: model.init(),
            known_remaining: known,
            stack: Vec::new(),
            cache: Cache::new(words),
            best_prefix: Vec::new(),
            blocked: None,
        }
    }

    fn unlink(&mut self, x: usize) {
        let (p, n) = (self.prev[x], self.next[x]);
        self.next[p] = n;
        if n != NIL {
            self.prev[n] = p;
        }
    }

    fn relink(&mut self, x: usize) {
        let (p, n) = (self.prev[x], self.next[x]);
        self.next[p] = x;
        if n != NIL {
            self.prev[n] = x;
        }
    }

    fn lift(&mut self, j: usize) {
        self.unlink(self.call_node[j]);
        if self.ret_node[j] != NIL {
            self.unlink(self.ret_node[j]);
            self.known_remaining -= 1;
        }
    }

    fn unlift(&mut self, j: usize) {
        if self.ret_node[j] != NIL {
            self.relink(self.ret_node[j]);
            self.known_remaining += 1;
        }
        self.relink(self.call_node[j]);
    }

    fn toggle(&mut self, j: usize) {
        self.bits[j / 64] ^= 1 << (j % 64);
        self.bits_hash ^= self.zob[j];
    }

    /// Tries to linearize op `j` now, with its alternatives `alt_from..` (an op with a
    /// known output has exactly one alternative). On success the op is lifted and
    /// pushed on the stack.
    fn try_op(&mut self, j: usize, alt_from: usize) -> bool {
        let op = self.ops[j];
        match &op.output {
            Some(out) => {
                if alt_from > 0 {
                    return false;
                }
                match self.model.step(&self.state, &op.input, out) {
                    Some(next) => self.try_enter(j, next, 0),
                    None => false,
                }
            }
            None => {
                let candidates = self.model.step_unknown(&self.state, &op.input);
                for (alt, next) in candidates.into_iter().enumerate().skip(alt_from) {
                    // Taking effect without changing the state is dominated by never
                    // taking effect (the op's return is at +infinity): skip it.
                    if next == self.state {
                        continue;
                    }
                    if self.try_enter(j, next, alt) {
                        return true;
                    }
                }
                false
            }
        }
    }

    fn try_enter(&mut self, j: usize, next: M::State, alt: usize) -> bool {
        self.toggle(j);
        let hash = mix64(self.bits_hash ^ hash_one(&next));
        if !self.cache.insert(hash, &self.bits, &next) {
            self.toggle(j);
            return false;
        }
        let prev_state = std::mem::replace(&mut self.state, next);
        self.stack.push(Frame {
            op: j,
            prev_state,
            alt,
        });
        self.lift(j);
        if self.stack.len() > self.best_prefix.len() {
            self.best_prefix = self.stack.iter().map(|f| f.op).collect();
            self.blocked = None;
        }
        true
    }

    fn run(&mut self, step_cap: u64) -> Result<bool, usize> {
        let mut entry = self.next[HEAD];
        let mut steps: u64 = 0;
        loop {
            if self.known_remaining == 0 {
                return Ok(true);
            }
            steps += 1;
            if steps > step_cap {
                return Ok(false);
            }
            if entry != NIL && self.node_is_call[entry] {
                let j = self.node_op[entry];
                entry = if self.try_op(j, 0) {
                    self.next[HEAD]
                } else {
                    self.next[entry]
                };
                continue;
            }
            // A return entry of an op not yet linearized (or, defensively, the end
            // of the list): the current prefix cannot be extended; backtrack.
            let stuck = if entry == NIL {
                None
            } else {
                Some(self.node_op[entry])
            };
            if self.stack.len() == self.best_prefix.len() && self.blocked.is_none() {
                self.blocked = stuck;
            }
            let Some(frame) = self.stack.pop() else {
                return Err(self.blocked.or(stuck).unwrap_or(0));
            };
            self.state = frame.prev_state;
            self.toggle(frame.op);
            self.unlift(frame.op);
            entry = if self.try_op(frame.op, frame.alt + 1) {
                self.next[HEAD]
            } else {
                self.next[self.call_node[frame.op]]
            };
        }
    }
}

pub(crate) fn search<M: Model>(
    model: &M,
    history: &[&Operation<M::Input, M::Output>],
    members: &[usize],
    step_cap: u64,
) -> Outcome {
    let mut s = Search::new(model, history, members);
    match s.run(step_cap) {
        Ok(true) => Outcome::Linearizable,
        Ok(false) => Outcome::StepCap,
        Err(blocked) => Outcome::Violation {
            prefix: s.best_prefix.iter().map(|&j| members[j]).collect(),
            blocked: members.get(blocked).copied().unwrap_or(0),
        },
    }
}
