//! `mirror`: copy what changed into PostgreSQL now, as every run does after it (`[mirror]`).

use anyhow::{Result, bail};

use crate::config::Config;
use crate::exit;
use crate::replica::Store;

pub fn run(config: &Config) -> Result<u8> {
    let Some(mirror) = &config.mirror else {
        bail!(
            "`{}` has no [mirror] section; add one with `postgresql = \"postgresql://USER@HOST/DATABASE\"` (see docs/mirror.md)",
            config.path.display()
        );
    };
    let mut store = Store::open(&config.database, config.event_rules())?;
    let stop = crate::ops::notify::stop_on_signals();
    let mirrored = crate::mirror::run(&mut store, &config.database, mirror, &stop)?;
    crate::sayln!("{}", mirrored.line(mirror));
    Ok(exit::OK)
}
