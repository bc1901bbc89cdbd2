//! The YCSB workload: the operation mix of each core workload and the key choice
//! (scrambled zipfian with θ = 0.99, or "latest" for workload D), with the small
//! deterministic generator both draw from.

/// One operation of the run phase.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub(super) enum Op {
    Read,
    Update,
    Insert,
    ReadModifyWrite,
}

impl Op {
    pub(super) const ALL: [Op; 4] = [Op::Read, Op::Update, Op::Insert, Op::ReadModifyWrite];

    pub(super) fn name(self) -> &'static str {
        match self {
            Op::Read => "read",
            Op::Update => "update",
            Op::Insert => "insert",
            Op::ReadModifyWrite => "read_modify_write",
        }
    }
}

/// YCSB's mixes: the share of reads, and what the other operations are.
pub(super) fn mix(workload: &str) -> (f64, Op) {
    match workload {
        "a" => (0.5, Op::Update),
        "b" => (0.95, Op::Update),
        "d" => (0.95, Op::Insert),
        "f" => (0.5, Op::ReadModifyWrite),
        _ => (1.0, Op::Read),
    }
}

/// YCSB's zipfian generator (Gray et al.), over `0..n`.
pub(super) struct Zipfian {
    n: u64,
    theta: f64,
    alpha: f64,
    zetan: f64,
    eta: f64,
}

fn zeta(n: u64, theta: f64) -> f64 {
    (1..=n).map(|i| 1.0 / (i as f64).powf(theta)).sum()
}

impl Zipfian {
    pub(super) fn new(n: u64, theta: f64) -> Zipfian {
        let n = n.max(1);
        let zetan = zeta(n, theta);
        let zeta2 = zeta(2, theta);
        Zipfian {
            n,
            theta,
            alpha: 1.0 / (1.0 - theta),
            zetan,
            eta: (1.0 - (2.0 / n as f64).powf(1.0 - theta)) / (1.0 - zeta2 / zetan),
        }
    }

    pub(super) fn next(&self, u: f64) -> u64 {
        let uz = u * self.zetan;
        if uz < 1.0 {
            return 0;
        }
        if uz < 1.0 + 0.5f64.powf(self.theta) {
            return 1.min(self.n - 1);
        }
        let v = (self.n as f64 * (self.eta * u - self.eta + 1.0).powf(self.alpha)) as u64;
        v.min(self.n - 1)
    }
}

/// FNV-1a, as YCSB uses to scramble zipfian ranks over the key space.
pub(super) fn fnv(x: u64) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in x.to_le_bytes() {
        h ^= u64::from(b);
        h = h.wrapping_mul(0x0100_0000_01b3);
    }
    h
}

/// SplitMix64: cheap, seedable, and the same sequence on every run.
pub(super) struct Rng(pub(super) u64);

impl Rng {
    pub(super) fn unit(&mut self) -> f64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        ((z ^ (z >> 31)) >> 11) as f64 / (1u64 << 53) as f64
    }
}

/// The name every driver stores record `i` under.
pub(super) fn key_name(i: u64) -> String {
    format!("user{:016x}", fnv(i))
}
