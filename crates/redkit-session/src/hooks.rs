//! Test-only pause points between the round trips of multi-step operations (feature
//! `__test-hooks`, not part of the public API). Without the feature every point is an
//! empty function the compiler removes.
//!
//! A test arms a point for one subject (a session handle's hex, or a user id) with
//! [`pause`], waits until an operation on that subject reaches it ([`Pause::reached`]), runs whatever should interleave, then
//! lets it go on ([`Pause::resume`]).

#[cfg(feature = "__test-hooks")]
mod armed {
    use std::sync::Mutex;

    use tokio::sync::oneshot;

    struct Armed {
        point: &'static str,
        subject: String,
        reached: oneshot::Sender<()>,
        resume: oneshot::Receiver<()>,
    }

    static ARMED: Mutex<Vec<Armed>> = Mutex::new(Vec::new());

    /// An armed pause point (see the module docs).
    #[derive(Debug)]
    pub struct Pause {
        reached: Option<oneshot::Receiver<()>>,
        resume: Option<oneshot::Sender<()>>,
    }

    impl Pause {
        /// Waits until the operation stops at the point.
        pub async fn reached(&mut self) {
            if let Some(r) = self.reached.take() {
                let _ = r.await;
            }
        }

        /// Lets the stopped operation go on.
        pub fn resume(mut self) {
            if let Some(s) = self.resume.take() {
                let _ = s.send(());
            }
        }
    }

    impl Drop for Pause {
        fn drop(&mut self) {
            if let Some(s) = self.resume.take() {
                let _ = s.send(());
            }
        }
    }

    /// Arms `point` once for the next operation on `subject`.
    pub fn pause(point: &'static str, subject: &str) -> Pause {
        let (reached_tx, reached_rx) = oneshot::channel();
        let (resume_tx, resume_rx) = oneshot::channel();
        ARMED.lock().unwrap_or_else(|e| e.into_inner()).push(Armed {
            point,
            subject: subject.to_string(),
            reached: reached_tx,
            resume: resume_rx,
        });
        Pause {
            reached: Some(reached_rx),
            resume: Some(resume_tx),
        }
    }

    pub(crate) async fn point(point: &'static str, subject: &str) {
        let armed = {
            let mut all = ARMED.lock().unwrap_or_else(|e| e.into_inner());
            let at = all
                .iter()
                .position(|a| a.point == point && a.subject == subject);
            at.map(|i| all.remove(i))
        };
        if let Some(a) = armed {
            let _ = a.reached.send(());
            let _ = a.resume.await;
        }
    }
}

#[cfg(feature = "__test-hooks")]
pub(crate) use armed::point;
#[cfg(feature = "__test-hooks")]
pub use armed::{Pause, pause};

#[cfg(not(feature = "__test-hooks"))]
#[inline(always)]
pub(crate) async fn point(_point: &'static str, _subject: &str) {}
