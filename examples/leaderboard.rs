//! `cargo run --example leaderboard`: a game's boards — all-time, today and this week in
//! one write, ties going to whoever got there first, display names with the ranks, a
//! player's neighbourhood, and a combined board.
//!
//! Uses `REDIS_URL`, else a private `redis-server` from PATH, else the in-memory board.
#![allow(clippy::expect_used, clippy::unwrap_used)]

use std::sync::Arc;
use std::time::{Duration, UNIX_EPOCH};

use redkit::leaderboard::{
    Aggregate, Board, Entry, Leaderboard, MemoryLeaderboard, Period, Ranking, RedisLeaderboard,
    Removal, Scope, Submission, TieBreak,
};

fn show(title: &str, entries: &[Entry]) {
    println!("{title}:");
    for e in entries {
        let name = e.data.as_deref().unwrap_or(&e.member);
        println!("  #{:<3} {:<10} {:>6}", e.rank, name, e.score);
    }
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    // Scores are points; equal points go to whoever reached them first (1 s steps from
    // 2025 for 50 years: scores up to ±8,388,607).
    let board = Board::named(format!("arena-{}", std::process::id()))
        .prefix("example")
        .member_data(true)
        .periods([Period::Daily, Period::Weekly])
        .ranking(Ranking::Standard)
        .tie_break(TieBreak::earliest_first(
            UNIX_EPOCH + Duration::from_secs(1_735_689_600),
            Duration::from_secs(1),
            Duration::from_secs(50 * 365 * 86_400),
        ));
    let local = redkit_testkit::local_redis().await?;
    let lb: Arc<dyn Leaderboard> = match &local {
        Some(l) => Arc::new(RedisLeaderboard::new(&l.redis, board)?),
        None => {
            println!("no Redis available: using the in-memory board");
            Arc::new(MemoryLeaderboard::new(board)?)
        }
    };

    let players = ["ada", "bo", "cy", "di", "ed", "flo", "gus", "hal"];
    let subs: Vec<Submission> = players
        .iter()
        .enumerate()
        .map(|(i, p)| Submission::increment(*p, (i as f64 * 37.0) % 200.0).data(p.to_uppercase()))
        .collect();
    lb.submit_batch(&subs).await?;
    // bo reaches gus's score later: same points, ranked after
    let gus = lb.score(&Scope::AllTime, "gus").await?.unwrap_or(0.0);
    let bo = lb.score(&Scope::AllTime, "bo").await?.unwrap_or(0.0);
    tokio::time::sleep(Duration::from_millis(1100)).await;
    lb.submit(Submission::increment("bo", gus - bo)).await?;

    show("all-time top 5", &lb.top(&Scope::AllTime, 5).await?);
    show(
        "equal points: gus got there first, both share the rank (standard ranking)",
        &lb.by_score(&Scope::AllTime, gus, gus, 0, 10).await?,
    );
    show(
        "today, around cy",
        &lb.around(&Scope::Current(Period::Daily), "cy", 1).await?,
    );
    let pct = lb.percentile(&Scope::AllTime, "cy").await?.unwrap_or(0.0);
    println!("cy beats {pct:.0}% of the board");

    // keep-the-best submissions do not lower a score
    let kept = lb.submit(Submission::best("ada", -5.0)).await?;
    println!(
        "ada submits a worse run: score stays {} (changed: {})",
        kept.score, kept.changed
    );

    // a combined board: all-time plus this week counted twice
    lb.combine(
        "double-week",
        &[Scope::AllTime, Scope::Current(Period::Weekly)],
        Aggregate::Sum,
        Some(Duration::from_secs(3600)),
    )
    .await?;
    show(
        "all-time + this week",
        &lb.top(&Scope::combined("double-week"), 3).await?,
    );

    // trimming the tail takes the players' names with it
    let gone = lb
        .remove_range(&Scope::AllTime, Removal::OutsideTop(5))
        .await?;
    println!(
        "kept the top 5 all-time, removed {gone}; board size {}",
        lb.count(&Scope::AllTime).await?
    );

    match lb.submit(Submission::replace("ada", f64::NAN)).await {
        Err(e) => println!("a NaN score is refused: {e}"),
        Ok(s) => println!("unexpected: {s:?}"),
    }
    Ok(())
}
