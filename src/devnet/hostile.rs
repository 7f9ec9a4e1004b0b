//! Misbehaving buckets for the devnet: the storage side of the adversaries that attack
//! agreement rather than the Gauntlet. Each wraps a miner's real bucket as one reader sees it,
//! so two nodes reading the same URL can be answered differently, as a hostile server can.
//! Only payload objects are attacked; the alternate payload a miner prepared sits beside the
//! real one under `{key}.alt`.

use std::collections::HashSet;
use std::fmt;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use bytes::Bytes;
use futures::stream::{BoxStream, StreamExt};
use object_store::path::Path;
use object_store::{
    CopyOptions, GetOptions, GetResult, GetResultPayload, ListResult, MultipartUpload, ObjectMeta, ObjectStore,
    ObjectStoreExt, PutMultipartOptions, PutOptions, PutPayload, PutResult, Result,
};

/// What a bucket does to its readers.
#[derive(Debug, Clone)]
pub enum Attack {
    /// After a payload's first read, replaces it with the alternate (`late-overwrite`,
    /// `late-garbage`): readers after the first see a new object, written after the window.
    Overwrite,
    /// Readers with an odd uid get the alternate payload under the original's metadata.
    Equivocate,
    /// Readers with an odd uid are refused.
    Selective,
    /// Readers with an odd uid are answered only after `delay` (past their timeout).
    Slow { delay: Duration },
    /// Deletes a payload right after its first read.
    Vanish,
    /// Nobody's fault: this reader cannot reach the bucket in the window `window` holds when
    /// it reads (read at each request: the reader's store is made once and kept, often before
    /// the test picks the window).
    Unreachable { window: Arc<AtomicU64> },
}

/// Payloads a hostile bucket has served once already, shared by all its readers.
pub type Served = Arc<Mutex<HashSet<Path>>>;

/// One reader's view of a hostile bucket.
pub struct Hostile {
    pub inner: Arc<dyn ObjectStore>,
    pub attack: Attack,
    /// The reading node's uid.
    pub reader: u16,
    /// Payloads read once already (shared by every reader of the bucket).
    pub read: Served,
}

impl fmt::Debug for Hostile {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Hostile({:?}, reader {})", self.attack, self.reader)
    }
}

impl fmt::Display for Hostile {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(self, f)
    }
}

fn is_payload(p: &Path) -> bool {
    p.as_ref().contains("/payloads/") && p.as_ref().ends_with(".frp")
}

fn alternate(p: &Path) -> Path {
    Path::from(format!("{}.alt", p.as_ref()))
}

fn refused(why: &str) -> object_store::Error {
    object_store::Error::Generic { store: "devnet", source: why.to_string().into() }
}

/// A whole-object answer built from bytes read beforehand.
/// `bytes` as a server answers: the part a bounded range asks for (an honest S3 server honours
/// ranges; the lie is in which bytes, not in how they are cut), else the whole object.
fn answer(meta: ObjectMeta, bytes: Bytes, asked: &GetOptions) -> GetResult {
    let bytes = match &asked.range {
        Some(object_store::GetRange::Bounded(r)) if r.end <= bytes.len() as u64 => {
            bytes.slice(r.start as usize..r.end as usize)
        }
        _ => bytes,
    };
    let range = 0..bytes.len() as u64;
    GetResult {
        payload: GetResultPayload::Stream(futures::stream::once(async move { Ok(bytes) }).boxed()),
        meta: ObjectMeta { size: range.end, ..meta },
        range,
        attributes: Default::default(),
        extensions: Default::default(),
    }
}

impl Hostile {
    /// Whether this read is the payload's first (and marks it read).
    fn first_read(&self, p: &Path) -> bool {
        self.read.lock().unwrap_or_else(|e| e.into_inner()).insert(p.clone())
    }

    async fn read_whole(&self, p: &Path) -> Result<(ObjectMeta, Bytes)> {
        let r = self.inner.get_opts(p, GetOptions::default()).await?;
        let meta = r.meta.clone();
        Ok((meta, r.bytes().await?))
    }
}

#[async_trait]
impl ObjectStore for Hostile {
    async fn put_opts(&self, location: &Path, payload: PutPayload, opts: PutOptions) -> Result<PutResult> {
        self.inner.put_opts(location, payload, opts).await
    }

    async fn put_multipart_opts(&self, location: &Path, opts: PutMultipartOptions) -> Result<Box<dyn MultipartUpload>> {
        self.inner.put_multipart_opts(location, opts).await
    }

    async fn get_opts(&self, location: &Path, options: GetOptions) -> Result<GetResult> {
        if !is_payload(location) || options.head {
            return self.inner.get_opts(location, options).await;
        }
        let odd = self.reader % 2 == 1;
        match &self.attack {
            Attack::Unreachable { window }
                if location.as_ref().contains(&format!("/payloads/{:012}/", window.load(Ordering::Relaxed))) =>
            {
                Err(refused("connection reset (a flaky link, nobody's fault)"))
            }
            Attack::Unreachable { .. } => self.inner.get_opts(location, options).await,
            Attack::Selective if odd => Err(refused("connection refused for this reader")),
            Attack::Slow { delay } if odd => {
                tokio::time::sleep(*delay).await;
                self.inner.get_opts(location, options).await
            }
            Attack::Equivocate if odd => {
                let (meta, _) = self.read_whole(location).await?;
                let (_, other) = self.read_whole(&alternate(location)).await?;
                Ok(answer(meta, other, &options))
            }
            Attack::Overwrite | Attack::Vanish => {
                let (meta, bytes) = self.read_whole(location).await?;
                if self.first_read(location) {
                    if matches!(self.attack, Attack::Vanish) {
                        self.inner.delete(location).await?;
                    } else {
                        let (_, other) = self.read_whole(&alternate(location)).await?;
                        self.inner.put(location, other.into()).await?;
                    }
                }
                Ok(answer(meta, bytes, &options))
            }
            Attack::Selective | Attack::Slow { .. } | Attack::Equivocate => {
                self.inner.get_opts(location, options).await
            }
        }
    }

    fn delete_stream(&self, locations: BoxStream<'static, Result<Path>>) -> BoxStream<'static, Result<Path>> {
        self.inner.delete_stream(locations)
    }

    fn list(&self, prefix: Option<&Path>) -> BoxStream<'static, Result<ObjectMeta>> {
        self.inner.list(prefix)
    }

    async fn list_with_delimiter(&self, prefix: Option<&Path>) -> Result<ListResult> {
        self.inner.list_with_delimiter(prefix).await
    }

    async fn copy_opts(&self, from: &Path, to: &Path, options: CopyOptions) -> Result<()> {
        self.inner.copy_opts(from, to, options).await
    }
}
