//! The responses the PEP writes itself: denials, challenges, outages, as problem+json for HTTP
//! and as gRPC statuses for gRPC.

use http::header::{CONTENT_TYPE, HeaderValue, WWW_AUTHENTICATE};
use http::{Response, StatusCode};
use serde_json::json;
use warden_decision::{DecisionId, StepUp};

use crate::body::ResponseBody;
use crate::jwt::TokenError;

/// Why the PEP answered instead of the service.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Refusal {
    /// No credentials at all.
    Unauthenticated,
    /// Credentials that did not verify.
    InvalidToken(TokenError),
    /// The policy denied (or could not decide, or an obligation cannot be carried out).
    Denied(DecisionId),
    /// The policy demands a stronger or more recent authentication.
    StepUp(StepUp, DecisionId),
    /// No decision could be had.
    Unavailable,
    /// The response could not be redacted as the decision demands, so it is not sent.
    Withheld(DecisionId),
    /// An error response whose body could not be redacted: its status and safe headers, with a
    /// problem+json body.
    ErrorReplaced(Box<Replaced>, DecisionId),
    /// A path parameter is not valid UTF-8 once decoded.
    #[cfg_attr(
        not(feature = "axum"),
        expect(dead_code, reason = "path parameters come from axum's router")
    )]
    BadRequest(&'static str),
}

/// What an error response keeps when its body is replaced.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Replaced {
    status: StatusCode,
    headers: Vec<(http::HeaderName, HeaderValue)>,
}

impl Replaced {
    /// The headers a client needs to act on an error (the response's redacted headers are
    /// already gone).
    const KEPT: [http::HeaderName; 3] = [
        WWW_AUTHENTICATE,
        http::header::RETRY_AFTER,
        http::header::ALLOW,
    ];

    pub(crate) fn of(head: &http::response::Parts) -> Self {
        let headers = Self::KEPT
            .iter()
            .flat_map(|name| {
                head.headers
                    .get_all(name)
                    .iter()
                    .map(|value| (name.clone(), value.clone()))
            })
            .collect();
        Self {
            status: head.status,
            headers,
        }
    }
}

/// gRPC status codes the PEP answers with.
mod grpc_code {
    pub(super) const INVALID_ARGUMENT: u16 = 3;
    pub(super) const INTERNAL: u16 = 13;
    pub(super) const PERMISSION_DENIED: u16 = 7;
    pub(super) const UNAVAILABLE: u16 = 14;
    pub(super) const UNAUTHENTICATED: u16 = 16;
}

impl Refusal {
    fn status(&self) -> StatusCode {
        match self {
            Self::Unauthenticated | Self::InvalidToken(_) | Self::StepUp(..) => {
                StatusCode::UNAUTHORIZED
            }
            Self::Denied(_) => StatusCode::FORBIDDEN,
            Self::Unavailable => StatusCode::SERVICE_UNAVAILABLE,
            Self::Withheld(_) => StatusCode::INTERNAL_SERVER_ERROR,
            Self::ErrorReplaced(replaced, _) => replaced.status,
            Self::BadRequest(_) => StatusCode::BAD_REQUEST,
        }
    }

    fn grpc_code(&self) -> u16 {
        match self {
            Self::Unauthenticated | Self::InvalidToken(_) | Self::StepUp(..) => {
                grpc_code::UNAUTHENTICATED
            }
            Self::Denied(_) => grpc_code::PERMISSION_DENIED,
            Self::Unavailable => grpc_code::UNAVAILABLE,
            Self::Withheld(_) | Self::ErrorReplaced(..) => grpc_code::INTERNAL,
            Self::BadRequest(_) => grpc_code::INVALID_ARGUMENT,
        }
    }

    fn detail(&self) -> String {
        match self {
            Self::Unauthenticated => "the request carries no credentials".into(),
            Self::InvalidToken(e) => e.to_string(),
            Self::Denied(_) => "the request was denied by policy".into(),
            Self::StepUp(..) => "a different authentication level is required".into(),
            Self::Unavailable => "no policy decision could be made; try again later".into(),
            Self::Withheld(_) => "response withheld by policy".into(),
            Self::ErrorReplaced(..) => {
                "the error response was replaced: its body cannot be redacted as policy demands"
                    .into()
            }
            Self::BadRequest(what) => (*what).into(),
        }
    }

    fn decision_id(&self) -> Option<DecisionId> {
        match self {
            Self::Denied(id)
            | Self::StepUp(_, id)
            | Self::Withheld(id)
            | Self::ErrorReplaced(_, id) => Some(*id),
            _ => None,
        }
    }

    /// The `WWW-Authenticate` challenge, for the refusals that have one.
    fn challenge(&self) -> Option<String> {
        match self {
            Self::Unauthenticated => Some("Bearer".into()),
            Self::InvalidToken(e) => Some(format!(
                "Bearer error=\"invalid_token\", error_description=\"{e}\""
            )),
            Self::StepUp(step_up, _) => Some(step_up_challenge(step_up)),
            _ => None,
        }
    }

    /// The HTTP response: RFC 9457 problem details, with the challenge where there is one.
    pub(crate) fn http_response<B>(&self) -> Response<ResponseBody<B>> {
        let status = self.status();
        let mut problem = json!({
            "type": "about:blank",
            "title": status.canonical_reason().unwrap_or("Error"),
            "status": status.as_u16(),
            "detail": self.detail(),
        });
        if let (Some(id), Some(fields)) = (self.decision_id(), problem.as_object_mut()) {
            fields.insert("decision_id".into(), id.to_string().into());
        }
        let mut response = Response::new(ResponseBody::policy(problem.to_string()));
        *response.status_mut() = status;
        let headers = response.headers_mut();
        headers.insert(
            CONTENT_TYPE,
            HeaderValue::from_static("application/problem+json"),
        );
        if let Some(challenge) = self.challenge().and_then(|c| HeaderValue::try_from(c).ok()) {
            headers.insert(WWW_AUTHENTICATE, challenge);
        }
        if let Self::ErrorReplaced(replaced, _) = self {
            for (name, value) in &replaced.headers {
                headers.append(name.clone(), value.clone());
            }
        } else if status == StatusCode::SERVICE_UNAVAILABLE {
            headers.insert(http::header::RETRY_AFTER, HeaderValue::from_static("1"));
        }
        response
    }

    /// The gRPC response: a trailers-only response with the status in its headers.
    pub(crate) fn grpc_response<B>(&self) -> Response<ResponseBody<B>> {
        let mut message = self.detail();
        if let Some(id) = self.decision_id() {
            message.push_str(&format!(" (decision {id})"));
        }
        let mut response = Response::new(ResponseBody::policy(""));
        let headers = response.headers_mut();
        headers.insert(CONTENT_TYPE, HeaderValue::from_static("application/grpc"));
        headers.insert("grpc-status", HeaderValue::from(self.grpc_code()));
        if let Ok(message) = HeaderValue::try_from(grpc_percent_encode(&message)) {
            headers.insert("grpc-message", message);
        }
        if let Some(challenge) = self.challenge().and_then(|c| HeaderValue::try_from(c).ok()) {
            headers.insert(WWW_AUTHENTICATE, challenge);
        }
        response
    }
}

/// `Bearer error="insufficient_user_authentication", …` as RFC 9470 section 3 writes it.
pub(crate) fn step_up_challenge(step_up: &StepUp) -> String {
    let mut challenge = String::from(
        "Bearer error=\"insufficient_user_authentication\", \
         error_description=\"A different authentication level is required\"",
    );
    challenge.push_str(&format!(", acr_values=\"{}\"", step_up.acr_values));
    if let Some(max_age) = step_up.max_age {
        challenge.push_str(&format!(", max_age=\"{max_age}\""));
    }
    challenge
}

/// Percent-encodes a `grpc-message` as the gRPC HTTP/2 protocol asks.
fn grpc_percent_encode(message: &str) -> String {
    let mut out = String::with_capacity(message.len());
    for b in message.bytes() {
        if (0x20..=0x7e).contains(&b) && b != b'%' {
            out.push(char::from(b));
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn step_up_challenge_is_written_as_rfc_9470_does() {
        let s = StepUp {
            acr_values: "urn:example:mfa".into(),
            max_age: Some(300),
        };
        assert_eq!(
            step_up_challenge(&s),
            "Bearer error=\"insufficient_user_authentication\", error_description=\"A different \
             authentication level is required\", acr_values=\"urn:example:mfa\", max_age=\"300\""
        );
        let s = StepUp {
            acr_values: "a b".into(),
            max_age: None,
        };
        assert!(step_up_challenge(&s).ends_with("acr_values=\"a b\""));
    }

    #[test]
    fn grpc_messages_are_percent_encoded() {
        assert_eq!(grpc_percent_encode("a b%c\u{e9}"), "a b%25c%C3%A9");
    }
}
