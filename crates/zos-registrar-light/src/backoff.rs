//! Exponential backoff with a cap and a little jitter, so a grid of nodes does not retry in lockstep after a
//! registrar outage.

use std::time::Duration;

use rand::Rng;

/// Doubling delays from `min` up to `max`.
#[derive(Clone, Debug)]
pub struct Backoff {
    min: Duration,
    max: Duration,
    next: Duration,
}

impl Backoff {
    /// Delays start at `min` and never exceed `max` (`max` is raised to `min` if smaller).
    pub fn new(min: Duration, max: Duration) -> Backoff {
        let max = max.max(min);
        Backoff {
            min,
            max,
            next: min,
        }
    }

    /// The next delay: the current step plus up to a quarter of jitter, capped at `max`; the step doubles.
    pub fn next_delay(&mut self) -> Duration {
        let step = self.next;
        self.next = (self.next * 2).min(self.max);
        let quarter = step.as_millis() as u64 / 4;
        let jitter = if quarter > 0 {
            Duration::from_millis(rand::thread_rng().gen_range(0..=quarter))
        } else {
            Duration::ZERO
        };
        (step + jitter).min(self.max)
    }

    /// Start again from `min` (after a success).
    pub fn reset(&mut self) {
        self.next = self.min;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn doubles_up_to_the_cap_and_resets() {
        let mut b = Backoff::new(Duration::from_secs(1), Duration::from_secs(120));
        let delays: Vec<Duration> = (0..12).map(|_| b.next_delay()).collect();
        for (i, d) in delays.iter().enumerate() {
            let step = Duration::from_secs(1 << i.min(7)).min(Duration::from_secs(120));
            assert!(*d >= step.min(Duration::from_secs(120)), "{i}: {d:?}");
            assert!(*d <= Duration::from_secs(120), "{i}: {d:?} above the cap");
            assert!(
                *d <= step + step / 4,
                "{i}: {d:?} more than a quarter of jitter"
            );
        }
        assert_eq!(*delays.last().unwrap(), Duration::from_secs(120));
        b.reset();
        assert!(b.next_delay() < Duration::from_secs(2));
    }

    #[test]
    fn a_cap_below_the_start_is_the_start() {
        let mut b = Backoff::new(Duration::from_secs(5), Duration::from_secs(1));
        assert_eq!(b.next_delay(), Duration::from_secs(5));
        assert_eq!(b.next_delay(), Duration::from_secs(5));
    }
}
