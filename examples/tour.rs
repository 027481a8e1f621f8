//! `cargo run --example tour`: a walk through redkit.
//!
//! Uses `REDIS_URL` when set; otherwise starts a private `redis-server` from PATH on a free
//! loopback port; otherwise runs what it can without a server and says so.
#![allow(clippy::expect_used, clippy::unwrap_used)]

use std::sync::LazyLock;
use std::time::Duration;

use redkit::Redis;
use redkit::core::{Clock, Event, Keyspace, ManualClock, Pipeline, Script, redis};
use redkit::lock::{AcquireOptions, Lock, LockExt, MemoryLock, RedisLock};
use std::sync::Arc;

static RESERVE: LazyLock<Script> =
    LazyLock::new(|| Script::new("reserve", include_str!("tour_reserve.lua")));

enum Server {
    External(String),
    Private(redkit_testkit::Server),
    None,
}

fn find_server() -> Server {
    if let Ok(url) = std::env::var("REDIS_URL")
        && !url.is_empty()
    {
        return Server::External(url);
    }
    if redkit_testkit::redis_server_available() {
        return Server::Private(redkit_testkit::Server::start());
    }
    Server::None
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    println!("redkit tour\n===========");
    let server = find_server();
    let redis = match &server {
        Server::External(url) => {
            println!("using REDIS_URL");
            Some(Redis::connect(url).await?)
        }
        Server::Private(s) => {
            println!(
                "REDIS_URL not set: started a private redis-server on {}",
                s.addr()
            );
            Some(Redis::connect(&s.url()).await?)
        }
        Server::None => {
            println!(
                "no REDIS_URL and no redis-server on PATH: running on the in-memory parts only\n\
                 (install redis-server or set REDIS_URL to see the Redis backends)"
            );
            None
        }
    };

    keys_and_clocks()?;
    if let Some(redis) = &redis {
        core_tour(redis).await?;
    }
    lock_tour(redis.as_ref()).await?;
    ratelimit_tour(redis.as_ref()).await?;
    session_tour(redis.as_ref()).await?;
    streams_tour(redis.as_ref()).await?;
    pubsub_tour(redis.as_ref()).await?;
    leaderboard_tour(redis.as_ref()).await?;
    geo_tour(redis.as_ref()).await?;
    cache_tour(redis.as_ref()).await?;
    queue_tour(redis.as_ref()).await?;
    drop(server);
    Ok(())
}

fn keys_and_clocks() -> Result<(), Box<dyn std::error::Error>> {
    println!("\n-- keys --");
    let locks = Keyspace::new("tour")?.child("lock")?;
    let key = locks.tagged("orders:42")?;
    println!(
        "keyspace tour:lock + orders:42 -> {key} (slot {})",
        key.slot()
    );
    println!(
        "its sibling {} shares the slot: {}",
        key.child("fence")?,
        key.child("fence")?.slot()
    );
    match locks.tagged("evil{tag}") {
        Err(e) => println!("a name with braces is refused: {e}"),
        Ok(k) => println!("unexpectedly accepted {k}"),
    }

    println!("\n-- clocks for in-memory backends --");
    let clock = ManualClock::new(Duration::from_secs(1_700_000_000));
    clock.advance(Duration::from_millis(250));
    println!("a manual clock moves only when told: {:?}", clock.now());
    Ok(())
}

async fn core_tour(redis: &Redis) -> Result<(), Box<dyn std::error::Error>> {
    let info = redis.server_info();
    println!("\n-- the handle --");
    println!(
        "connected: Redis {:?} (valkey: {:?})",
        info.version, info.valkey_version
    );

    let ks = Keyspace::new("tour")?.child(&format!("run-{}", std::process::id()))?;
    let stock = ks.tagged("sku-1")?;
    let ledger = stock.child("ledger")?;

    println!("\n-- an atomic script (EVALSHA, EVAL after NOSCRIPT) --");
    let _: () = redis.query(redis::cmd("SET").arg(&stock).arg(3)).await?;
    for buyer in ["ana", "ben", "cy", "dee"] {
        let left: i64 = RESERVE
            .call()
            .key(&stock)
            .key(&ledger)
            .arg(buyer)
            .invoke(redis)
            .await?;
        if left >= 0 {
            println!("{buyer} reserved one; {left} left");
        } else {
            println!("{buyer} found it sold out");
        }
    }

    println!("\n-- one round trip for many commands --");
    let mut pipe = Pipeline::new();
    pipe.cmd(redis::cmd("GET").arg(&stock).to_owned())
        .cmd(redis::cmd("LRANGE").arg(&ledger).arg(0).arg(-1).to_owned());
    let (left, buyers): (i64, Vec<String>) = pipe.query(redis).await?;
    println!("stock {left}, ledger {buyers:?}");

    println!("\n-- notifications --");
    let channel = format!("{}:news", ks.prefix());
    let mut sub = redis.subscribe(&channel).await?;
    let receivers = redis.publish(&channel, b"restocked").await?;
    if let Ok(Some(Event::Message(m))) =
        tokio::time::timeout(Duration::from_secs(2), sub.recv()).await
    {
        println!(
            "{receivers} subscriber got {:?}",
            String::from_utf8_lossy(&m.payload)
        );
    }

    println!("\n-- a dedicated connection for blocking work --");
    let mut conn = redis.dedicated().await?;
    let popped: Option<(String, String)> = conn
        .blocking(
            redis::cmd("BLPOP").arg(&ledger).arg(1),
            Duration::from_secs(1),
        )
        .await?;
    println!("BLPOP on its own connection took {popped:?}");

    let _: i64 = redis
        .query(redis::cmd("DEL").arg(&stock).arg(&ledger))
        .await?;
    Ok(())
}

async fn lock_tour(redis: Option<&Redis>) -> Result<(), Box<dyn std::error::Error>> {
    println!("\n-- redkit-lock --");
    let locks: Arc<dyn Lock> = match redis {
        Some(r) => Arc::new(RedisLock::builder(r.clone()).prefix("tour").build()?),
        None => {
            println!("(in-memory lock: same semantics, one process)");
            Arc::new(MemoryLock::default())
        }
    };
    let resource = format!("report-{}", std::process::id());
    let first = locks
        .try_acquire(&resource, Duration::from_secs(5))
        .await?
        .expect("free");
    println!(
        "took {resource} with fencing token {}",
        first.fencing_token()
    );
    let busy = locks.try_acquire(&resource, Duration::from_secs(5)).await?;
    println!(
        "a second attempt while held: {}",
        if busy.is_none() { "busy" } else { "taken?!" }
    );

    let waiter = {
        let locks = Arc::clone(&locks);
        let resource = resource.clone();
        tokio::spawn(async move {
            let start = std::time::Instant::now();
            let opts = AcquireOptions::new(Duration::from_secs(5)).wait(Duration::from_secs(3));
            let token = locks
                .with_lock(
                    &resource,
                    opts,
                    |lease| async move { lease.fencing_token() },
                )
                .await;
            (start.elapsed(), token)
        })
    };
    tokio::time::sleep(Duration::from_millis(100)).await;
    println!("holder releases: {}", first.release().await?);
    let (waited, token) = waiter.await?;
    println!(
        "the waiter was woken by the release after {waited:?}, ran with token {}",
        token?
    );
    Ok(())
}

async fn ratelimit_tour(redis: Option<&Redis>) -> Result<(), Box<dyn std::error::Error>> {
    use redkit::ratelimit::{Limit, MemoryRateLimiter, RateLimiter, RedisRateLimiter};
    println!("\n-- redkit-ratelimit --");
    // 3 per 10 s and 1 per second, steady: both consumed together, or neither
    let per_10s = Limit::fixed_window(3, Duration::from_secs(10)).name("10s");
    let steady = Limit::gcra(1, Duration::from_secs(1))
        .burst(2)
        .name("steady");
    let limiter: Arc<dyn RateLimiter> = match redis {
        Some(r) => Arc::new(
            RedisRateLimiter::builder(r.clone())
                .prefix("tour")
                .limit(per_10s)
                .limit(steady)
                .build()?,
        ),
        None => {
            println!("(in-memory limiter: same decisions, one process)");
            Arc::new(
                MemoryRateLimiter::builder()
                    .limit(per_10s)
                    .limit(steady)
                    .build()?,
            )
        }
    };
    let user = format!("user-{}", std::process::id());
    for i in 1..=3 {
        let d = limiter.check(&user, 1).await?;
        println!(
            "check {i}: allowed {} remaining {} (binding limit {}) retry after {:?}",
            d.allowed, d.remaining, d.limit, d.retry_after
        );
    }
    let batch = limiter
        .check_many(&[("tour-a", 1), ("tour-b", 2), ("tour-a", 1)])
        .await?;
    println!(
        "three checks in one round trip: {:?}",
        batch.iter().map(|d| d.allowed).collect::<Vec<_>>()
    );
    limiter.block(&user, Duration::from_millis(300)).await?;
    println!(
        "blocked for 300 ms: peek says allowed = {}",
        limiter.peek(&user).await?.allowed
    );
    match limiter.check(&user, 5).await {
        Err(e) => println!("a cost above every capacity is an error, not a wait: {e}"),
        Ok(d) => println!("unexpected: {d:?}"),
    }
    Ok(())
}

async fn leaderboard_tour(redis: Option<&Redis>) -> Result<(), Box<dyn std::error::Error>> {
    use redkit::leaderboard::{
        Board, Leaderboard, MemoryLeaderboard, Period, Ranking, RedisLeaderboard, Scope, Submission,
    };
    println!("\n-- redkit-leaderboard --");
    let board = Board::named(format!("tour-{}", std::process::id()))
        .prefix("tour")
        .member_data(true)
        .ranking(Ranking::Dense)
        .periods([Period::Daily]);
    let lb: Arc<dyn Leaderboard> = match redis {
        Some(r) => Arc::new(RedisLeaderboard::new(r, board)?),
        None => Arc::new(MemoryLeaderboard::new(board)?),
    };
    // one atomic write updates the all-time and today's board
    lb.submit_batch(&[
        Submission::best("ann", 50.0).data("Ann"),
        Submission::best("bob", 50.0).data("Bob"),
        Submission::best("cid", 30.0),
        Submission::increment("dee", 10.0),
    ])
    .await?;
    for e in lb.top(&Scope::Current(Period::Daily), 4).await? {
        println!(
            "today #{} {} ({}) {}",
            e.rank,
            e.member,
            e.data.as_deref().unwrap_or("-"),
            e.score
        );
    }
    let around = lb.around(&Scope::AllTime, "cid", 1).await?;
    println!(
        "around cid: {:?}",
        around.iter().map(|e| e.member.as_str()).collect::<Vec<_>>()
    );
    println!(
        "dee's percentile: {:?}; an infinite score: {}",
        lb.percentile(&Scope::AllTime, "dee").await?,
        lb.submit(Submission::replace("eve", f64::INFINITY))
            .await
            .unwrap_err()
    );
    Ok(())
}

async fn geo_tour(redis: Option<&Redis>) -> Result<(), Box<dyn std::error::Error>> {
    use redkit::geo::{
        Center, GeoIndex, MemoryGeoIndex, Place, Point, RedisGeoIndex, Search, Unit,
    };
    println!("\n-- redkit-geo --");
    let geo: Arc<dyn GeoIndex> = match redis {
        Some(r) => Arc::new(RedisGeoIndex::with_prefix(
            r,
            "tour",
            &format!("sicily-{}", std::process::id()),
        )?),
        None => Arc::new(MemoryGeoIndex::new()),
    };
    geo.add(&[
        Place::new("Palermo", 13.361389, 38.115556).metadata("capital"),
        Place::new("Catania", 15.087269, 37.502669),
        Place::new("Dateline", 180.0, 0.0),
    ])
    .await?;
    let hits = geo
        .search(&Search::radius(Point::new(15.0, 37.0), 200.0, Unit::Kilometers).with_metadata())
        .await?;
    for h in &hits {
        println!("{} at {} km ({:?})", h.id, h.distance, h.metadata);
    }
    let far = geo
        .nearest(Center::Point(Point::new(-179.9, 0.0)), 1, 1000.0)
        .await?;
    println!(
        "nearest to 179.9 W: {} at {} m (stored just inside the grid, so found)",
        far[0].id, far[0].distance
    );
    println!(
        "latitude 89 is refused: {}",
        geo.add(&[Place::new("pole", 0.0, 89.0)]).await.unwrap_err()
    );
    Ok(())
}

async fn cache_tour(redis: Option<&Redis>) -> Result<(), Box<dyn std::error::Error>> {
    use redkit::cache::{Cache, CacheConfig, CacheExt, LoadOptions, MemoryCache, RedisCache};
    println!("\n-- redkit-cache --");
    let config = CacheConfig::new()
        .prefix(format!("tour-{}", std::process::id()))
        .namespace("profiles")
        .negative_ttl(Duration::from_secs(10));
    let cache: Arc<dyn Cache> = match redis {
        Some(r) => Arc::new(RedisCache::new(r, config.local(1000, Duration::from_secs(10))).await?),
        None => Arc::new(MemoryCache::new(config)?),
    };
    let loads = Arc::new(std::sync::atomic::AtomicU32::new(0));
    let mut tasks = Vec::new();
    for _ in 0..50 {
        let (cache, loads) = (cache.clone(), loads.clone());
        tasks.push(tokio::spawn(async move {
            cache
                .get_or_load("user:1", &LoadOptions::new(), move || async move {
                    loads.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    Ok::<_, std::io::Error>(Some("Ada".to_string()))
                })
                .await
        }));
    }
    for t in tasks {
        t.await??;
    }
    println!(
        "50 concurrent get_or_load calls on a cold key ran the loader {} time(s)",
        loads.load(std::sync::atomic::Ordering::SeqCst)
    );
    let missing: Option<String> = cache
        .get_or_load("user:404", &LoadOptions::new(), || async {
            Ok::<_, std::io::Error>(None)
        })
        .await?;
    println!("a missing user is remembered as missing: {missing:?}");
    println!(
        "a key with braces is refused: {}",
        cache.get_bytes("user:{1}").await.unwrap_err()
    );
    println!("metrics: {:?}", cache.metrics());
    cache.clear().await?;

    // write-behind: writes return once durable in Redis; the database gets them later,
    // batched, newest per key
    struct Db(std::sync::Mutex<Vec<usize>>);
    #[async_trait::async_trait]
    impl redkit::cache::Writer for Db {
        async fn write(
            &self,
            writes: &[redkit::cache::Write],
        ) -> Result<(), redkit::cache::BoxError> {
            self.0.lock().map_err(|e| e.to_string())?.push(writes.len());
            Ok(())
        }
    }
    let db = Arc::new(Db(std::sync::Mutex::new(Vec::new())));
    let config = CacheConfig::new()
        .prefix(format!("tour-{}", std::process::id()))
        .namespace("counters")
        .write_behind(db.clone(), redkit::cache::WriteBehind::new());
    let counters: Arc<dyn Cache> = match redis {
        Some(r) => Arc::new(RedisCache::new(r, config).await?),
        None => Arc::new(MemoryCache::new(config)?),
    };
    let items: Vec<(String, Vec<u8>)> = (0..100)
        .map(|i| (format!("counter:{}", i % 10), i.to_string().into_bytes()))
        .collect();
    let refs: Vec<(&str, &[u8])> = items
        .iter()
        .map(|(k, v)| (k.as_str(), v.as_slice()))
        .collect();
    counters
        .set_many_bytes(&refs, &redkit::cache::SetOptions::new())
        .await?;
    counters.flush(Duration::from_secs(5)).await?;
    let batches = db.0.lock().map_err(|e| e.to_string())?.clone();
    println!(
        "100 writes to 10 counters reached the database as batches of {batches:?} \
         (newest write per key)"
    );
    counters.shutdown(Duration::from_secs(5)).await?;
    counters.clear().await?;
    Ok(())
}

async fn queue_tour(redis: Option<&Redis>) -> Result<(), Box<dyn std::error::Error>> {
    use redkit::queue::{
        Backoff, Job, JobOptions, JobState, MemoryQueue, Queue, QueueConfig, QueueExt, RedisQueue,
        Worker,
    };
    println!("\n-- redkit-queue --");
    let config = QueueConfig::new()
        .prefix(format!("tour-{}", std::process::id()))
        .max_attempts(2)
        .backoff(Backoff::Fixed(Duration::from_millis(10)));
    let queue: Arc<dyn Queue> = match redis {
        Some(r) => Arc::new(RedisQueue::new(r, "invoices", config)?),
        None => Arc::new(MemoryQueue::new("invoices", config)?),
    };
    let ids = queue
        .enqueue_many(&[100u32, 250, 0, 75], &JobOptions::new())
        .await?;
    println!(
        "4 jobs enqueued in one round trip: {:?}",
        ids.iter().map(|e| e.id().to_string()).collect::<Vec<_>>()
    );
    let worker = Worker::builder(queue.clone())
        .concurrency(4)
        .idle_wait(Duration::from_millis(50))
        .build()?;
    let running = worker.run(|job: Job<u32>| async move {
        if job.payload == 0 {
            return Err("an invoice of 0 cannot be sent".to_string());
        }
        Ok(job.payload * 2)
    });
    for _ in 0..200 {
        let s = queue.stats().await?;
        if s.waiting + s.active + s.delayed == 0 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let report = running.shutdown(Duration::from_secs(2)).await;
    println!(
        "worker: {} completed, {} retried, {} dead",
        report.completed, report.failed, report.dead
    );
    if let Some(dead) = queue.list(JobState::Dead, 0, 1).await?.first() {
        let info = queue.job(&dead.id).await?;
        println!(
            "the dead job keeps its error: {:?}",
            info.and_then(|i| i.error)
        );
    }
    println!(
        "a job id of digits is refused: {}",
        queue
            .enqueue(&1u32, &JobOptions::new().id("42"))
            .await
            .unwrap_err()
    );
    // repeatable jobs: a cron pattern in a time zone, checked when it is built
    let nine = redkit::queue::Schedule::cron_in(
        "0 9 * * MON-FRI",
        chrono::FixedOffset::east_opt(3600).ok_or("offset")?,
    )?;
    println!(
        "weekdays at nine (UTC+1): next after the epoch is {:?}",
        nine.next_after(std::time::UNIX_EPOCH)
    );
    println!(
        "a pattern that never matches is refused: {}",
        redkit::queue::Schedule::cron("0 0 30 2 *").unwrap_err()
    );
    Ok(())
}

async fn session_tour(redis: Option<&Redis>) -> Result<(), Box<dyn std::error::Error>> {
    use redkit::session::{
        ClientInfo, MaxSessions, MemorySessionStore, RedisSessionStore, SessionConfig, SessionStore,
    };
    println!("\n-- redkit-session --");
    let config = SessionConfig::new()
        .prefix(format!("tour-{}", std::process::id()))
        .max_sessions(MaxSessions::EvictOldest(2));
    let store: Arc<dyn SessionStore> = match redis {
        Some(r) => Arc::new(RedisSessionStore::new(r, config)?),
        None => Arc::new(MemorySessionStore::new(config)?),
    };
    let mut session = store.create().await?;
    session.insert("cart", &vec!["tea", "milk"])?;
    store.save(&mut session).await?;
    println!("new session {:?} saved its cart", session.handle());
    let before = session.id().clone();
    store
        .login(
            &mut session,
            "ann",
            ClientInfo::new(Some("tour".into()), None),
        )
        .await?;
    println!(
        "login rotated the id: old id loads {:?}; cart kept: {:?}",
        store.load(&before).await?.map(|_| "a session"),
        session.get::<Vec<String>>("cart")?
    );
    for device in ["phone", "tablet"] {
        let mut other = store.create().await?;
        let evicted = store
            .login(
                &mut other,
                "ann",
                ClientInfo::new(Some(device.into()), None),
            )
            .await?;
        println!("login on {device}: evicted {} (limit 2)", evicted.len());
    }
    println!(
        "ann's sessions: {:?}",
        store
            .sessions_of("ann")
            .await?
            .iter()
            .map(|s| s.client.user_agent.clone().unwrap_or_default())
            .collect::<Vec<_>>()
    );
    println!(
        "log out everywhere ended {}; a late save of the first session: {}",
        store.logout_everywhere("ann", None).await?,
        store.save(&mut session).await.unwrap_err()
    );
    Ok(())
}

async fn streams_tour(redis: Option<&Redis>) -> Result<(), Box<dyn std::error::Error>> {
    use redkit::streams::{
        Consumer, MemoryStreamStore, Message, Producer, RedisStreamStore, StreamStore,
    };
    println!("\n-- redkit-streams --");
    let store: Arc<dyn StreamStore> = match redis {
        Some(r) => Arc::new(RedisStreamStore::new(
            r,
            &format!("tour-{}", std::process::id()),
        )?),
        None => Arc::new(MemoryStreamStore::new()),
    };
    let producer = Producer::<String>::new(store.clone(), "emails");
    producer
        .send_batch(&["welcome ann".into(), "welcome bob".into(), "FAIL".into()])
        .await?;
    let consumer = Consumer::builder(store.clone(), "emails", "mailer")
        .block(Duration::from_millis(100))
        .claim_after(Duration::from_millis(100))
        .claim_every(Duration::from_millis(50))
        .max_deliveries(2)
        .build()?;
    let running = consumer.run(|m: Message<String>| async move {
        if m.payload == "FAIL" {
            return Err("the mail server refused it");
        }
        println!("sent {:?} (delivery {})", m.payload, m.deliveries);
        Ok(())
    });
    tokio::time::sleep(Duration::from_millis(800)).await;
    let report = running.shutdown(Duration::from_secs(1)).await;
    println!(
        "processed {}, dead-lettered {}: {:?}",
        report.processed,
        report.dead_lettered,
        store
            .dead_letters("emails", 10)
            .await?
            .iter()
            .filter_map(|d| d.field("_reason").map(str::to_string))
            .collect::<Vec<_>>()
    );
    Ok(())
}

async fn pubsub_tour(redis: Option<&Redis>) -> Result<(), Box<dyn std::error::Error>> {
    use redkit::pubsub::{Event, MemoryPubSub, PubSub, PubSubExt, RedisPubSub, Topic};
    println!("\n-- redkit-pubsub --");
    let bus: Arc<dyn PubSub> = match redis {
        Some(r) => Arc::new(RedisPubSub::with_prefix(
            r,
            &format!("tour-{}", std::process::id()),
        )?),
        None => Arc::new(MemoryPubSub::new()),
    };
    let topic = Topic::Sharded("{room:1}:chat".into());
    let mut sub = bus.subscribe::<String>(&topic).await?;
    let n = bus.publish(&topic, &"hello room".to_string()).await?;
    println!("published to {n} subscriber(s)");
    if let Some(Event::Message(m)) = sub.recv().await {
        println!("received {:?} on {}", m.payload, m.channel);
    }
    bus.publish_raw(&topic, &[0xff]).await?;
    println!("a payload of the wrong type: {:?}", sub.recv().await);
    Ok(())
}
