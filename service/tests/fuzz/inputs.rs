//! What the fuzz sends: URL-like text from every part a URL can have, and
//! then some; code-like text; link requests as JSON and as anything else,
//! under any content type; and request paths.

use proptest::prelude::*;
use proptest::sample::select;
use serde_json::{Value, json};
use shortener::links::MAX_URL_BYTES;

use crate::MAX_BODY_BYTES;

/// Whitespace and invisible characters a pasted URL may carry at either end
/// (repeated entries weight the choice: mostly nothing).
const EDGES: [&str; 10] = [
    "", "", "", " ", "\t", "\n", "\r\n", "\u{0}", "\u{a0}", "\u{feff}",
];

/// Schemes in any case, allowed or not, or broken; `http` and `https` are
/// also picked on their own, more often.
const SCHEMES: [&str; 14] = [
    "http",
    "https",
    "HTTP",
    "hTtPs",
    "javascript",
    "data",
    "ftp",
    "file",
    "ws",
    "mailto",
    "",
    "http s",
    "ht\ttp",
    "h",
];

/// Wrong ways to end a scheme; `://` is picked on its own, more often.
const SEPARATORS: [&str; 6] = [":", ":/", ":///", "//", ":\\\\", ""];

/// User information, mostly none.
const USERINFO: [&str; 9] = [
    "",
    "",
    "",
    "user@",
    "user:pass@",
    "@",
    "a@b@",
    "%40@",
    "us er@",
];

/// Hosts that are unicode (IDNA), punycode, IP literals, or not hosts at all.
const HOSTS: [&str; 28] = [
    "münchen.de",
    "例え.テスト",
    "xn--mnchen-3ya.de",
    "xn--",
    "xn--a.com",
    "EXAMPLE.COM",
    "faß.de",
    "ＡＢＣ.com",
    "a\u{200b}b.com",
    "127.0.0.1",
    "0x7f.1",
    "256.1.1.1",
    "1.2.3",
    "[::1]",
    "[2001:db8::1]",
    "[::ffff:1.2.3.4]",
    "[fe80::1%25eth0]",
    "[",
    "[::1",
    "::1",
    "[v1.x]",
    "localhost",
    "a..b",
    ".",
    "",
    "%41.com",
    "ex%00ample.com",
    "ex ample.com",
];

/// Ports, mostly none, in range or not.
const PORTS: [&str; 11] = [
    "", "", "", ":", ":80", ":443", ":0", ":65535", ":65536", ":abc", ":-1",
];

/// Path segments that are dots, percent-encodings (broken ones too),
/// separators, unicode, or markup.
const SEGMENTS: [&str; 17] = [
    "/",
    "/..",
    "/.",
    "/%2e%2e",
    "/%zz",
    "/%",
    "/%00",
    "/%2F",
    "/ ",
    "/\\",
    "/é",
    "/\u{0}",
    "//",
    "/a b",
    "/<script>",
    "/\"'`",
    "/%E2%82%AC",
];

fn host() -> impl Strategy<Value = String> {
    prop_oneof![
        4 => "[a-z0-9-]{1,12}(\\.[a-z0-9-]{1,12}){0,3}",
        2 => select(&HOSTS[..]).prop_map(str::to_owned),
        1 => "\\PC{1,12}",
    ]
}

fn path() -> impl Strategy<Value = String> {
    let segment = prop_oneof![
        4 => "/[A-Za-z0-9._~-]{0,10}",
        2 => select(&SEGMENTS[..]).prop_map(str::to_owned),
        1 => "/\\PC{0,6}",
    ];
    prop::collection::vec(segment, 0..5).prop_map(|segments| segments.concat())
}

/// A URL put together from parts, each of which may be wrong.
fn assembled() -> impl Strategy<Value = String> {
    let origin = (
        select(&EDGES[..]),
        prop_oneof![3 => select(&["http", "https"][..]), 1 => select(&SCHEMES[..])],
        prop_oneof![3 => Just("://"), 1 => select(&SEPARATORS[..])],
        select(&USERINFO[..]),
        host(),
        select(&PORTS[..]),
    );
    let rest = (
        path(),
        prop::option::of("\\?[ -~]{0,20}|\\?\\PC{0,8}"),
        prop::option::of("#[ -~]{0,12}|#\\PC{0,6}"),
        select(&EDGES[..]),
    );
    (origin, rest).prop_map(
        |((lead, scheme, separator, userinfo, host, port), (path, query, fragment, trail))| {
            format!(
                "{lead}{scheme}{separator}{userinfo}{host}{port}{path}{}{}{trail}",
                query.unwrap_or_default(),
                fragment.unwrap_or_default()
            )
        },
    )
}

/// A URL padded to around the length limit with characters whose encoded
/// form is longer, so that some cross it only once normalized.
fn long() -> impl Strategy<Value = String> {
    let filler = select(&["a", "é", " ", "%20", "€", "\u{1F600}", "<"][..]);
    (assembled(), filler, MAX_URL_BYTES / 2..MAX_URL_BYTES + 64)
        .prop_map(|(url, filler, bytes)| format!("{url}{}", filler.repeat(bytes / filler.len())))
}

/// Anything a client might send as a URL.
pub fn url() -> impl Strategy<Value = String> {
    prop_oneof![
        1 => prop::collection::vec(any::<u8>(), 0..300)
            .prop_map(|bytes| String::from_utf8_lossy(&bytes).into_owned()),
        1 => "(?s).{0,300}",
        6 => assembled(),
        1 => long(),
    ]
}

/// Words the service keeps for its own paths (`links::RESERVED`).
pub const RESERVED: [&str; 12] = [
    "api", "admin", "debug", "health", "healthz", "readyz", "livez", "metrics", "static", "assets",
    "favicon", "robots",
];

/// A reserved word in mixed case, sometimes with something around it.
fn reserved() -> impl Strategy<Value = String> {
    (
        select(&RESERVED[..]),
        prop::collection::vec(any::<bool>(), 8),
        select(&["", "", "", "-", "_", "1", "s"][..]),
    )
        .prop_map(|(word, upper, extra)| {
            let word: String = word
                .chars()
                .zip(upper.iter().cycle())
                .map(|(c, up)| if *up { c.to_ascii_uppercase() } else { c })
                .collect();
            format!("{word}{extra}")
        })
}

/// Anything a client might choose as a code.
pub fn code() -> impl Strategy<Value = String> {
    prop_oneof![
        4 => "[A-Za-z0-9_-]{0,40}",
        2 => reserved(),
        1 => "[a-z]{2,4}|[a-z]{31,33}",
        1 => "\\PC{0,40}",
        // Lookalikes that ASCII case folding must not confuse: a Kelvin sign,
        // a long s, a dotted capital I.
        1 => select(&["\u{212a}ey", "ſtatic", "ADMİN", "ａpi"][..]).prop_map(str::to_owned),
    ]
}

/// Any JSON value, nested a little.
fn any_json() -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::from),
        any::<i64>().prop_map(Value::from),
        any::<f64>().prop_map(|f| json!(f)),
        "\\PC{0,20}".prop_map(Value::from),
    ];
    leaf.prop_recursive(3, 16, 4, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..4).prop_map(Value::from),
            prop::collection::btree_map("url|code|expires_at|[a-z]{1,6}", inner, 0..4)
                .prop_map(|map| Value::Object(map.into_iter().collect())),
        ]
    })
}

/// A link request: mostly the fields the API knows, with any values.
fn link_request() -> impl Strategy<Value = Value> {
    let url = prop_oneof![8 => url().prop_map(Value::from), 1 => any_json()];
    let code = prop::option::weighted(
        0.3,
        prop_oneof![6 => code().prop_map(Value::from), 1 => any_json()],
    );
    let expires_at = prop::option::weighted(
        0.2,
        prop_oneof![
            select(
                &[
                    "2999-01-01T00:00:00Z",
                    "2001-01-01T00:00:00Z",
                    "tomorrow",
                    ""
                ][..]
            )
            .prop_map(Value::from),
            any_json(),
        ],
    );
    let extra = prop::option::weighted(0.1, ("[a-z]{1,8}", any_json()));
    (prop::option::weighted(0.95, url), code, expires_at, extra).prop_map(
        |(url, code, expires_at, extra)| {
            let mut request = serde_json::Map::new();
            for (key, value) in [("url", url), ("code", code), ("expires_at", expires_at)] {
                if let Some(value) = value {
                    request.insert(key.to_owned(), value);
                }
            }
            if let Some((key, value)) = extra {
                request.insert(key, value);
            }
            Value::Object(request)
        },
    )
}

/// A request body: a link request, cut short or not; any JSON; any bytes;
/// or more than the body limit.
pub fn body() -> impl Strategy<Value = Vec<u8>> {
    prop_oneof![
        8 => (link_request(), prop::option::weighted(0.1, any::<prop::sample::Index>())).prop_map(
            |(request, cut)| {
                let mut bytes = request.to_string().into_bytes();
                if let Some(cut) = cut {
                    bytes.truncate(cut.index(bytes.len() + 1));
                }
                bytes
            }
        ),
        2 => any_json().prop_map(|value| value.to_string().into_bytes()),
        1 => prop::collection::vec(any::<u8>(), 0..200),
        1 => (MAX_BODY_BYTES..2 * MAX_BODY_BYTES).prop_map(|len| {
            format!("{{\"url\": \"https://example.com/{}\"}}", "a".repeat(len)).into_bytes()
        }),
    ]
}

/// A `Content-Type`, or none.
pub fn content_type() -> impl Strategy<Value = Option<String>> {
    prop_oneof![
        10 => Just(Some("application/json".to_owned())),
        3 => select(&[
            "application/json; charset=utf-8",
            "APPLICATION/JSON",
            "application/problem+json",
            "application/vnd.api+json",
            "text/json",
            "text/plain",
            "application/x-www-form-urlencoded",
            "multipart/form-data; boundary=x",
            "",
        ][..])
        .prop_map(|t| Some(t.to_owned())),
        1 => "[ -~]{0,30}".prop_map(Some),
        1 => Just(None),
    ]
}

/// Every byte outside the URI's unreserved set, percent-encoded.
fn encoded(text: &str) -> String {
    text.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'.' | b'_' | b'~' => {
                char::from(b).to_string()
            }
            b => format!("%{b:02X}"),
        })
        .collect()
}

/// A request path (and maybe query): the service's own routes and
/// prefixes of them, code-shaped words, encodings, dots, and any text.
pub fn request_path(codes: &'static [&'static str]) -> impl Strategy<Value = String> {
    let segment = prop_oneof![
        3 => select(&[
            "api", "v1", "links", "healthz", "readyz", "health", "metrics", "debug", "pprof",
            "heap", "memory", "stats", "trim", "", ".", "..", "%2F", "%00", "%zz", "%E2%82%AC",
        ][..])
        .prop_map(str::to_owned),
        2 => select(codes).prop_map(str::to_owned),
        2 => "[A-Za-z0-9_-]{1,34}",
        2 => "[A-Za-z0-9._~!$&'()*+,;=:@-]{0,20}",
        1 => "\\PC{0,10}".prop_map(|text| encoded(&text)),
    ];
    (
        prop::collection::vec(segment, 0..5),
        prop::option::of("[A-Za-z0-9=&%._-]{0,20}"),
    )
        .prop_map(|(segments, query)| {
            let path = format!("/{}", segments.join("/"));
            match query {
                Some(query) => format!("{path}?{query}"),
                None => path,
            }
        })
}
