//! Reads the word -> emotion lexicon out of text2emotion 0.0.5's source (MIT), where it
//! is a Python literal `df = {'Word': [...], 'Emotion': [...]}`. We parse the literal
//! ourselves rather than run Python.

use anyhow::{Context, bail};

/// The `Word` and `Emotion` lists, paired by position as text2emotion pairs them.
pub fn parse(source: &str) -> anyhow::Result<Vec<(String, String)>> {
    let start = source
        .find("df = {")
        .context("no `df = {` literal in the text2emotion source")?;
    let mut parser = Parser {
        rest: &source[start + "df = ".len()..],
    };
    parser.expect('{')?;
    let mut words = None;
    let mut emotions = None;
    loop {
        parser.skip_blank();
        if parser.eat('}') {
            break;
        }
        let key = parser.string()?;
        parser.expect(':')?;
        let list = parser.string_list()?;
        match key.as_str() {
            "Word" => words = Some(list),
            "Emotion" => emotions = Some(list),
            _ => {}
        }
        parser.skip_blank();
        parser.eat(',');
    }
    let (Some(words), Some(emotions)) = (words, emotions) else {
        bail!("the text2emotion `df` literal lacks its 'Word' or 'Emotion' list");
    };
    // The lists differ in length by one in 0.0.5 (a missing comma joins two words);
    // text2emotion pairs by index, so do we.
    Ok(words.into_iter().zip(emotions).collect())
}

struct Parser<'a> {
    rest: &'a str,
}

impl Parser<'_> {
    fn skip_blank(&mut self) {
        loop {
            self.rest = self.rest.trim_start();
            if self.rest.starts_with('#') {
                let end = self.rest.find('\n').unwrap_or(self.rest.len());
                self.rest = &self.rest[end..];
            } else {
                return;
            }
        }
    }

    fn eat(&mut self, c: char) -> bool {
        self.skip_blank();
        match self.rest.strip_prefix(c) {
            Some(rest) => {
                self.rest = rest;
                true
            }
            None => false,
        }
    }

    fn expect(&mut self, c: char) -> anyhow::Result<()> {
        if self.eat(c) {
            Ok(())
        } else {
            bail!(
                "text2emotion literal: expected {c:?} before {:?}",
                self.context()
            )
        }
    }

    fn context(&self) -> String {
        self.rest.chars().take(40).collect()
    }

    /// One or more adjacent string literals, joined as Python joins them.
    fn string(&mut self) -> anyhow::Result<String> {
        let mut out = self.literal()?;
        loop {
            self.skip_blank();
            if self.rest.starts_with(['\'', '"']) {
                out.push_str(&self.literal()?);
            } else {
                return Ok(out);
            }
        }
    }

    fn literal(&mut self) -> anyhow::Result<String> {
        self.skip_blank();
        let Some(quote) = self.rest.chars().next().filter(|c| *c == '\'' || *c == '"') else {
            bail!(
                "text2emotion literal: expected a string before {:?}",
                self.context()
            );
        };
        let mut out = String::new();
        let mut chars = self.rest[1..].char_indices();
        while let Some((i, c)) = chars.next() {
            match c {
                '\\' => match chars.next() {
                    Some((_, 'n')) => out.push('\n'),
                    Some((_, 't')) => out.push('\t'),
                    Some((_, other)) => out.push(other),
                    None => break,
                },
                c if c == quote => {
                    self.rest = &self.rest[1 + i + 1..];
                    return Ok(out);
                }
                c => out.push(c),
            }
        }
        bail!("text2emotion literal: unterminated string")
    }

    fn string_list(&mut self) -> anyhow::Result<Vec<String>> {
        self.expect('[')?;
        let mut items = Vec::new();
        loop {
            if self.eat(']') {
                return Ok(items);
            }
            items.push(self.string()?);
            if !self.eat(',') {
                self.expect(']')?;
                return Ok(items);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn joins_adjacent_literals_and_pairs_by_index() -> anyhow::Result<()> {
        let src = "x = 1\ndf = {'Word': ['a', \"b\" # note\n 'c', 'd'],\n 'Emotion': ['Happy', 'Sad', 'Fear']}";
        let pairs = parse(src)?;
        assert_eq!(
            pairs,
            vec![
                ("a".to_string(), "Happy".to_string()),
                ("bc".to_string(), "Sad".to_string()),
                ("d".to_string(), "Fear".to_string()),
            ]
        );
        Ok(())
    }

    #[test]
    fn rejects_a_source_without_the_literal() {
        assert!(parse("print('hi')").is_err());
        assert!(parse("df = {'Word': ['a'").is_err());
    }
}
