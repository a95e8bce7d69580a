//! Keyset pagination (AIP-158): page sizes, and opaque page tokens bound to the request's filters.

use base64::{Engine as _, engine::general_purpose::URL_SAFE_NO_PAD};
use prost::Message as _;
use sha2::{Digest as _, Sha256};

use crate::error::{Error, Result};

/// Page size used when a request asks for 0.
pub const DEFAULT_PAGE_SIZE: u64 = 50;
/// Largest page size; larger requests are coerced down.
pub const MAX_PAGE_SIZE: u64 = 1000;

/// What a client sees as `page_token`: the last key returned and a fingerprint of the filters.
#[derive(Clone, PartialEq, prost::Message)]
struct PageToken {
    #[prost(string, tag = "1")]
    last_key: String,
    #[prost(string, tag = "2")]
    fingerprint: String,
}

/// A validated page request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Page {
    /// Number of items to return.
    pub size: u64,
    /// Return only items whose key sorts after this one.
    pub after: Option<String>,
    fingerprint: String,
}

impl Page {
    /// Validates `page_size` and `page_token` for a request whose filters are described by `filters`.
    pub fn parse(page_size: i32, page_token: &str, filters: &str) -> Result<Self> {
        let size = match page_size {
            size if size < 0 => return Err(Error::invalid("page_size", "must not be negative")),
            0 => DEFAULT_PAGE_SIZE,
            size => (size as u64).min(MAX_PAGE_SIZE),
        };
        let fingerprint = fingerprint(filters);
        let after = if page_token.is_empty() {
            None
        } else {
            let token = URL_SAFE_NO_PAD
                .decode(page_token)
                .ok()
                .and_then(|bytes| PageToken::decode(bytes.as_slice()).ok())
                .filter(|token| !token.last_key.is_empty())
                .ok_or_else(|| {
                    Error::invalid("page_token", "is not a token this service issued")
                })?;
            if token.fingerprint != fingerprint {
                return Err(Error::invalid(
                    "page_token",
                    "was issued for a request with other filters",
                ));
            }
            Some(token.last_key)
        };
        Ok(Self {
            size,
            after,
            fingerprint,
        })
    }

    /// Returns the token of the page after the one ending at `last_key`.
    pub fn next_token(&self, last_key: &str) -> String {
        let token = PageToken {
            last_key: last_key.to_owned(),
            fingerprint: self.fingerprint.clone(),
        };
        URL_SAFE_NO_PAD.encode(token.encode_to_vec())
    }

    /// Splits `rows` (fetched with `size + 1`) into the page and its next token.
    pub fn finish<T>(&self, mut rows: Vec<T>, key: impl Fn(&T) -> String) -> (Vec<T>, String) {
        if rows.len() as u64 > self.size {
            rows.truncate(self.size as usize);
            let next = rows
                .last()
                .map(|row| self.next_token(&key(row)))
                .unwrap_or_default();
            (rows, next)
        } else {
            (rows, String::new())
        }
    }
}

fn fingerprint(filters: &str) -> String {
    let digest = Sha256::digest(filters.as_bytes());
    hex::encode(&digest[..8])
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;

    #[test]
    fn zero_means_the_default_and_large_sizes_are_coerced() {
        assert_eq!(Page::parse(0, "", "").unwrap().size, DEFAULT_PAGE_SIZE);
        assert_eq!(Page::parse(i32::MAX, "", "").unwrap().size, MAX_PAGE_SIZE);
        assert!(Page::parse(-1, "", "").is_err());
    }

    #[test]
    fn a_token_from_other_filters_is_rejected() {
        let page = Page::parse(10, "", "parent=a").unwrap();
        let token = page.next_token("key-1");
        assert!(Page::parse(10, &token, "parent=b").is_err());
        assert_eq!(
            Page::parse(10, &token, "parent=a")
                .unwrap()
                .after
                .as_deref(),
            Some("key-1")
        );
    }

    proptest! {
        #[test]
        fn page_tokens_round_trip(key in "[a-z0-9-]{1,40}", filters in ".*") {
            let page = Page::parse(5, "", &filters).unwrap();
            let token = page.next_token(&key);
            let next = Page::parse(5, &token, &filters).unwrap();
            prop_assert_eq!(next.after, Some(key));
        }

        #[test]
        fn forged_tokens_are_rejected_not_panicking(token in "[A-Za-z0-9_-]{1,80}") {
            let result = Page::parse(5, &token, "filters");
            if let Ok(page) = result {
                // Only a token carrying this request's fingerprint may pass.
                prop_assert!(page.after.is_some());
            }
        }
    }
}
