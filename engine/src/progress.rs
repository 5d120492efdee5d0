//! The progress display on stderr: one line per running stage, a bar once a stage says how long it is.
//!
//! On a terminal the lines redraw in place (indicatif); elsewhere (CI logs, pipes) each stage prints
//! plain lines at start, at every tenth of its work, and at the end, so progress stays visible.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use indicatif::{MultiProgress, ProgressBar, ProgressDrawTarget, ProgressStyle};

/// How the run reports progress.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ProgressMode {
    /// Redrawn bars (stderr is a terminal).
    Bars,
    /// Plain lines.
    Lines,
    /// Nothing (tests, `--quiet`).
    Silent,
}

impl ProgressMode {
    /// Bars on a terminal, lines otherwise.
    pub fn detect() -> Self {
        use std::io::IsTerminal;
        if std::io::stderr().is_terminal() {
            ProgressMode::Bars
        } else {
            ProgressMode::Lines
        }
    }
}

/// The display for a whole run.
pub struct RunProgress {
    mode: ProgressMode,
    multi: MultiProgress,
}

impl RunProgress {
    /// A display in the given mode.
    pub fn new(mode: ProgressMode) -> Self {
        let multi = match mode {
            ProgressMode::Bars => MultiProgress::with_draw_target(ProgressDrawTarget::stderr()),
            _ => MultiProgress::with_draw_target(ProgressDrawTarget::hidden()),
        };
        RunProgress { mode, multi }
    }
    /// Starts the line of one stage.
    pub fn stage(&self, id: &str, kind: &str) -> StageProgress {
        let bar = match self.mode {
            ProgressMode::Bars => {
                let bar = self.multi.add(ProgressBar::new_spinner());
                bar.set_style(spinner_style());
                bar.enable_steady_tick(Duration::from_millis(200));
                bar
            }
            _ => ProgressBar::hidden(),
        };
        bar.set_prefix(format!("{id} ({kind})"));
        let p = StageProgress {
            id: id.to_string(),
            mode: self.mode,
            bar,
            start: Instant::now(),
            len: AtomicU64::new(0),
            pos: AtomicU64::new(0),
            last_tenth: AtomicU64::new(0),
            message: Mutex::new(String::new()),
        };
        p.line("started");
        p
    }
    /// Prints a line above the bars.
    pub fn println(&self, line: &str) {
        match self.mode {
            ProgressMode::Bars => {
                let _ = self.multi.println(crate::redact::redact(line));
            }
            ProgressMode::Lines => eprintln!("{}", crate::redact::redact(line)),
            ProgressMode::Silent => {}
        }
    }
}

fn spinner_style() -> ProgressStyle {
    ProgressStyle::with_template("{spinner} {prefix:.bold} {elapsed:>4} {msg}")
        .expect("valid template")
}

fn bar_style() -> ProgressStyle {
    ProgressStyle::with_template(
        "{spinner} {prefix:.bold} [{bar:30}] {pos}/{len} {elapsed:>4} eta {eta} {msg}",
    )
    .expect("valid template")
    .progress_chars("=> ")
}

/// The progress line of one stage; stages update it through [`crate::RunContext::progress`].
pub struct StageProgress {
    id: String,
    mode: ProgressMode,
    bar: ProgressBar,
    start: Instant,
    len: AtomicU64,
    pos: AtomicU64,
    last_tenth: AtomicU64,
    message: Mutex<String>,
}

impl StageProgress {
    /// A display that shows nothing (for running a stage outside the executor).
    pub fn hidden() -> Self {
        RunProgress::new(ProgressMode::Silent).stage("", "")
    }
    /// Says how many units of work the stage has; the line becomes a bar with an ETA.
    pub fn set_length(&self, len: u64) {
        self.len.store(len, Ordering::Relaxed);
        self.bar.set_style(bar_style());
        self.bar.set_length(len);
    }
    /// Advances the bar.
    pub fn inc(&self, delta: u64) {
        let pos = self.pos.fetch_add(delta, Ordering::Relaxed) + delta;
        self.bar.inc(delta);
        let len = self.len.load(Ordering::Relaxed);
        if self.mode == ProgressMode::Lines && len > 0 {
            let tenth = pos * 10 / len;
            let last = self.last_tenth.fetch_max(tenth, Ordering::Relaxed);
            if tenth > last {
                let eta = self.start.elapsed().as_secs_f64() * (len.saturating_sub(pos)) as f64
                    / pos.max(1) as f64;
                self.line(&format!("{pos}/{len} eta {eta:.0}s {}", self.message.lock().unwrap()));
            }
        }
    }
    /// Sets the text after the bar (e.g. the current loss).
    pub fn set_message(&self, msg: impl Into<String>) {
        let msg = msg.into();
        self.bar.set_message(msg.clone());
        *self.message.lock().unwrap() = msg;
    }
    /// Prints a log line for this stage.
    pub fn println(&self, msg: &str) {
        self.line(msg);
    }
    fn line(&self, msg: &str) {
        match self.mode {
            ProgressMode::Bars => {
                self.bar.println(format!("[{}] {}", self.id, crate::redact::redact(msg)))
            }
            ProgressMode::Lines => eprintln!(
                "[{}] {:>6.1}s {}",
                self.id,
                self.start.elapsed().as_secs_f64(),
                crate::redact::redact(msg)
            ),
            ProgressMode::Silent => {}
        }
    }
    /// Ends the line.
    pub fn finish(&self, outcome: &str) {
        self.bar.finish_and_clear();
        self.line(outcome);
    }
}
