//! Kubernetes resource quantities in canonical form, so that "1000m" and "1"
//! compare equal the way the API server stores them (apimachinery's
//! `Quantity.CanonicalizeBytes`), plus the milli round-up that
//! `SetDefaults_ResourceList` applies.

/// How a quantity was written; decides the suffix family of its canonical form.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Format {
    DecimalSi,
    BinarySi,
    DecimalExponent,
}

/// A parsed quantity: `mantissa * 10^exponent`, with the format it was written in.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Quantity {
    mantissa: i128,
    exponent: i32,
    format: Format,
}

const MAX_DIGITS: usize = 30;

impl Quantity {
    /// Parses a Kubernetes quantity string ("100Mi", "0.5", "1e3", "250m").
    pub fn parse(s: &str) -> Option<Quantity> {
        let s = s.trim();
        let split = s
            .find(|c: char| !(c.is_ascii_digit() || c == '.' || c == '+' || c == '-'))
            .unwrap_or(s.len());
        let (number, suffix) = s.split_at(split);
        let (negative, digits) = match number.as_bytes().first() {
            Some(b'-') => (true, &number[1..]),
            Some(b'+') => (false, &number[1..]),
            _ => (false, number),
        };
        if digits.is_empty() || digits == "." {
            return None;
        }
        let (int_part, frac_part) = match digits.split_once('.') {
            Some((i, f)) => (i, f),
            None => (digits, ""),
        };
        if !int_part.bytes().all(|b| b.is_ascii_digit())
            || !frac_part.bytes().all(|b| b.is_ascii_digit())
            || int_part.len() + frac_part.len() > MAX_DIGITS
        {
            return None;
        }
        let mut mantissa: i128 = 0;
        for b in int_part.bytes().chain(frac_part.bytes()) {
            mantissa = mantissa
                .checked_mul(10)?
                .checked_add(i128::from(b - b'0'))?;
        }
        let mut exponent = -(i32::try_from(frac_part.len()).ok()?);
        let format = match suffix {
            "" => Format::DecimalSi,
            "n" | "u" | "m" | "k" | "M" | "G" | "T" | "P" | "E" => {
                exponent += match suffix {
                    "n" => -9,
                    "u" => -6,
                    "m" => -3,
                    "k" => 3,
                    "M" => 6,
                    "G" => 9,
                    "T" => 12,
                    "P" => 15,
                    _ => 18,
                };
                Format::DecimalSi
            }
            "Ki" | "Mi" | "Gi" | "Ti" | "Pi" | "Ei" => {
                let power = match suffix {
                    "Ki" => 10,
                    "Mi" => 20,
                    "Gi" => 30,
                    "Ti" => 40,
                    "Pi" => 50,
                    _ => 60,
                };
                mantissa = mantissa.checked_mul(1i128.checked_shl(power)?)?;
                Format::BinarySi
            }
            _ => {
                let rest = suffix.strip_prefix(['e', 'E'])?;
                let e: i32 = rest.parse().ok()?;
                if !(-30..=30).contains(&e) {
                    return None;
                }
                exponent += e;
                Format::DecimalExponent
            }
        };
        if negative {
            mantissa = -mantissa;
        }
        let mut q = Quantity {
            mantissa,
            exponent,
            format,
        };
        q.strip_tens();
        Some(q)
    }

    fn strip_tens(&mut self) {
        if self.mantissa == 0 {
            self.exponent = 0;
            return;
        }
        while self.mantissa % 10 == 0 {
            self.mantissa /= 10;
            self.exponent += 1;
        }
    }

    /// Rounds up (away from zero for positives, as apimachinery's `RoundUp`)
    /// to milli precision: what `SetDefaults_ResourceList` does.
    pub fn round_up_to_milli(mut self) -> Quantity {
        while self.exponent < -3 {
            let rem = self.mantissa % 10;
            self.mantissa /= 10;
            if rem > 0 {
                self.mantissa += 1;
            } else if rem < 0 {
                self.mantissa -= 1;
            }
            self.exponent += 1;
        }
        self.strip_tens();
        self
    }

    /// The canonical string the API server stores for this quantity.
    pub fn canonical(&self) -> String {
        if self.mantissa == 0 {
            return "0".to_string();
        }
        let mut format = self.format;
        let integral_value = if self.exponent >= 0 {
            10i128
                .checked_pow(self.exponent.unsigned_abs())
                .and_then(|p| self.mantissa.checked_mul(p))
        } else {
            None
        };
        if format == Format::BinarySi {
            match integral_value {
                Some(v) if v > -1024 && v < 1024 => format = Format::DecimalSi,
                None => format = Format::DecimalSi,
                Some(_) => {}
            }
        }
        match (format, integral_value) {
            (Format::BinarySi, Some(mut value)) => {
                let mut power = 0;
                while value % 1024 == 0 && power < 6 {
                    value /= 1024;
                    power += 1;
                }
                let suffix = ["", "Ki", "Mi", "Gi", "Ti", "Pi", "Ei"][power];
                format!("{value}{suffix}")
            }
            _ => {
                let (mut mantissa, mut exponent) = (self.mantissa, self.exponent);
                match exponent.rem_euclid(3) {
                    1 => {
                        mantissa *= 10;
                        exponent -= 1;
                    }
                    2 => {
                        mantissa *= 100;
                        exponent -= 2;
                    }
                    _ => {}
                }
                let suffix = if format == Format::DecimalExponent {
                    if exponent == 0 {
                        String::new()
                    } else {
                        format!("e{exponent}")
                    }
                } else {
                    match exponent {
                        -9 => "n".into(),
                        -6 => "u".into(),
                        -3 => "m".into(),
                        0 => String::new(),
                        3 => "k".into(),
                        6 => "M".into(),
                        9 => "G".into(),
                        12 => "T".into(),
                        15 => "P".into(),
                        18 => "E".into(),
                        e => format!("e{e}"),
                    }
                };
                format!("{mantissa}{suffix}")
            }
        }
    }
}

/// Canonical form of a JSON quantity value (string or number); `None` if it
/// is not a quantity, in which case callers leave the value alone.
pub fn canonical_value(v: &serde_json::Value, round_to_milli: bool) -> Option<String> {
    let text = match v {
        serde_json::Value::String(s) => s.clone(),
        serde_json::Value::Number(n) => n.to_string(),
        _ => return None,
    };
    let q = Quantity::parse(&text)?;
    Some(
        if round_to_milli {
            q.round_up_to_milli()
        } else {
            q
        }
        .canonical(),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn canonical_forms_match_apimachinery() {
        let cases = [
            ("1000m", "1"),
            ("1", "1"),
            ("0.5", "500m"),
            ("1500", "1500"),
            ("2000", "2k"),
            ("1024Mi", "1Gi"),
            ("1.5Gi", "1536Mi"),
            ("1000Mi", "1000Mi"),
            ("512", "512"),
            ("100Mi", "100Mi"),
            ("0.1Gi", "107374182400m"),
            ("1e3", "1e3"),
            ("12e2", "1200"),
            ("0", "0"),
            ("0Gi", "0"),
            ("1Ki", "1Ki"),
            ("100m", "100m"),
            ("1k", "1k"),
            ("10G", "10G"),
            ("-1", "-1"),
        ];
        for (input, want) in cases {
            let q = Quantity::parse(input).unwrap_or_else(|| panic!("parse {input}"));
            assert_eq!(q.canonical(), want, "canonical({input})");
        }
    }

    #[test]
    fn milli_round_up_matches_resource_list_defaulting() {
        let q = Quantity::parse("0.0001").unwrap().round_up_to_milli();
        assert_eq!(q.canonical(), "1m");
        let q = Quantity::parse("1500u").unwrap().round_up_to_milli();
        assert_eq!(q.canonical(), "2m");
        let q = Quantity::parse("2").unwrap().round_up_to_milli();
        assert_eq!(q.canonical(), "2");
    }

    #[test]
    fn rejects_garbage() {
        for bad in ["", "abc", "1.2.3", "1Zi", "--1", "1e99", "."] {
            assert!(Quantity::parse(bad).is_none(), "{bad} should not parse");
        }
    }
}
