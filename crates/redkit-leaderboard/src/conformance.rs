//! The suite every [`Leaderboard`] backend must pass. Run it with
//! [`crate::conformance_suite!`].
#![allow(clippy::unwrap_used, clippy::expect_used, missing_docs)]

use std::fmt;
use std::sync::Arc;
use std::time::{Duration, UNIX_EPOCH};

use crate::{
    Aggregate, Board, Entry, Error, Leaderboard, Order, Period, Ranking, Removal, Scope,
    Submission, TieBreak,
};

pub use redkit_testkit::Time;

type Make = dyn Fn(Board) -> crate::Result<Arc<dyn Leaderboard>> + Send + Sync;

/// Builds leaderboards over one store, each on a fresh key prefix, and says how time passes.
#[derive(Clone)]
pub struct Suite {
    make: Arc<Make>,
    pub time: Time,
}

impl fmt::Debug for Suite {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Suite").field("time", &self.time).finish()
    }
}

impl Suite {
    pub fn new(
        time: Time,
        make: impl Fn(Board) -> crate::Result<Arc<dyn Leaderboard>> + Send + Sync + 'static,
    ) -> Suite {
        Suite {
            make: Arc::new(make),
            time,
        }
    }

    /// A leaderboard of `board` on a fresh prefix.
    pub fn board(&self, board: Board) -> Arc<dyn Leaderboard> {
        self.try_board(board).unwrap()
    }

    pub fn try_board(&self, board: Board) -> crate::Result<Arc<dyn Leaderboard>> {
        (self.make)(board.prefix(redkit_testkit::prefix("lb")))
    }
}

const ALL: &Scope = &Scope::AllTime;

/// A tie-break at 1 ms from 2020-09-13 for ten years (39 bits: scores up to ±16,383).
pub fn ms_tie_break() -> TieBreak {
    TieBreak::earliest_first(
        UNIX_EPOCH + Duration::from_secs(1_600_000_000),
        Duration::from_millis(1),
        Duration::from_secs(10 * 365 * 86_400),
    )
}

fn members(entries: &[Entry]) -> Vec<&str> {
    entries.iter().map(|e| e.member.as_str()).collect()
}

fn ranks(entries: &[Entry]) -> Vec<u64> {
    entries.iter().map(|e| e.rank).collect()
}

async fn seed(lb: &dyn Leaderboard, scores: &[(&str, f64)]) {
    let subs: Vec<Submission> = scores
        .iter()
        .map(|(m, s)| Submission::replace(*m, *s))
        .collect();
    lb.submit_batch(&subs).await.unwrap();
}

pub async fn ranks_scores_and_pages(s: &Suite) {
    let lb = s.board(Board::named("arena"));
    seed(
        &*lb,
        &[
            ("ann", 10.0),
            ("bob", 40.0),
            ("cid", 30.5),
            ("dee", -5.0),
            ("eve", 20.0),
        ],
    )
    .await;
    assert_eq!(lb.count(ALL).await.unwrap(), 5);
    let top = lb.top(ALL, 3).await.unwrap();
    assert_eq!(members(&top), ["bob", "cid", "eve"]);
    assert_eq!(ranks(&top), [1, 2, 3]);
    assert_eq!(top[1].score, 30.5);
    assert_eq!(members(&lb.page(ALL, 2, 2).await.unwrap()), ["eve", "ann"]);
    assert_eq!(members(&lb.page(ALL, 3, 2).await.unwrap()), ["dee"]);
    assert!(lb.page(ALL, 4, 2).await.unwrap().is_empty());
    assert_eq!(lb.rank(ALL, "dee").await.unwrap(), Some(5));
    assert_eq!(lb.score(ALL, "dee").await.unwrap(), Some(-5.0));
    assert_eq!(lb.rank(ALL, "zed").await.unwrap(), None);
    let got = lb.entries(ALL, &["eve", "zed", "bob"]).await.unwrap();
    assert_eq!(got[0].as_ref().map(|e| e.rank), Some(3));
    assert!(got[1].is_none());
    assert_eq!(got[2].as_ref().map(|e| (e.rank, e.score)), Some((1, 40.0)));
    assert!(
        lb.top(&Scope::combined("nothing"), 5)
            .await
            .unwrap()
            .is_empty()
    );

    let low = s.board(Board::named("laps").order(Order::LowFirst));
    seed(&*low, &[("ann", 61.2), ("bob", 59.9), ("cid", 60.0)]).await;
    assert_eq!(
        members(&low.top(ALL, 10).await.unwrap()),
        ["bob", "cid", "ann"]
    );
    assert_eq!(low.rank(ALL, "ann").await.unwrap(), Some(3));
}

pub async fn equal_scores_order_by_member_on_either_order(s: &Suite) {
    for order in [Order::HighFirst, Order::LowFirst] {
        let lb = s.board(Board::named("ties").order(order));
        seed(
            &*lb,
            &[("carol", 5.0), ("alice", 5.0), ("bob", 5.0), ("dan", 1.0)],
        )
        .await;
        let top = lb.top(ALL, 4).await.unwrap();
        let expected: &[&str] = match order {
            Order::HighFirst => &["alice", "bob", "carol", "dan"],
            _ => &["dan", "alice", "bob", "carol"],
        };
        assert_eq!(members(&top), expected, "{order:?}");
        assert_eq!(ranks(&top), [1, 2, 3, 4]);
    }
}

pub async fn ranking_styles_share_ranks_between_equal_scores(s: &Suite) {
    let scores = [
        ("a", 50.0),
        ("b", 50.0),
        ("c", 30.0),
        ("d", 30.0),
        ("e", 10.0),
    ];
    for (ranking, expected) in [
        (Ranking::Ordinal, [1, 2, 3, 4, 5]),
        (Ranking::Standard, [1, 1, 3, 3, 5]),
        (Ranking::Dense, [1, 1, 2, 2, 3]),
    ] {
        let lb = s.board(Board::named("styles").ranking(ranking));
        seed(&*lb, &scores).await;
        assert_eq!(
            ranks(&lb.top(ALL, 5).await.unwrap()),
            expected,
            "{ranking:?}"
        );
        // runs that start mid-group get the group's rank
        let page = lb.range(ALL, 1, 3).await.unwrap();
        assert_eq!(ranks(&page), expected[1..4], "{ranking:?}");
        let one = lb.entries(ALL, &["d", "e"]).await.unwrap();
        assert_eq!(one[0].as_ref().unwrap().rank, expected[3], "{ranking:?}");
        assert_eq!(one[1].as_ref().unwrap().rank, expected[4], "{ranking:?}");
        let mid = lb.by_score(ALL, 20.0, 40.0, 1, 5).await.unwrap();
        assert_eq!(members(&mid), ["d"]);
        assert_eq!(mid[0].rank, expected[3], "{ranking:?}");

        // a group that empties stops counting: e moves up a dense rank
        lb.remove(&["c", "d"]).await.unwrap();
        let e = lb.entry(ALL, "e").await.unwrap().unwrap();
        let want = match ranking {
            Ranking::Dense => 2,
            _ => 3,
        };
        assert_eq!(e.rank, want, "{ranking:?} after the 30s left");
        // and a group that moves away does too
        lb.submit(Submission::replace("b", 60.0)).await.unwrap();
        lb.submit(Submission::replace("a", 60.0)).await.unwrap();
        lb.submit(Submission::replace("x", 50.0)).await.unwrap();
        let top = lb.top(ALL, 4).await.unwrap();
        assert_eq!(members(&top), ["a", "b", "x", "e"], "{ranking:?}");
        let want: [u64; 4] = match ranking {
            Ranking::Ordinal => [1, 2, 3, 4],
            Ranking::Standard => [1, 1, 3, 4],
            _ => [1, 1, 2, 3],
        };
        assert_eq!(ranks(&top), want, "{ranking:?}");
    }
}

pub async fn submit_modes_replace_keep_best_or_add(s: &Suite) {
    for order in [Order::HighFirst, Order::LowFirst] {
        let lb = s.board(Board::named("modes").order(order));
        let r = lb.submit(Submission::best("m", 10.0)).await.unwrap();
        assert_eq!((r.score, r.changed), (10.0, true));
        let (better, worse) = match order {
            Order::HighFirst => (12.0, 8.0),
            _ => (8.0, 12.0),
        };
        let r = lb.submit(Submission::best("m", worse)).await.unwrap();
        assert_eq!((r.score, r.changed), (10.0, false), "{order:?}");
        let r = lb.submit(Submission::best("m", better)).await.unwrap();
        assert_eq!((r.score, r.changed), (better, true), "{order:?}");
        let r = lb.submit(Submission::replace("m", worse)).await.unwrap();
        assert_eq!((r.score, r.changed), (worse, true));
        let r = lb.submit(Submission::replace("m", worse)).await.unwrap();
        assert!(!r.changed, "an equal replace changes nothing");
        let out = lb
            .submit_batch(&[
                Submission::increment("n", 2.5),
                Submission::increment("n", -1.0),
                Submission::increment("m", 0.0),
            ])
            .await
            .unwrap();
        assert_eq!(out[0].score, 2.5);
        assert_eq!(out[1].score, 1.5);
        assert_eq!((out[2].score, out[2].changed), (worse, false));
        assert_eq!(lb.score(ALL, "n").await.unwrap(), Some(1.5));
        let r = lb.submit(Submission::increment("z", 0.0)).await.unwrap();
        assert_eq!(
            (r.score, r.changed),
            (0.0, true),
            "a new member starts at 0"
        );
        assert_eq!(lb.count(ALL).await.unwrap(), 3);
    }
}

pub async fn a_time_tie_break_ranks_who_reached_a_score_first(s: &Suite) {
    for order in [Order::HighFirst, Order::LowFirst] {
        let lb = s.board(Board::named("race").order(order).tie_break(ms_tie_break()));
        // names in reverse order of arrival, so member order cannot explain the result
        for m in ["c-first", "b-second", "a-third"] {
            lb.submit(Submission::replace(m, 100.0)).await.unwrap();
            s.time.pass(Duration::from_millis(3)).await;
        }
        lb.submit(Submission::replace("z-other", 7.0))
            .await
            .unwrap();
        s.time.pass(Duration::from_millis(3)).await;
        // reaching 100 by increments, later, ranks after the earlier 100s
        lb.submit(Submission::increment("d-sum", 60.0))
            .await
            .unwrap();
        s.time.pass(Duration::from_millis(3)).await;
        lb.submit(Submission::increment("d-sum", 40.0))
            .await
            .unwrap();
        // an equal best keeps the earlier time
        lb.submit(Submission::best("c-first", 100.0)).await.unwrap();
        let hundreds: Vec<String> = lb
            .top(ALL, 5)
            .await
            .unwrap()
            .into_iter()
            .filter(|e| e.score == 100.0)
            .map(|e| e.member)
            .collect();
        assert_eq!(
            hundreds,
            ["c-first", "b-second", "a-third", "d-sum"],
            "{order:?}"
        );
        assert_eq!(lb.score(ALL, "z-other").await.unwrap(), Some(7.0));

        // out of budget, fractional, or an increment that leaves the budget: typed, and the
        // batch is all or nothing
        let max = ms_tie_break().max_score().unwrap() as f64;
        assert_eq!(max, 16_383.0);
        lb.submit(Submission::replace("edge", -max)).await.unwrap();
        assert_eq!(lb.score(ALL, "edge").await.unwrap(), Some(-max));
        for bad in [max + 1.0, -max - 1.0, 1.5] {
            let e = lb
                .submit(Submission::replace("bad", bad))
                .await
                .unwrap_err();
            assert!(matches!(e, Error::InvalidScore(_)), "{bad}: {e:?}");
        }
        let e = lb
            .submit_batch(&[
                Submission::replace("fresh", 1.0),
                Submission::increment("edge", -1.0),
            ])
            .await
            .unwrap_err();
        assert!(matches!(e, Error::InvalidScore(_)), "{e:?}");
        assert_eq!(
            lb.score(ALL, "fresh").await.unwrap(),
            None,
            "nothing of the batch"
        );
        assert_eq!(lb.score(ALL, "edge").await.unwrap(), Some(-max));
    }
}

pub async fn around_a_member_slides_at_the_edges(s: &Suite) {
    let lb = s.board(Board::named("around"));
    let scores: Vec<(String, f64)> = (0..10)
        .map(|i| (format!("m{i}"), f64::from(100 - i)))
        .collect();
    let refs: Vec<(&str, f64)> = scores.iter().map(|(m, v)| (m.as_str(), *v)).collect();
    seed(&*lb, &refs).await;
    let mid = lb.around(ALL, "m5", 2).await.unwrap();
    assert_eq!(members(&mid), ["m3", "m4", "m5", "m6", "m7"]);
    assert_eq!(ranks(&mid), [4, 5, 6, 7, 8]);
    assert_eq!(
        members(&lb.around(ALL, "m0", 2).await.unwrap()),
        ["m0", "m1", "m2", "m3", "m4"]
    );
    assert_eq!(
        members(&lb.around(ALL, "m9", 2).await.unwrap()),
        ["m5", "m6", "m7", "m8", "m9"]
    );
    assert_eq!(lb.around(ALL, "m9", 20).await.unwrap().len(), 10);
    assert_eq!(members(&lb.around(ALL, "m4", 0).await.unwrap()), ["m4"]);
    assert!(lb.around(ALL, "nobody", 2).await.unwrap().is_empty());
}

pub async fn percentiles_and_score_ranges(s: &Suite) {
    for order in [Order::HighFirst, Order::LowFirst] {
        let lb = s.board(Board::named("pct").order(order));
        seed(
            &*lb,
            &[("a", 1.0), ("b", 2.0), ("c", 2.0), ("d", 3.0), ("e", 4.0)],
        )
        .await;
        let (best, worst) = match order {
            Order::HighFirst => ("e", "a"),
            _ => ("a", "e"),
        };
        assert_eq!(
            lb.percentile(ALL, best).await.unwrap(),
            Some(80.0),
            "{order:?}"
        );
        assert_eq!(
            lb.percentile(ALL, worst).await.unwrap(),
            Some(0.0),
            "{order:?}"
        );
        let b = lb.percentile(ALL, "b").await.unwrap();
        assert_eq!(
            b,
            lb.percentile(ALL, "c").await.unwrap(),
            "ties share a percentile"
        );
        let want = match order {
            Order::HighFirst => 20.0,
            _ => 40.0,
        };
        assert_eq!(b, Some(want), "{order:?}");
        assert_eq!(lb.percentile(ALL, "nobody").await.unwrap(), None);

        let mid = lb.by_score(ALL, 2.0, 3.0, 0, 10).await.unwrap();
        let want: &[&str] = match order {
            Order::HighFirst => &["d", "b", "c"],
            _ => &["b", "c", "d"],
        };
        assert_eq!(members(&mid), want, "{order:?}");
        let all = lb
            .by_score(ALL, f64::NEG_INFINITY, f64::INFINITY, 0, 10)
            .await
            .unwrap();
        assert_eq!(all.len(), 5);
        assert!(lb.by_score(ALL, 2.5, 2.9, 0, 10).await.unwrap().is_empty());
        let e = lb.by_score(ALL, 3.0, 2.0, 0, 10).await.unwrap_err();
        assert!(matches!(e, Error::InvalidArgument(_)), "{e:?}");
    }
    let lone = s.board(Board::named("lone"));
    seed(&*lone, &[("only", 1.0)]).await;
    assert_eq!(lone.percentile(ALL, "only").await.unwrap(), Some(0.0));
}

pub async fn member_data_comes_with_entries_and_goes_with_removals(s: &Suite) {
    let lb = s.board(
        Board::named("data")
            .ranking(Ranking::Dense)
            .member_data(true),
    );
    let subs: Vec<Submission> = (0..6)
        .map(|i| {
            Submission::replace(format!("p{i}"), f64::from(60 - i * 10))
                .data(format!("Player {i} {{json}}"))
        })
        .collect();
    lb.submit_batch(&subs).await.unwrap();
    let top = lb.top(ALL, 2).await.unwrap();
    assert_eq!(top[0].data.as_deref(), Some("Player 0 {json}"));
    lb.submit(Submission::increment("p0", 1.0)).await.unwrap();
    let e = lb.entry(ALL, "p0").await.unwrap().unwrap();
    assert_eq!(
        e.data.as_deref(),
        Some("Player 0 {json}"),
        "data survives score updates"
    );
    lb.submit(Submission::increment("p0", 1.0).data("renamed"))
        .await
        .unwrap();
    assert_eq!(
        lb.entry(ALL, "p0").await.unwrap().unwrap().data.as_deref(),
        Some("renamed")
    );

    // every kind of removal takes the data with it: a returning member has none
    assert_eq!(lb.remove(&["p1", "ghost"]).await.unwrap(), 1);
    assert_eq!(
        lb.remove_range(ALL, Removal::OutsideTop(3)).await.unwrap(),
        2
    );
    assert_eq!(members(&lb.top(ALL, 10).await.unwrap()), ["p0", "p2", "p3"]);
    let n = lb
        .remove_range(
            ALL,
            Removal::ScoreRange {
                min: 30.0,
                max: 40.0,
            },
        )
        .await
        .unwrap();
    assert_eq!(n, 2);
    let back: Vec<Submission> = ["p1", "p2", "p3", "p4", "p5"]
        .iter()
        .map(|m| Submission::replace(*m, 1.0))
        .collect();
    lb.submit_batch(&back).await.unwrap();
    let entries = lb.top(ALL, 10).await.unwrap();
    assert_eq!(entries.len(), 6);
    for e in &entries[1..] {
        assert_eq!(e.data, None, "{} kept data after its removal", e.member);
    }
    // dense ranks stayed right through the removals: p0 first, everyone else tied second
    assert_eq!(ranks(&entries), [1, 2, 2, 2, 2, 2]);
    lb.clear(ALL).await.unwrap();
    assert_eq!(lb.count(ALL).await.unwrap(), 0);
    lb.submit(Submission::replace("p0", 1.0)).await.unwrap();
    assert_eq!(lb.entry(ALL, "p0").await.unwrap().unwrap().data, None);
}

pub async fn period_boards_are_written_together_and_expire(s: &Suite) {
    let lb = s.board(
        Board::named("periodic")
            .member_data(true)
            .periods([Period::Daily, Period::Weekly, Period::Monthly])
            .keep_finished(1),
    );
    lb.submit(Submission::increment("ann", 5.0).data("Ann"))
        .await
        .unwrap();
    lb.submit(Submission::increment("bob", 3.0)).await.unwrap();
    let mut scopes = vec![
        Scope::AllTime,
        Scope::Current(Period::Daily),
        Scope::Current(Period::Weekly),
        Scope::Current(Period::Monthly),
        Scope::Previous(Period::Daily, 0),
    ];
    match &s.time {
        Time::Manual(clock) => scopes.push(Scope::on(
            Period::Weekly,
            UNIX_EPOCH + redkit_core::Clock::now(clock),
        )),
        _ => scopes.push(Scope::on(Period::Weekly, std::time::SystemTime::now())),
    }
    for scope in scopes {
        let top = lb.top(&scope, 5).await.unwrap();
        assert_eq!(members(&top), ["ann", "bob"], "{scope:?}");
        assert_eq!(top[0].data.as_deref(), Some("Ann"), "{scope:?}");
    }
    assert_eq!(
        lb.count(&Scope::Current(Period::Hourly)).await.unwrap(),
        0,
        "not kept"
    );
    assert_eq!(
        lb.count(&Scope::Previous(Period::Daily, 1)).await.unwrap(),
        0
    );
    lb.remove(&["bob"]).await.unwrap();
    assert_eq!(
        lb.count(&Scope::Current(Period::Daily)).await.unwrap(),
        1,
        "removed everywhere"
    );

    if let Time::Manual(_) = s.time {
        s.time.pass(Duration::from_secs(86_400)).await;
        lb.submit(Submission::increment("ann", 1.0)).await.unwrap();
        assert_eq!(
            lb.score(&Scope::Current(Period::Daily), "ann")
                .await
                .unwrap(),
            Some(1.0)
        );
        assert_eq!(
            lb.score(&Scope::Previous(Period::Daily, 1), "ann")
                .await
                .unwrap(),
            Some(5.0)
        );
        assert_eq!(lb.score(ALL, "ann").await.unwrap(), Some(6.0));
        s.time.pass(Duration::from_secs(86_400)).await;
        assert_eq!(
            lb.count(&Scope::Previous(Period::Daily, 2)).await.unwrap(),
            0,
            "expired"
        );
        assert_eq!(
            lb.count(&Scope::Previous(Period::Daily, 1)).await.unwrap(),
            1,
            "kept"
        );
        assert_eq!(
            lb.count(&Scope::Current(Period::Weekly)).await.unwrap()
                + lb.count(&Scope::Previous(Period::Weekly, 1)).await.unwrap(),
            1
        );
    }
}

pub async fn combined_boards_sum_or_pick_scores(s: &Suite) {
    let lb = s.board(
        Board::named("combo")
            .tie_break(ms_tie_break())
            .member_data(true),
    );
    seed(&*lb, &[("ann", 10.0), ("bob", 20.0)]).await;
    lb.submit(Submission::replace("ann", 10.0).data("Ann"))
        .await
        .unwrap();
    assert_eq!(
        lb.combine("snap", &[Scope::AllTime], Aggregate::Sum, None)
            .await
            .unwrap(),
        2
    );
    s.time.pass(Duration::from_millis(3)).await;
    seed(&*lb, &[("ann", 15.0), ("cid", 5.0)]).await;
    let snap = Scope::combined("snap");
    let sources = [snap.clone(), Scope::AllTime];
    assert_eq!(
        lb.combine("sum", &sources, Aggregate::Sum, None)
            .await
            .unwrap(),
        3
    );
    let sum = lb.top(&Scope::combined("sum"), 5).await.unwrap();
    assert_eq!(members(&sum), ["bob", "ann", "cid"]);
    assert_eq!(
        sum.iter().map(|e| e.score).collect::<Vec<_>>(),
        [40.0, 25.0, 5.0]
    );
    assert_eq!(sum[1].data.as_deref(), Some("Ann"), "data comes along");
    lb.combine(
        "max",
        &sources,
        Aggregate::Max,
        Some(Duration::from_secs(60)),
    )
    .await
    .unwrap();
    let max = lb.top(&Scope::combined("max"), 5).await.unwrap();
    assert_eq!(
        max.iter()
            .map(|e| (e.member.as_str(), e.score))
            .collect::<Vec<_>>(),
        [("bob", 20.0), ("ann", 15.0), ("cid", 5.0)]
    );
    lb.combine("min", &sources, Aggregate::Min, None)
        .await
        .unwrap();
    assert_eq!(
        lb.score(&Scope::combined("min"), "ann").await.unwrap(),
        Some(10.0)
    );
    // bob reached 20 at the same time in both sources, ann's 10 is older: equal scores keep
    // the earliest time, so a later 20 ranks after bob
    lb.submit(Submission::replace("ann", 20.0)).await.unwrap();
    lb.combine("max", &sources, Aggregate::Max, None)
        .await
        .unwrap();
    assert_eq!(
        members(&lb.top(&Scope::combined("max"), 2).await.unwrap()),
        ["bob", "ann"]
    );
    // a combined board is replaced, not merged into
    lb.combine("sum", &[snap], Aggregate::Sum, None)
        .await
        .unwrap();
    assert_eq!(lb.count(&Scope::combined("sum")).await.unwrap(), 2);
    // sums that leave the tie-break budget are refused
    lb.submit(Submission::replace("big", 10_000.0))
        .await
        .unwrap();
    let e = lb
        .combine(
            "over",
            &[Scope::AllTime, Scope::AllTime],
            Aggregate::Sum,
            None,
        )
        .await
        .unwrap_err();
    assert!(matches!(e, Error::InvalidScore(_)), "{e:?}");
}

pub async fn bad_input_is_a_typed_error(s: &Suite) {
    let lb = s.board(Board::named("bad"));
    for score in [f64::NAN, f64::INFINITY, f64::NEG_INFINITY] {
        let e = lb
            .submit(Submission::replace("m", score))
            .await
            .unwrap_err();
        assert!(matches!(e, Error::InvalidScore(_)), "{score}: {e:?}");
    }
    let huge = "x".repeat(crate::MAX_MEMBER_LEN + 1);
    for member in ["", huge.as_str()] {
        let e = lb
            .submit(Submission::replace(member, 1.0))
            .await
            .unwrap_err();
        assert!(matches!(e, Error::InvalidMember(_)), "{e:?}");
        let e = lb.rank(ALL, member).await.unwrap_err();
        assert!(matches!(e, Error::InvalidMember(_)), "{e:?}");
    }
    let e = lb
        .submit(Submission::replace("m", 1.0).data("name"))
        .await
        .unwrap_err();
    assert!(
        matches!(e, Error::InvalidArgument(_)),
        "data without member_data: {e:?}"
    );
    let with_data = s.board(Board::named("bad-data").member_data(true));
    let e = with_data
        .submit(Submission::replace("m", 1.0).data("d".repeat(crate::MAX_DATA_LEN + 1)))
        .await
        .unwrap_err();
    assert!(matches!(e, Error::InvalidMember(_)), "{e:?}");
    // an increment that overflows to infinity without a tie-break
    lb.submit(Submission::replace("big", f64::MAX))
        .await
        .unwrap();
    let e = lb
        .submit(Submission::increment("big", f64::MAX))
        .await
        .unwrap_err();
    assert!(matches!(e, Error::InvalidScore(_)), "{e:?}");
    assert_eq!(lb.score(ALL, "big").await.unwrap(), Some(f64::MAX));

    for (what, result) in [
        ("page 0", lb.page(ALL, 0, 10).await),
        ("count 0", lb.top(ALL, 0).await),
        (
            "count too big",
            lb.top(ALL, crate::MAX_BATCH as u64 + 1).await,
        ),
        (
            "around too wide",
            lb.around(ALL, "m", crate::MAX_BATCH as u64).await,
        ),
        ("NaN bound", lb.by_score(ALL, f64::NAN, 1.0, 0, 1).await),
        ("braces", lb.top(&Scope::combined("a{b}"), 1).await),
        ("empty name", lb.top(&Scope::combined(""), 1).await),
    ] {
        let e = result.unwrap_err();
        assert!(
            matches!(
                e,
                Error::InvalidArgument(_) | Error::InvalidName(_) | Error::InvalidScore(_)
            ),
            "{what}: {e:?}"
        );
    }
    let e = lb
        .combine("c", &[], Aggregate::Sum, None)
        .await
        .unwrap_err();
    assert!(matches!(e, Error::InvalidArgument(_)), "{e:?}");
    let e = lb
        .combine("c", &[Scope::AllTime], Aggregate::Sum, Some(Duration::ZERO))
        .await
        .unwrap_err();
    assert!(matches!(e, Error::InvalidArgument(_)), "{e:?}");
    let too_many: Vec<Submission> = (0..=crate::MAX_BATCH)
        .map(|i| Submission::replace(i.to_string(), 1.0))
        .collect();
    assert!(matches!(
        lb.submit_batch(&too_many).await.unwrap_err(),
        Error::InvalidArgument(_)
    ));

    for board in [
        Board::named("a{b}"),
        Board::named(""),
        Board::named("x").periods([Period::Daily, Period::Daily]),
        Board::named("x").utc_offset(20 * 3600),
        Board::named("x").tie_break(TieBreak::earliest_first(
            UNIX_EPOCH,
            Duration::from_micros(10),
            Duration::from_secs(1),
        )),
        Board::named("x").tie_break(TieBreak::earliest_first(
            UNIX_EPOCH,
            Duration::from_millis(1),
            Duration::from_secs(10_000 * 365 * 86_400),
        )),
    ] {
        let e = s.try_board(board.clone()).unwrap_err();
        assert!(
            matches!(e, Error::InvalidName(_) | Error::InvalidConfig(_)),
            "{board:?}: {e:?}"
        );
    }
    // a tie-break whose window has not started (or has ended) cannot encode
    let future = s.board(Board::named("future").tie_break(TieBreak::earliest_first(
        UNIX_EPOCH + Duration::from_secs(4_000_000_000),
        Duration::from_secs(1),
        Duration::from_secs(86_400),
    )));
    let e = future
        .submit(Submission::replace("m", 1.0))
        .await
        .unwrap_err();
    assert!(matches!(e, Error::HorizonPassed(_)), "{e:?}");
}

/// Item 10 of issue 18: extreme numbers are a typed error before anything is sent, or
/// the exact answer (nothing lies past position 2^53), never a panic or a wrapped value.
pub async fn extreme_numbers_are_typed_errors_or_exact_answers(s: &Suite) {
    let lb = s.board(
        Board::named("extreme")
            .member_data(true)
            .ranking(Ranking::Standard)
            .periods([Period::Daily])
            .utc_offset(3600),
    );
    lb.submit(Submission::replace("m", 1.0)).await.unwrap();
    let e = lb.top(ALL, u64::MAX).await.unwrap_err();
    assert!(matches!(e, Error::InvalidArgument(_)), "{e:?}");
    let e = lb.around(ALL, "m", u64::MAX).await.unwrap_err();
    assert!(matches!(e, Error::InvalidArgument(_)), "{e:?}");
    for start in [u64::MAX, 1 << 53, (1 << 53) + 1] {
        assert!(
            lb.range(ALL, start, 10).await.unwrap().is_empty(),
            "{start}"
        );
        let daily = Scope::Current(Period::Daily);
        assert!(
            lb.range(&daily, start, 10).await.unwrap().is_empty(),
            "{start}"
        );
    }
    let all = lb
        .by_score(ALL, f64::NEG_INFINITY, f64::INFINITY, u64::MAX, 10)
        .await
        .unwrap();
    assert!(all.is_empty());
    for n in [u64::MAX, 1 << 53] {
        assert_eq!(
            lb.remove_range(ALL, Removal::OutsideTop(n)).await.unwrap(),
            0
        );
    }
    let e = lb
        .remove_range(
            ALL,
            Removal::ScoreRange {
                min: f64::NAN,
                max: 1.0,
            },
        )
        .await
        .unwrap_err();
    assert!(matches!(e, Error::InvalidScore(_)), "{e:?}");
    assert_eq!(lb.count(ALL).await.unwrap(), 1, "nothing was removed");
    for ttl in [
        Duration::MAX,
        Duration::from_millis(u64::MAX),
        Duration::from_secs(101 * 365 * 86_400),
    ] {
        let e = lb
            .combine("c", &[Scope::AllTime], Aggregate::Sum, Some(ttl))
            .await
            .unwrap_err();
        assert!(matches!(e, Error::InvalidArgument(_)), "{ttl:?}: {e:?}");
    }
    assert_eq!(
        lb.combine(
            "c",
            &[Scope::AllTime],
            Aggregate::Sum,
            Some(Duration::from_secs(3600))
        )
        .await
        .unwrap(),
        1
    );
    // the last second SystemTime holds, and a day after the year 9999
    for secs in [i64::MAX as u64, 253_402_300_800] {
        let at = UNIX_EPOCH + Duration::from_secs(secs);
        let e = lb.top(&Scope::on(Period::Daily, at), 1).await.unwrap_err();
        assert!(matches!(e, Error::InvalidArgument(_)), "{secs}: {e:?}");
    }
    let last_day = UNIX_EPOCH + Duration::from_secs(253_402_300_799);
    assert!(
        lb.top(&Scope::on(Period::Yearly, last_day), 1)
            .await
            .unwrap()
            .is_empty()
    );
    let e = lb
        .top(&Scope::Previous(Period::Daily, u32::MAX), 1)
        .await
        .map(|v| v.len());
    assert!(matches!(e, Ok(0)), "{e:?}");
    for tie in [
        TieBreak::earliest_first(UNIX_EPOCH, Duration::ZERO, Duration::from_secs(60)),
        TieBreak::earliest_first(UNIX_EPOCH, Duration::MAX, Duration::MAX),
        TieBreak::earliest_first(UNIX_EPOCH, Duration::from_millis(1), Duration::MAX),
        TieBreak::earliest_first(
            UNIX_EPOCH + Duration::from_secs(i64::MAX as u64),
            Duration::from_secs(1),
            Duration::from_secs(60),
        ),
    ] {
        let e = s.try_board(Board::named("t").tie_break(tie)).unwrap_err();
        assert!(matches!(e, Error::InvalidConfig(_)), "{tie:?}: {e:?}");
    }
}

pub async fn boards_are_independent(s: &Suite) {
    let a = s.board(Board::named("one"));
    let b = s.board(Board::named("one"));
    a.submit(Submission::replace("m", 1.0)).await.unwrap();
    assert_eq!(b.count(ALL).await.unwrap(), 0, "another prefix");
    a.clear(&Scope::Current(Period::Daily)).await.unwrap();
    assert_eq!(
        a.count(ALL).await.unwrap(),
        1,
        "clearing one scope leaves the others"
    );
}

/// Runs every case of the suite as a test: `conformance_suite!(name, async { Suite })`.
#[macro_export]
macro_rules! conformance_suite {
    ($name:ident, $make:expr) => {
        mod $name {
            #[allow(unused_imports)]
            use super::*;
            $crate::conformance_suite!(@case $make;
                ranks_scores_and_pages,
                equal_scores_order_by_member_on_either_order,
                ranking_styles_share_ranks_between_equal_scores,
                submit_modes_replace_keep_best_or_add,
                a_time_tie_break_ranks_who_reached_a_score_first,
                around_a_member_slides_at_the_edges,
                percentiles_and_score_ranges,
                member_data_comes_with_entries_and_goes_with_removals,
                period_boards_are_written_together_and_expire,
                combined_boards_sum_or_pick_scores,
                bad_input_is_a_typed_error,
                extreme_numbers_are_typed_errors_or_exact_answers,
                boards_are_independent
            );
        }
    };
    (@case $make:expr; $($case:ident),+) => {
        $(
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn $case() {
                let suite: $crate::conformance::Suite = $make.await;
                $crate::conformance::$case(&suite).await;
            }
        )+
    };
}
