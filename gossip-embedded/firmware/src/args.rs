//! The firmware's command line, read over semihosting: QEMU passes
//! `-append "..."` (after the kernel's path), as a boot loader would pass
//! a board its settings. Words of the form `name=value`.

use cortex_m_semihosting::{nr, syscall1};

/// The command line's bytes (at most 128).
pub struct Args {
    buf: [u8; 128],
    len: usize,
}

impl Args {
    /// Asks the host for the command line; empty if it has none.
    pub fn read() -> Self {
        let mut buf = [0u8; 128];
        // The block GET_CMDLINE takes: the buffer and its size; the host
        // writes the line's length (without its NUL) into the second word.
        let mut block = [buf.as_mut_ptr() as usize, buf.len()];
        // SAFETY: semihosting call 0x15 with a pointer to a two-word block
        // that lives until the call returns; the host writes at most
        // `buf.len()` bytes into `buf` and one word into `block[1]`, both
        // ours, mutable and not otherwise borrowed during the call.
        let failed = unsafe { syscall1(nr::GET_CMDLINE, block.as_mut_ptr() as usize) } != 0;
        let len = if failed { 0 } else { block[1].min(buf.len()) };
        Self { buf, len }
    }

    /// The value of `name=value`, if given.
    pub fn get(&self, name: &str) -> Option<&str> {
        let line = core::str::from_utf8(self.buf.get(..self.len)?).ok()?;
        line.split_ascii_whitespace()
            .filter_map(|word| word.split_once('='))
            .find(|(n, _)| *n == name)
            .map(|(_, v)| v)
    }

    /// The number `name=N`, if given and a number.
    pub fn number(&self, name: &str) -> Option<u64> {
        self.get(name)?.parse().ok()
    }
}
