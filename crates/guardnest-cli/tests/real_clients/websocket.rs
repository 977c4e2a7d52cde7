//! WebSocket (RFC 6455): the handshake and an echo, enough for one text message each way.

use super::*;

pub(super) const WS_GUID: &str = "258EAFA5-E914-47DA-95CA-C5AB0DC85B11";

pub(super) fn ws_accept(key: &str) -> String {
    use base64::Engine as _;
    let digest = sha1_smol::Sha1::from(format!("{key}{WS_GUID}")).digest().bytes();
    base64::engine::general_purpose::STANDARD.encode(digest)
}

pub(super) fn websocket(req: Request<Incoming>) -> Response<Body> {
    let key = req.headers().get("sec-websocket-key").and_then(|k| k.to_str().ok()).map(str::to_string);
    let upgrade = req.headers().get("upgrade").is_some_and(|u| u.as_bytes().eq_ignore_ascii_case(b"websocket"));
    let (Some(key), true) = (key, upgrade) else {
        let mut resp = full("text/plain", "a WebSocket endpoint\n");
        *resp.status_mut() = StatusCode::BAD_REQUEST;
        return resp;
    };
    let on_upgrade = hyper::upgrade::on(req);
    tokio::spawn(async move {
        if let Ok(Ok(upgraded)) = tokio::time::timeout(WAIT, on_upgrade).await {
            ws_echo(hyper_util::rt::TokioIo::new(upgraded)).await;
        }
    });
    let mut resp = Response::new(Empty::new().boxed());
    *resp.status_mut() = StatusCode::SWITCHING_PROTOCOLS;
    let h = resp.headers_mut();
    h.insert("upgrade", "websocket".parse().unwrap());
    h.insert("connection", "Upgrade".parse().unwrap());
    h.insert("sec-websocket-accept", ws_accept(&key).parse().unwrap());
    resp
}

/// Echoes text and binary messages, answers pings, ends on close (at most 100 frames).
pub(super) async fn ws_echo<S: AsyncRead + AsyncWrite + Unpin>(mut s: S) {
    for _ in 0..100 {
        let Ok(Ok((opcode, payload))) = tokio::time::timeout(WAIT, read_frame(&mut s)).await else { return };
        let answer = match opcode {
            1 | 2 => frame(opcode, &payload, None),
            9 => frame(10, &payload, None),
            8 => {
                let _ = s.write_all(&frame(8, &payload, None)).await;
                return;
            }
            _ => continue,
        };
        if s.write_all(&answer).await.is_err() {
            return;
        }
    }
}

/// One frame: opcode and unmasked payload (messages here fit in one frame).
pub(super) async fn read_frame<S: AsyncRead + Unpin>(s: &mut S) -> std::io::Result<(u8, Vec<u8>)> {
    let mut head = [0u8; 2];
    s.read_exact(&mut head).await?;
    let mut len = u64::from(head[1] & 0x7f);
    if len == 126 {
        let mut b = [0u8; 2];
        s.read_exact(&mut b).await?;
        len = u64::from(u16::from_be_bytes(b));
    } else if len == 127 {
        let mut b = [0u8; 8];
        s.read_exact(&mut b).await?;
        len = u64::from_be_bytes(b);
    }
    if len > 1 << 20 {
        return Err(std::io::Error::other("frame too large for this test"));
    }
    let mut mask = [0u8; 4];
    if head[1] & 0x80 != 0 {
        s.read_exact(&mut mask).await?;
    }
    let mut payload = vec![0u8; len as usize];
    s.read_exact(&mut payload).await?;
    for (i, b) in payload.iter_mut().enumerate() {
        *b ^= mask[i % 4];
    }
    Ok((head[0] & 0x0f, payload))
}

/// A final frame; a client's is masked.
pub(super) fn frame(opcode: u8, payload: &[u8], mask: Option<[u8; 4]>) -> Vec<u8> {
    let mut out = vec![0x80 | opcode];
    let bit = if mask.is_some() { 0x80 } else { 0 };
    match payload.len() {
        n if n < 126 => out.push(bit | n as u8),
        n if n <= 0xffff => {
            out.push(bit | 126);
            out.extend_from_slice(&(n as u16).to_be_bytes());
        }
        n => {
            out.push(bit | 127);
            out.extend_from_slice(&(n as u64).to_be_bytes());
        }
    }
    let mask = mask.unwrap_or([0; 4]);
    if bit != 0 {
        out.extend_from_slice(&mask);
    }
    out.extend(payload.iter().enumerate().map(|(i, b)| b ^ mask[i % 4]));
    out
}
