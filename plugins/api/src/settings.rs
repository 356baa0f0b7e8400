//! `PluginConfig.settings` read the same way by every plugin: unknown keys are refused
//! (a typo must not silently run with defaults) and numbers are checked.

use std::{collections::HashMap, str::FromStr};

use crate::PluginError;

pub struct Settings<'a> {
    values: &'a HashMap<String, String>,
}

impl<'a> Settings<'a> {
    /// Refuses any key not in `known`, naming the plugin and the keys it knows.
    pub fn new(
        plugin: &str,
        values: &'a HashMap<String, String>,
        known: &[&str],
    ) -> Result<Self, PluginError> {
        let mut unknown: Vec<&String> = values
            .keys()
            .filter(|k| !known.contains(&k.as_str()))
            .collect();
        unknown.sort();
        match unknown.first() {
            Some(key) => Err(PluginError::invalid_input(format!(
                "unknown {plugin} plugin setting {key:?} (known: {})",
                known.join(", ")
            ))),
            None => Ok(Self { values }),
        }
    }

    pub fn get(&self, key: &str) -> Option<&'a str> {
        self.values.get(key).map(String::as_str)
    }

    /// A number greater than zero, or `default` when the key is absent.
    pub fn positive<T>(&self, key: &str, default: T) -> Result<T, PluginError>
    where
        T: FromStr + PartialOrd + Default,
    {
        let Some(value) = self.get(key) else {
            return Ok(default);
        };
        match value.trim().parse::<T>() {
            Ok(n) if n > T::default() => Ok(n),
            _ => Err(PluginError::invalid_input(format!(
                "setting {key}={value:?}: expected a positive number"
            ))),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn map(pairs: &[(&str, &str)]) -> HashMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn refuses_unknown_keys_by_name() {
        let values = map(&[("max_batch", "4"), ("max_bacth", "4")]);
        let err = Settings::new("text", &values, &["max_batch"])
            .err()
            .expect("a typo is refused");
        assert!(err.message.contains("\"max_bacth\""), "{}", err.message);
        assert!(err.message.contains("known: max_batch"), "{}", err.message);
    }

    #[test]
    fn reads_positive_numbers_with_defaults() {
        let values = map(&[("a", "8"), ("b", "0"), ("c", "x"), ("d", "0.5")]);
        let s = Settings::new("t", &values, &["a", "b", "c", "d"]).expect("known keys");
        assert_eq!(s.positive("a", 1usize).ok(), Some(8));
        assert_eq!(s.positive("absent", 3usize).ok(), Some(3));
        assert!(s.positive("b", 1usize).is_err());
        assert!(s.positive("c", 1usize).is_err());
        assert_eq!(s.positive("d", 1.0f32).ok(), Some(0.5));
    }
}
