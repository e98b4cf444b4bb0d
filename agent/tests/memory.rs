//! Memory of 2,000 active series, measured by a counting global allocator
//! (this test binary holds this one test so nothing else allocates alongside).

use std::alloc::{GlobalAlloc, Layout, System};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use kuroko_agent::{Agent, AgentConfig};

struct Counting;

static LIVE: AtomicUsize = AtomicUsize::new(0);

unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        LIVE.fetch_add(layout.size(), Ordering::Relaxed);
        unsafe { System.alloc(layout) }
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        LIVE.fetch_sub(layout.size(), Ordering::Relaxed);
        unsafe { System.dealloc(ptr, layout) }
    }
}

#[global_allocator]
static ALLOCATOR: Counting = Counting;

const MIB: f64 = 1024.0 * 1024.0;

/// 2,000 series, every one of them hot from two threads, on an agent that
/// would give each 8 shards: the shard budget must keep the whole agent
/// under 64 MiB, and the agent's own accounting must agree with the allocator.
#[test]
fn two_thousand_hot_series_fit_in_64_mib() {
    let before = LIVE.load(Ordering::Relaxed);
    let agent = Agent::new(AgentConfig::default().with_max_shards(8).with_hot_series_threshold(0)).unwrap();
    let names: Vec<String> = (0..2_000).map(|i| format!("GET /api/v1/resource-{i}/{{id}}")).collect();
    std::thread::scope(|scope| {
        for t in 0..2u64 {
            let (agent, names) = (&agent, &names);
            scope.spawn(move || {
                for (i, name) in names.iter().enumerate() {
                    let tx = agent.transaction(name);
                    for k in 0..20u64 {
                        tx.record(Duration::from_micros(100 + (i as u64 * 37 + k * 101 + t) % 900_000));
                    }
                }
            });
        }
    });
    let harvest = agent.harvest();
    let agent_bytes = harvest.stats.memory_bytes;
    drop(harvest);
    let measured = LIVE.load(Ordering::Relaxed) - before;
    let stats = agent.stats();
    println!(
        "2,000 series: {:.1} MiB measured by the allocator, {:.1} MiB by the agent; {} of them sharded",
        measured as f64 / MIB,
        agent_bytes as f64 / MIB,
        stats.sharded_series
    );
    assert_eq!(stats.series, 2_000);
    assert!(
        stats.sharded_series > 0 && stats.sharded_series < 2_000,
        "the budget sharded some, not all"
    );
    assert!((measured as f64) < 64.0 * MIB, "{measured} bytes");
    let ratio = agent_bytes as f64 / measured as f64;
    assert!(
        (0.9..=1.1).contains(&ratio),
        "agent's accounting {agent_bytes} vs measured {measured}"
    );
}
