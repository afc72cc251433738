//! Kubernetes object names. A name the webhook reads from a request (an
//! owner reference, a Server's `spec.serverConfig`) ends up in the path of
//! a GET on a cache miss; anything but a valid name is refused first, so a
//! name can never turn that GET into another request (`srv?x=1` would make
//! it a LIST).

/// Whether `name` is a DNS-1123 subdomain, the form the API server requires
/// of Server and ServerConfig names: at most 253 characters of lower-case
/// letters, digits, `-` and `.`, starting and ending with a letter or digit,
/// every dot-separated label non-empty.
pub fn is_valid_name(name: &str) -> bool {
    let alnum = |c: u8| c.is_ascii_lowercase() || c.is_ascii_digit();
    !name.is_empty()
        && name.len() <= 253
        && name.split('.').all(|label| {
            let b = label.as_bytes();
            match (b.first(), b.last()) {
                (Some(&f), Some(&l)) => {
                    alnum(f) && alnum(l) && b.iter().all(|&c| alnum(c) || c == b'-')
                }
                _ => false,
            }
        })
}

#[cfg(test)]
mod tests {
    use super::is_valid_name;

    #[test]
    fn names_table() {
        let long = "a".repeat(254);
        let max = "a".repeat(253);
        for (name, ok) in [
            ("mlserver", true),
            ("mlserver-2.9.1", true),
            ("a", true),
            ("0abc", true),
            (max.as_str(), true),
            ("", false),
            (long.as_str(), false),
            ("srv?x=1", false),
            ("srv/other", false),
            ("Mlserver", false),
            ("-a", false),
            ("a-", false),
            ("a..b", false),
            (".a", false),
            ("a b", false),
            ("%2e%2e", false),
            ("é", false),
        ] {
            assert_eq!(is_valid_name(name), ok, "{name:?}");
        }
    }
}
