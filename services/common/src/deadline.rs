//! The caller's deadline, from the `grpc-timeout` header.

use std::time::Duration;

/// The `grpc-timeout` header (e.g. "500m", "2S"), as the gRPC spec writes it: at most
/// 8 digits and a unit. Anything else is no deadline, never an overflow.
pub fn grpc_timeout(metadata: &tonic::metadata::MetadataMap) -> Option<Duration> {
    let v = metadata.get("grpc-timeout")?.to_str().ok()?;
    let (digits, unit) = v.split_at(v.len().checked_sub(1)?);
    if digits.is_empty() || digits.len() > 8 || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let n: u64 = digits.parse().ok()?;
    Some(match unit {
        "H" => Duration::from_secs(n.checked_mul(3600)?),
        "M" => Duration::from_secs(n.checked_mul(60)?),
        "S" => Duration::from_secs(n),
        "m" => Duration::from_millis(n),
        "u" => Duration::from_micros(n),
        "n" => Duration::from_nanos(n),
        _ => return None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_grpc_timeout_without_overflow() -> anyhow::Result<()> {
        let mut m = tonic::metadata::MetadataMap::new();
        m.insert("grpc-timeout", "1500m".parse()?);
        assert_eq!(grpc_timeout(&m), Some(Duration::from_millis(1500)));
        m.insert("grpc-timeout", "2S".parse()?);
        assert_eq!(grpc_timeout(&m), Some(Duration::from_secs(2)));
        m.insert("grpc-timeout", "99999999H".parse()?);
        assert_eq!(
            grpc_timeout(&m),
            Some(Duration::from_secs(99_999_999 * 3600))
        );
        // Over 8 digits (u64::MAX hours overflowed), signs, no unit: no deadline.
        for bad in ["18446744073709551615H", "+5S", "-1m", "S", "12"] {
            m.insert("grpc-timeout", bad.parse()?);
            assert_eq!(grpc_timeout(&m), None, "{bad}");
        }
        Ok(())
    }
}
