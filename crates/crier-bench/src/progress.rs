//! A progress line on stderr for long runs (hidden when stderr is not a terminal or
//! when the caller turned it off).

use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};

pub(crate) struct Progress {
    bar: ProgressBar,
}

impl Progress {
    pub(crate) fn new(enabled: bool) -> Progress {
        let target = if enabled {
            ProgressDrawTarget::stderr()
        } else {
            ProgressDrawTarget::hidden()
        };
        let bar = ProgressBar::with_draw_target(None, target);
        bar.set_style(
            ProgressStyle::with_template(
                "{spinner} [{elapsed_precise}] {wide_bar} {pos}/{len} {msg}",
            )
            .expect("valid template"),
        );
        Progress { bar }
    }

    /// Starts a new stage counting up to `len`.
    pub(crate) fn stage(&self, len: u64, message: impl Into<String>) {
        self.bar.reset();
        self.bar.set_length(len);
        self.bar.set_position(0);
        self.bar.set_message(message.into());
    }

    pub(crate) fn set(&self, position: u64) {
        self.bar.set_position(position);
    }

    /// Prints a line above the bar.
    pub(crate) fn println(&self, line: impl AsRef<str>) {
        if self.bar.is_hidden() {
            eprintln!("{}", line.as_ref());
        } else {
            self.bar.println(line);
        }
    }

    pub(crate) fn finish(&self) {
        self.bar.finish_and_clear();
    }
}
