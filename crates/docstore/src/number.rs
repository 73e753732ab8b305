//! Exact decimal arithmetic on JSON numbers for `$inc`, `$mul` and number comparisons: the
//! original computes with Java's `BigDecimal` (so `0.1 + 0.2` is `0.3` and a 23-digit integer
//! grows without rounding), and writes results in `BigDecimal.toString` form. Numbers arrive
//! as their JSON text (serde_json's `arbitrary_precision`).

use std::cmp::Ordering;

use serde_json::Number;

/// Largest |scale| (digits after the point, or zeros before it) kept exact; beyond it the
/// number is not a sensible operand and the update is refused.
const MAX_SCALE: i64 = 10_000;

/// `(-1)^neg × digits × 10^(-scale)`, with `digits` most significant first and no leading
/// zeros (zero is the single digit 0).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Dec {
    neg: bool,
    digits: Vec<u8>,
    scale: i64,
}

fn trim(mut d: Vec<u8>) -> Vec<u8> {
    let nz = d
        .iter()
        .position(|&x| x != 0)
        .unwrap_or(d.len().saturating_sub(1));
    d.drain(..nz);
    if d.is_empty() {
        d.push(0);
    }
    d
}

fn cmp_mag(a: &[u8], b: &[u8]) -> Ordering {
    a.len().cmp(&b.len()).then_with(|| a.cmp(b))
}

fn add_mag(a: &[u8], b: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(a.len().max(b.len()) + 1);
    let (mut i, mut j, mut carry) = (a.len(), b.len(), 0u8);
    while i > 0 || j > 0 || carry > 0 {
        let x = if i > 0 {
            i -= 1;
            a[i]
        } else {
            0
        };
        let y = if j > 0 {
            j -= 1;
            b[j]
        } else {
            0
        };
        let s = x + y + carry;
        out.push(s % 10);
        carry = s / 10;
    }
    out.reverse();
    trim(out)
}

/// `a - b` for `a >= b`.
fn sub_mag(a: &[u8], b: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(a.len());
    let (mut i, mut j, mut borrow) = (a.len(), b.len(), 0i8);
    while i > 0 {
        i -= 1;
        let y = if j > 0 {
            j -= 1;
            b[j] as i8
        } else {
            0
        };
        let mut d = a[i] as i8 - y - borrow;
        borrow = 0;
        if d < 0 {
            d += 10;
            borrow = 1;
        }
        out.push(d as u8);
    }
    out.reverse();
    trim(out)
}

fn mul_mag(a: &[u8], b: &[u8]) -> Vec<u8> {
    let mut acc = vec![0u32; a.len() + b.len()];
    for (i, &x) in a.iter().enumerate().rev() {
        for (j, &y) in b.iter().enumerate().rev() {
            acc[i + j + 1] += u32::from(x) * u32::from(y);
        }
    }
    for k in (1..acc.len()).rev() {
        let carry = acc[k] / 10;
        acc[k] %= 10;
        acc[k - 1] += carry;
    }
    trim(acc.into_iter().map(|d| d as u8).collect())
}

impl Dec {
    /// Parses JSON number text (`-12.5e-3`); `None` for text that is not one or whose exponent
    /// is beyond exact handling.
    pub fn parse(text: &str) -> Option<Dec> {
        let (neg, rest) = match text.strip_prefix('-') {
            Some(r) => (true, r),
            None => (false, text),
        };
        let (mantissa, exp) = match rest.find(['e', 'E']) {
            Some(i) => (&rest[..i], rest[i + 1..].parse::<i64>().ok()?),
            None => (rest, 0),
        };
        let (int, frac) = match mantissa.split_once('.') {
            Some((a, b)) => (a, b),
            None => (mantissa, ""),
        };
        if int.is_empty() || !int.bytes().chain(frac.bytes()).all(|c| c.is_ascii_digit()) {
            return None;
        }
        let digits: Vec<u8> = int.bytes().chain(frac.bytes()).map(|c| c - b'0').collect();
        let scale = (frac.len() as i64).checked_sub(exp)?;
        if scale.abs() > MAX_SCALE {
            return None;
        }
        let digits = trim(digits);
        let neg = neg && digits != [0];
        Some(Dec { neg, digits, scale })
    }

    pub fn from_number(n: &Number) -> Option<Dec> {
        Dec::parse(n.as_str())
    }

    pub fn zero() -> Dec {
        Dec {
            neg: false,
            digits: vec![0],
            scale: 0,
        }
    }

    fn is_zero(&self) -> bool {
        self.digits == [0]
    }

    /// The same value with `scale` (≥ its own), by appending zeros.
    fn rescaled(&self, scale: i64) -> Vec<u8> {
        let mut d = self.digits.clone();
        d.extend(std::iter::repeat_n(0, (scale - self.scale) as usize));
        d
    }

    pub fn add(&self, other: &Dec) -> Option<Dec> {
        let scale = self.scale.max(other.scale);
        if (scale - self.scale.min(other.scale)) > MAX_SCALE {
            return None;
        }
        let (a, b) = (self.rescaled(scale), other.rescaled(scale));
        let (neg, digits) = if self.neg == other.neg {
            (self.neg, add_mag(&a, &b))
        } else {
            match cmp_mag(&trim(a.clone()), &trim(b.clone())) {
                Ordering::Less => (other.neg, sub_mag(&b, &a)),
                _ => (self.neg, sub_mag(&a, &b)),
            }
        };
        let neg = neg && digits != [0];
        Some(Dec { neg, digits, scale })
    }

    pub fn mul(&self, other: &Dec) -> Option<Dec> {
        let scale = self.scale.checked_add(other.scale)?;
        if scale.abs() > MAX_SCALE {
            return None;
        }
        let digits = mul_mag(&self.digits, &other.digits);
        let neg = (self.neg != other.neg) && digits != [0];
        Some(Dec { neg, digits, scale })
    }

    /// Numeric order, whatever the scales (`1.0` equals `1`).
    pub fn cmp_value(&self, other: &Dec) -> Ordering {
        match (self.neg, other.neg) {
            (false, true) => {
                return if self.is_zero() && other.is_zero() {
                    Ordering::Equal
                } else {
                    Ordering::Greater
                };
            }
            (true, false) => return Ordering::Less,
            _ => {}
        }
        let scale = self.scale.max(other.scale);
        let mag = if (scale - self.scale.min(other.scale)) > MAX_SCALE {
            // Far apart in magnitude; compare by adjusted exponent.
            let ea = self.digits.len() as i64 - self.scale;
            let eb = other.digits.len() as i64 - other.scale;
            ea.cmp(&eb)
        } else {
            cmp_mag(&trim(self.rescaled(scale)), &trim(other.rescaled(scale)))
        };
        if self.neg { mag.reverse() } else { mag }
    }

    /// `BigDecimal.toString()`: plain when the scale is not negative and the adjusted
    /// exponent is at least -6, scientific (`1.5E+7`, `2E-8`) otherwise.
    pub fn to_text(&self) -> String {
        let digits: String = self.digits.iter().map(|d| char::from(b'0' + d)).collect();
        let len = digits.len() as i64;
        let adjusted = -self.scale + (len - 1);
        let mut s = String::new();
        if self.neg {
            s.push('-');
        }
        if self.scale >= 0 && adjusted >= -6 {
            if self.scale == 0 {
                s.push_str(&digits);
            } else if len > self.scale {
                let cut = (len - self.scale) as usize;
                s.push_str(&digits[..cut]);
                s.push('.');
                s.push_str(&digits[cut..]);
            } else {
                s.push_str("0.");
                s.extend(std::iter::repeat_n('0', (self.scale - len) as usize));
                s.push_str(&digits);
            }
        } else {
            s.push_str(&digits[..1]);
            if len > 1 {
                s.push('.');
                s.push_str(&digits[1..]);
            }
            if adjusted != 0 {
                s.push('E');
                if adjusted > 0 {
                    s.push('+');
                }
                s.push_str(&adjusted.to_string());
            }
        }
        s
    }

    pub fn to_number(&self) -> Option<Number> {
        self.to_text().parse().ok()
    }
}

/// Numeric order of two JSON numbers: exact where both parse, else by their `f64` values.
pub fn cmp_numbers(a: &Number, b: &Number) -> Ordering {
    if let (Some(x), Some(y)) = (a.as_i64(), b.as_i64()) {
        return x.cmp(&y);
    }
    match (Dec::from_number(a), Dec::from_number(b)) {
        (Some(x), Some(y)) => x.cmp_value(&y),
        _ => {
            let (x, y) = (a.as_f64().unwrap_or(0.0), b.as_f64().unwrap_or(0.0));
            x.partial_cmp(&y).unwrap_or(Ordering::Equal)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn d(s: &str) -> Dec {
        Dec::parse(s).unwrap()
    }

    #[test]
    fn arithmetic_is_exact_and_prints_as_bigdecimal() {
        assert_eq!(d("0.1").add(&d("0.2")).unwrap().to_text(), "0.3");
        assert_eq!(d("1.0").add(&d("2")).unwrap().to_text(), "3.0");
        assert_eq!(d("5").add(&d("-7")).unwrap().to_text(), "-2");
        assert_eq!(d("-5").add(&d("5")).unwrap().to_text(), "0");
        assert_eq!(
            d("12345678901234567890123").add(&d("1")).unwrap().to_text(),
            "12345678901234567890124"
        );
        assert_eq!(d("1.5").mul(&d("2")).unwrap().to_text(), "3.0");
        assert_eq!(d("-0.5").mul(&d("0.5")).unwrap().to_text(), "-0.25");
        assert_eq!(d("1e5").to_text(), "1E+5");
        assert_eq!(
            d("2.0635595263889274e-35").to_text(),
            "2.0635595263889274E-35"
        );
        assert_eq!(d("0.000001").to_text(), "0.000001");
        assert_eq!(d("0.0000001").to_text(), "1E-7");
        assert_eq!(d("1.0").cmp_value(&d("1")), Ordering::Equal);
        assert_eq!(d("-1").cmp_value(&d("0.5")), Ordering::Less);
        assert_eq!(d("-2").cmp_value(&d("-10")), Ordering::Greater);
        assert_eq!(d("-0").cmp_value(&d("0")), Ordering::Equal);
        assert!(Dec::parse("1e99999999999").is_none());
        assert!(Dec::parse("abc").is_none());
    }
}
