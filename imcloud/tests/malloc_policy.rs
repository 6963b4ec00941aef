//! The process gives freed large blocks back to the system (`imcloud::malloc_policy`): after threads used
//! and freed argon2-sized blocks, resident memory is back where it started. Without the policy glibc keeps
//! every block after each thread's first in that thread's arena (4 threads here: at least 76 MiB).
//! One test in a binary of its own, so that no other test moves the process's memory meanwhile.
#![cfg(all(target_os = "linux", target_env = "gnu"))]

/// An argon2 hash's working memory (OWASP's parameters: 19 MiB).
const BLOCK: usize = 19 << 20;

fn resident_kib() -> u64 {
    imcloud::process_gauges::resident_bytes().expect("VmRSS of /proc/self/status") / 1024
}

#[test]
fn freed_large_blocks_go_back_to_the_system() {
    assert!(imcloud::malloc_policy::return_large_blocks());
    let before = resident_kib();
    let threads: Vec<_> = (0..4)
        .map(|_| {
            std::thread::spawn(|| {
                for round in 0..4u8 {
                    let mut block = vec![0u8; BLOCK];
                    // Touch every page, as argon2 does, so that each is resident.
                    for page in block.chunks_mut(4096) {
                        page[0] = round + 1;
                    }
                    std::hint::black_box(&block);
                }
            })
        })
        .collect();
    for t in threads {
        t.join().expect("a thread");
    }
    let after = resident_kib();
    assert!(
        after < before + (BLOCK / 1024) as u64,
        "resident memory went from {before} KiB to {after} KiB after the blocks were freed"
    );
}
