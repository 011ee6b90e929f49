//! Keeping the generation strictly increasing across restarts (feature
//! `std`), as Cassandra keeps it in its system table.

use std::format;
use std::fs;
use std::io::{self, Write};
use std::path::Path;

use crate::Generation;

/// The file, inside the data directory, that holds the last generation.
pub const GENERATION_FILE: &str = "generation";

/// Picks this run's generation and records it in `dir` (created if missing):
/// the wall clock in seconds (`wall_secs`), but always above the generation
/// recorded by the previous run, even if the clock went backwards. The file
/// is replaced atomically (written aside, then renamed).
pub fn next_generation(dir: &Path, wall_secs: u64) -> io::Result<Generation> {
    fs::create_dir_all(dir)?;
    let path = dir.join(GENERATION_FILE);
    let last = match fs::read_to_string(&path) {
        Ok(text) => Some(text.trim().parse::<u64>().map_err(|_| {
            io::Error::new(
                io::ErrorKind::InvalidData,
                format!("{} does not hold a generation number", path.display()),
            )
        })?),
        Err(e) if e.kind() == io::ErrorKind::NotFound => None,
        Err(e) => return Err(e),
    };
    let generation = Generation::next_after(wall_secs, last.map(Generation));
    let tmp = dir.join(format!("{GENERATION_FILE}.tmp"));
    let mut file = fs::File::create(&tmp)?;
    writeln!(file, "{}", generation.0)?;
    file.sync_all()?;
    fs::rename(&tmp, &path)?;
    Ok(generation)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn generations_increase_even_when_the_clock_goes_back() {
        let dir = std::env::temp_dir().join(format!("gossip-gen-{}", std::process::id()));
        let _ = fs::remove_dir_all(&dir);
        assert_eq!(next_generation(&dir, 1000).unwrap(), Generation(1000));
        assert_eq!(next_generation(&dir, 2000).unwrap(), Generation(2000));
        // The clock went backwards: still higher.
        assert_eq!(next_generation(&dir, 10).unwrap(), Generation(2001));
        assert_eq!(next_generation(&dir, 2001).unwrap(), Generation(2002));
        fs::write(dir.join(GENERATION_FILE), "garbage").unwrap();
        assert_eq!(
            next_generation(&dir, 1).unwrap_err().kind(),
            io::ErrorKind::InvalidData
        );
        fs::remove_dir_all(&dir).unwrap();
    }
}
