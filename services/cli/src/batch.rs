//! Batch analysis (issue 20, "Batch analysis"): the pieces that decide which input lines a
//! run processes. `--shard I/N` keeps the lines whose 1-based number `n` has
//! `n % N == I`; resuming reads the output already written and cuts off a last line that
//! a crash left half-written. The streaming run itself is not here yet.

use std::fmt;
use std::str::FromStr;

/// `--shard I/N`: this process handles the lines with `line_number % N == I` (0-based I).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Shard {
    pub index: u64,
    pub count: u64,
}

impl Shard {
    /// The whole input: one shard of one.
    pub const ALL: Shard = Shard { index: 0, count: 1 };

    /// Whether this shard processes the input line numbered `line_number` (1-based).
    pub fn takes(&self, line_number: u64) -> bool {
        line_number % self.count == self.index
    }
}

impl FromStr for Shard {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let (i, n) = s
            .split_once('/')
            .ok_or_else(|| format!("shard '{s}': expected I/N, e.g. 0/4"))?;
        let index: u64 = i
            .trim()
            .parse()
            .map_err(|_| format!("shard '{s}': I is not a number"))?;
        let count: u64 = n
            .trim()
            .parse()
            .map_err(|_| format!("shard '{s}': N is not a number"))?;
        if count == 0 || index >= count {
            return Err(format!("shard '{s}': need 0 <= I < N"));
        }
        Ok(Shard { index, count })
    }
}

impl fmt::Display for Shard {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.index, self.count)
    }
}

/// The length of the complete lines at the start of `written` (an output file read back):
/// everything after the last newline is a line cut short by a crash, to be truncated away
/// before appending.
pub fn complete_prefix_len(written: &[u8]) -> usize {
    written
        .iter()
        .rposition(|&b| b == b'\n')
        .map_or(0, |last| last + 1)
}

/// The ids in the complete lines of an output file (see [`complete_prefix_len`]), each as
/// its JSON text without quotes for strings, so that input ids and line numbers compare.
pub fn written_ids(complete: &str) -> Result<std::collections::HashSet<String>, String> {
    let mut ids = std::collections::HashSet::new();
    for (i, line) in complete.lines().enumerate() {
        let value: serde_json::Value =
            serde_json::from_str(line).map_err(|e| format!("output line {}: {e}", i + 1))?;
        match value.get("id") {
            Some(serde_json::Value::String(id)) => ids.insert(id.clone()),
            Some(id) => ids.insert(id.to_string()),
            None => return Err(format!("output line {}: no id", i + 1)),
        };
    }
    Ok(ids)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shard_parses_and_selects_lines() {
        let shard: Shard = "1/3".parse().unwrap();
        assert_eq!(shard, Shard { index: 1, count: 3 });
        assert_eq!(shard.to_string(), "1/3");
        let taken: Vec<u64> = (1..=9).filter(|&n| shard.takes(n)).collect();
        assert_eq!(taken, vec![1, 4, 7]);
        assert!((1..=5).all(|n| Shard::ALL.takes(n)));
    }

    #[test]
    fn shards_partition_the_input() {
        let shards: Vec<Shard> = (0..4).map(|i| format!("{i}/4").parse().unwrap()).collect();
        for n in 1..=100 {
            assert_eq!(shards.iter().filter(|s| s.takes(n)).count(), 1);
        }
    }

    #[test]
    fn bad_shards_are_refused() {
        for bad in ["", "3", "4/4", "1/0", "a/2", "1/b", "-1/2"] {
            assert!(bad.parse::<Shard>().is_err(), "{bad}");
        }
    }

    #[test]
    fn a_half_written_last_line_is_cut_off() {
        assert_eq!(complete_prefix_len(b""), 0);
        assert_eq!(complete_prefix_len(b"{\"id\":1"), 0);
        assert_eq!(complete_prefix_len(b"{\"id\":1}\n"), 9);
        assert_eq!(complete_prefix_len(b"{\"id\":1}\n{\"id\":2,\"ana"), 9);
    }

    #[test]
    fn written_ids_read_numbers_and_strings() {
        let ids =
            written_ids("{\"id\":3,\"analysis\":{}}\n{\"id\":\"a-1\",\"error\":{}}\n").unwrap();
        assert!(ids.contains("3") && ids.contains("a-1") && ids.len() == 2);
        assert!(written_ids("{\"x\":1}\n").is_err());
    }
}
