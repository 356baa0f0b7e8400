//! Word error rate, for the tests and benchmarks that score transcripts.

/// Lower case, punctuation removed (apostrophes kept inside words), split on spaces.
pub fn normalise(text: &str) -> Vec<String> {
    text.to_lowercase()
        .chars()
        .map(|c| {
            if c.is_alphanumeric() || c == '\'' {
                c
            } else {
                ' '
            }
        })
        .collect::<String>()
        .split_whitespace()
        .map(|w| w.trim_matches('\'').to_string())
        .filter(|w| !w.is_empty())
        .collect()
}

/// Word-level edit distance over the reference's length, after [`normalise`].
pub fn word_error_rate(reference: &str, hypothesis: &str) -> f64 {
    let (r, h) = (normalise(reference), normalise(hypothesis));
    errors(&r, &h) as f64 / r.len().max(1) as f64
}

/// Substitutions, deletions and insertions (Levenshtein distance over words).
pub fn errors(reference: &[String], hypothesis: &[String]) -> usize {
    let mut prev: Vec<usize> = (0..=hypothesis.len()).collect();
    for (i, r) in reference.iter().enumerate() {
        let mut row = vec![i + 1; hypothesis.len() + 1];
        for (j, h) in hypothesis.iter().enumerate() {
            let substitution = prev[j] + usize::from(r != h);
            row[j + 1] = substitution.min(prev[j + 1] + 1).min(row[j] + 1);
        }
        prev = row;
    }
    prev[hypothesis.len()]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_word_edits_after_normalising() {
        assert_eq!(word_error_rate("Hello, World!", "hello world"), 0.0);
        assert_eq!(word_error_rate("a b c d", "a x c"), 0.5);
        assert_eq!(word_error_rate("it's fine", "It's fine."), 0.0);
        assert_eq!(word_error_rate("a b", "a b c d"), 1.0);
    }
}
