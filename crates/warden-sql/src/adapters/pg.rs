//! PostgreSQL values in the binary wire format, as JSON (shared by sqlx and tokio-postgres).

use serde_json::{Value as Json, json};

use super::{DriverError, civil, hex};

/// Days from 1970-01-01 to 2000-01-01, PostgreSQL's epoch.
const PG_EPOCH_DAYS: i64 = 10_957;

fn take<const N: usize>(bytes: &[u8], ty: &str) -> Result<[u8; N], DriverError> {
    bytes
        .get(..N)
        .and_then(|b| b.try_into().ok())
        .ok_or_else(|| DriverError::new(format!("short `{ty}` value")))
}

/// Decodes one non-null binary value of type `ty` (the type's name, any case).
pub(crate) fn decode(ty: &str, bytes: &[u8]) -> Result<Json, DriverError> {
    let ty = ty.to_ascii_lowercase();
    Ok(match ty.as_str() {
        "bool" => json!(bytes.first().is_some_and(|b| *b != 0)),
        "int2" => json!(i16::from_be_bytes(take(bytes, &ty)?)),
        "int4" => json!(i32::from_be_bytes(take(bytes, &ty)?)),
        "int8" => json!(i64::from_be_bytes(take(bytes, &ty)?)),
        "oid" => json!(u32::from_be_bytes(take(bytes, &ty)?)),
        "float4" => json!(f32::from_be_bytes(take(bytes, &ty)?)),
        "float8" => json!(f64::from_be_bytes(take(bytes, &ty)?)),
        "text" | "varchar" | "bpchar" | "char" | "name" | "unknown" | "citext" | "json" => {
            let s = std::str::from_utf8(bytes).map_err(|e| DriverError::new(e.to_string()))?;
            if ty == "json" {
                serde_json::from_str(s).map_err(|e| DriverError::new(e.to_string()))?
            } else {
                Json::String(s.to_owned())
            }
        }
        "jsonb" => {
            let s = bytes
                .get(1..)
                .and_then(|b| std::str::from_utf8(b).ok())
                .ok_or_else(|| DriverError::new("malformed `jsonb` value"))?;
            serde_json::from_str(s).map_err(|e| DriverError::new(e.to_string()))?
        }
        "bytea" => Json::String(hex(bytes)),
        "uuid" => {
            let h = hex(bytes);
            match (
                h.get(0..8),
                h.get(8..12),
                h.get(12..16),
                h.get(16..20),
                h.get(20..32),
            ) {
                (Some(a), Some(b), Some(c), Some(d), Some(e)) => {
                    Json::String(format!("{a}-{b}-{c}-{d}-{e}"))
                }
                _ => return Err(DriverError::new("malformed `uuid` value")),
            }
        }
        "date" => {
            let days = i64::from(i32::from_be_bytes(take(bytes, &ty)?));
            let (y, m, d) = civil(days + PG_EPOCH_DAYS);
            Json::String(format!("{y:04}-{m:02}-{d:02}"))
        }
        "timestamp" | "timestamptz" => {
            let micros = i64::from_be_bytes(take(bytes, &ty)?);
            let secs = micros.div_euclid(1_000_000);
            let frac = micros.rem_euclid(1_000_000);
            let (y, m, d) = civil(secs.div_euclid(86_400) + PG_EPOCH_DAYS);
            let s = secs.rem_euclid(86_400);
            let mut out = format!(
                "{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}",
                s / 3600,
                s / 60 % 60,
                s % 60
            );
            if frac != 0 {
                out.push_str(&format!(".{frac:06}"));
            }
            if ty == "timestamptz" {
                out.push('Z');
            }
            Json::String(out)
        }
        "numeric" => Json::String(numeric(bytes)?),
        other => {
            return Err(DriverError::new(format!(
                "cannot decode a value of type `{other}`; cast it to text"
            )));
        }
    })
}

/// `NUMERIC` in the binary format: digit count, weight, sign, scale, base-10000 digits.
fn numeric(bytes: &[u8]) -> Result<String, DriverError> {
    let word = |i: usize| -> Result<u16, DriverError> {
        take::<2>(bytes.get(i * 2..).unwrap_or_default(), "numeric").map(u16::from_be_bytes)
    };
    let ndigits = usize::from(word(0)?);
    let weight = i64::from(word(1)? as i16);
    let sign = word(2)?;
    let dscale = usize::from(word(3)?);
    match sign {
        0xC000 => return Ok("NaN".into()),
        0xD000 => return Ok("Infinity".into()),
        0xF000 => return Ok("-Infinity".into()),
        _ => {}
    }
    let digits: Vec<u16> = (0..ndigits)
        .map(|i| word(4 + i))
        .collect::<Result<_, _>>()?;
    let digit = |pos: i64| -> u16 {
        // The digit of weight `pos` (10000^pos).
        usize::try_from(weight - pos)
            .ok()
            .and_then(|i| digits.get(i).copied())
            .unwrap_or(0)
    };
    let mut int = String::new();
    if weight >= 0 {
        for pos in (0..=weight).rev() {
            if int.is_empty() {
                int.push_str(&digit(pos).to_string());
            } else {
                int.push_str(&format!("{:04}", digit(pos)));
            }
        }
    } else {
        int.push('0');
    }
    let mut frac = String::new();
    let mut pos = -1;
    while frac.len() < dscale {
        frac.push_str(&format!("{:04}", digit(pos)));
        pos -= 1;
    }
    frac.truncate(dscale);
    let mut out = String::new();
    if sign == 0x4000 {
        out.push('-');
    }
    out.push_str(&int);
    if dscale > 0 {
        out.push('.');
        out.push_str(&frac);
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn decodes_dates_timestamps_and_numerics() {
        assert_eq!(
            decode("DATE", &0i32.to_be_bytes()).unwrap(),
            json!("2000-01-01")
        );
        assert_eq!(
            decode("date", &(-1i32).to_be_bytes()).unwrap(),
            json!("1999-12-31")
        );
        let ts = (86_400_000_000i64 + 3_723_000_001).to_be_bytes();
        assert_eq!(
            decode("timestamp", &ts).unwrap(),
            json!("2000-01-02T01:02:03.000001")
        );
        // 12345.678: ndigits 3, weight 1, sign +, dscale 3, digits 1 2345 6780
        let n: Vec<u8> = [3u16, 1, 0, 3, 1, 2345, 6780]
            .iter()
            .flat_map(|w| w.to_be_bytes())
            .collect();
        assert_eq!(decode("numeric", &n).unwrap(), json!("12345.678"));
        let neg: Vec<u8> = [1u16, 0xFFFF, 0x4000, 2, 500]
            .iter()
            .flat_map(|w| w.to_be_bytes())
            .collect();
        assert_eq!(decode("numeric", &neg).unwrap(), json!("-0.05"));
        assert!(decode("tsvector", b"x").is_err());
    }
}
