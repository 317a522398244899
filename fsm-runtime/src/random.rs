//! Random bytes from the operating system's generator, for tokens, nonces and jitter.

/// `bytes` random bytes from the operating system, as lowercase hex (`2 * bytes` characters).
pub(crate) fn random_hex(bytes: usize) -> Result<String, getrandom::Error> {
    let mut buffer = vec![0u8; bytes];
    getrandom::fill(&mut buffer)?;
    Ok(buffer.iter().fold(String::with_capacity(2 * bytes), |mut hex, byte| {
        const DIGITS: &[u8; 16] = b"0123456789abcdef";
        hex.push(char::from(DIGITS[usize::from(byte >> 4)]));
        hex.push(char::from(DIGITS[usize::from(byte & 0x0f)]));
        hex
    }))
}

/// A random number in `0..=max` for jitter; 0 on the (rare) machine whose generator fails,
/// which only removes the jitter.
pub(crate) fn random_below(max: u64) -> u64 {
    let mut buffer = [0u8; 8];
    match getrandom::fill(&mut buffer) {
        Ok(()) if max < u64::MAX => u64::from_le_bytes(buffer) % (max + 1),
        Ok(()) => u64::from_le_bytes(buffer),
        Err(_) => 0,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hex_has_two_digits_a_byte_and_differs() {
        let a = random_hex(32).unwrap();
        let b = random_hex(32).unwrap();
        assert_eq!(a.len(), 64);
        assert!(a.bytes().all(|c| c.is_ascii_hexdigit() && !c.is_ascii_uppercase()));
        assert_ne!(a, b);
        assert!(random_below(10) <= 10);
    }
}
