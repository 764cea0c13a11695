//! Attributes from an HTTP service.

use serde_json::Value;

use crate::provider::{FetchError, FetchFuture, Provider, parse_json};

/// Reads an attribute with `GET <url>` where `{key}` in the URL is the key, percent-encoded.
/// A 200 answer's body is the value (JSON); 404 is `null`; any other status, or a body that is
/// not JSON, fails.
///
/// ```
/// use warden_context::HttpProvider;
///
/// let risk = HttpProvider::new("http://127.0.0.1:8080/risk/{key}").unwrap();
/// assert!(HttpProvider::new("http://127.0.0.1:8080/risk").is_err(), "the URL names no {{key}}");
/// ```
#[derive(Debug, Clone)]
pub struct HttpProvider {
    client: reqwest::Client,
    template: String,
}

impl HttpProvider {
    /// A provider for `template` (an `http(s)` URL with `{key}` in it).
    pub fn new(template: &str) -> Result<Self, FetchError> {
        if !template.contains("{key}") {
            return Err(FetchError::Unavailable(format!(
                "the URL `{template}` names no `{{key}}`"
            )));
        }
        reqwest::Url::parse(&template.replace("{key}", "k"))
            .map_err(|e| FetchError::Unavailable(format!("`{template}`: {e}")))?;
        let client = reqwest::Client::builder()
            .build()
            .map_err(|e| FetchError::Unavailable(e.to_string()))?;
        Ok(Self {
            client,
            template: template.to_owned(),
        })
    }

    async fn read(&self, key: &str) -> Result<Value, FetchError> {
        if key.is_empty() || key == "." || key == ".." {
            // A URL parser resolves these as path segments, even percent-encoded.
            return Err(FetchError::Garbage(format!(
                "the key `{key}` cannot be sent"
            )));
        }
        let url = self.template.replace("{key}", &percent_encode(key));
        let response = self
            .client
            .get(url)
            .header("accept", "application/json")
            .send()
            .await
            .map_err(|e| FetchError::Unavailable(e.to_string()))?;
        match response.status().as_u16() {
            200 => {
                let text = response
                    .text()
                    .await
                    .map_err(|e| FetchError::Unavailable(e.to_string()))?;
                parse_json(&text)
            }
            404 => Ok(Value::Null),
            status => Err(FetchError::Unavailable(format!("answered {status}"))),
        }
    }
}

impl Provider for HttpProvider {
    fn fetch<'a>(&'a self, key: &'a str) -> FetchFuture<'a> {
        Box::pin(self.read(key))
    }
}

/// Every byte but the unreserved ones (RFC 3986) percent-encoded: a key never adds a path
/// segment or a query.
fn percent_encode(key: &str) -> String {
    let mut out = String::with_capacity(key.len());
    for byte in key.bytes() {
        if byte.is_ascii_alphanumeric() || matches!(byte, b'-' | b'.' | b'_' | b'~') {
            out.push(char::from(byte));
        } else {
            out.push_str(&format!("%{byte:02X}"));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    #[test]
    fn a_key_cannot_leave_its_path_segment() {
        assert_eq!(
            super::percent_encode("../admin?x=1#"),
            "..%2Fadmin%3Fx%3D1%23"
        );
        assert_eq!(super::percent_encode("a b/ü"), "a%20b%2F%C3%BC");
    }
}
