//! "Did you mean ...?": the nearest known word by edit distance, for
//! unknown keys and unknown spec settings.
//!
//! The work is bounded, whatever the config holds: a word longer than
//! [`MAX_WORD`] gets no suggestion (no known word is near it), and a
//! candidate whose length alone rules it out is not measured, so a
//! suggestion costs a few hundred steps per candidate at most.

/// The longest word a suggestion is searched for; known keys and settings
/// are far shorter.
pub const MAX_WORD: usize = 40;

/// The edit distance between `a` and `b`: insertions, deletions,
/// substitutions and swaps of two neighbouring characters each cost 1
/// (optimal string alignment).
pub fn edit_distance(a: &str, b: &str) -> usize {
    let a: Vec<char> = a.chars().collect();
    let b: Vec<char> = b.chars().collect();
    let width = b.len() + 1;
    let mut d = vec![0usize; (a.len() + 1) * width];
    for (i, cell) in d.iter_mut().step_by(width).enumerate() {
        *cell = i;
    }
    for (j, cell) in d.iter_mut().take(width).enumerate() {
        *cell = j;
    }
    for i in 1..=a.len() {
        for j in 1..=b.len() {
            let cost = usize::from(a[i - 1] != b[j - 1]);
            let mut best = (d[(i - 1) * width + j] + 1)
                .min(d[i * width + j - 1] + 1)
                .min(d[(i - 1) * width + j - 1] + cost);
            if i > 1 && j > 1 && a[i - 1] == b[j - 2] && a[i - 2] == b[j - 1] {
                best = best.min(d[(i - 2) * width + j - 2] + 1);
            }
            d[i * width + j] = best;
        }
    }
    d[a.len() * width + b.len()]
}

/// The candidate nearest to `word`, if it is near enough to be a likely
/// typo: about a third of the word's length away (1 to 3 edits), or a
/// candidate that starts with the word (3 letters or more). Case is
/// ignored.
pub fn nearest<'a>(word: &str, candidates: impl IntoIterator<Item = &'a str>) -> Option<&'a str> {
    if word.len() > MAX_WORD * 4 || word.chars().count() > MAX_WORD {
        return None;
    }
    let lower = word.to_ascii_lowercase();
    let len = lower.chars().count();
    let limit = len.div_ceil(3).clamp(1, 3);
    candidates
        .into_iter()
        .filter_map(|c| {
            if c == word {
                // The word itself is known: there is nothing to suggest.
                return None;
            }
            let cl = c.to_ascii_lowercase();
            let clen = cl.chars().count();
            // The distance is at least the difference in length.
            let d = if clen.abs_diff(len) <= limit {
                edit_distance(&lower, &cl)
            } else {
                usize::MAX
            };
            if d <= limit {
                Some((d, c))
            } else if len >= 3 && cl.starts_with(&lower) {
                Some((limit + 1, c))
            } else {
                None
            }
        })
        .min_by_key(|(d, _)| *d)
        .map(|(_, c)| c)
}

/// `" (did you mean 'x'?)"` or nothing.
pub fn did_you_mean<'a>(word: &str, candidates: impl IntoIterator<Item = &'a str>) -> String {
    nearest(word, candidates).map_or_else(String::new, |c| format!(" (did you mean '{c}'?)"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn distances() {
        assert_eq!(edit_distance("", ""), 0);
        assert_eq!(edit_distance("abc", ""), 3);
        assert_eq!(edit_distance("memroy", "memory"), 1);
        assert_eq!(edit_distance("kitten", "sitting"), 3);
        assert_eq!(edit_distance("vpcus", "vcpus"), 1);
        assert_eq!(edit_distance("nmae", "name"), 1);
    }

    #[test]
    fn nearest_picks_the_closest_plausible_word() {
        let keys = ["memory", "maxmem", "vcpus", "maxvcpus", "name"];
        assert_eq!(nearest("memroy", keys), Some("memory"));
        assert_eq!(nearest("vcpu", keys), Some("vcpus"));
        assert_eq!(nearest("MEMORY", keys), Some("memory"));
        assert_eq!(nearest("xyzzy", keys), None);
        assert_eq!(nearest("maxv", keys), Some("maxvcpus"));
        assert_eq!(did_you_mean("nmae", keys), " (did you mean 'name'?)");
        assert_eq!(did_you_mean("qqqq", keys), "");
    }

    #[test]
    fn a_known_word_is_never_suggested_for_itself() {
        assert_eq!(nearest("stdvga", ["stdvga", "vga"]), None);
        assert_eq!(nearest("VGA", ["stdvga", "vga"]), Some("vga"));
    }

    #[test]
    fn long_words_get_no_suggestion_and_cost_nothing() {
        let long = "memory".repeat(200_000);
        let start = std::time::Instant::now();
        assert_eq!(nearest(&long, ["memory", "maxmem"]), None);
        assert_eq!(nearest(&"m".repeat(MAX_WORD + 1), ["memory"]), None);
        assert!(start.elapsed() < std::time::Duration::from_secs(1));
    }
}
