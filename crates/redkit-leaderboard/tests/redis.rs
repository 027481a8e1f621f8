//! Redis-only behaviour: expiry of period keys on the server's clock, exact scores through
//! Lua, concurrency over two handles, foreign keys and a server that goes away.
#![allow(clippy::unwrap_used, clippy::expect_used, missing_docs)]

use std::sync::Arc;

use redkit_core::redis::cmd;
use redkit_leaderboard::{
    Board, Error, Leaderboard, Period, Ranking, RedisLeaderboard, Scope, Submission,
};

const ALL: &Scope = &Scope::AllTime;

fn board(name: &str) -> Board {
    Board::named(name).prefix(redkit_testkit::prefix("lb"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn period_keys_expire_when_their_kept_periods_end_on_the_servers_clock() {
    let redis = redkit_testkit::redis().await;
    let offset = 5 * 3600 + 1800; // UTC+5:30
    let lb = RedisLeaderboard::new(
        &redis,
        board("ttl")
            .periods([
                Period::Hourly,
                Period::Daily,
                Period::Weekly,
                Period::Monthly,
                Period::Yearly,
            ])
            .utc_offset(offset)
            .keep_finished(2)
            .member_data(true)
            .ranking(Ranking::Dense),
    )
    .unwrap();
    lb.submit(Submission::replace("m", 1.0).data("d"))
        .await
        .unwrap();
    let (secs, _): (i64, i64) = redis.query(&cmd("TIME")).await.unwrap();
    let local = secs + i64::from(offset);
    let day = local.div_euclid(86_400);
    let hour = local.div_euclid(3600);
    let week = (day + 3).div_euclid(7);
    let (y, month) = month_of(day);
    let base = lb.key().to_string();
    let expect = [
        (format!("{base}:h:{hour}"), (hour + 3) * 3600),
        (format!("{base}:d:{day}"), (day + 3) * 86_400),
        (format!("{base}:w:{week}"), ((week + 3) * 7 - 3) * 86_400),
        (format!("{base}:m:{month}"), month_start(month + 3) * 86_400),
        (format!("{base}:y:{y}"), month_start((y + 3) * 12) * 86_400),
    ];
    for (key, local_end) in expect {
        let utc_end_ms = (local_end - i64::from(offset)) * 1000;
        for k in [key.clone(), format!("{key}:data"), format!("{key}:ties")] {
            let at: i64 = redis.query(cmd("PEXPIRETIME").arg(&k)).await.unwrap();
            assert_eq!(at, utc_end_ms, "{k}");
        }
    }
    let ttl: i64 = redis
        .query(cmd("PTTL").arg(format!("{base}:all")))
        .await
        .unwrap();
    assert_eq!(ttl, -1, "the all-time board does not expire");
}

fn month_len(y: i64, m: i64) -> i64 {
    match m {
        2 if (y % 4 == 0 && y % 100 != 0) || y % 400 == 0 => 29,
        2 => 28,
        4 | 6 | 9 | 11 => 30,
        _ => 31,
    }
}

/// The first day (days since 1970-01-01) of month `index` (= year * 12 + month - 1), by
/// counting month lengths from 1970.
fn month_start(index: i64) -> i64 {
    (1970 * 12..index)
        .map(|i| month_len(i / 12, i % 12 + 1))
        .sum()
}

/// The year and month index of a day since 1970-01-01.
fn month_of(day: i64) -> (i64, i64) {
    let mut index = 1970 * 12;
    while month_start(index + 1) <= day {
        index += 1;
    }
    (index / 12, index)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn scores_come_back_exactly_through_the_scripts() {
    let redis = redkit_testkit::redis().await;
    let lb = RedisLeaderboard::new(&redis, board("exact")).unwrap();
    // Lua would turn 1.9 into 1 and print 2^53 - 1 with 14 digits: neither reaches the caller
    for score in [
        0.1,
        1.9,
        9_007_199_254_740_991.0,
        -1e-300,
        123.456_789_012_345_67,
        1.7976931348623157e308,
    ] {
        let out = lb.submit(Submission::replace("m", score)).await.unwrap();
        assert_eq!(out.score, score);
        assert_eq!(lb.score(ALL, "m").await.unwrap(), Some(score));
        assert_eq!(lb.top(ALL, 1).await.unwrap()[0].score, score);
    }
    let out = lb.submit(Submission::increment("m", 0.5)).await.unwrap();
    assert_eq!(out.score, 1.7976931348623157e308 + 0.5);
    lb.submit(Submission::replace("n", 0.1)).await.unwrap();
    let out = lb.submit(Submission::increment("n", 0.2)).await.unwrap();
    assert_eq!(out.score, 0.1 + 0.2, "the same double arithmetic as Rust");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_increments_from_two_handles_all_count() {
    let (a, b) = (redkit_testkit::redis().await, redkit_testkit::redis().await);
    let name = redkit_testkit::prefix("race");
    let make = |r: &redkit_core::Redis| -> Arc<dyn Leaderboard> {
        Arc::new(
            RedisLeaderboard::new(
                r,
                Board::named("race").prefix(&name).periods([Period::Daily]),
            )
            .unwrap(),
        )
    };
    let boards = [make(&a), make(&b)];
    let mut tasks = Vec::new();
    for t in 0..64 {
        let lb = boards[t % 2].clone();
        tasks.push(tokio::spawn(async move {
            for i in 0..20 {
                lb.submit_batch(&[
                    Submission::increment(format!("p{}", i % 4), 1.0),
                    Submission::best("best", f64::from((t * 20 + i) as u32)),
                ])
                .await
                .unwrap();
            }
        }));
    }
    for t in tasks {
        t.await.unwrap();
    }
    for scope in [Scope::AllTime, Scope::Current(Period::Daily)] {
        for p in 0..4 {
            let s = boards[0].score(&scope, &format!("p{p}")).await.unwrap();
            assert_eq!(s, Some(64.0 * 5.0), "{scope:?} p{p}");
        }
        assert_eq!(
            boards[1].score(&scope, "best").await.unwrap(),
            Some(63.0 * 20.0 + 19.0)
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_key_of_another_type_fails_the_call_not_the_process() {
    let redis = redkit_testkit::redis().await;
    let lb = RedisLeaderboard::new(&redis, board("foreign")).unwrap();
    let _: () = redis
        .query(cmd("SET").arg(format!("{}:all", lb.key())).arg("x"))
        .await
        .unwrap();
    let e = lb.submit(Submission::replace("m", 1.0)).await.unwrap_err();
    assert!(matches!(e, Error::Store(_)), "{e:?}");
    let e = lb.top(ALL, 1).await.unwrap_err();
    assert!(matches!(e, Error::Store(_)), "{e:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_server_that_goes_away_is_a_store_error() {
    let mut server = redkit_testkit::Server::start();
    let redis = server.redis().await;
    let lb = RedisLeaderboard::new(&redis, board("gone")).unwrap();
    lb.submit(Submission::replace("m", 1.0)).await.unwrap();
    server.kill();
    let e = lb.rank(ALL, "m").await.unwrap_err();
    assert!(matches!(e, Error::Store(_)), "{e:?}");
}

/// The server's time in ms.
async fn server_ms(redis: &redkit_core::Redis) -> i64 {
    let t: (i64, i64) = redis.query(&cmd("TIME")).await.unwrap();
    t.0 * 1000 + t.1 / 1000
}

async fn members(lb: &RedisLeaderboard, scope: &Scope) -> Vec<String> {
    lb.range(scope, 0, 100)
        .await
        .unwrap()
        .into_iter()
        .map(|e| e.member)
        .collect()
}

/// Item 9 of issue 18: the current period's board is one of the keys the client passes
/// (KEYS), picked by the server's clock. An hourly board whose UTC offset puts the end
/// of an hour two seconds ahead on the server: a submission before it and one after it
/// land on consecutive boards, and reads before and after agree.
async fn across_a_period_boundary(redis: redkit_core::Redis) {
    let mut attempt = 0;
    loop {
        attempt += 1;
        let now = server_ms(&redis).await;
        let secs = now / 1000;
        // the hour ends at `boundary` (server seconds) in this offset
        let offset = 3598 - secs.rem_euclid(3600);
        let boundary_ms = (secs + 2) * 1000;
        let lb = RedisLeaderboard::new(
            &redis,
            board("boundary")
                .periods([Period::Hourly])
                .utc_offset(i32::try_from(offset).unwrap())
                .keep_finished(1),
        )
        .unwrap();
        lb.submit(Submission::replace("before", 1.0)).await.unwrap();
        let current = Scope::Current(Period::Hourly);
        let read_before = members(&lb, &current).await;
        if server_ms(&redis).await >= boundary_ms - 200 {
            // too slow a machine to stay before the boundary: try the next one
            assert!(attempt < 5, "never managed to write before a boundary");
            continue;
        }
        assert_eq!(read_before, ["before"]);
        while server_ms(&redis).await < boundary_ms + 50 {
            tokio::time::sleep(std::time::Duration::from_millis(50)).await;
        }
        lb.submit(Submission::replace("after", 2.0)).await.unwrap();
        assert_eq!(members(&lb, &current).await, ["after"]);
        assert_eq!(
            members(&lb, &Scope::Previous(Period::Hourly, 1)).await,
            ["before"]
        );
        assert_eq!(members(&lb, ALL).await, ["after", "before"]);
        // the period boards are separate keys, each declared by the client
        let hour = |ms: i64| (ms / 1000 + offset).div_euclid(3600);
        for (index, member) in [
            (hour(boundary_ms) - 1, "before"),
            (hour(boundary_ms), "after"),
        ] {
            let key = format!("{}:h:{index}", lb.key());
            let on: Vec<String> = redis
                .query(cmd("ZRANGE").arg(&key).arg(0).arg(-1))
                .await
                .unwrap();
            assert_eq!(on, [member], "{key}");
        }
        return;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_period_boundary_on_the_servers_clock_standalone() {
    across_a_period_boundary(redkit_testkit::redis().await).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_period_boundary_on_the_servers_clock_cluster() {
    across_a_period_boundary(redkit_testkit::cluster().redis().await).await;
}

/// A client clock an hour off passes the right board among its candidates; five hours
/// off, it passes none, the script names the server's period, and the retry lands on it.
/// Either way writes and reads go to the server's current period.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_skewed_client_clock_still_uses_the_servers_period() {
    let redis = redkit_testkit::redis().await;
    let now = server_ms(&redis).await;
    let server_hour = (now / 1000).div_euclid(3600);
    for skew_hours in [-5i64, -1, 1, 5] {
        let at =
            std::time::Duration::from_millis(u64::try_from(now + skew_hours * 3_600_000).unwrap());
        let lb = RedisLeaderboard::new(&redis, board("skew").periods([Period::Hourly]))
            .unwrap()
            .with_client_clock(redkit_core::ManualClock::new(at));
        lb.submit(Submission::replace("m", 7.0)).await.unwrap();
        let current = Scope::Current(Period::Hourly);
        assert_eq!(members(&lb, &current).await, ["m"], "skew {skew_hours} h");
        assert_eq!(
            lb.count(&Scope::Previous(Period::Hourly, 1)).await.unwrap(),
            0
        );
        let key = format!("{}:h:{server_hour}", lb.key());
        let n: u64 = redis.query(cmd("ZCARD").arg(&key)).await.unwrap();
        assert_eq!(n, 1, "skew {skew_hours} h: {key}");
        assert_eq!(lb.remove(&["m"]).await.unwrap(), 1);
        let n: u64 = redis.query(cmd("ZCARD").arg(&key)).await.unwrap();
        assert_eq!(n, 0, "removed from the server's current board too");
    }
}
