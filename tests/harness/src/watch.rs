//! The split-brain watcher: samples both hosts' addresses and counts samples with P on both.
use std::{
    sync::{
        atomic::{AtomicBool, AtomicU64, Ordering},
        Arc,
    },
    thread::JoinHandle,
    time::Duration,
};

use crate::netns::holds;

/// Samples both hosts' addresses and counts samples in which both held P.
pub(crate) struct Watcher {
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
    both: Arc<AtomicU64>,
    samples: Arc<AtomicU64>,
}

impl Watcher {
    pub(crate) fn start(a: String, b: String, p: String) -> Watcher {
        let stop = Arc::new(AtomicBool::new(false));
        let both = Arc::new(AtomicU64::new(0));
        let samples = Arc::new(AtomicU64::new(0));
        let (s, bo, sa) = (stop.clone(), both.clone(), samples.clone());
        let thread = std::thread::spawn(move || {
            while !s.load(Ordering::Relaxed) {
                if holds(&a, "eth0", &p) && holds(&b, "eth0", &p) {
                    bo.fetch_add(1, Ordering::Relaxed);
                    eprintln!("[watch] BOTH HOSTS HOLD {p}");
                }
                sa.fetch_add(1, Ordering::Relaxed);
                // Sampling pace, leaving CPU to the daemons; not synchronisation.
                std::thread::sleep(Duration::from_millis(2));
            }
        });
        Watcher {
            stop,
            thread: Some(thread),
            both,
            samples,
        }
    }

    pub(crate) fn finish(&mut self) -> (u64, u64) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
        (
            self.samples.load(Ordering::Relaxed),
            self.both.load(Ordering::Relaxed),
        )
    }

    /// Samples so far with P on both hosts.
    pub(crate) fn both(&self) -> u64 {
        self.both.load(Ordering::Relaxed)
    }
}
