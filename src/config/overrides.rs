//! Server settings given on the command line (or their `HOOKRUNNER_*` variables), which override
//! the file's `server:` section: kept with the config, so a reload applies them again.

use std::path::PathBuf;

use super::{Config, LogFormat, StoreSetting};

/// What `serve --listen`, `--state-dir`, `--log-format`, `--store` and `--instance` set; empty or
/// `None` leaves the file's value. The store and instance were checked by the rules of their keys.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ServerOverrides {
    pub listen: Vec<String>,
    pub state_dir: Option<PathBuf>,
    pub log_format: Option<LogFormat>,
    pub store: Option<StoreSetting>,
    pub instance: Option<String>,
}

impl Config {
    /// Applies the command line's settings over the file's and remembers them, so that a reload
    /// compares like with like: a flag is not a change of the file.
    pub fn apply_overrides(&mut self, overrides: ServerOverrides) {
        if !overrides.listen.is_empty() {
            self.server.listen.clone_from(&overrides.listen);
        }
        if let Some(state_dir) = &overrides.state_dir {
            self.server.state_dir.clone_from(state_dir);
        }
        if let Some(log_format) = overrides.log_format {
            self.server.log_format = log_format;
        }
        if let Some(store) = &overrides.store {
            self.server.store.clone_from(store);
        }
        if let Some(instance) = &overrides.instance {
            self.server.instance.clone_from(instance);
        }
        self.overrides = overrides;
    }

    /// The command line's settings this config was served with.
    pub fn overrides(&self) -> &ServerOverrides {
        &self.overrides
    }
}
