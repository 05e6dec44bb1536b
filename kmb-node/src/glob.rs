//! Redis's glob patterns (`CONFIG GET`, `KEYS`, `SCAN … MATCH`). Pure; written here because
//! the pattern language is Redis's own (no crate implements its classes and escapes exactly)
//! and it must stay linear-time on hostile patterns.

/// Redis's glob (`*`, `?`, `[abc]`, `[^a-z]`, `\x`): case-insensitive with `nocase` (as
/// `CONFIG GET` matches), exact otherwise (as `KEYS` and `SCAN … MATCH` match).
/// Quadratic at worst: a table over pattern and name positions, no backtracking.
pub fn glob_match(pattern: &[u8], name: &[u8], nocase: bool) -> bool {
    // Tokens of the pattern.
    enum Tok {
        Any,
        One,
        Class(Vec<(u8, u8)>, bool),
        Byte(u8),
    }
    let lower = |b: u8| if nocase { b.to_ascii_lowercase() } else { b };
    let mut toks = Vec::new();
    let mut i = 0;
    while i < pattern.len() {
        match pattern[i] {
            // Consecutive stars match as one.
            b'*' if matches!(toks.last(), Some(Tok::Any)) => {}
            b'*' => toks.push(Tok::Any),
            b'?' => toks.push(Tok::One),
            b'\\' if i + 1 < pattern.len() => {
                i += 1;
                toks.push(Tok::Byte(lower(pattern[i])));
            }
            b'[' => {
                let mut j = i + 1;
                let negate = pattern.get(j) == Some(&b'^');
                if negate {
                    j += 1;
                }
                let mut ranges = Vec::new();
                while j < pattern.len() && pattern[j] != b']' {
                    let mut a = pattern[j];
                    if a == b'\\' && j + 1 < pattern.len() {
                        j += 1;
                        a = pattern[j];
                    }
                    if pattern.get(j + 1) == Some(&b'-') && j + 2 < pattern.len() {
                        let b = pattern[j + 2];
                        let (lo, hi) = if a <= b { (a, b) } else { (b, a) };
                        ranges.push((lower(lo), lower(hi)));
                        j += 3;
                    } else {
                        ranges.push((lower(a), lower(a)));
                        j += 1;
                    }
                }
                toks.push(Tok::Class(ranges, negate));
                i = j;
            }
            b => toks.push(Tok::Byte(lower(b))),
        }
        i += 1;
    }
    // reach[j]: the tokens so far can match name[..j].
    let mut reach = vec![false; name.len() + 1];
    reach[0] = true;
    for tok in &toks {
        let mut next = vec![false; name.len() + 1];
        match tok {
            Tok::Any => {
                let mut any = false;
                for j in 0..=name.len() {
                    any |= reach[j];
                    next[j] = any;
                }
            }
            _ => {
                for j in 0..name.len() {
                    if !reach[j] {
                        continue;
                    }
                    let c = lower(name[j]);
                    next[j + 1] = match tok {
                        Tok::One => true,
                        Tok::Byte(b) => *b == c,
                        Tok::Class(ranges, negate) => {
                            ranges.iter().any(|&(lo, hi)| (lo..=hi).contains(&c)) != *negate
                        }
                        Tok::Any => false,
                    };
                }
            }
        }
        reach = next;
        if !reach.iter().any(|&r| r) {
            return false;
        }
    }
    reach[name.len()]
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Goal: Redis's glob, case-insensitive, without exponential backtracking.
    #[test]
    fn glob() {
        let m = |p: &str, n: &str| glob_match(p.as_bytes(), n.as_bytes(), true);
        assert!(m("*", "save"));
        assert!(m("sa?e", "SAVE"));
        assert!(m("*only", "appendonly"));
        assert!(m("[a-c]ppend*", "appendfsync"));
        assert!(!m("[^a]ppend*", "appendfsync"));
        assert!(m("max\\*", "max*"));
        assert!(!m("max\\*", "maxclients"));
        assert!(!m("save?", "save"));
        assert!(m("", ""));
        assert!(!m("", "x"));
        let long = "*a".repeat(5000);
        assert!(!m(&long, &"a".repeat(4000)));
    }

    /// Goal: without `nocase` the match is exact, as KEYS and SCAN MATCH take it.
    #[test]
    fn glob_exact() {
        assert!(glob_match(b"user:*", b"user:1", false));
        assert!(!glob_match(b"USER:*", b"user:1", false));
        assert!(glob_match(b"[A-C]x", b"Bx", false));
        assert!(!glob_match(b"[A-C]x", b"bx", false));
    }
}
