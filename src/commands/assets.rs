//! `generate-assets DIR` (hidden, for packagers): the manual pages and shell completions.

use std::path::Path;

use anyhow::Result;

use crate::exit;

pub fn run(dir: &Path) -> Result<u8> {
    super::cli::generate_assets(dir)
        .map_err(|error| anyhow::anyhow!("cannot write into `{}`: {error}", dir.display()))?;
    Ok(exit::OK)
}
