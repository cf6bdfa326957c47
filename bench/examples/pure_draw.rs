//! Temporary profiling probe.
use platepool_bench::fixture::{Office, Plan, Pure};
use platepool_bench::load::{closed_loop, Stop};
use platepool_engine::Durability;
use std::time::{Duration, Instant};
fn main() {
    let what = std::env::args().nth(1).unwrap_or_default();
    let inflight: usize = std::env::args().nth(2).and_then(|s| s.parse().ok()).unwrap_or(1024);
    if what == "draw" || what == "check" {
        let mut pure = Pure::new(&Plan::standard());
        let t = Instant::now();
        let mut n = 0u64;
        while t.elapsed() < Duration::from_secs(4) {
            if what == "check" { pure.check().expect("check"); } else { pure.draw().expect("draw"); }
            n += 1;
        }
        println!("{what} {:.1} µs/op", t.elapsed().as_secs_f64() * 1e6 / n as f64);
        return;
    }
    let sys = actix_rt::System::new();
    let office = if what == "engine" {
        sys.block_on(Office::engine(&Plan::standard(), Durability::Fsync))
    } else {
        sys.block_on(Office::direct(&Plan::standard(), Durability::Fsync))
    };
    eprintln!("ready");
    let r = sys.block_on(closed_loop(inflight, Stop::After(Duration::from_secs(5)), office.draw_op()));
    println!("{what} {:.0} draws/s failed {} {:?} commits {:?}", r.rate(), r.failed, r.first_error, office.writer_counts());
}
