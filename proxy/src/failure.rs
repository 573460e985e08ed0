//! How latticed answers a request it could not complete, and how the access
//! log names why: one definition for the fast path, the hyper path and
//! function targets, so that a client sees the same status and body, and
//! the log the same `failureReason`, whichever path carried the request.

use http::StatusCode;

/// Why a request was answered by latticed instead of a target.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Failure {
    /// The request head was malformed or refused (400).
    BadRequest,
    /// The route names no target group to forward to (503).
    NoTargetGroup,
    /// The chosen target group has no target to send to (503).
    NoHealthyTarget,
    /// No connection to the target (503).
    TargetConnectionFailed,
    /// The exchange with the target broke off (502).
    TargetRequestFailed,
    /// No response head within `--request-timeout` (504).
    TargetTimeout,
    /// The client's body broke off or was malformed (400).
    ClientBodyError,
    /// A body the proxy holds whole did not arrive within
    /// `--body-timeout` (408).
    ClientBodyTimeout,
    /// The body is larger than a function event may carry (413).
    RequestTooLarge,
    /// Bodies held whole have spent their memory budget (503).
    BodyBudgetSpent,
    /// A LAMBDA target group is used but latticed runs without
    /// `--lambda-endpoint` (503).
    NoLambdaEndpoint,
    /// The function event could not be encoded (500).
    EventEncoding,
    /// The Lambda endpoint's URL is unusable (500).
    BadLambdaEndpoint,
    /// No connection to the Lambda endpoint (503).
    LambdaConnectionFailed,
    /// The invocation failed (502).
    LambdaInvokeFailed,
    /// The function's answer is larger than the proxy relays (502).
    ResponseTooLarge,
    /// The function raised an error (502).
    LambdaFunctionError,
    /// The function's answer is not the shape Lattice expects (502).
    LambdaInvalidResponse,
}

impl Failure {
    /// The status the client gets.
    pub const fn status(self) -> StatusCode {
        match self {
            Self::BadRequest | Self::ClientBodyError => StatusCode::BAD_REQUEST,
            Self::ClientBodyTimeout => StatusCode::REQUEST_TIMEOUT,
            Self::RequestTooLarge => StatusCode::PAYLOAD_TOO_LARGE,
            Self::EventEncoding | Self::BadLambdaEndpoint => StatusCode::INTERNAL_SERVER_ERROR,
            Self::TargetRequestFailed
            | Self::LambdaInvokeFailed
            | Self::ResponseTooLarge
            | Self::LambdaFunctionError
            | Self::LambdaInvalidResponse => StatusCode::BAD_GATEWAY,
            Self::NoTargetGroup
            | Self::NoHealthyTarget
            | Self::TargetConnectionFailed
            | Self::BodyBudgetSpent
            | Self::NoLambdaEndpoint
            | Self::LambdaConnectionFailed => StatusCode::SERVICE_UNAVAILABLE,
            Self::TargetTimeout => StatusCode::GATEWAY_TIMEOUT,
        }
    }

    /// The access log's `failureReason`.
    pub const fn reason(self) -> &'static str {
        match self {
            Self::BadRequest => "BadRequest",
            Self::NoTargetGroup => "NoTargetGroup",
            Self::NoHealthyTarget => "NoHealthyTarget",
            Self::TargetConnectionFailed => "TargetConnectionFailed",
            Self::TargetRequestFailed => "TargetRequestFailed",
            Self::TargetTimeout => "TargetTimeout",
            Self::ClientBodyError => "ClientBodyError",
            Self::ClientBodyTimeout => "ClientBodyTimeout",
            Self::RequestTooLarge => "RequestTooLarge",
            Self::BodyBudgetSpent => "BodyBudgetSpent",
            Self::NoLambdaEndpoint => "NoLambdaEndpoint",
            Self::EventEncoding => "EventEncoding",
            Self::BadLambdaEndpoint => "BadLambdaEndpoint",
            Self::LambdaConnectionFailed => "LambdaConnectionFailed",
            Self::LambdaInvokeFailed => "LambdaInvokeFailed",
            Self::ResponseTooLarge => "ResponseTooLarge",
            Self::LambdaFunctionError => "LambdaFunctionError",
            Self::LambdaInvalidResponse => "LambdaInvalidResponse",
        }
    }

    /// The plain-text body the client gets.
    pub const fn body(self) -> &'static str {
        body(self.status())
    }
}

/// The plain-text body of an answer latticed makes itself with `status`.
pub const fn body(status: StatusCode) -> &'static str {
    match status.as_u16() {
        400 => "Bad Request\n",
        408 => "Request Timeout\n",
        413 => "Payload Too Large\n",
        500 => "Internal Server Error\n",
        503 => "Service Unavailable\n",
        504 => "Gateway Timeout\n",
        _ => "Bad Gateway\n",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_failure_has_its_status_body_and_reason() {
        assert_eq!(Failure::TargetConnectionFailed.status(), 503);
        assert_eq!(
            Failure::TargetConnectionFailed.body(),
            "Service Unavailable\n"
        );
        assert_eq!(Failure::TargetTimeout.status(), 504);
        assert_eq!(Failure::TargetTimeout.body(), "Gateway Timeout\n");
        assert_eq!(Failure::TargetRequestFailed.body(), "Bad Gateway\n");
        assert_eq!(Failure::ClientBodyError.body(), "Bad Request\n");
        assert_eq!(Failure::RequestTooLarge.body(), "Payload Too Large\n");
        assert_eq!(
            Failure::LambdaInvalidResponse.reason(),
            "LambdaInvalidResponse"
        );
    }
}
