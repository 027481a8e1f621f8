//! A tower [`Layer`] that rate-limits HTTP requests (feature `tower`).
//!
//! Each request's key comes from a [`KeyExtractor`] (peer IP, the client address that
//! trusted reverse proxies forward, a header, or your closure);
//! a denied request gets `429 Too Many Requests` with `Retry-After`, the IETF
//! `RateLimit-Policy` and `RateLimit` headers (draft-ietf-httpapi-ratelimit-headers-10) and
//! an `application/problem+json` body; allowed responses carry the two `RateLimit` headers
//! too. A request without a key (no header, say) passes unlimited, or is refused with
//! `400` when the extractor is [`KeyExtractor::required`]. If the limiter fails (Redis
//! down, with [`OnError::FailClosed`](crate::OnError::FailClosed)) the answer is `503`.
//!
//! ```no_run
//! # async fn demo(redis: redkit_core::Redis) -> redkit_ratelimit::Result<()> {
//! use std::sync::Arc;
//! use std::time::Duration;
//! use redkit_ratelimit::{Limit, RedisRateLimiter};
//! use redkit_ratelimit::tower::{KeyExtractor, RateLimitLayer};
//!
//! let limiter = RedisRateLimiter::builder(redis)
//!     .prefix("api")
//!     .limit(Limit::gcra(10, Duration::from_secs(1)).burst(20).name("second"))
//!     .build()?;
//! let layer = RateLimitLayer::new(Arc::new(limiter), KeyExtractor::header("x-api-key"));
//! // axum: Router::new().route(...).layer(layer)
//! # let _ = layer; Ok(()) }
//! ```

use std::fmt;
use std::future::Future;
use std::net::{IpAddr, SocketAddr};
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use http::header::{CONTENT_TYPE, HeaderName, HeaderValue, RETRY_AFTER};
use http::request::Parts;
use http::{Request, Response, StatusCode};
use tower_layer::Layer;
use tower_service::Service;

use crate::{Algorithm, Decision, Error, Limit, RateLimiter, forwarded};

/// The `RateLimit-Policy` header.
pub const RATELIMIT_POLICY: HeaderName = HeaderName::from_static("ratelimit-policy");
/// The `RateLimit` header.
pub const RATELIMIT: HeaderName = HeaderName::from_static("ratelimit");

type Extract = dyn Fn(&Parts) -> Option<String> + Send + Sync;

/// Where a request's rate-limit key comes from.
///
/// Behind reverse proxies, use [`KeyExtractor::forwarded_for`] or
/// [`KeyExtractor::forwarded`] with the number of proxies you run in front of the
/// service: the key is then the address the outermost of them saw, which the client
/// cannot choose. IPv6 addresses are keyed by their /64 network (see
/// [`KeyExtractor::ipv6_prefix`]).
#[derive(Clone)]
pub struct KeyExtractor {
    source: Source,
    required: bool,
    ipv6_prefix: u8,
    unusable: Unusable,
}

#[derive(Clone)]
enum Source {
    Custom(Arc<Extract>),
    Peer,
    ForwardedFor(usize),
    Forwarded(usize),
    Header(&'static str),
    Global,
}

/// What the layer does with a request whose forwarding header cannot give the client's
/// address: missing, with fewer entries than trusted proxies, or unparsable where the
/// trusted proxy's entry belongs. Never the proxy's own address, which would put every
/// client in one bucket.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
#[non_exhaustive]
pub enum Unusable {
    /// Answer `400 Bad Request` (default). With the proxies configured as declared this
    /// happens only to requests that bypassed them, so it is loud, not silent.
    #[default]
    Reject,
    /// Rate-limit every such request under this one key. A client that sends such
    /// requests can exhaust that bucket for the others that do, never for well-formed
    /// requests.
    SharedKey(String),
}

/// What an extractor found.
enum Extracted {
    Key(String),
    None,
    Unusable(String),
}

impl fmt::Debug for KeyExtractor {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let source = match &self.source {
            Source::Custom(_) => "custom".to_string(),
            Source::Peer => "peer IP".to_string(),
            Source::ForwardedFor(n) => format!("X-Forwarded-For, {n} trusted proxies"),
            Source::Forwarded(n) => format!("Forwarded, {n} trusted proxies"),
            Source::Header(h) => format!("header {h}"),
            Source::Global => "global".to_string(),
        };
        f.debug_struct("KeyExtractor")
            .field("source", &source)
            .field("required", &self.required)
            .field("ipv6_prefix", &self.ipv6_prefix)
            .field("unusable", &self.unusable)
            .finish()
    }
}

/// Braces are reserved for hash tags; header values may carry any of them.
fn escape(key: &str) -> String {
    key.replace('%', "%25")
        .replace('{', "%7B")
        .replace('}', "%7D")
}

impl KeyExtractor {
    fn new(source: Source) -> Self {
        KeyExtractor {
            source,
            required: false,
            ipv6_prefix: 64,
            unusable: Unusable::Reject,
        }
    }

    /// Your own function of the request head.
    pub fn custom(f: impl Fn(&Parts) -> Option<String> + Send + Sync + 'static) -> Self {
        KeyExtractor::new(Source::Custom(Arc::new(f)))
    }

    /// The peer's IP address, from a `SocketAddr` or axum's `ConnectInfo<SocketAddr>`
    /// request extension (serve axum with `into_make_service_with_connect_info`). Behind a
    /// reverse proxy this is the proxy: use [`KeyExtractor::forwarded_for`] there.
    pub fn peer_ip() -> Self {
        KeyExtractor::new(Source::Peer)
    }

    /// The client's address from `X-Forwarded-For`, behind `trusted_proxies` reverse
    /// proxies that each append the address they received the request from (nginx's
    /// `$proxy_add_x_forwarded_for`, cloud load balancers): the `trusted_proxies`-th entry
    /// from the right, counted over every header line. Entries further left were written
    /// by the client and are ignored, so a made-up address buys no new bucket. With `0`
    /// the header is ignored and the key is the peer IP.
    ///
    /// The service must be reachable only through those proxies (a client that connects
    /// directly writes the whole header). A request whose header has fewer entries, or no
    /// address where the trusted proxy's entry belongs, is refused with `400` (see
    /// [`KeyExtractor::on_unusable`]).
    pub fn forwarded_for(trusted_proxies: usize) -> Self {
        KeyExtractor::new(Source::ForwardedFor(trusted_proxies))
    }

    /// The client's address from the standard `Forwarded` header (RFC 7239), read as
    /// [`KeyExtractor::forwarded_for`] reads `X-Forwarded-For`: the `for=` parameter of the
    /// `trusted_proxies`-th element from the right. Quoted values, bracketed IPv6
    /// addresses and ports are understood; an obfuscated identifier (`for=_hidden`) is
    /// the key itself; `for=unknown` or a missing `for=` is unusable.
    pub fn forwarded(trusted_proxies: usize) -> Self {
        KeyExtractor::new(Source::Forwarded(trusted_proxies))
    }

    /// The value of a header (an API key, a user id set by an auth layer). Braces and `%`
    /// in it are percent-escaped.
    pub fn header(name: &'static str) -> Self {
        KeyExtractor::new(Source::Header(name))
    }

    /// One key for every request: a global limit.
    pub fn global() -> Self {
        KeyExtractor::new(Source::Global)
    }

    /// Requests without a key are refused with `400` instead of passing unlimited.
    pub fn required(mut self) -> Self {
        self.required = true;
        self
    }

    /// IPv6 addresses are keyed by their network of this many bits (default 64: a client
    /// usually holds a whole /64, so per-address keys would give it 2^64 buckets; 48 or
    /// 56 for providers that hand out larger prefixes, 128 for one key per address).
    /// `InvalidArgument` unless 1 to 128.
    pub fn ipv6_prefix(mut self, bits: u8) -> crate::Result<Self> {
        if !(1..=128).contains(&bits) {
            return Err(Error::InvalidArgument(format!(
                "an IPv6 prefix has 1 to 128 bits, not {bits}"
            )));
        }
        self.ipv6_prefix = bits;
        Ok(self)
    }

    /// What to do with a request whose forwarding header gives no usable address
    /// (default [`Unusable::Reject`]).
    pub fn on_unusable(mut self, unusable: Unusable) -> Self {
        self.unusable = unusable;
        self
    }

    fn extract(&self, parts: &Parts) -> Extracted {
        let ip = |ip: IpAddr| Extracted::Key(forwarded::ip_key(ip, self.ipv6_prefix));
        let node = |found: Result<forwarded::Node, forwarded::Unusable>| match found {
            Ok(forwarded::Node::Ip(addr)) => ip(addr),
            Ok(forwarded::Node::Obfuscated(name)) => Extracted::Key(name),
            Err(why) => Extracted::Unusable(format!("{why:?}")),
        };
        let peer_key = || peer(parts).map_or(Extracted::None, ip);
        match &self.source {
            Source::Custom(f) => f(parts).map_or(Extracted::None, Extracted::Key),
            Source::Peer | Source::ForwardedFor(0) | Source::Forwarded(0) => peer_key(),
            Source::ForwardedFor(n) => node(forwarded::x_forwarded_for(&parts.headers, *n)),
            Source::Forwarded(n) => node(forwarded::forwarded(&parts.headers, *n)),
            Source::Header(name) => parts
                .headers
                .get(*name)
                .and_then(|v| v.to_str().ok())
                .filter(|v| !v.is_empty())
                .map_or(Extracted::None, |v| Extracted::Key(escape(v))),
            Source::Global => Extracted::Key("global".to_string()),
        }
    }
}

fn peer(parts: &Parts) -> Option<IpAddr> {
    if let Some(addr) = parts.extensions.get::<SocketAddr>() {
        return Some(addr.ip());
    }
    #[cfg(feature = "axum")]
    if let Some(info) = parts
        .extensions
        .get::<axum::extract::ConnectInfo<SocketAddr>>()
    {
        return Some(info.0.ip());
    }
    None
}

/// Which rate-limit header fields responses carry.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[non_exhaustive]
pub enum HeaderStyle {
    /// `RateLimit-Policy` and `RateLimit` (draft-ietf-httpapi-ratelimit-headers-10).
    #[default]
    Ietf,
    /// The draft-10 fields plus `X-RateLimit-Limit`, `X-RateLimit-Remaining` and
    /// `X-RateLimit-Reset` (seconds) of the binding limit, which older clients read.
    IetfAndLegacy,
}

/// Rate-limits the wrapped service; see the [module docs](self).
#[derive(Clone)]
pub struct RateLimitLayer {
    limiter: Arc<dyn RateLimiter>,
    key: KeyExtractor,
    headers_when_allowed: bool,
    style: HeaderStyle,
}

impl fmt::Debug for RateLimitLayer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RateLimitLayer")
            .field("limiter", &self.limiter)
            .field("key", &self.key)
            .finish()
    }
}

impl RateLimitLayer {
    /// A layer checking one unit per request against `limiter`.
    pub fn new(limiter: Arc<dyn RateLimiter>, key: KeyExtractor) -> Self {
        RateLimitLayer {
            limiter,
            key,
            headers_when_allowed: true,
            style: HeaderStyle::Ietf,
        }
    }

    /// Which header fields to send (default [`HeaderStyle::Ietf`]).
    pub fn header_style(mut self, style: HeaderStyle) -> Self {
        self.style = style;
        self
    }

    /// Whether allowed responses carry the `RateLimit` headers too (default on; denied
    /// ones always do).
    pub fn headers_when_allowed(mut self, on: bool) -> Self {
        self.headers_when_allowed = on;
        self
    }
}

impl<S> Layer<S> for RateLimitLayer {
    type Service = RateLimit<S>;

    fn layer(&self, inner: S) -> RateLimit<S> {
        RateLimit {
            inner,
            layer: self.clone(),
        }
    }
}

/// The service built by [`RateLimitLayer`].
#[derive(Clone, Debug)]
pub struct RateLimit<S> {
    inner: S,
    layer: RateLimitLayer,
}

type BoxFuture<T> = Pin<Box<dyn Future<Output = T> + Send + 'static>>;

impl<S, B, ResBody> Service<Request<B>> for RateLimit<S>
where
    S: Service<Request<B>, Response = Response<ResBody>> + Clone + Send + 'static,
    S::Future: Send + 'static,
    B: Send + 'static,
    ResBody: From<String> + Send + 'static,
{
    type Response = Response<ResBody>;
    type Error = S::Error;
    type Future = BoxFuture<Result<Response<ResBody>, S::Error>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), S::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, req: Request<B>) -> Self::Future {
        // the clone that was driven to readiness serves this request
        let clone = self.inner.clone();
        let mut inner = std::mem::replace(&mut self.inner, clone);
        let layer = self.layer.clone();
        Box::pin(async move {
            let (parts, body) = req.into_parts();
            let key = layer.key.extract(&parts);
            let req = Request::from_parts(parts, body);
            let key = match key {
                Extracted::Key(key) => key,
                Extracted::None if layer.key.required => {
                    return Ok(plain(StatusCode::BAD_REQUEST, "no rate-limit key"));
                }
                Extracted::None => return inner.call(req).await,
                Extracted::Unusable(why) => match &layer.key.unusable {
                    Unusable::Reject => {
                        tracing::debug!(reason = %why, "no client address in the forwarding header");
                        return Ok(plain(
                            StatusCode::BAD_REQUEST,
                            "no client address in the forwarding header",
                        ));
                    }
                    Unusable::SharedKey(shared) => shared.clone(),
                },
            };
            match layer.limiter.check(&key, 1).await {
                Ok(d) if d.allowed => {
                    let mut resp = inner.call(req).await?;
                    if layer.headers_when_allowed {
                        set_headers(resp.headers_mut(), layer.limiter.limits(), &d, layer.style);
                    }
                    Ok(resp)
                }
                Ok(d) => Ok(too_many(layer.limiter.limits(), &d, layer.style)),
                Err(Error::InvalidKey(_)) => {
                    Ok(plain(StatusCode::BAD_REQUEST, "bad rate-limit key"))
                }
                Err(e) => {
                    tracing::warn!(error = %e, "rate limiter failed; answering 503");
                    Ok(plain(
                        StatusCode::SERVICE_UNAVAILABLE,
                        "rate limiter unavailable",
                    ))
                }
            }
        })
    }
}

fn plain<B: From<String>>(status: StatusCode, msg: &str) -> Response<B> {
    let mut resp = Response::new(B::from(msg.to_string()));
    *resp.status_mut() = status;
    resp
}

/// Whole seconds, rounded up (delay-seconds).
fn secs(d: Duration) -> u64 {
    d.as_secs().saturating_add(u64::from(d.subsec_nanos() > 0))
}

/// `RateLimit-Policy`: `"name";q=<quota>;w=<window>` per limit.
pub fn policy_header(limits: &[Limit]) -> String {
    limits
        .iter()
        .map(|l| {
            format!(
                "\"{}\";q={};w={}",
                l.policy_name(),
                l.capacity(),
                secs(l.full_window())
            )
        })
        .collect::<Vec<_>>()
        .join(", ")
}

/// `RateLimit`: `"name";r=<remaining>;t=<seconds until more quota>` per limit.
pub fn ratelimit_header(limits: &[Limit], d: &Decision) -> String {
    limits
        .iter()
        .zip(&d.statuses)
        .map(|(l, s)| {
            let t = match (s.retry_after, l.algorithm()) {
                (Some(retry), _) => retry,
                // buckets: until the next unit comes back
                (None, Algorithm::Gcra | Algorithm::TokenBucket) => {
                    let interval =
                        (l.full_window().as_micros() / u128::from(l.capacity().max(1))).max(1);
                    let reset = s.reset_after.as_micros();
                    let left = if reset == 0 {
                        0
                    } else {
                        (reset - 1) % interval + 1
                    };
                    Duration::from_micros(u64::try_from(left).unwrap_or(0))
                }
                // windows: until the window ends
                (None, _) => s.reset_after,
            };
            format!("\"{}\";r={};t={}", l.policy_name(), s.remaining, secs(t))
        })
        .collect::<Vec<_>>()
        .join(", ")
}

fn set_headers(headers: &mut http::HeaderMap, limits: &[Limit], d: &Decision, style: HeaderStyle) {
    if let Ok(v) = HeaderValue::from_str(&policy_header(limits)) {
        headers.insert(RATELIMIT_POLICY, v);
    }
    if let Ok(v) = HeaderValue::from_str(&ratelimit_header(limits, d)) {
        headers.insert(RATELIMIT, v);
    }
    if style == HeaderStyle::IetfAndLegacy {
        headers.insert("x-ratelimit-limit", HeaderValue::from(d.limit));
        headers.insert("x-ratelimit-remaining", HeaderValue::from(d.remaining));
        let reset = d.retry_after.unwrap_or(d.reset_after);
        headers.insert("x-ratelimit-reset", HeaderValue::from(secs(reset)));
    }
}

fn too_many<B: From<String>>(limits: &[Limit], d: &Decision, style: HeaderStyle) -> Response<B> {
    let violated: Vec<String> = limits
        .iter()
        .zip(&d.statuses)
        .filter(|(_, s)| !s.allowed)
        .map(|(l, _)| format!("\"{}\"", l.policy_name()))
        .collect();
    let body = format!(
        "{{\"type\":\"https://iana.org/assignments/http-problem-types#quota-exceeded\",\
         \"title\":\"Too Many Requests\",\"status\":429,\"violated-policies\":[{}]}}",
        violated.join(",")
    );
    let mut resp = Response::new(B::from(body));
    *resp.status_mut() = StatusCode::TOO_MANY_REQUESTS;
    let headers = resp.headers_mut();
    set_headers(headers, limits, d, style);
    let retry = d.retry_after.unwrap_or(d.reset_after);
    headers.insert(RETRY_AFTER, HeaderValue::from(secs(retry)));
    headers.insert(
        CONTENT_TYPE,
        HeaderValue::from_static("application/problem+json"),
    );
    resp
}
