//! The response body of the PEP: the inner service's body, or one the PEP wrote itself.

use std::pin::Pin;
use std::task::{Context, Poll};

use bytes::Bytes;
use http_body::{Body, Frame, SizeHint};
use pin_project_lite::pin_project;

pin_project! {
    /// The body of a response that went through [`PolicyLayer`](crate::PolicyLayer): either the
    /// inner service's body, untouched, or a body the PEP wrote (a denial, a challenge).
    #[project = ResponseBodyProj]
    #[derive(Debug)]
    pub enum ResponseBody<B> {
        /// The inner service's body, streamed through.
        Inner {
            /// The inner body.
            #[pin]
            body: B,
        },
        /// A body written by the PEP.
        Policy {
            /// The bytes still to send.
            body: Option<Bytes>,
        },
    }
}

impl<B> ResponseBody<B> {
    pub(crate) fn inner(body: B) -> Self {
        Self::Inner { body }
    }

    pub(crate) fn policy(bytes: impl Into<Bytes>) -> Self {
        let bytes = bytes.into();
        Self::Policy {
            body: (!bytes.is_empty()).then_some(bytes),
        }
    }
}

impl<B> Body for ResponseBody<B>
where
    B: Body<Data = Bytes>,
{
    type Data = Bytes;
    type Error = B::Error;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Self::Data>, Self::Error>>> {
        match self.project() {
            ResponseBodyProj::Inner { body } => body.poll_frame(cx),
            ResponseBodyProj::Policy { body } => Poll::Ready(body.take().map(|b| Ok(Frame::data(b)))),
        }
    }

    fn is_end_stream(&self) -> bool {
        match self {
            Self::Inner { body } => body.is_end_stream(),
            Self::Policy { body } => body.is_none(),
        }
    }

    fn size_hint(&self) -> SizeHint {
        match self {
            Self::Inner { body } => body.size_hint(),
            Self::Policy { body } => {
                SizeHint::with_exact(body.as_ref().map_or(0, |b| b.len() as u64))
            }
        }
    }
}
