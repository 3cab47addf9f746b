//! S3 failures as `PersistError` codes, worded so a person knows what to fix, and never with a
//! secret in them.

use aws_sdk_s3::error::{DisplayErrorContext, ProvideErrorMetadata, SdkError};

use crate::error::{ErrorCode, PersistError};

pub struct S3Errors {
    bucket: String,
    endpoint: Option<String>,
    secrets: Vec<String>,
}

type Raw = aws_sdk_s3::config::http::HttpResponse;

fn status<E>(err: &SdkError<E, Raw>) -> Option<u16> {
    err.raw_response().map(|r| r.status().as_u16())
}

fn code<E: ProvideErrorMetadata>(err: &SdkError<E, Raw>) -> Option<&str> {
    match err {
        SdkError::ServiceError(e) => e.err().code(),
        _ => None,
    }
}

/// 404 of any kind (NoSuchKey, NotFound for HEAD) but not a missing bucket.
pub fn is_not_found<E: ProvideErrorMetadata>(err: &SdkError<E, Raw>) -> bool {
    matches!(err, SdkError::ServiceError(_))
        && status(err) == Some(404)
        && code(err) != Some("NoSuchBucket")
}

/// A conditional request whose condition did not hold (412), or lost a race (409).
pub fn is_precondition<E: ProvideErrorMetadata>(err: &SdkError<E, Raw>) -> bool {
    matches!(err, SdkError::ServiceError(_))
        && (status(err) == Some(412)
            || code(err) == Some("PreconditionFailed")
            || code(err) == Some("ConditionalRequestConflict"))
}

impl S3Errors {
    pub fn new(
        bucket: String,
        endpoint: Option<String>,
        secret: Option<String>,
        token: Option<String>,
    ) -> Self {
        S3Errors {
            bucket,
            endpoint,
            secrets: secret
                .into_iter()
                .chain(token)
                .filter(|s| !s.is_empty())
                .collect(),
        }
    }

    fn redact(&self, text: String) -> String {
        self.secrets
            .iter()
            .fold(text, |t, s| t.replace(s.as_str(), "<redacted>"))
    }

    fn server(&self) -> String {
        self.endpoint
            .clone()
            .unwrap_or_else(|| "the AWS S3 endpoint".to_string())
    }

    /// Maps a failed request of operation `op` (on object `key`).
    pub fn map<E>(&self, op: &str, key: Option<&str>, err: SdkError<E, Raw>) -> PersistError
    where
        E: ProvideErrorMetadata + std::error::Error + Send + Sync + 'static,
    {
        let what = match key {
            Some(k) => format!("s3 {op} of {k:?} in bucket {:?}", self.bucket),
            None => format!("s3 {op} (bucket {:?})", self.bucket),
        };
        let detail = DisplayErrorContext(&err).to_string();
        let (code, message) = match &err {
            SdkError::TimeoutError(_) => (
                ErrorCode::Timeout,
                format!("{what}: no answer from {} in time", self.server()),
            ),
            SdkError::DispatchFailure(d) if d.is_timeout() => (
                ErrorCode::Timeout,
                format!("{what}: {} timed out: {detail}", self.server()),
            ),
            SdkError::DispatchFailure(_) if detail.contains("credentials") => (
                ErrorCode::Permission,
                format!(
                    "{what}: no AWS credentials: pass \"credentials\" in the store config or \
                     set AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY ({detail})"
                ),
            ),
            SdkError::DispatchFailure(_) => (
                ErrorCode::Connection,
                format!("{what}: cannot reach {}: {detail}", self.server()),
            ),
            SdkError::ServiceError(_) => {
                let s3_code = code(&err).unwrap_or("");
                let status = status(&err).unwrap_or(0);
                match (s3_code, status) {
                    _ if s3_code == "NoSuchBucket" || (key.is_none() && status == 404) => (
                        ErrorCode::InvalidConfig,
                        format!(
                            "s3 adapter: bucket {:?} does not exist at {}: create it first \
                             (or fix \"bucket\"/\"endpoint\")",
                            self.bucket,
                            self.server()
                        ),
                    ),
                    ("SignatureDoesNotMatch", _) => (
                        ErrorCode::Permission,
                        format!(
                            "{what}: the server rejected the request signature: \
                             \"credentials.secretAccessKey\" does not match the access key id \
                             (SignatureDoesNotMatch)"
                        ),
                    ),
                    ("InvalidAccessKeyId", _) => (
                        ErrorCode::Permission,
                        format!(
                            "{what}: the access key id is unknown to the server: check \
                             \"credentials.accessKeyId\" (InvalidAccessKeyId)"
                        ),
                    ),
                    ("ExpiredToken" | "InvalidToken" | "TokenRefreshRequired", _) => (
                        ErrorCode::Permission,
                        format!(
                            "{what}: the session token is expired or invalid: refresh \
                             \"credentials.sessionToken\" ({s3_code})"
                        ),
                    ),
                    ("AccessDenied" | "AllAccessDisabled", _) | (_, 403) => (
                        ErrorCode::Permission,
                        format!(
                            "{what}: access denied: the credentials need s3:GetObject, \
                             s3:PutObject, s3:DeleteObject and s3:ListBucket on bucket {:?}{}",
                            self.bucket,
                            if s3_code.is_empty() {
                                String::new()
                            } else {
                                format!(" ({s3_code})")
                            }
                        ),
                    ),
                    ("EntityTooLarge" | "MetadataTooLarge" | "KeyTooLongError", _) => (
                        ErrorCode::InvalidArgument,
                        format!("{what}: S3 refused it: {s3_code}"),
                    ),
                    ("SlowDown" | "ServiceUnavailable" | "InternalError", _) | (_, 500..=599) => (
                        ErrorCode::Adapter,
                        format!(
                            "{what}: the server kept failing after retries (HTTP {status} {s3_code})"
                        ),
                    ),
                    _ => (
                        ErrorCode::Adapter,
                        format!("{what}: HTTP {status} {s3_code}: {detail}"),
                    ),
                }
            }
            _ => (ErrorCode::Adapter, format!("{what}: {detail}")),
        };
        PersistError::new(code, self.redact(message))
    }

    /// A body that failed mid-way.
    pub fn stream(&self, op: &str, key: &str, err: &dyn std::error::Error) -> PersistError {
        PersistError::new(
            ErrorCode::Connection,
            self.redact(format!(
                "s3 {op} of {key:?}: the response body broke off: {err}"
            )),
        )
    }
}
