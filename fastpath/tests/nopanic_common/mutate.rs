//! Seeded byte mutations (a small libFuzzer-like mutator) for the stable no-panic tests, so
//! `cargo test` exercises the fuzz harnesses deterministically without nightly.

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

/// Values that sit on boundaries of length and offset fields.
const INTERESTING: &[u8] = &[
    0, 1, 2, 7, 8, 0x0f, 0x10, 0x3b, 0x2c, 0x32, 0x40, 0x7f, 0x80, 0xff,
];

/// One to four mutations of `input`, splicing from `other` sometimes.
pub fn mutate(rng: &mut StdRng, input: &[u8], other: &[u8]) -> Vec<u8> {
    let mut v = input.to_vec();
    for _ in 0..rng.gen_range(1..=4) {
        let len = v.len();
        match rng.gen_range(0..8) {
            0 if len > 0 => {
                let i = rng.gen_range(0..len);
                v[i] ^= 1 << rng.gen_range(0..8);
            }
            1 if len > 0 => {
                let i = rng.gen_range(0..len);
                v[i] = INTERESTING[rng.gen_range(0..INTERESTING.len())];
            }
            2 if len > 0 => {
                let i = rng.gen_range(0..len);
                v[i] = rng.gen();
            }
            3 => {
                let i = rng.gen_range(0..=len);
                let n = rng.gen_range(1..=8);
                v.splice(i..i, (0..n).map(|_| rng.gen::<u8>()));
            }
            4 if len > 0 => {
                let i = rng.gen_range(0..len);
                let j = rng.gen_range(i..=len.min(i + 16));
                v.drain(i..j);
            }
            5 => v.truncate(rng.gen_range(0..=len)),
            6 if !other.is_empty() => {
                let a = rng.gen_range(0..other.len());
                let b = rng.gen_range(a..=other.len().min(a + 64));
                let i = rng.gen_range(0..=len);
                v.splice(i..i, other[a..b].iter().copied());
            }
            _ if len > 1 => {
                // Overwrite a 16-bit field with a boundary value.
                let i = rng.gen_range(0..len - 1);
                let x: u16 = [0, 1, 0xff, 0x100, 0x7fff, 0xffff][rng.gen_range(0..6)];
                v[i..i + 2].copy_from_slice(&x.to_be_bytes());
            }
            _ => {}
        }
    }
    v
}

/// Runs `harness` on every seed and on `rounds` mutants of them (fixed RNG seed `seed`).
pub fn run_mutants(seeds: &[Vec<u8>], rounds: usize, seed: u64, harness: impl Fn(&[u8])) {
    assert!(!seeds.is_empty());
    for s in seeds {
        harness(s);
    }
    let mut rng = StdRng::seed_from_u64(seed);
    let mut pool: Vec<Vec<u8>> = seeds.to_vec();
    for round in 0..rounds {
        let a = &pool[rng.gen_range(0..pool.len())];
        let b = &pool[rng.gen_range(0..pool.len())];
        let m = mutate(&mut rng, a, b);
        harness(&m);
        // Keep some mutants so mutations stack up, as a fuzzer's corpus does.
        if round % 16 == 0 && pool.len() < 256 {
            pool.push(m);
        }
    }
}
