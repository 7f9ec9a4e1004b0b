//! Object storage over `object_store`: the local filesystem (the embedded default) or any
//! S3-compatible endpoint, chosen by URL.
//!
//! Every operation is bounded by a timeout; S3 requests are retried with exponential backoff by
//! the client; downloads take size and `LastModified` from the GET response itself, check a
//! size cap before reading the body, and again while streaming. Credentials come from the environment
//! (`AWS_ACCESS_KEY_ID`, `AWS_SECRET_ACCESS_KEY`, `AWS_SESSION_TOKEN`, `AWS_REGION`,
//! `AWS_ENDPOINT_URL`) and never appear in a location, log line or error.

use std::ops::Range;
use std::path::Path as FsPath;
use std::sync::Arc;
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use futures::{StreamExt, TryStreamExt};
use object_store::aws::AmazonS3Builder;
use object_store::local::LocalFileSystem;
use object_store::path::Path;
use object_store::{
    BackoffConfig, ClientOptions, ObjectMeta, ObjectStore, ObjectStoreExt, PutPayload, RetryConfig, WriteMultipart,
};
use tokio::io::AsyncReadExt;

pub use crate::location::{Location, LocationError};

use crate::config::StorageConfig;

/// Parts of this size are uploaded concurrently by [`Store::put_file`].
const PART_SIZE: usize = 8 << 20;

/// Limits applied to every operation of a store.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct StorageLimits {
    /// Bound on one operation, retries included.
    pub timeout: Duration,
    /// Bound on connecting (S3 only).
    pub connect_timeout: Duration,
    pub max_retries: u32,
    pub retry_backoff: Duration,
    /// Download cap for [`Store::get`] when the caller has no tighter one.
    pub max_object_bytes: u64,
}

impl From<&StorageConfig> for StorageLimits {
    fn from(c: &StorageConfig) -> Self {
        StorageLimits {
            timeout: Duration::from_secs(c.timeout_secs),
            connect_timeout: Duration::from_secs(c.connect_timeout_secs),
            max_retries: c.max_retries,
            retry_backoff: Duration::from_millis(c.retry_backoff_ms),
            max_object_bytes: c.max_object_bytes,
        }
    }
}

/// An S3 key pair given explicitly (e.g. a peer's committed read key) instead of taken from the
/// environment. `Debug` never shows the secret.
#[derive(Clone, PartialEq, Eq)]
pub struct S3Credentials {
    pub access_key_id: String,
    pub secret_access_key: String,
}

impl std::fmt::Debug for S3Credentials {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("S3Credentials")
            .field("access_key_id", &self.access_key_id)
            .field("secret_access_key", &"<redacted>")
            .finish()
    }
}

/// What HEAD and LIST report about an object.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ObjectInfo {
    /// Key relative to the store's root.
    pub key: String,
    pub size: u64,
    /// `LastModified`, ms since the Unix epoch (S3 has second resolution).
    pub last_modified_ms: u64,
    pub etag: Option<String>,
}

/// A storage failure, naming the operation and key.
#[derive(Debug, thiserror::Error)]
pub enum StorageError {
    #[error(transparent)]
    Location(#[from] LocationError),
    #[error("invalid object key `{key}`: {reason}")]
    InvalidKey { key: String, reason: String },
    #[error("{op} {key}: not found in {store}")]
    NotFound { op: &'static str, key: String, store: String },
    #[error("{key} in {store} is {size} bytes, above the {cap}-byte cap; not downloaded")]
    TooLarge { key: String, store: String, size: u64, cap: u64 },
    #[error("{key} in {store} is {size} bytes, expected exactly {expected}; not downloaded")]
    WrongSize { key: String, store: String, size: u64, expected: u64 },
    #[error("{op} {key} in {store}: range {start}..{end} is outside the object")]
    BadRange { op: &'static str, key: String, store: String, start: u64, end: u64 },
    #[error("{op} {key} in {store}: timed out after {secs} s")]
    Timeout { op: &'static str, key: String, store: String, secs: u64 },
    #[error("{op} {key} in {store}: {error}")]
    Backend { op: &'static str, key: String, store: String, error: Box<object_store::Error> },
    #[error("{op} {key}: local file: {error}")]
    Io { op: &'static str, key: String, error: std::io::Error },
    #[error("cannot open store {store}: {reason}")]
    Open { store: String, reason: String },
}

impl StorageError {
    /// Whether trying again later can help: timeouts, and backend errors other than a refusal
    /// (network failures, throttling, server errors; object_store has already retried those a
    /// few times). Missing objects, bad keys, wrong sizes and denied access are final.
    pub fn is_transient(&self) -> bool {
        match self {
            StorageError::Timeout { .. } => true,
            StorageError::Backend { error, .. } => !matches!(
                **error,
                object_store::Error::NotFound { .. }
                    | object_store::Error::PermissionDenied { .. }
                    | object_store::Error::Unauthenticated { .. }
                    | object_store::Error::InvalidPath { .. }
                    | object_store::Error::NotSupported { .. }
            ),
            StorageError::Io { error, .. } => matches!(
                error.kind(),
                std::io::ErrorKind::Interrupted | std::io::ErrorKind::TimedOut | std::io::ErrorKind::WouldBlock
            ),
            _ => false,
        }
    }

    /// Whether the error means the object does not exist.
    pub fn is_not_found(&self) -> bool {
        matches!(self, StorageError::NotFound { .. })
    }
}

/// A handle on one bucket (or directory), optionally narrowed to a key prefix.
#[derive(Clone)]
pub struct Store {
    inner: Arc<dyn ObjectStore>,
    prefix: Option<Path>,
    shown: String,
    limits: StorageLimits,
}

impl std::fmt::Debug for Store {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Store").field("location", &self.shown).finish()
    }
}

impl Store {
    /// Opens the store a URL names, with limits from the config.
    pub fn open(url: &str, config: &StorageConfig) -> Result<Store, StorageError> {
        Self::open_location(&Location::parse(url)?, StorageLimits::from(config))
    }

    /// Opens a parsed location; S3 credentials come from the environment.
    pub fn open_location(location: &Location, limits: StorageLimits) -> Result<Store, StorageError> {
        Self::open_with(location, limits, None)
    }

    /// Opens a parsed location with explicit S3 credentials (ignored for local directories).
    pub fn open_with(
        location: &Location,
        limits: StorageLimits,
        credentials: Option<&S3Credentials>,
    ) -> Result<Store, StorageError> {
        Self::open_inner(location, limits, credentials, false)
    }

    /// Opens a location without any credentials: requests are unsigned, and neither the
    /// environment's keys nor a cloud metadata service are consulted (a peer's bucket at an
    /// endpoint the operator did not configure must get none of the node's secrets).
    pub fn open_anonymous(location: &Location, limits: StorageLimits) -> Result<Store, StorageError> {
        Self::open_inner(location, limits, None, true)
    }

    /// The same store seen through `wrap` (a test harness's misbehaving server).
    pub fn wrapped(&self, wrap: impl FnOnce(Arc<dyn ObjectStore>) -> Arc<dyn ObjectStore>) -> Store {
        Store { inner: wrap(self.inner.clone()), ..self.clone() }
    }

    fn open_inner(
        location: &Location,
        limits: StorageLimits,
        credentials: Option<&S3Credentials>,
        anonymous: bool,
    ) -> Result<Store, StorageError> {
        let shown = location.to_string();
        let open_err = |reason: String| StorageError::Open { store: shown.clone(), reason };
        let (inner, prefix): (Arc<dyn ObjectStore>, String) = match location {
            Location::Local { root } => {
                // A peer's folder is only read: nothing is created where a peer points.
                if !anonymous {
                    std::fs::create_dir_all(root).map_err(|e| open_err(e.to_string()))?;
                }
                let fs = LocalFileSystem::new_with_prefix(root).map_err(|e| open_err(e.to_string()))?;
                (Arc::new(fs), String::new())
            }
            Location::S3 { bucket, prefix, endpoint, region } => {
                let client = ClientOptions::new()
                    .with_timeout(limits.timeout)
                    .with_connect_timeout(limits.connect_timeout)
                    .with_allow_http(endpoint.as_deref().is_some_and(|e| e.starts_with("http://")));
                let retry = RetryConfig {
                    backoff: BackoffConfig {
                        init_backoff: limits.retry_backoff,
                        max_backoff: limits.retry_backoff.saturating_mul(32),
                        base: 2.0,
                    },
                    max_retries: limits.max_retries as usize,
                    retry_timeout: limits.timeout,
                };
                let builder = if anonymous {
                    AmazonS3Builder::new().with_skip_signature(true)
                } else {
                    // Without keys the S3 client asks a cloud metadata service for some, which
                    // only AWS itself has: at any other endpoint say what is missing instead.
                    let env = |k: &str| std::env::var_os(k).is_some_and(|v| !v.is_empty());
                    let custom_endpoint = endpoint.is_some() || env("AWS_ENDPOINT_URL") || env("AWS_ENDPOINT");
                    if credentials.is_none() && custom_endpoint && !env("AWS_ACCESS_KEY_ID") {
                        return Err(open_err(
                            "no S3 credentials: set AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY (this endpoint is \
                             not AWS, so no instance role can supply them)"
                                .into(),
                        ));
                    }
                    AmazonS3Builder::from_env()
                };
                let mut b = builder.with_client_options(client).with_retry(retry).with_bucket_name(bucket);
                if let Some(e) = endpoint {
                    b = b.with_endpoint(e);
                }
                if let Some(r) = region {
                    b = b.with_region(r);
                }
                if let Some(c) = credentials {
                    b = b.with_access_key_id(&c.access_key_id).with_secret_access_key(&c.secret_access_key);
                }
                let s3 = b.build().map_err(|e| open_err(e.to_string()))?;
                (Arc::new(s3), prefix.clone())
            }
        };
        let prefix = if prefix.is_empty() {
            None
        } else {
            Some(Path::parse(&prefix).map_err(|e| open_err(format!("bad prefix: {e}")))?)
        };
        Ok(Store { inner, prefix, shown, limits })
    }

    /// The same bucket, narrowed to `sub` (keys are then relative to it).
    pub fn scoped(&self, sub: &str) -> Result<Store, StorageError> {
        let sub_path = parse_key(sub)?;
        let prefix = match &self.prefix {
            Some(p) => p.parts().chain(sub_path.parts()).collect(),
            None => sub_path,
        };
        Ok(Store {
            inner: self.inner.clone(),
            shown: format!("{}/{}", self.shown.trim_end_matches('/'), sub),
            prefix: Some(prefix),
            limits: self.limits,
        })
    }

    /// Where this store is, for messages.
    pub fn location(&self) -> &str {
        &self.shown
    }

    /// The limits in force.
    pub fn limits(&self) -> StorageLimits {
        self.limits
    }

    fn path(&self, key: &str) -> Result<Path, StorageError> {
        let rel = parse_key(key)?;
        Ok(match &self.prefix {
            Some(p) => p.parts().chain(rel.parts()).collect(),
            None => rel,
        })
    }

    fn info(&self, meta: ObjectMeta) -> ObjectInfo {
        let full = meta.location.as_ref();
        let key = match &self.prefix {
            Some(p) => full.strip_prefix(p.as_ref()).map(|k| k.trim_start_matches('/')).unwrap_or(full),
            None => full,
        };
        ObjectInfo {
            key: key.to_string(),
            size: meta.size,
            last_modified_ms: u64::try_from(meta.last_modified.timestamp_millis()).unwrap_or(0),
            etag: meta.e_tag,
        }
    }

    fn backend(&self, op: &'static str, key: &str, e: object_store::Error) -> StorageError {
        match e {
            object_store::Error::NotFound { .. } => {
                StorageError::NotFound { op, key: key.to_string(), store: self.shown.clone() }
            }
            source => {
                StorageError::Backend { op, key: key.to_string(), store: self.shown.clone(), error: Box::new(source) }
            }
        }
    }

    async fn bounded<T>(
        &self,
        op: &'static str,
        key: &str,
        fut: impl Future<Output = Result<T, StorageError>>,
    ) -> Result<T, StorageError> {
        tokio::time::timeout(self.limits.timeout, fut).await.map_err(|_| StorageError::Timeout {
            op,
            key: key.to_string(),
            store: self.shown.clone(),
            secs: self.limits.timeout.as_secs(),
        })?
    }

    /// Writes an object atomically (readers see the old object or the whole new one).
    pub async fn put(&self, key: &str, bytes: Bytes) -> Result<(), StorageError> {
        let path = self.path(key)?;
        self.bounded("put", key, async {
            self.inner
                .put(&path, PutPayload::from_bytes(bytes))
                .await
                .map(|_| ())
                .map_err(|e| self.backend("put", key, e))
        })
        .await
    }

    /// Uploads a local file, in concurrent parts when it is large. The object appears only when
    /// the upload completes. Not bounded by the per-operation timeout (it scales with size);
    /// each request still is.
    pub async fn put_file(&self, key: &str, file: &FsPath) -> Result<u64, StorageError> {
        let path = self.path(key)?;
        let io = |error| StorageError::Io { op: "put", key: key.to_string(), error };
        let mut f = tokio::fs::File::open(file).await.map_err(io)?;
        let len = f.metadata().await.map_err(io)?.len();
        if len <= PART_SIZE as u64 {
            let mut buf = Vec::with_capacity(len as usize);
            f.read_to_end(&mut buf).await.map_err(io)?;
            self.put(key, Bytes::from(buf)).await?;
            return Ok(len);
        }
        let upload = self.inner.put_multipart(&path).await.map_err(|e| self.backend("put", key, e))?;
        let mut writer = WriteMultipart::new_with_chunk_size(upload, PART_SIZE);
        let mut buf = vec![0u8; PART_SIZE];
        loop {
            let n = match f.read(&mut buf).await {
                Ok(0) => break,
                Ok(n) => n,
                Err(e) => {
                    // Best effort: the failed upload must not leave parts billed forever.
                    let _ = writer.abort().await;
                    return Err(io(e));
                }
            };
            writer.wait_for_capacity(4).await.map_err(|e| self.backend("put", key, e))?;
            writer.write(&buf[..n]);
        }
        writer.finish().await.map_err(|e| self.backend("put", key, e))?;
        Ok(len)
    }

    /// Size and `LastModified` of an object.
    pub async fn head(&self, key: &str) -> Result<ObjectInfo, StorageError> {
        let path = self.path(key)?;
        self.bounded("head", key, async {
            let meta = self.inner.head(&path).await.map_err(|e| self.backend("head", key, e))?;
            Ok(self.info(meta))
        })
        .await
    }

    /// Downloads a whole object of at most `cap` bytes (the store's default cap when `None`).
    pub async fn get(&self, key: &str, cap: Option<u64>) -> Result<Bytes, StorageError> {
        let cap = cap.unwrap_or(self.limits.max_object_bytes).min(self.limits.max_object_bytes);
        self.download(key, cap, None).await.map(|(_, bytes)| bytes)
    }

    /// Downloads an object that must be exactly `size` bytes: the GET response's own size
    /// decides, and an object of any other size is refused before its body is read.
    pub async fn get_exact(&self, key: &str, size: u64) -> Result<(ObjectInfo, Bytes), StorageError> {
        self.download(key, size, Some(size)).await
    }

    /// One GET whose own response gives the size and `LastModified`, then the size rules, then
    /// the body streamed up to `cap`. The metadata and the bytes come from the same response, so
    /// a node judges the bytes it read: an object overwritten between a HEAD and a later GET can
    /// no longer pair the old object's time with the new object's bytes.
    async fn download(&self, key: &str, cap: u64, exact: Option<u64>) -> Result<(ObjectInfo, Bytes), StorageError> {
        let path = self.path(key)?;
        let too_large = |size| StorageError::TooLarge { key: key.to_string(), store: self.shown.clone(), size, cap };
        let wrong_size = |size| StorageError::WrongSize {
            key: key.to_string(),
            store: self.shown.clone(),
            size,
            expected: exact.unwrap_or(cap),
        };
        self.bounded("get", key, async {
            let res = self.inner.get(&path).await.map_err(|e| self.backend("get", key, e))?;
            let info = self.info(res.meta.clone());
            if exact.is_some_and(|e| info.size != e) {
                return Err(wrong_size(info.size));
            }
            if info.size > cap {
                return Err(too_large(info.size));
            }
            let mut stream = res.into_stream();
            let mut buf = BytesMut::with_capacity(info.size as usize);
            while let Some(chunk) = stream.next().await {
                let chunk = chunk.map_err(|e| self.backend("get", key, e))?;
                if (buf.len() + chunk.len()) as u64 > cap {
                    return Err(too_large((buf.len() + chunk.len()) as u64));
                }
                buf.extend_from_slice(&chunk);
            }
            // A body that disagrees with its own response's size is refused too.
            if buf.len() as u64 != info.size {
                return Err(wrong_size(buf.len() as u64));
            }
            Ok((info, buf.freeze()))
        })
        .await
    }

    /// Downloads `range` of an object; the range must lie inside it.
    pub async fn get_range(&self, key: &str, range: Range<u64>) -> Result<Bytes, StorageError> {
        let path = self.path(key)?;
        let bad = || StorageError::BadRange {
            op: "get_range",
            key: key.to_string(),
            store: self.shown.clone(),
            start: range.start,
            end: range.end,
        };
        if range.start >= range.end || range.end - range.start > self.limits.max_object_bytes {
            return Err(bad());
        }
        self.bounded("get_range", key, async {
            let bytes =
                self.inner.get_range(&path, range.clone()).await.map_err(|e| self.backend("get_range", key, e))?;
            // A range past the end of a truncated object comes back short on some backends.
            if bytes.len() as u64 != range.end - range.start {
                return Err(bad());
            }
            Ok(bytes)
        })
        .await
    }

    /// Every object under `prefix` (relative to the store), sorted by key.
    pub async fn list(&self, prefix: &str) -> Result<Vec<ObjectInfo>, StorageError> {
        let path = if prefix.is_empty() { self.prefix.clone() } else { Some(self.path(prefix)?) };
        self.bounded("list", prefix, async {
            let metas: Vec<ObjectMeta> =
                self.inner.list(path.as_ref()).try_collect().await.map_err(|e| self.backend("list", prefix, e))?;
            let mut out: Vec<ObjectInfo> = metas.into_iter().map(|m| self.info(m)).collect();
            out.sort_by(|a, b| a.key.cmp(&b.key));
            Ok(out)
        })
        .await
    }

    /// Deletes an object; deleting a missing object is not an error.
    pub async fn delete(&self, key: &str) -> Result<(), StorageError> {
        let path = self.path(key)?;
        self.bounded("delete", key, async {
            match self.inner.delete(&path).await {
                Ok(()) | Err(object_store::Error::NotFound { .. }) => Ok(()),
                Err(e) => Err(self.backend("delete", key, e)),
            }
        })
        .await
    }
}

/// Keys are `/`-separated; empty, `.` and `..` segments are refused so a key can never escape
/// its prefix.
fn parse_key(key: &str) -> Result<Path, StorageError> {
    let invalid = |reason: &str| StorageError::InvalidKey { key: key.to_string(), reason: reason.to_string() };
    if key.is_empty() {
        return Err(invalid("empty"));
    }
    if key.split('/').any(|s| s.is_empty() || s == "." || s == "..") {
        return Err(invalid("empty, `.` or `..` segment"));
    }
    Path::parse(key).map_err(|e| invalid(&e.to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_cannot_escape() {
        for bad in ["", "/a", "a/", "a//b", "../x", "a/./b", "a/../b"] {
            assert!(parse_key(bad).is_err(), "{bad}");
        }
        assert!(parse_key("v1/3/abcd/payloads/12/4.frp").is_ok());
    }

    #[test]
    fn a_bucket_outside_aws_without_keys_says_so() {
        if std::env::var_os("AWS_ACCESS_KEY_ID").is_some() {
            return; // keys in this environment: the refusal does not apply
        }
        let at = Location::parse("s3://b/p?endpoint=http://127.0.0.1:9").expect("location");
        let limits = StorageLimits::from(&crate::SubnetConfig::default().storage);
        let err = Store::open_location(&at, limits).expect_err("no keys").to_string();
        assert!(err.contains("no S3 credentials") && err.contains("AWS_ACCESS_KEY_ID"), "{err}");
        // Given keys, or reading anonymously, it opens.
        let keys = S3Credentials { access_key_id: "k".into(), secret_access_key: "s".into() };
        assert!(Store::open_with(&at, limits, Some(&keys)).is_ok());
        assert!(Store::open_anonymous(&at, limits).is_ok());
    }
}
