//! Waiting for a database to reach its end state, shown while it goes: on a terminal a spinner
//! with the current status and the elapsed time, redrawn in place; elsewhere (a pipe, a CI log)
//! one plain line per change of status, and a reminder line now and then when nothing changes.
//!
//! The display goes to standard error, so `--output json` on standard output stays clean for
//! scripts; it is a spinner when standard error is a terminal. The spinner keeps turning while a
//! status request is outstanding, so a slow server shows as time passing, not as a hang.
use std::future::Future;
use std::io::{IsTerminal, Write};
use std::time::{Duration, Instant};

use anyhow::bail;

use crate::api_client::ApiRefusal;

const FRAMES: [char; 4] = ['|', '/', '-', '\\'];
const SPIN_EVERY: Duration = Duration::from_millis(100);
/// In plain-lines mode, how long the same status may last before a line says it still does.
const REMIND_EVERY: Duration = Duration::from_secs(30);

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DisplayMode {
    Spinner,
    Lines,
}

impl DisplayMode {
    /// A spinner only where it can be redrawn: a terminal that is not `TERM=dumb`.
    pub fn detect() -> DisplayMode {
        let dumb = std::env::var("TERM").is_ok_and(|t| t == "dumb");
        if std::io::stderr().is_terminal() && !dumb {
            DisplayMode::Spinner
        } else {
            DisplayMode::Lines
        }
    }
}

/// What one look at the database says.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Observation {
    /// Not there yet: the status to show.
    Waiting(String),
    /// Reached the end state; the final status to show.
    Done(String),
    /// Will not get there (ERROR, terminated meanwhile …): the database's message.
    Failed(String),
}

/// The user stopped waiting with Ctrl-C; the operation goes on without us.
#[derive(Debug, thiserror::Error)]
#[error("stopped waiting; the database goes on: `keyplane db get {0}` shows where it is")]
pub struct Interrupted(pub String);

struct Display {
    mode: DisplayMode,
    label: String,
    started: Instant,
    status: String,
    note: Option<String>,
    frame: usize,
    drawn: usize,
    last_line: Instant,
    /// Plain-lines mode prints the first status seen even when it is the one known at start.
    printed: bool,
}

fn elapsed(d: Duration) -> String {
    let s = d.as_secs_f64();
    if s < 60.0 {
        format!("{s:.1}s")
    } else {
        format!("{}m{:02}s", d.as_secs() / 60, d.as_secs() % 60)
    }
}

/// The widest line the spinner draws: a wrapped line could not be redrawn in place.
fn width() -> usize {
    std::env::var("COLUMNS")
        .ok()
        .and_then(|c| c.parse::<usize>().ok())
        .filter(|c| *c > 20)
        .unwrap_or(80)
        - 1
}

impl Display {
    fn text(&self) -> String {
        let mut s = format!("{}: {}", self.label, self.status);
        if let Some(n) = &self.note {
            s.push_str(&format!(" ({n})"));
        }
        s
    }

    fn draw(&mut self) {
        let mut err = std::io::stderr().lock();
        match self.mode {
            DisplayMode::Spinner => {
                let mut line = format!(
                    "{} {}  {}",
                    FRAMES[self.frame % FRAMES.len()],
                    self.text(),
                    elapsed(self.started.elapsed())
                );
                if line.chars().count() > width() {
                    line = line.chars().take(width()).collect();
                }
                let n = line.chars().count();
                let pad = self.drawn.saturating_sub(n);
                let _ = write!(err, "\r{line}{}", " ".repeat(pad));
                let _ = err.flush();
                self.drawn = n;
            }
            DisplayMode::Lines => {
                let _ = writeln!(
                    err,
                    "{} after {}",
                    self.text(),
                    elapsed(self.started.elapsed())
                );
                self.last_line = Instant::now();
                self.printed = true;
            }
        }
    }

    fn set(&mut self, status: &str, note: Option<String>) {
        let changed = status != self.status || note != self.note || !self.printed;
        self.status = status.to_string();
        self.note = note;
        if changed || self.mode == DisplayMode::Spinner {
            self.draw();
        }
    }

    fn tick(&mut self) {
        match self.mode {
            DisplayMode::Spinner => {
                self.frame += 1;
                self.draw();
            }
            DisplayMode::Lines if self.last_line.elapsed() >= REMIND_EVERY => {
                let mut err = std::io::stderr().lock();
                let _ = writeln!(
                    err,
                    "{}: still {} after {}",
                    self.label,
                    self.status,
                    elapsed(self.started.elapsed())
                );
                self.last_line = Instant::now();
            }
            DisplayMode::Lines => {}
        }
    }

    /// Replaces the spinner by a last line that stays.
    fn finish(&mut self, line: &str) {
        let mut err = std::io::stderr().lock();
        if self.mode == DisplayMode::Spinner {
            let _ = write!(err, "\r{}\r", " ".repeat(self.drawn));
        }
        let _ = writeln!(err, "{line}");
        let _ = err.flush();
    }
}

/// Whether a failed status request is worth retrying: the server not answering, or answering
/// 5xx. A 4xx (token revoked, database gone) will not get better by waiting.
fn transient(e: &anyhow::Error) -> bool {
    match e.downcast_ref::<ApiRefusal>() {
        Some(r) => r.status.is_server_error(),
        None => true,
    }
}

/// Polls `look` every `every` until it says done or failed, or `timeout` passes, showing
/// progress as `label: STATUS` on standard error, starting from the status the caller knows.
/// `id` names the database in messages.
#[allow(clippy::too_many_arguments)]
pub async fn wait_for<F, Fut>(
    mode: DisplayMode,
    label: &str,
    id: &str,
    initial: &str,
    timeout: Duration,
    every: Duration,
    mut look: F,
) -> anyhow::Result<String>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = anyhow::Result<Observation>>,
{
    let mut d = Display {
        mode,
        label: label.to_string(),
        started: Instant::now(),
        status: initial.to_string(),
        note: None,
        frame: 0,
        drawn: 0,
        last_line: Instant::now(),
        printed: false,
    };
    let mut ticker = tokio::time::interval(if mode == DisplayMode::Spinner {
        SPIN_EVERY
    } else {
        Duration::from_secs(1)
    });
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
    let deadline = tokio::time::sleep(timeout);
    tokio::pin!(deadline);
    let ctrl_c = tokio::signal::ctrl_c();
    tokio::pin!(ctrl_c);
    let mut delay = Duration::ZERO;
    loop {
        let (pause, next) = (delay, look());
        let poll = async move {
            tokio::time::sleep(pause).await;
            next.await
        };
        tokio::pin!(poll);
        let seen = loop {
            tokio::select! {
                res = &mut poll => break res,
                _ = ticker.tick() => d.tick(),
                _ = &mut deadline => {
                    let status = d.status.clone();
                    d.finish(&format!("{label}: still {status} after {}", elapsed(d.started.elapsed())));
                    bail!(
                        "gave up waiting after {}s; the database goes on: `keyplane db get {id}` shows where it is (--timeout waits longer)",
                        timeout.as_secs()
                    );
                }
                _ = &mut ctrl_c => {
                    d.finish(&format!("{label}: {} (stopped waiting)", d.status));
                    return Err(Interrupted(id.to_string()).into());
                }
            }
        };
        delay = every;
        match seen {
            Ok(Observation::Waiting(status)) => d.set(&status, None),
            Ok(Observation::Done(status)) => {
                d.status = status.clone();
                d.finish(&format!(
                    "{label}: {status} after {}",
                    elapsed(d.started.elapsed())
                ));
                return Ok(status);
            }
            Ok(Observation::Failed(message)) => {
                d.finish(&format!(
                    "{label}: failed after {}",
                    elapsed(d.started.elapsed())
                ));
                bail!("{message}");
            }
            Err(e) if transient(&e) => {
                let status = d.status.clone();
                d.set(&status, Some(format!("no answer yet: {e:#}")));
            }
            Err(e) => {
                d.finish(&format!("{label}: {} (stopped waiting)", d.status));
                return Err(e);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn elapsed_reads_in_tenths_then_minutes() {
        assert_eq!(elapsed(Duration::from_millis(1234)), "1.2s");
        assert_eq!(elapsed(Duration::from_secs(65)), "1m05s");
    }

    #[tokio::test]
    async fn waits_through_transient_errors_until_done() {
        let mut n = 0;
        let status = wait_for(
            DisplayMode::Lines,
            "db",
            "id",
            "PENDING",
            Duration::from_secs(10),
            Duration::from_millis(1),
            || {
                n += 1;
                let k = n;
                async move {
                    match k {
                        1 => Ok(Observation::Waiting("PENDING".into())),
                        2 => Err(anyhow::anyhow!("connection refused")),
                        3 => Ok(Observation::Waiting("INITIALIZING".into())),
                        _ => Ok(Observation::Done("ACTIVE".into())),
                    }
                }
            },
        )
        .await
        .unwrap();
        assert_eq!(status, "ACTIVE");
        assert_eq!(n, 4);
    }

    #[tokio::test]
    async fn a_refusal_or_a_failure_ends_the_wait_with_its_message() {
        let err = wait_for(
            DisplayMode::Lines,
            "db",
            "id",
            "PENDING",
            Duration::from_secs(10),
            Duration::from_millis(1),
            || async { Ok(Observation::Failed("the key is disabled".into())) },
        )
        .await
        .unwrap_err();
        assert_eq!(err.to_string(), "the key is disabled");
        let err = wait_for(
            DisplayMode::Lines,
            "db",
            "id",
            "PENDING",
            Duration::from_secs(10),
            Duration::from_millis(1),
            || async {
                Err(ApiRefusal {
                    status: reqwest::StatusCode::UNAUTHORIZED,
                    id: Some(2002),
                    message: "revoked".into(),
                }
                .into())
            },
        )
        .await
        .unwrap_err();
        assert!(err.to_string().contains("revoked"), "{err}");
    }

    #[tokio::test]
    async fn gives_up_after_the_timeout() {
        let err = wait_for(
            DisplayMode::Lines,
            "db",
            "id",
            "PENDING",
            Duration::from_millis(50),
            Duration::from_millis(5),
            || async { Ok(Observation::Waiting("PENDING".into())) },
        )
        .await
        .unwrap_err();
        assert!(err.to_string().contains("gave up waiting"), "{err}");
    }
}
