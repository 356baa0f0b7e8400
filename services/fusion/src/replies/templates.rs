//! Reply templates as fusion takes them: checked once, and their text embeddings
//! kept so that a bank is encoded once, not on every call.

use std::collections::HashMap;
use std::sync::Mutex;

use empathy_proto::{EMOTION_LABELS, MAX_REPLY_TEMPLATES, v1::ReplyTemplate};
use tonic::Status;

/// Longest template text, in characters: a reply, not a letter.
const MAX_TEXT_CHARS: usize = 2_000;
const MAX_ID_CHARS: usize = 64;
const MAX_INTENT_CHARS: usize = 128;
const MAX_EXAMPLES: usize = 20;
/// Embeddings kept (about 1.5 KB each): many tenants' banks, bounded.
const MAX_CACHED: usize = 20_000;

/// INVALID_ARGUMENT naming the first template that is wrong and why.
pub fn check(templates: &[ReplyTemplate]) -> Result<(), Status> {
    if templates.len() > MAX_REPLY_TEMPLATES {
        return Err(Status::invalid_argument(format!(
            "{} reply templates; send at most {MAX_REPLY_TEMPLATES}",
            templates.len()
        )));
    }
    let mut seen = std::collections::HashSet::new();
    for (i, t) in templates.iter().enumerate() {
        check_one(t)
            .and_then(|()| {
                seen.insert(t.id.as_str())
                    .then_some(())
                    .ok_or_else(|| "the id is used by an earlier template".to_string())
            })
            .map_err(|why| {
                Status::invalid_argument(format!("reply template {i} ({:?}): {why}", t.id))
            })?;
    }
    Ok(())
}

fn check_one(t: &ReplyTemplate) -> Result<(), String> {
    let id_ok = |c: char| c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '.');
    if t.id.is_empty() || t.id.chars().count() > MAX_ID_CHARS || !t.id.chars().all(id_ok) {
        return Err(format!(
            "id must be 1-{MAX_ID_CHARS} of letters, digits, '_', '-' and '.'"
        ));
    }
    if t.text.trim().is_empty() {
        return Err("text is empty".into());
    }
    if t.text.chars().count() > MAX_TEXT_CHARS {
        return Err(format!("text is longer than {MAX_TEXT_CHARS} characters"));
    }
    if t.examples.len() > MAX_EXAMPLES {
        return Err(format!(
            "{} examples; give at most {MAX_EXAMPLES}",
            t.examples.len()
        ));
    }
    if let Some(i) = t
        .examples
        .iter()
        .position(|e| e.trim().is_empty() || e.chars().count() > MAX_TEXT_CHARS)
    {
        return Err(format!(
            "example {i} must hold 1-{MAX_TEXT_CHARS} characters"
        ));
    }
    if t.intent.chars().count() > MAX_INTENT_CHARS {
        return Err(format!(
            "intent is longer than {MAX_INTENT_CHARS} characters"
        ));
    }
    if let Some(e) = t
        .emotions
        .iter()
        .find(|e| !EMOTION_LABELS.contains(&e.as_str()))
    {
        return Err(format!(
            "emotion {e:?} is not one of {}",
            EMOTION_LABELS.join(", ")
        ));
    }
    Ok(())
}

/// Template texts' embeddings from one text encoder model: a different model (the
/// encoder was upgraded) empties the cache instead of mixing vector spaces.
#[derive(Default)]
pub struct Embeddings {
    inner: Mutex<Cached>,
}

#[derive(Default)]
struct Cached {
    model: String,
    vectors: HashMap<String, Vec<f32>>,
}

impl Embeddings {
    /// The cached vectors of `texts`, in order (None = not cached), and the model
    /// that made them.
    pub fn get(&self, texts: &[&str]) -> (Vec<Option<Vec<f32>>>, String) {
        let Ok(cached) = self.inner.lock() else {
            return (vec![None; texts.len()], String::new());
        };
        let vectors = texts
            .iter()
            .map(|t| cached.vectors.get(*t).cloned())
            .collect();
        (vectors, cached.model.clone())
    }

    /// Keeps `texts`' vectors, encoded by `model`.
    pub fn put(&self, model: &str, texts: &[&str], vectors: &[Vec<f32>]) {
        let Ok(mut cached) = self.inner.lock() else {
            return;
        };
        if cached.model != model || cached.vectors.len() + texts.len() > MAX_CACHED {
            cached.vectors.clear();
            cached.model = model.to_string();
        }
        for (t, v) in texts.iter().zip(vectors) {
            cached.vectors.insert(t.to_string(), v.clone());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn template(id: &str, text: &str, emotions: &[&str]) -> ReplyTemplate {
        ReplyTemplate {
            id: id.into(),
            text: text.into(),
            emotions: emotions.iter().map(|e| e.to_string()).collect(),
            intent: String::new(),
            examples: Vec::new(),
        }
    }

    #[test]
    fn a_bad_template_is_named_with_what_is_wrong() {
        let ok = template("sorry", "I'm sorry.", &["sadness"]);
        let message = |t: ReplyTemplate| check(&[ok.clone(), t]).unwrap_err().message().to_string();
        assert!(message(template("x y", "Hi", &[])).contains("template 1 (\"x y\"): id must be"));
        assert!(message(template("e", "  ", &[])).contains("text is empty"));
        assert!(message(template("e", "Hi", &["rage"])).contains("emotion \"rage\" is not one of"));
        assert!(message(template("sorry", "Hi", &[])).contains("used by an earlier template"));
        let mut blank_example = template("e", "Hi", &[]);
        blank_example.examples = vec!["Hello?".into(), " ".into()];
        assert!(message(blank_example).contains("example 1 must hold"));
        assert!(check(&[ok]).is_ok());
    }

    #[test]
    fn cached_vectors_belong_to_one_encoder_model() {
        let cache = Embeddings::default();
        cache.put("minilm@1", &["hello"], &[vec![1.0, 0.0]]);
        let (vectors, model) = cache.get(&["hello", "bye"]);
        assert_eq!(
            (vectors, model.as_str()),
            (vec![Some(vec![1.0, 0.0]), None], "minilm@1")
        );
        cache.put("minilm@2", &["bye"], &[vec![0.0, 1.0]]);
        let (vectors, model) = cache.get(&["hello", "bye"]);
        assert_eq!(
            (vectors, model.as_str()),
            (vec![None, Some(vec![0.0, 1.0])], "minilm@2")
        );
    }
}
