//! SPI layout (generation bits above a slot index) and the slowpath's FIFO slot allocator.

use std::collections::VecDeque;

use super::SadError;
#[cfg(test)]
use super::RESERVED_SPI_MAX;

/// Fewest generation bits an SPI keeps; this bounds [`MAX_CAPACITY`].
pub const MIN_GENERATION_BITS: u32 = 8;

/// Largest supported table capacity (2^24 slots, leaving 8 generation bits).
pub const MAX_CAPACITY: usize = 1 << (32 - MIN_GENERATION_BITS);

/// Fewest slot bits: generation 0 is never issued, so every SPI is at least `1 << MIN_SLOT_BITS`
/// = 256, above the reserved range.
const MIN_SLOT_BITS: u32 = 8;

/// How an SPI splits into `generation << slot_bits | slot` for a table of a given capacity.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SpiLayout {
    slot_bits: u32,
}

impl SpiLayout {
    /// The layout for `capacity` slots: `max(8, ceil(log2(capacity)))` slot bits.
    pub fn for_capacity(capacity: usize) -> Result<Self, SadError> {
        if capacity == 0 || capacity > MAX_CAPACITY {
            return Err(SadError::InvalidCapacity {
                capacity,
                max: MAX_CAPACITY,
            });
        }
        let bits = usize::BITS - (capacity - 1).leading_zeros();
        Ok(Self {
            slot_bits: bits.max(MIN_SLOT_BITS),
        })
    }

    /// Number of low SPI bits that hold the slot index.
    pub fn slot_bits(self) -> u32 {
        self.slot_bits
    }

    /// Largest generation; generations run `1..=max_generation()` and then wrap to 1.
    pub fn max_generation(self) -> u32 {
        u32::MAX >> self.slot_bits
    }

    /// The SPI of `slot` in `generation`.
    #[inline]
    pub fn compose(self, slot: u32, generation: u32) -> u32 {
        (generation << self.slot_bits) | slot
    }

    /// The slot index an SPI points at (it may be beyond the table's capacity).
    #[inline]
    pub fn slot(self, spi: u32) -> usize {
        (spi & ((1u32 << self.slot_bits) - 1)) as usize
    }

    /// The generation bits of an SPI.
    #[inline]
    pub fn generation(self, spi: u32) -> u32 {
        spi >> self.slot_bits
    }

    /// The generation that follows `generation` (wrapping to 1, never 0).
    fn next_generation(self, generation: u32) -> u32 {
        if generation >= self.max_generation() {
            1
        } else {
            generation + 1
        }
    }
}

/// Bit of a slot's state word that marks it allocated; the low bits are its generation.
const ALLOCATED: u32 = 1 << 31;

/// The slowpath-side allocator: a FIFO free list of slots and each slot's generation.
///
/// FIFO order makes a released slot the last one to be reused, so an SPI comes back only after
/// every other free slot was issued once and its generation wrapped: with `n` free slots that is
/// at least `n * max_generation` allocations, long after late packets of the old SA are gone.
pub(crate) struct SlotAllocator {
    layout: SpiLayout,
    free: VecDeque<u32>,
    /// Per slot: `ALLOCATED | generation`, or just the generation the next issue will use.
    state: Box<[u32]>,
}

impl SlotAllocator {
    /// An allocator with every slot free in generation 1.
    pub(crate) fn new(layout: SpiLayout, capacity: usize) -> Self {
        // `capacity <= MAX_CAPACITY = 2^24` (checked by `SpiLayout::for_capacity`), so slot
        // indices fit in u32.
        let free: VecDeque<u32> = (0..capacity as u32).collect();
        Self {
            layout,
            free,
            state: vec![1u32; capacity].into_boxed_slice(),
        }
    }

    /// Issues the SPI of the least recently released slot.
    pub(crate) fn allocate(&mut self) -> Result<u32, SadError> {
        let exhausted = SadError::Exhausted {
            capacity: self.state.len(),
        };
        let slot = self.free.pop_front().ok_or(exhausted)?;
        let state = self.state.get_mut(slot as usize).ok_or(exhausted)?;
        let generation = *state;
        *state = ALLOCATED | generation;
        Ok(self.layout.compose(slot, generation))
    }

    /// Whether `spi` is the currently issued SPI of its slot.
    pub(crate) fn is_allocated(&self, spi: u32) -> bool {
        let generation = self.layout.generation(spi);
        generation != 0
            && self
                .state
                .get(self.layout.slot(spi))
                .is_some_and(|&s| s == ALLOCATED | generation)
    }

    /// Frees `spi`'s slot and advances its generation so the SPI is not reissued soon.
    pub(crate) fn release(&mut self, spi: u32) -> Result<(), SadError> {
        if !self.is_allocated(spi) {
            return Err(SadError::NotAllocated { spi });
        }
        let slot = self.layout.slot(spi);
        let next = self.layout.next_generation(self.layout.generation(spi));
        if let Some(state) = self.state.get_mut(slot) {
            *state = next;
        }
        self.free.push_back(slot as u32);
        Ok(())
    }

    /// Marks each SPI of `spis` allocated under its own generation (SPIs restored after a
    /// restart, so no new set gets them) and returns those refused: generation 0, a slot
    /// beyond the capacity, or a slot already allocated. One pass over the free list for the
    /// whole batch.
    pub(crate) fn reserve(&mut self, spis: &[u32]) -> Vec<u32> {
        let mut refused = Vec::new();
        for &spi in spis {
            let generation = self.layout.generation(spi);
            match self.state.get_mut(self.layout.slot(spi)) {
                Some(state) if generation != 0 && *state & ALLOCATED == 0 => {
                    *state = ALLOCATED | generation;
                }
                _ => refused.push(spi),
            }
        }
        let state = &self.state;
        self.free
            .retain(|&slot| state.get(slot as usize).is_some_and(|s| s & ALLOCATED == 0));
        refused
    }

    /// Number of SPIs currently allocated.
    pub(crate) fn allocated(&self) -> usize {
        self.state.len() - self.free.len()
    }

    /// Heap bytes of the allocator (free list plus state words).
    pub(crate) fn memory_bytes(&self) -> usize {
        self.free.capacity() * core::mem::size_of::<u32>()
            + self.state.len() * core::mem::size_of::<u32>()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn layout_bits() {
        assert_eq!(SpiLayout::for_capacity(1).unwrap().slot_bits(), 8);
        assert_eq!(SpiLayout::for_capacity(256).unwrap().slot_bits(), 8);
        assert_eq!(SpiLayout::for_capacity(257).unwrap().slot_bits(), 9);
        assert_eq!(SpiLayout::for_capacity(1 << 20).unwrap().slot_bits(), 20);
        assert_eq!(
            SpiLayout::for_capacity((1 << 20) + 1).unwrap().slot_bits(),
            21
        );
        let max = SpiLayout::for_capacity(MAX_CAPACITY).unwrap();
        assert_eq!(max.slot_bits(), 24);
        assert_eq!(max.max_generation(), 255);
        assert_eq!(
            SpiLayout::for_capacity(0),
            Err(SadError::InvalidCapacity {
                capacity: 0,
                max: MAX_CAPACITY
            })
        );
        assert!(SpiLayout::for_capacity(MAX_CAPACITY + 1).is_err());
    }

    #[test]
    fn compose_and_split() {
        let l = SpiLayout::for_capacity(1000).unwrap(); // 10 slot bits
        let spi = l.compose(0x2a5, 0x1234);
        assert_eq!(spi, 0x1234 << 10 | 0x2a5);
        assert_eq!(l.slot(spi), 0x2a5);
        assert_eq!(l.generation(spi), 0x1234);
        assert_eq!(l.next_generation(l.max_generation()), 1);
        assert_eq!(l.next_generation(1), 2);
    }

    #[test]
    fn generation_wraps_to_one_not_zero() {
        // capacity 1 << 24: 8 generation bits, so 255 releases bring a slot back to generation 1.
        let layout = SpiLayout::for_capacity(MAX_CAPACITY).unwrap();
        let mut a = SlotAllocator {
            layout,
            free: VecDeque::from([7]),
            state: vec![1; 8].into_boxed_slice(),
        };
        let first = a.allocate().unwrap();
        let mut spi = first;
        for _ in 0..254 {
            a.release(spi).unwrap();
            spi = a.allocate().unwrap();
            assert_ne!(spi, first);
            assert!(spi > RESERVED_SPI_MAX);
        }
        assert_eq!(layout.generation(spi), 255);
        a.release(spi).unwrap();
        assert_eq!(a.allocate().unwrap(), first);
    }
}
