//! A miner's own S3 server that attacks agreement: an S3 subset (PUT, GET, HEAD, DELETE,
//! DeleteObjects, ListObjectsV2; path-style, no authentication) over plain HTTP/1.1 on 127.0.0.1, which serves
//! each payload (`….frp` under `payloads/`) as written to its owner (signed reads) and to its
//! first other reader only and, from then on, bytes of the same length written "now": the
//! late-garbage attack, with readers in different processes. Nothing here is Ferrum's code: it is the adversary's server.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::{SystemTime, UNIX_EPOCH};

use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::{TcpListener, TcpStream};

#[derive(Default)]
struct Objects {
    /// key (bucket/…) → (bytes, written at, ms)
    map: BTreeMap<String, (Vec<u8>, u64)>,
    /// Payloads read once already.
    served: std::collections::HashSet<String>,
    /// Payload GETs answered with the replacement.
    replaced: u64,
}

/// The running server: its endpoint and how many times it lied.
pub struct HostileS3 {
    pub endpoint: String,
    objects: Arc<Mutex<Objects>>,
    _runtime: tokio::runtime::Runtime,
}

impl HostileS3 {
    pub fn start() -> HostileS3 {
        let runtime = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().expect("rt");
        let listener = runtime.block_on(TcpListener::bind("127.0.0.1:0")).expect("bind");
        let endpoint = format!("http://127.0.0.1:{}", listener.local_addr().expect("addr").port());
        let objects = Arc::new(Mutex::new(Objects::default()));
        let shared = objects.clone();
        runtime.spawn(async move {
            while let Ok((socket, _)) = listener.accept().await {
                let objects = shared.clone();
                tokio::spawn(async move {
                    let _ = serve(socket, objects).await;
                });
            }
        });
        HostileS3 { endpoint, objects, _runtime: runtime }
    }

    /// Payload reads answered with the late replacement.
    pub fn replaced(&self) -> u64 {
        self.objects.lock().expect("lock").replaced
    }
}

fn now_ms() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_millis() as u64)
}

/// Days since 1970-01-01 → (year, month, day) (Howard Hinnant's civil_from_days).
fn civil(days: i64) -> (i64, u32, u32) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    (yoe + era * 400 + i64::from(m <= 2), m, d)
}

fn http_date(ms: u64) -> String {
    let secs = (ms / 1000) as i64;
    let (y, m, d) = civil(secs.div_euclid(86_400));
    let t = secs.rem_euclid(86_400);
    let weekday = ["Thu", "Fri", "Sat", "Sun", "Mon", "Tue", "Wed"][secs.div_euclid(86_400).rem_euclid(7) as usize];
    let month = ["Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"][m as usize - 1];
    format!("{weekday}, {d:02} {month} {y} {:02}:{:02}:{:02} GMT", t / 3600, t / 60 % 60, t % 60)
}

fn iso_date(ms: u64) -> String {
    let secs = (ms / 1000) as i64;
    let (y, m, d) = civil(secs.div_euclid(86_400));
    let t = secs.rem_euclid(86_400);
    format!("{y}-{m:02}-{d:02}T{:02}:{:02}:{:02}.000Z", t / 3600, t / 60 % 60, t % 60)
}

async fn serve(socket: TcpStream, objects: Arc<Mutex<Objects>>) -> std::io::Result<()> {
    let mut reader = BufReader::new(socket);
    loop {
        let mut line = String::new();
        if reader.read_line(&mut line).await? == 0 {
            return Ok(());
        }
        let mut parts = line.split_whitespace();
        let (method, target) = (parts.next().unwrap_or("").to_string(), parts.next().unwrap_or("/").to_string());
        let (mut length, mut signed) = (0usize, false);
        loop {
            let mut header = String::new();
            reader.read_line(&mut header).await?;
            let header = header.trim_end();
            if header.is_empty() {
                break;
            }
            if let Some((name, value)) = header.split_once(':') {
                if name.eq_ignore_ascii_case("content-length") {
                    length = value.trim().parse().unwrap_or(0);
                }
                signed |= name.eq_ignore_ascii_case("authorization");
            }
        }
        let mut body = vec![0u8; length];
        reader.read_exact(&mut body).await?;
        let (path, query) = target.split_once('?').unwrap_or((&target, ""));
        let key = path.trim_start_matches('/').to_string();
        let (status, headers, reply) = answer(&method, &key, query, body, signed, &objects);
        let mut head = format!("HTTP/1.1 {status}\r\nContent-Length: {}\r\n", reply.len());
        for (k, v) in headers {
            head.push_str(&format!("{k}: {v}\r\n"));
        }
        head.push_str("\r\n");
        let socket = reader.get_mut();
        socket.write_all(head.as_bytes()).await?;
        if method != "HEAD" {
            socket.write_all(&reply).await?;
        }
    }
}

fn answer(
    method: &str,
    key: &str,
    query: &str,
    body: Vec<u8>,
    signed: bool,
    objects: &Mutex<Objects>,
) -> (&'static str, Vec<(String, String)>, Vec<u8>) {
    let mut o = objects.lock().expect("lock");
    let meta = |bytes: &[u8], at: u64| {
        vec![
            ("ETag".to_string(), format!("\"{}\"", &blake3::hash(bytes).to_hex()[..32])),
            ("Last-Modified".to_string(), http_date(at)),
        ]
    };
    match method {
        "PUT" => {
            let headers = meta(&body, now_ms());
            o.map.insert(key.to_string(), (body, now_ms()));
            ("200 OK", headers, Vec::new())
        }
        "POST" if query.starts_with("delete") => {
            // DeleteObjects: <Delete><Object><Key>k</Key></Object>…</Delete>, keys relative to the bucket.
            let text = String::from_utf8_lossy(&body);
            let bucket = key.trim_end_matches('/');
            let mut xml = String::from("<?xml version=\"1.0\" encoding=\"UTF-8\"?><DeleteResult>");
            for k in text.split("<Key>").skip(1).filter_map(|r| r.split("</Key>").next()) {
                o.map.remove(&format!("{bucket}/{k}"));
                xml.push_str(&format!("<Deleted><Key>{k}</Key></Deleted>"));
            }
            xml.push_str("</DeleteResult>");
            ("200 OK", vec![("Content-Type".to_string(), "application/xml".to_string())], xml.into_bytes())
        }
        "DELETE" => {
            o.map.remove(key);
            ("204 No Content", Vec::new(), Vec::new())
        }
        "GET" if query.contains("list-type=2") => {
            let prefix = query
                .split('&')
                .find_map(|kv| kv.strip_prefix("prefix="))
                .map(|p| p.replace("%2F", "/"))
                .unwrap_or_default();
            let bucket = key.trim_end_matches('/');
            let full = format!("{bucket}/{prefix}");
            let mut xml = format!(
                "<?xml version=\"1.0\" encoding=\"UTF-8\"?><ListBucketResult><Name>{bucket}</Name><Prefix>{prefix}</Prefix><IsTruncated>false</IsTruncated>"
            );
            for (k, (bytes, at)) in o.map.range(full.clone()..).take_while(|(k, _)| k.starts_with(&full)) {
                let rel = &k[bucket.len() + 1..];
                xml.push_str(&format!(
                    "<Contents><Key>{rel}</Key><LastModified>{}</LastModified><ETag>\"{}\"</ETag><Size>{}</Size></Contents>",
                    iso_date(*at),
                    &blake3::hash(bytes).to_hex()[..32],
                    bytes.len()
                ));
            }
            xml.push_str("</ListBucketResult>");
            ("200 OK", vec![("Content-Type".to_string(), "application/xml".to_string())], xml.into_bytes())
        }
        "GET" | "HEAD" => {
            let payload = key.contains("/payloads/") && key.ends_with(".frp");
            let Some((bytes, at)) = o.map.get(key).cloned() else {
                let xml = "<?xml version=\"1.0\"?><Error><Code>NoSuchKey</Code><Message>no such key</Message></Error>";
                return ("404 Not Found", Vec::new(), xml.as_bytes().to_vec());
            };
            // The owner (signed reads) always sees its upload, so the attacker's own gather
            // never uses up the one honest read that splits the others.
            if payload && method == "GET" && !signed && !o.served.insert(key.to_string()) {
                // The first reader got the upload; everyone after gets other bytes "written" now.
                o.replaced += 1;
                let late: Vec<u8> =
                    bytes.iter().enumerate().map(|(i, b)| b ^ (i as u8).wrapping_mul(31) ^ 0x5a).collect();
                let at = now_ms();
                return ("200 OK", meta(&late, at), late);
            }
            ("200 OK", meta(&bytes, at), bytes)
        }
        _ => ("405 Method Not Allowed", Vec::new(), Vec::new()),
    }
}

/// The server speaks enough S3 for the object_store client a miner uses, and lies as described.
#[test]
fn the_hostile_server_serves_the_upload_once() {
    use ferrum_common::storage::{Location, S3Credentials, Store};
    let server = HostileS3::start();
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().expect("rt");
    rt.block_on(async {
        let at = Location::parse(&format!("s3://hostile/m?endpoint={}", server.endpoint)).expect("location");
        let keys = S3Credentials { access_key_id: "k".into(), secret_access_key: "s".into() };
        let own = Store::open_with(&at, crate::seaweed::limits(), Some(&keys)).expect("open");
        let reader = Store::open_anonymous(&at, crate::seaweed::limits()).expect("open");
        let key = "v1/payloads/000000000003/00004-x.frp";
        own.put(key, b"the upload".to_vec().into()).await.expect("put");
        own.put("probe", b"p".to_vec().into()).await.expect("put");
        for _ in 0..2 {
            assert_eq!(own.get(key, None).await.expect("owner's read").as_ref(), b"the upload", "the owner's reads");
        }
        assert_eq!(reader.get(key, None).await.expect("first read").as_ref(), b"the upload");
        let second = reader.get(key, None).await.expect("second read");
        assert_eq!(second.len(), 10);
        assert_ne!(second.as_ref(), b"the upload");
        assert_eq!(server.replaced(), 1);
        let listed = own.list("v1").await.expect("list");
        assert_eq!(listed.iter().map(|o| o.key.as_str()).collect::<Vec<_>>(), [key]);
        own.delete(key).await.expect("delete");
        assert!(reader.get(key, None).await.is_err());
        assert_eq!(reader.get("probe", None).await.expect("probe").as_ref(), b"p");
    });
}
