//! Randomness: the only source in kmb. Under madsim it is the simulation's seeded generator
//! (so a seed fixes every draw); in production it is seeded from OS entropy.

pub use rand::{Rng, RngCore};

/// A handle to the current randomness source. Cheap to create; create one per use.
pub struct SimRng {
    #[cfg(madsim)]
    inner: madsim::rand::GlobalRng,
    #[cfg(not(madsim))]
    inner: rand::rngs::ThreadRng,
}

/// The current randomness source.
pub fn rng() -> SimRng {
    SimRng {
        #[cfg(madsim)]
        inner: madsim::rand::thread_rng(),
        #[cfg(not(madsim))]
        inner: rand::thread_rng(),
    }
}

/// A random value of type `T`.
pub fn random<T>() -> T
where
    rand::distributions::Standard: rand::distributions::Distribution<T>,
{
    rng().gen()
}

impl RngCore for SimRng {
    fn next_u32(&mut self) -> u32 {
        self.inner.next_u32()
    }
    fn next_u64(&mut self) -> u64 {
        self.inner.next_u64()
    }
    fn fill_bytes(&mut self, dest: &mut [u8]) {
        self.inner.fill_bytes(dest)
    }
    fn try_fill_bytes(&mut self, dest: &mut [u8]) -> Result<(), rand::Error> {
        self.inner.try_fill_bytes(dest)
    }
}
