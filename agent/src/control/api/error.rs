//! API errors in the shapes the model declares, sent with `x-amzn-ErrorType`
//! so the AWS CLI and SDKs print them as they print AWS's own.

use serde_json::{json, Map, Value};

use super::model::FieldProblem;

/// An error answer.
#[derive(Debug, Clone, PartialEq)]
pub struct ApiError {
    /// HTTP status.
    pub status: u16,
    /// Error type (shape name), e.g. `ValidationException`.
    pub code: &'static str,
    /// Message.
    pub message: String,
    /// Further members of the error shape.
    pub fields: Map<String, Value>,
}

impl std::fmt::Display for ApiError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}: {}", self.code, self.message)
    }
}

impl ApiError {
    fn new(status: u16, code: &'static str, message: impl Into<String>) -> Self {
        Self {
            status,
            code,
            message: message.into(),
            fields: Map::new(),
        }
    }

    fn with(mut self, key: &str, value: impl Into<Value>) -> Self {
        self.fields.insert(key.to_owned(), value.into());
        self
    }

    /// ValidationException naming each bad field.
    pub fn validation(problems: Vec<FieldProblem>) -> Self {
        let message = problems
            .iter()
            .map(|p| format!("{}: {}", p.name, p.message))
            .collect::<Vec<_>>()
            .join("; ");
        let list: Vec<Value> = problems
            .into_iter()
            .map(|p| json!({"name": p.name, "message": p.message}))
            .collect();
        Self::new(400, "ValidationException", message)
            .with("reason", "fieldValidationFailed")
            .with("fieldList", list)
    }

    /// ValidationException for one field.
    pub fn field(name: &str, message: impl Into<String>) -> Self {
        Self::validation(vec![FieldProblem {
            name: name.to_owned(),
            message: message.into(),
        }])
    }

    /// ValidationException for a body that is not JSON.
    pub fn cannot_parse(message: impl Into<String>) -> Self {
        Self::new(400, "ValidationException", message).with("reason", "cannotParse")
    }

    /// ValidationException for operations latticed does not implement.
    pub fn unsupported(operation: &str, what: &str) -> Self {
        Self::new(
            400,
            "ValidationException",
            format!("{operation}: {what} are not supported by latticed"),
        )
        .with("reason", "unknownOperation")
    }

    /// ResourceNotFoundException.
    pub fn not_found(resource_type: &str, id: &str) -> Self {
        Self::new(
            404,
            "ResourceNotFoundException",
            format!("{resource_type} {id} was not found"),
        )
        .with("resourceId", id)
        .with("resourceType", resource_type)
    }

    /// ConflictException.
    pub fn conflict(resource_type: &str, id: &str, message: impl Into<String>) -> Self {
        Self::new(409, "ConflictException", message)
            .with("resourceId", id)
            .with("resourceType", resource_type)
    }

    /// ServiceQuotaExceededException.
    pub fn quota(resource_type: &str, quota: &str, limit: usize) -> Self {
        Self::new(
            402,
            "ServiceQuotaExceededException",
            format!("quota {quota} ({limit}) reached; raise it with --quota {quota}=N"),
        )
        .with("resourceType", resource_type)
        .with("serviceCode", "vpc-lattice")
        .with("quotaCode", quota)
    }

    /// AccessDeniedException and the signature errors (all 403).
    pub fn denied(code: &'static str, message: impl Into<String>) -> Self {
        Self::new(403, code, message)
    }

    /// AWS's AccessDeniedException: the caller's account may not do this.
    pub fn access_denied(message: impl Into<String>) -> Self {
        Self {
            status: 403,
            code: "AccessDeniedException",
            message: message.into(),
            fields: Default::default(),
        }
    }

    /// InternalServerException.
    pub fn internal(message: impl Into<String>) -> Self {
        Self::new(500, "InternalServerException", message)
    }

    /// One of RAM's errors (`code` is the shape name; all are 400 but
    /// the few below): RAM's handlers answer in RAM's own terms.
    pub fn ram(code: &'static str, message: impl Into<String>) -> Self {
        let status = match code {
            "PermissionAlreadyExistsException" => 409,
            "ServerInternalException" => 500,
            _ => 400,
        };
        Self::new(status, code, message)
    }

    /// This error as RAM answers it. The engine and the shared helpers
    /// speak Lattice's errors; RAM's model declares other shapes for the
    /// same cases, and they carry only a message.
    pub fn in_ram(self) -> Self {
        let reason = self.fields.get("reason").and_then(Value::as_str);
        let code = match (self.code, reason) {
            ("ValidationException", Some("unknownOperation")) => "OperationNotPermittedException",
            ("ValidationException", _) => "InvalidParameterException",
            ("ResourceNotFoundException", _) => "UnknownResourceException",
            ("ConflictException", _) => "IdempotentParameterMismatchException",
            ("ServiceQuotaExceededException", _) => "ResourceShareLimitExceededException",
            ("InternalServerException", _) => "ServerInternalException",
            _ => {
                return Self {
                    fields: Map::new(),
                    ..self
                }
            }
        };
        Self::ram(code, self.message)
    }

    /// The JSON body.
    pub fn body(&self) -> Value {
        let mut body = self.fields.clone();
        body.insert("message".into(), self.message.clone().into());
        Value::Object(body)
    }
}
