//! Where a store lives, parsed from a URL or path.

use std::fmt;
use std::path::PathBuf;

use url::Url;

/// A parsed storage location.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Location {
    /// A directory on the local filesystem (relative paths resolve against the working directory).
    Local { root: PathBuf },
    /// An S3-compatible bucket, with an optional key prefix inside it.
    S3 {
        bucket: String,
        prefix: String,
        /// Custom endpoint (R2, SeaweedFS, MinIO); AWS when absent.
        endpoint: Option<String>,
        region: Option<String>,
    },
}

/// A URL that names no supported store.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("`{url}` is not a storage location: {reason}")]
pub struct LocationError {
    pub url: String,
    pub reason: String,
}

impl Location {
    /// A URL that [`parse`](Self::parse) reads back as this location.
    pub fn to_url(&self) -> String {
        match self {
            Location::Local { root } => root.display().to_string(),
            Location::S3 { bucket, prefix, endpoint, region } => {
                let mut url = format!("s3://{bucket}/{prefix}");
                let mut sep = '?';
                for (k, v) in [("endpoint", endpoint), ("region", region)] {
                    if let Some(v) = v {
                        url.push_str(&format!("{sep}{k}={v}"));
                        sep = '&';
                    }
                }
                url
            }
        }
    }

    /// The same location with a relative local path made absolute against the working
    /// directory, so other processes can open it (what a node commits on chain).
    pub fn absolute(&self) -> Location {
        match self {
            Location::Local { root } if root.is_relative() => match std::env::current_dir() {
                Ok(cwd) => Location::Local { root: cwd.join(root) },
                Err(_) => self.clone(),
            },
            other => other.clone(),
        }
    }

    /// Parses a path, `file:///abs/dir`, `s3://bucket/prefix?endpoint=URL&region=R` or
    /// `r2://ACCOUNT_ID/bucket/prefix` (Cloudflare R2, region `auto`).
    pub fn parse(s: &str) -> Result<Location, LocationError> {
        let err = |reason: &str| LocationError { url: s.to_string(), reason: reason.to_string() };
        if s.trim().is_empty() {
            return Err(err("empty"));
        }
        if !s.contains("://") {
            return Ok(Location::Local { root: PathBuf::from(s) });
        }
        let url = Url::parse(s).map_err(|e| err(&e.to_string()))?;
        match url.scheme() {
            "file" => {
                let root = url.to_file_path().map_err(|_| err("file:// URLs need an absolute path"))?;
                Ok(Location::Local { root })
            }
            "s3" => {
                let bucket = url.host_str().filter(|b| !b.is_empty()).ok_or_else(|| err("no bucket name"))?;
                let mut endpoint = None;
                let mut region = None;
                for (k, v) in url.query_pairs() {
                    match k.as_ref() {
                        "endpoint" => endpoint = Some(v.into_owned()),
                        "region" => region = Some(v.into_owned()),
                        other => return Err(err(&format!("unknown query parameter `{other}` (endpoint, region)"))),
                    }
                }
                if let Some(e) = &endpoint {
                    Url::parse(e).map_err(|_| err("endpoint must be an http:// or https:// URL"))?;
                }
                Ok(Location::S3 { bucket: bucket.to_string(), prefix: clean_prefix(url.path()), endpoint, region })
            }
            "r2" => {
                let account = url.host_str().filter(|a| !a.is_empty()).ok_or_else(|| err("no account id"))?;
                let path = clean_prefix(url.path());
                let (bucket, prefix) = path.split_once('/').unwrap_or((path.as_str(), ""));
                if bucket.is_empty() {
                    return Err(err("r2:// URLs are r2://ACCOUNT_ID/BUCKET[/PREFIX]"));
                }
                Ok(Location::S3 {
                    bucket: bucket.to_string(),
                    prefix: prefix.to_string(),
                    endpoint: Some(format!("https://{account}.r2.cloudflarestorage.com")),
                    region: Some("auto".to_string()),
                })
            }
            other => Err(err(&format!("unsupported scheme `{other}` (use a path, file://, s3:// or r2://)"))),
        }
    }
}

fn clean_prefix(path: &str) -> String {
    path.trim_matches('/').to_string()
}

impl fmt::Display for Location {
    /// Shows where the store is without any credential (none are ever part of a location).
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Location::Local { root } => write!(f, "{}", root.display()),
            Location::S3 { bucket, prefix, endpoint, .. } => {
                write!(f, "s3://{bucket}/{prefix}")?;
                if let Some(e) = endpoint {
                    write!(f, " at {e}")?;
                }
                Ok(())
            }
        }
    }
}

/// Which bucket URLs a node follows when a peer publishes them on chain (docs/protocol.md §13).
/// A peer's commitment is not the operator's word: by default a node reads only S3-compatible
/// buckets over https (or AWS itself) at public addresses.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct PeerUrlPolicy {
    /// Local directories (a devnet or localnet on one machine, where every bucket is a folder).
    pub allow_local: bool,
    /// Plain http, `localhost` and loopback or private addresses (a localnet's S3 server).
    pub allow_private: bool,
}

/// Why a node does not follow a peer's bucket URL.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PeerUrlRefusal {
    #[error("a local path: peers' buckets must be S3-compatible URLs (allowed only on a devnet or localnet)")]
    LocalPath,
    #[error("endpoint `{0}` is not a URL")]
    BadEndpoint(String),
    #[error("endpoint `{0}` is not https")]
    NotHttps(String),
    #[error("endpoint host `{0}` is link-local (cloud metadata services live there)")]
    LinkLocal(String),
    #[error("endpoint host `{0}` is a loopback, private or unspecified address")]
    Private(String),
}

impl PeerUrlPolicy {
    /// Whether a node follows `location` for a peer, and why not.
    pub fn check(&self, location: &Location) -> Result<(), PeerUrlRefusal> {
        let endpoint = match location {
            Location::Local { .. } if self.allow_local => return Ok(()),
            Location::Local { .. } => return Err(PeerUrlRefusal::LocalPath),
            Location::S3 { endpoint: None, .. } => return Ok(()),
            Location::S3 { endpoint: Some(e), .. } => e,
        };
        let url = Url::parse(endpoint).map_err(|_| PeerUrlRefusal::BadEndpoint(endpoint.clone()))?;
        let host = url.host().ok_or_else(|| PeerUrlRefusal::BadEndpoint(endpoint.clone()))?;
        let (link_local, private) = match &host {
            url::Host::Ipv4(ip) => {
                (ip.is_link_local(), ip.is_loopback() || ip.is_private() || ip.is_unspecified() || ip.is_broadcast())
            }
            url::Host::Ipv6(ip) => {
                let seg = ip.segments()[0];
                let mapped = ip.to_ipv4_mapped();
                (
                    (seg & 0xffc0) == 0xfe80 || mapped.is_some_and(|m| m.is_link_local()),
                    ip.is_loopback()
                        || ip.is_unspecified()
                        || (seg & 0xfe00) == 0xfc00
                        || mapped.is_some_and(|m| m.is_loopback() || m.is_private()),
                )
            }
            url::Host::Domain(d) => (false, d.eq_ignore_ascii_case("localhost") || d.ends_with(".localhost")),
        };
        if link_local {
            return Err(PeerUrlRefusal::LinkLocal(host.to_string()));
        }
        if private && !self.allow_private {
            return Err(PeerUrlRefusal::Private(host.to_string()));
        }
        if url.scheme() != "https" && !self.allow_private {
            return Err(PeerUrlRefusal::NotHttps(endpoint.clone()));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_supported_forms() {
        assert_eq!(
            Location::parse("ferrum-data/store").expect("path"),
            Location::Local { root: PathBuf::from("ferrum-data/store") }
        );
        assert_eq!(
            Location::parse("file:///var/lib/ferrum").expect("file"),
            Location::Local { root: PathBuf::from("/var/lib/ferrum") }
        );
        assert_eq!(
            Location::parse("s3://grads/ferrum/v1?endpoint=http://127.0.0.1:9000&region=us-east-1").expect("s3"),
            Location::S3 {
                bucket: "grads".into(),
                prefix: "ferrum/v1".into(),
                endpoint: Some("http://127.0.0.1:9000".into()),
                region: Some("us-east-1".into()),
            }
        );
        assert_eq!(
            Location::parse("r2://0123abcd/grads/run1").expect("r2"),
            Location::S3 {
                bucket: "grads".into(),
                prefix: "run1".into(),
                endpoint: Some("https://0123abcd.r2.cloudflarestorage.com".into()),
                region: Some("auto".into()),
            }
        );
    }

    #[test]
    fn to_url_reads_back_as_the_same_location() {
        for url in [
            "/abs/store",
            "s3://grads/ferrum/v1?endpoint=http://127.0.0.1:9000&region=us-east-1",
            "r2://0123abcd/grads/run1",
            "s3://b/p",
        ] {
            let l = Location::parse(url).expect("parse");
            assert_eq!(Location::parse(&l.to_url()).expect("reparse"), l, "{url}");
        }
        let rel = Location::parse("rel/dir").expect("rel").absolute();
        assert!(matches!(rel, Location::Local { ref root } if root.is_absolute() && root.ends_with("rel/dir")));
    }

    #[test]
    fn rejects_unsupported_forms() {
        for bad in
            ["", "gs://bucket", "s3://", "s3://b?token=x", "r2://acct", "file://relative/x", "s3://b?endpoint=::"]
        {
            let e = Location::parse(bad).expect_err(bad);
            assert!(e.to_string().contains("is not a storage location"), "{e}");
        }
    }

    #[test]
    fn peer_urls_follow_the_policy() {
        let strict = PeerUrlPolicy::default();
        let local = PeerUrlPolicy { allow_local: true, allow_private: true };
        let check = |p: &PeerUrlPolicy, url: &str| p.check(&Location::parse(url).expect("parses"));
        assert_eq!(check(&strict, "/srv/bucket"), Err(PeerUrlRefusal::LocalPath));
        assert_eq!(check(&strict, "file:///etc"), Err(PeerUrlRefusal::LocalPath));
        assert_eq!(check(&local, "/srv/bucket"), Ok(()));
        assert_eq!(check(&strict, "s3://b/p"), Ok(()), "AWS itself");
        assert_eq!(check(&strict, "s3://b/p?endpoint=https://acct.r2.cloudflarestorage.com"), Ok(()));
        assert!(check(&strict, "r2://acct/b/p").is_ok());
        assert!(matches!(check(&strict, "s3://b/p?endpoint=http://s3.example.com"), Err(PeerUrlRefusal::NotHttps(_))));
        for private in [
            "https://127.0.0.1:8333",
            "https://10.1.2.3",
            "https://192.168.0.9",
            "https://172.16.5.5",
            "https://localhost:9000",
            "https://[::1]:9000",
            "https://[fd00::1]",
            "https://0.0.0.0",
        ] {
            let url = format!("s3://b/p?endpoint={private}");
            assert!(matches!(check(&strict, &url), Err(PeerUrlRefusal::Private(_))), "{private}");
            assert_eq!(check(&local, &url), Ok(()), "{private} with the flag");
        }
        for metadata in ["http://169.254.169.254", "https://[fe80::1]", "https://[::ffff:169.254.169.254]"] {
            let url = format!("s3://b/p?endpoint={metadata}");
            assert!(matches!(check(&local, &url), Err(PeerUrlRefusal::LinkLocal(_))), "{metadata} even with the flag");
        }
    }
}
