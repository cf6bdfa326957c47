//! Temporary profiling probe.
use platepool_bench::fixture::{Plan, Pure};
use std::time::{Duration, Instant};
fn main() {
    let mut pure = Pure::new(&Plan::standard());
    let what = std::env::args().nth(1).unwrap_or_default();
    let t = Instant::now();
    let mut n = 0u64;
    while t.elapsed() < Duration::from_secs(4) {
        if what == "check" { pure.check().expect("check"); } else { pure.draw().expect("draw"); }
        n += 1;
    }
    println!("{what} {:.1} µs/op", t.elapsed().as_secs_f64() * 1e6 / n as f64);
}
