//! Cached redirects answered straight off the socket, before hyper sees the connection.
//!
//! Following a cached link is nearly all of a shortener's traffic, and through hyper each
//! cost about 6,600 instructions, a third of them parsing the head into a `Request` (a
//! header map, a URI) and encoding a `Response` that are thrown away at once
//! (`docs/service-memory.md`, "Cached redirects off the socket"). Here a new connection
//! starts by answering those requests itself: httparse reads the head, and the answer is
//! written from the cached link, with the same status line and headers hyper would send.
//!
//! The first request it does not answer (another method or path, a link that must be read
//! from the database, HTTP/1.0, a body, `Connection`, `Upgrade` or `Expect`, a head that
//! does not parse or runs past `MAX_HEAD`) is handed to hyper with everything read after
//! it, and hyper serves the connection from then on.

use std::{
    cell::RefCell,
    io,
    mem::MaybeUninit,
    pin::Pin,
    task::{Context, Poll, ready},
    time::{SystemTime, UNIX_EPOCH},
};

use axum::http::StatusCode;
use bytes::{Buf, BytesMut};
use tokio::{io::AsyncWrite, net::TcpStream};
use tokio_util::io::poll_read_buf;

use super::prefixed::Prefixed;
use crate::{cache::CachedLink, http::Front};

/// A head longer than this is left to hyper, whose limits and errors apply to it.
const MAX_HEAD: usize = 8 * 1024;
/// Headers a request may have to be answered here; hyper takes up to 100.
const MAX_HEADERS: usize = 32;
/// Room made in the input before each read: a head from a browser fits.
const READ_SIZE: usize = 2 * 1024;

/// What a connection does once its cached redirects are answered.
#[derive(Debug, PartialEq)]
pub enum Next {
    /// The client closed it, or it was idle when shutdown began.
    Close,
    /// A request must be answered by hyper: [`CachedRedirects::into_hyper`].
    Hyper,
}

/// A connection's first stage: answers its cached redirects.
pub struct CachedRedirects {
    stream: TcpStream,
    front: Front,
    /// Read and not yet answered.
    input: BytesMut,
    /// Answers not yet written, from `written` on.
    output: Vec<u8>,
    written: usize,
    /// A request in `input` is hyper's.
    handing_over: bool,
    /// Shutdown began: write what is answered, then close.
    stopping: bool,
}

impl CachedRedirects {
    pub fn new(stream: TcpStream, front: Front) -> CachedRedirects {
        CachedRedirects {
            stream,
            front,
            input: BytesMut::new(),
            output: Vec::new(),
            written: 0,
            handing_over: false,
            stopping: false,
        }
    }

    /// Shutdown began: the connection closes once the answers begun are written, or goes to
    /// hyper (which is told to stop too) if a request is partly read.
    pub fn stop(&mut self) {
        self.stopping = true;
    }

    /// Answers requests until the client closes, shutdown, or a request for hyper.
    pub fn poll_answer(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<Next>> {
        loop {
            while self.written < self.output.len() {
                let written = ready!(
                    Pin::new(&mut self.stream).poll_write(cx, &self.output[self.written..])
                )?;
                if written == 0 {
                    return Poll::Ready(Err(io::ErrorKind::WriteZero.into()));
                }
                self.written += written;
            }
            self.output.clear();
            self.written = 0;
            if self.handing_over || (self.stopping && !self.input.is_empty()) {
                return Poll::Ready(Ok(Next::Hyper));
            }
            if self.stopping {
                return Poll::Ready(Ok(Next::Close));
            }
            self.answer_read();
            if !self.output.is_empty() || self.handing_over {
                continue;
            }
            if self.input.capacity() - self.input.len() < READ_SIZE / 2 {
                self.input.reserve(READ_SIZE);
            }
            if ready!(poll_read_buf(
                Pin::new(&mut self.stream),
                cx,
                &mut self.input
            ))? == 0
            {
                return Poll::Ready(Ok(Next::Close));
            }
        }
    }

    /// Answers the complete requests read, up to the first one for hyper.
    fn answer_read(&mut self) {
        let CachedRedirects {
            front,
            input,
            output,
            handing_over,
            ..
        } = self;
        while !input.is_empty() {
            let mut headers =
                [const { MaybeUninit::<httparse::Header<'_>>::uninit() }; MAX_HEADERS];
            let mut request = httparse::Request::new(&mut []);
            let length = match request.parse_with_uninit_headers(input, &mut headers) {
                Ok(httparse::Status::Complete(length)) => length,
                Ok(httparse::Status::Partial) if input.len() < MAX_HEAD => return,
                _ => {
                    *handing_over = true;
                    return;
                }
            };
            let answered = plain_get(&request).and_then(|path| {
                front.follow_cached(path, |link, status| write_redirect(output, link, status))
            });
            if answered.is_none() {
                *handing_over = true;
                return;
            }
            input.advance(length);
        }
    }

    /// The connection for hyper: the socket, with what was read and not answered.
    pub fn into_hyper(self) -> (Prefixed, Front) {
        (Prefixed::new(self.input.freeze(), self.stream), self.front)
    }
}

/// The path of a request this stage may answer: a `GET` in HTTP/1.1 without a body or
/// anything that changes the connection. The query, if any, is not part of the path.
fn plain_get<'a>(request: &httparse::Request<'_, 'a>) -> Option<&'a str> {
    if request.method != Some("GET") || request.version != Some(1) {
        return None;
    }
    let left_to_hyper = |header: &httparse::Header<'_>| {
        let name = header.name;
        ["content-length", "transfer-encoding", "expect", "upgrade"]
            .iter()
            .any(|special| name.eq_ignore_ascii_case(special))
            || (name.eq_ignore_ascii_case("connection")
                && !header.value.eq_ignore_ascii_case(b"keep-alive"))
    };
    if request.headers.iter().any(left_to_hyper) {
        return None;
    }
    let target = request.path?;
    let path_end = target.bytes().position(|byte| byte == b'?');
    Some(path_end.map_or(target, |end| &target[..end]))
}

/// Appends the redirect to `link` as hyper writes it: status line, `location`,
/// `content-length: 0` and `date`.
fn write_redirect(output: &mut Vec<u8>, link: &CachedLink, status: StatusCode) {
    output.extend_from_slice(b"HTTP/1.1 ");
    output.extend_from_slice(status.as_str().as_bytes());
    output.push(b' ');
    output.extend_from_slice(status.canonical_reason().unwrap_or("").as_bytes());
    output.extend_from_slice(b"\r\nlocation: ");
    output.extend_from_slice(link.location.as_bytes());
    output.extend_from_slice(b"\r\ncontent-length: 0\r\ndate: ");
    write_date(output);
    output.extend_from_slice(b"\r\n\r\n");
}

/// An IMF-fixdate is 29 bytes.
const DATE_LEN: usize = 29;

thread_local! {
    /// The `date` header's value and the second it was made for.
    static DATE: RefCell<(u64, [u8; DATE_LEN])> = const { RefCell::new((0, [0; DATE_LEN])) };
}

/// Appends the current time as an HTTP date, formatted once a second per thread.
fn write_date(output: &mut Vec<u8>) {
    let now = SystemTime::now();
    let second = now
        .duration_since(UNIX_EPOCH)
        .map_or(0, |since| since.as_secs());
    DATE.with_borrow_mut(|(made_for, date)| {
        if *made_for != second {
            date.copy_from_slice(httpdate::fmt_http_date(now).as_bytes());
            *made_for = second;
        }
        output.extend_from_slice(date);
    });
}

#[cfg(test)]
mod tests {
    use std::{future::poll_fn, sync::Arc, time::Duration};

    use axum::http::HeaderValue;
    use clap::Parser;
    use tokio::{
        io::{AsyncReadExt, AsyncWriteExt},
        net::TcpListener,
    };

    use super::*;
    use crate::{Config, http::app, state::AppState};

    fn parsed<'h, 'b>(
        head: &'b [u8],
        headers: &'h mut [httparse::Header<'b>],
    ) -> httparse::Request<'h, 'b> {
        let mut request = httparse::Request::new(headers);
        assert!(request.parse(head).unwrap().is_complete());
        request
    }

    #[test]
    fn only_plain_gets_in_http_1_1_are_answered_here() {
        let cases: [(&[u8], Option<&str>); 10] = [
            (b"GET /abc HTTP/1.1\r\nhost: x\r\n\r\n", Some("/abc")),
            (b"GET /abc?utm=1 HTTP/1.1\r\n\r\n", Some("/abc")),
            (
                b"GET /abc HTTP/1.1\r\nConnection: Keep-Alive\r\n\r\n",
                Some("/abc"),
            ),
            (b"GET /abc HTTP/1.0\r\n\r\n", None),
            (b"HEAD /abc HTTP/1.1\r\n\r\n", None),
            (b"POST /abc HTTP/1.1\r\n\r\n", None),
            (b"GET /abc HTTP/1.1\r\nContent-Length: 0\r\n\r\n", None),
            (
                b"GET /abc HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n",
                None,
            ),
            (b"GET /abc HTTP/1.1\r\nconnection: close\r\n\r\n", None),
            (b"GET /abc HTTP/1.1\r\nUpgrade: websocket\r\n\r\n", None),
        ];
        for (head, expected) in cases {
            let mut headers = [httparse::EMPTY_HEADER; 4];
            let request = parsed(head, &mut headers);
            assert_eq!(
                plain_get(&request),
                expected,
                "{}",
                String::from_utf8_lossy(head)
            );
        }
    }

    #[test]
    fn the_date_is_an_imf_fixdate_of_now() {
        let mut output = Vec::new();
        write_date(&mut output);
        assert_eq!(output.len(), DATE_LEN);
        let date = httpdate::parse_http_date(std::str::from_utf8(&output).unwrap()).unwrap();
        let off = SystemTime::now().duration_since(date).unwrap();
        assert!(off.as_secs() < 2, "{off:?}");
    }

    /// A first stage over a real socket, with `known1` cached, and the client's end.
    struct Connected {
        cached: CachedRedirects,
        client: TcpStream,
        state: Arc<AppState>,
        _dir: tempfile::TempDir,
    }

    async fn connected() -> Connected {
        let dir = tempfile::tempdir().unwrap();
        let database = format!("sqlite:{}", dir.path().join("links.db").display());
        let config = Config::parse_from(["shortener", "--database-url", &database]);
        let state = AppState::build(&config).await.unwrap();
        state.cache.insert(Arc::new(CachedLink::new(
            "known1".into(),
            HeaderValue::from_static("https://example.com/one"),
            None,
            &state.clicks,
        )));
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let client = TcpStream::connect(listener.local_addr().unwrap())
            .await
            .unwrap();
        let (server, _) = listener.accept().await.unwrap();
        Connected {
            cached: CachedRedirects::new(server, app(state.clone())),
            client,
            state,
            _dir: dir,
        }
    }

    const REDIRECT: &str = "HTTP/1.1 302 Found\r\nlocation: https://example.com/one\r\n\
                            content-length: 0\r\ndate: ";

    /// Reads `count` redirects as this stage writes them.
    async fn read_redirects(client: &mut TcpStream, count: usize) {
        let one = REDIRECT.len() + DATE_LEN + 4;
        let mut answers = vec![0; one * count];
        client.read_exact(&mut answers).await.unwrap();
        for answer in answers.chunks(one) {
            let answer = std::str::from_utf8(answer).unwrap();
            assert!(answer.starts_with(REDIRECT), "{answer:?}");
            assert!(answer.ends_with(" GMT\r\n\r\n"), "{answer:?}");
        }
    }

    #[tokio::test]
    async fn answers_cached_redirects_then_hands_hyper_the_first_other_request_and_the_rest() {
        let Connected {
            mut cached,
            mut client,
            state,
            _dir,
        } = connected().await;
        let for_hyper = "GET /missing HTTP/1.1\r\n\r\nGET /known1 HTTP/1.1\r\n\r\n";
        let requests = format!(
            "GET /known1 HTTP/1.1\r\nhost: t\r\n\r\nGET /known1?from=mail HTTP/1.1\r\n\r\n{for_hyper}"
        );
        client.write_all(requests.as_bytes()).await.unwrap();

        let next = poll_fn(|cx| cached.poll_answer(cx)).await.unwrap();
        assert_eq!(next, Next::Hyper);
        read_redirects(&mut client, 2).await;
        assert_eq!(state.pending_clicks("known1"), 2);
        let answered = state
            .metrics
            .encode()
            .lines()
            .find(|line| line.starts_with("shortener_http_requests_total{route=\"redirect\""))
            .map(str::to_owned);
        assert_eq!(
            answered.as_deref(),
            Some("shortener_http_requests_total{route=\"redirect\",status=\"302\"} 2")
        );

        let (mut handed, _front) = cached.into_hyper();
        client.shutdown().await.unwrap();
        let mut rest = String::new();
        handed.read_to_string(&mut rest).await.unwrap();
        assert_eq!(rest, for_hyper);
    }

    /// Asserts that `cached` answers nothing yet: it has half a head.
    async fn waits_for_the_rest(cached: &mut CachedRedirects) {
        let waiting = tokio::time::timeout(
            Duration::from_millis(100),
            poll_fn(|cx| cached.poll_answer(cx)),
        )
        .await;
        assert!(waiting.is_err(), "answered half a head: {waiting:?}");
    }

    #[tokio::test]
    async fn a_head_in_pieces_is_answered_once_whole_and_a_closed_client_ends_the_stage() {
        let Connected {
            mut cached,
            mut client,
            ..
        } = connected().await;
        client.write_all(b"GET /kno").await.unwrap();
        waits_for_the_rest(&mut cached).await;

        client.write_all(b"wn1 HTTP/1.1\r\n\r\n").await.unwrap();
        client.shutdown().await.unwrap();
        let next = poll_fn(|cx| cached.poll_answer(cx)).await.unwrap();
        assert_eq!(next, Next::Close);
        read_redirects(&mut client, 1).await;
    }

    #[tokio::test]
    async fn a_stop_closes_an_idle_connection_and_leaves_a_request_in_progress_to_hyper() {
        let idle = connected().await;
        let mut cached = idle.cached;
        cached.stop();
        let next = poll_fn(|cx| cached.poll_answer(cx)).await.unwrap();
        assert_eq!(next, Next::Close);

        let Connected {
            mut cached,
            mut client,
            ..
        } = connected().await;
        client
            .write_all(b"GET /known1 HTTP/1.1\r\nho")
            .await
            .unwrap();
        waits_for_the_rest(&mut cached).await;
        cached.stop();
        let next = poll_fn(|cx| cached.poll_answer(cx)).await.unwrap();
        assert_eq!(next, Next::Hyper);
    }

    #[tokio::test]
    async fn a_head_past_the_limit_goes_to_hyper() {
        let Connected {
            mut cached,
            mut client,
            ..
        } = connected().await;
        let long = format!(
            "GET /known1 HTTP/1.1\r\nx-padding: {}",
            "a".repeat(MAX_HEAD)
        );
        client.write_all(long.as_bytes()).await.unwrap();
        let next = poll_fn(|cx| cached.poll_answer(cx)).await.unwrap();
        assert_eq!(next, Next::Hyper);
    }
}
