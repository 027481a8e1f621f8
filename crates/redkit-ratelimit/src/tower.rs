//! A tower [`Layer`] that rate-limits HTTP requests (feature `tower`).
//!
//! Each request's key comes from a [`KeyExtractor`] (peer IP, a header, or your closure);
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

use crate::{Algorithm, Decision, Error, Limit, RateLimiter};

/// The `RateLimit-Policy` header.
pub const RATELIMIT_POLICY: HeaderName = HeaderName::from_static("ratelimit-policy");
/// The `RateLimit` header.
pub const RATELIMIT: HeaderName = HeaderName::from_static("ratelimit");

type Extract = dyn Fn(&Parts) -> Option<String> + Send + Sync;

/// Where a request's rate-limit key comes from.
#[derive(Clone)]
pub struct KeyExtractor {
    extract: Arc<Extract>,
    required: bool,
}

impl fmt::Debug for KeyExtractor {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("KeyExtractor")
            .field("required", &self.required)
            .finish_non_exhaustive()
    }
}

/// Braces are reserved for hash tags; header values may carry any of them.
fn escape(key: &str) -> String {
    key.replace('%', "%25")
        .replace('{', "%7B")
        .replace('}', "%7D")
}

impl KeyExtractor {
    /// Your own function of the request head.
    pub fn custom(f: impl Fn(&Parts) -> Option<String> + Send + Sync + 'static) -> Self {
        KeyExtractor {
            extract: Arc::new(f),
            required: false,
        }
    }

    /// The peer's IP address, from a `SocketAddr` or axum's `ConnectInfo<SocketAddr>`
    /// request extension (serve axum with `into_make_service_with_connect_info`). Behind a
    /// reverse proxy this is the proxy: use [`KeyExtractor::forwarded_for`] there.
    pub fn peer_ip() -> Self {
        KeyExtractor::custom(|parts| peer(parts).map(|ip| ip.to_string()))
    }

    /// The first address of `X-Forwarded-For`, falling back to the peer IP. Trust it only
    /// behind a proxy that overwrites the header, or clients choose their own key.
    pub fn forwarded_for() -> Self {
        KeyExtractor::custom(|parts| {
            parts
                .headers
                .get("x-forwarded-for")
                .and_then(|v| v.to_str().ok())
                .and_then(|v| v.split(',').next())
                .and_then(|v| v.trim().parse::<IpAddr>().ok())
                .or_else(|| peer(parts))
                .map(|ip| ip.to_string())
        })
    }

    /// The value of a header (an API key, a user id set by an auth layer). Braces and `%`
    /// in it are percent-escaped.
    pub fn header(name: &'static str) -> Self {
        KeyExtractor::custom(move |parts| {
            parts
                .headers
                .get(name)
                .and_then(|v| v.to_str().ok())
                .filter(|v| !v.is_empty())
                .map(escape)
        })
    }

    /// One key for every request: a global limit.
    pub fn global() -> Self {
        KeyExtractor::custom(|_| Some("global".to_string()))
    }

    /// Requests without a key are refused with `400` instead of passing unlimited.
    pub fn required(mut self) -> Self {
        self.required = true;
        self
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
            let key = (layer.key.extract)(&parts);
            let req = Request::from_parts(parts, body);
            let Some(key) = key else {
                if layer.key.required {
                    return Ok(plain(StatusCode::BAD_REQUEST, "no rate-limit key"));
                }
                return inner.call(req).await;
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
