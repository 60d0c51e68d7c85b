//! Failures counted, with the first few distinct messages kept: a run that lost a
//! thousand connections reports *why* without holding a thousand strings.

use std::collections::BTreeMap;

/// How many distinct failure messages to keep verbatim (the rest are only counted).
pub(crate) const KEEP_ERRORS: usize = 8;

/// A count of failures and the first [`KEEP_ERRORS`] distinct messages, each with its
/// own count.
#[derive(Debug, Default)]
pub(crate) struct Failures {
    /// Every failure recorded, kept or not.
    pub(crate) count: u64,
    samples: BTreeMap<String, u64>,
}

impl Failures {
    /// Counts one failure.
    pub(crate) fn record(&mut self, message: String) {
        self.count += 1;
        if let Some(n) = self.samples.get_mut(&message) {
            *n += 1;
        } else if self.samples.len() < KEEP_ERRORS {
            self.samples.insert(message, 1);
        }
    }

    /// The kept messages with their counts.
    pub(crate) fn samples(&self) -> Vec<(String, u64)> {
        self.samples.iter().map(|(m, n)| (m.clone(), *n)).collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn repeats_are_counted_and_only_a_few_kept() {
        let mut failures = Failures::default();
        for i in 0..20 {
            failures.record(format!("error {}", i % 10));
        }
        assert_eq!(failures.count, 20);
        let samples = failures.samples();
        assert_eq!(samples.len(), KEEP_ERRORS);
        assert!(samples.iter().all(|(_, n)| *n == 2), "{samples:?}");
    }
}
