//! The origins the real clients reach through GuardNest: plain HTTP and HTTPS on loopback,
//! serving a page and its parts, the 100 MB download, and checking the uploads.

use super::*;

/// What the origins serve and saw.
pub(super) struct Site {
    pub(super) plain: SocketAddr,
    pub(super) tls: SocketAddr,
    /// The data every download sends and every upload is checked against.
    pub(super) data: Bytes,
    /// "scheme path" of every request served.
    pub(super) seen: Mutex<Vec<String>>,
    /// The page served at `/probe`.
    pub(super) probe: Mutex<Option<String>>,
}

impl Site {
    pub(super) fn saw(&self, what: &str) -> bool {
        self.seen.lock().iter().any(|s| s == what)
    }
}

/// Starts a plain-HTTP and an HTTPS origin on loopback (on the current runtime).
pub(super) async fn origins(data: Bytes) -> Arc<Site> {
    let plain = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let tls = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let site = Arc::new(Site {
        plain: plain.local_addr().unwrap(),
        tls: tls.local_addr().unwrap(),
        data,
        seen: Mutex::default(),
        probe: Mutex::default(),
    });
    let s = site.clone();
    tokio::spawn(async move {
        while let Ok((stream, _)) = plain.accept().await {
            tokio::spawn(serve(stream, s.clone(), "http"));
        }
    });
    let acceptor = tls_acceptor();
    let s = site.clone();
    tokio::spawn(async move {
        while let Ok((stream, _)) = tls.accept().await {
            let (acceptor, s) = (acceptor.clone(), s.clone());
            tokio::spawn(async move {
                if let Ok(Ok(stream)) = tokio::time::timeout(WAIT, acceptor.accept(stream)).await {
                    serve(stream, s, "https").await;
                }
            });
        }
    });
    site
}

/// A self-signed certificate for localhost and 127.0.0.1, made now.
pub(super) fn tls_acceptor() -> tokio_rustls::TlsAcceptor {
    use tokio_rustls::rustls;
    let key = rcgen::KeyPair::generate().unwrap();
    let params = rcgen::CertificateParams::new(vec!["localhost".to_string(), "127.0.0.1".to_string()]).unwrap();
    let cert = params.self_signed(&key).unwrap();
    let key = rustls::pki_types::PrivateKeyDer::Pkcs8(key.serialize_der().into());
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let mut config = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_no_client_auth()
        .with_single_cert(vec![cert.der().clone()], key)
        .unwrap();
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    tokio_rustls::TlsAcceptor::from(Arc::new(config))
}

pub(super) type Body = BoxBody<Bytes, Infallible>;

pub(super) async fn serve<S: AsyncRead + AsyncWrite + Unpin + Send + 'static>(
    stream: S,
    site: Arc<Site>,
    scheme: &'static str,
) {
    let service = hyper::service::service_fn(move |req| {
        let site = site.clone();
        async move { Ok::<_, Infallible>(handle(req, &site, scheme).await) }
    });
    let _ = hyper::server::conn::http1::Builder::new()
        .serve_connection(hyper_util::rt::TokioIo::new(stream), service)
        .with_upgrades()
        .await;
}

pub(super) fn full(content_type: &str, body: impl Into<Bytes>) -> Response<Body> {
    let mut resp = Response::new(Full::new(body.into()).boxed());
    resp.headers_mut().insert("content-type", content_type.parse().unwrap());
    resp.headers_mut().insert("cache-control", "no-store".parse().unwrap());
    resp
}

pub(super) async fn handle(req: Request<Incoming>, site: &Site, scheme: &str) -> Response<Body> {
    site.seen.lock().push(format!("{scheme} {}", req.uri().path()));
    match req.uri().path() {
        "/" => full("text/html; charset=utf-8", page(site)),
        "/probe" => full("text/html; charset=utf-8", site.probe.lock().clone().unwrap_or_default()),
        "/app.js" => full("text/javascript", "results.https_js = location.protocol;\n"),
        "/plain.js" => full("text/javascript", "results.http_js = 'loaded';\n"),
        "/img.svg" => full(
            "image/svg+xml",
            "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"4\" height=\"4\"><rect width=\"4\" height=\"4\"/></svg>",
        ),
        "/ws" => websocket(req),
        "/upload" => {
            let (mut n, mut crc) = (0u64, crc32fast::Hasher::new());
            let mut body = req.into_body();
            while let Some(frame) = body.frame().await {
                let Ok(frame) = frame else { return full("text/plain", "upload broken\n") };
                if let Some(data) = frame.data_ref() {
                    n += data.len() as u64;
                    crc.update(data);
                }
            }
            full("text/plain", format!("{n} {}\n", crc.finalize()))
        }
        "/download" => Response::new(Chunks { data: site.data.clone(), at: 0 }.boxed()),
        _ => {
            let mut resp = full("text/plain", "not here\n");
            *resp.status_mut() = StatusCode::NOT_FOUND;
            resp
        }
    }
}

/// The test page: its own script, a script and an image over plain HTTP (loopback origins
/// are not mixed content), a script from the listed name, and two WebSockets.
pub(super) fn page(site: &Site) -> String {
    let (tls, plain) = (site.tls.port(), site.plain.port());
    format!(
        r#"<!doctype html>
<html><head><meta charset="utf-8"><title>GuardNest real clients</title>
<script>window.results = {{}};</script>
<script src="/app.js"></script>
<script src="http://127.0.0.1:{plain}/plain.js"></script>
<script src="https://{LISTED}/listed.js" onload="results.listed = 'loaded'" onerror="results.listed = 'failed'"></script>
</head><body>
<img src="http://localhost:{plain}/img.svg" onload="results.http_img = 'loaded'" onerror="results.http_img = 'failed'">
<script>
function echo(url, key) {{
  try {{
    const ws = new WebSocket(url);
    ws.onopen = () => ws.send(key + ' ping');
    ws.onmessage = (e) => {{ results[key] = e.data; ws.close(); }};
    ws.onerror = () => {{ if (!(key in results)) results[key] = 'error'; }};
  }} catch (e) {{ results[key] = 'exception: ' + e; }}
}}
echo('wss://localhost:{tls}/ws', 'wss');
echo('ws://127.0.0.1:{plain}/ws', 'ws');
</script>
</body></html>
"#
    )
}

/// The download: `data` in 256 KiB chunks, with no length announced (chunked).
pub(super) struct Chunks {
    pub(super) data: Bytes,
    pub(super) at: usize,
}

impl hyper::body::Body for Chunks {
    type Data = Bytes;
    type Error = Infallible;

    fn poll_frame(mut self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<Option<Result<Frame<Bytes>, Infallible>>> {
        if self.at >= self.data.len() {
            return Poll::Ready(None);
        }
        let end = (self.at + 256 * 1024).min(self.data.len());
        let chunk = self.data.slice(self.at..end);
        self.at = end;
        Poll::Ready(Some(Ok(Frame::data(chunk))))
    }
}

/// `len crc` of `data`, as the origin and the clients print it.
pub(super) fn fingerprint(data: &[u8]) -> String {
    format!("{} {}", data.len(), crc32fast::hash(data))
}

/// Deterministic bytes that no compression or dedup would flatter.
pub(super) fn test_data(len: usize) -> Bytes {
    let mut out = Vec::with_capacity(len + 8);
    let mut x: u64 = 0x9E37_79B9_7F4A_7C15;
    while out.len() < len {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        out.extend_from_slice(&x.to_le_bytes());
    }
    out.truncate(len);
    out.into()
}
