//! Domain configs in Xen's `xl` syntax.
//!
//! Text -> tokens (`lexer`) -> statements (`parser`) -> merged settings
//! with the command line's `key=value` overrides (`file`) -> the typed
//! [`DomainSpec`] (`build`, with the specs of `disk`, `vif`, `pci`, `cpus`
//! and `options`). Every error names the file, the line and the key, and
//! all the errors of a config are reported at once.

pub mod ast;
pub mod build;
pub mod cpus;
pub mod diag;
pub mod disk;
pub mod fields;
pub mod file;
pub mod keys;
pub mod lexer;
pub mod options;
pub mod parser;
pub mod pci;
pub mod spec;
pub mod suggest;
pub mod vif;

#[cfg(test)]
mod hostile_tests;
#[cfg(test)]
mod message_tests;
#[cfg(test)]
mod tests;

use std::path::{Path, PathBuf};

pub use diag::{Diagnostic, Diagnostics, Location, Origin};
pub use fields::Located;
pub use spec::{DomainSpec, Loaded, NoEffect, VncSpec};

/// Why a config could not be loaded.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// The file could not be read.
    #[error("cannot read the config {}", path.display())]
    Read {
        /// The file.
        path: PathBuf,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// The config has errors (all of them are listed).
    #[error("{errors}")]
    Invalid {
        /// The errors.
        errors: Diagnostics,
        /// The warnings found alongside, in line order.
        warnings: Vec<Diagnostic>,
        /// The line naming the keys with no effect, if any.
        no_effect: Option<String>,
    },
}

impl ConfigError {
    /// The warnings, then the no-effect line, of a config with errors:
    /// what a user reads before the errors.
    pub fn warning_lines(&self) -> (Vec<String>, Option<String>) {
        match self {
            ConfigError::Invalid {
                warnings,
                no_effect,
                ..
            } => (
                warnings.iter().map(ToString::to_string).collect(),
                no_effect.clone(),
            ),
            ConfigError::Read { .. } => (Vec::new(), None),
        }
    }
}

/// Reads the config at `path`, applies the `key=value` overrides and builds
/// the spec.
pub fn load(path: &Path, overrides: &[String]) -> Result<Loaded, ConfigError> {
    let text = std::fs::read(path).map_err(|source| ConfigError::Read {
        path: path.to_owned(),
        source,
    })?;
    // A config is text; stray non-UTF-8 bytes (in a comment, say) become
    // U+FFFD rather than a failure, and a string holding one is still
    // reported where it stands.
    let text = String::from_utf8_lossy(&text);
    load_str(&text, &Origin::File(path.to_owned()), overrides)
}

/// Builds the spec from config text.
pub fn load_str(text: &str, origin: &Origin, overrides: &[String]) -> Result<Loaded, ConfigError> {
    let mut parsed = file::Parsed::from_text(text, origin);
    parsed.apply_overrides(overrides);
    let built = build::build(&parsed.file, origin);
    match built {
        Ok(mut loaded) if parsed.errors.is_empty() => {
            let mut warnings = parsed.warnings;
            warnings.append(&mut loaded.warnings);
            loaded.warnings = sorted(warnings);
            Ok(loaded)
        }
        Ok(loaded) => Err(ConfigError::Invalid {
            errors: Diagnostics(sorted(parsed.errors)),
            no_effect: loaded.no_effect_line(),
            warnings: sorted([parsed.warnings, loaded.warnings].concat()),
        }),
        Err(failed) => Err(ConfigError::Invalid {
            errors: Diagnostics(sorted([parsed.errors, failed.errors].concat())),
            warnings: sorted([parsed.warnings, failed.warnings].concat()),
            no_effect: spec::no_effect_line(
                match origin {
                    Origin::File(p) => Some(p.as_path()),
                    Origin::CommandLine => None,
                },
                &failed.no_effect,
            ),
        }),
    }
}

/// File diagnostics by line, then command-line ones by argument (a stable
/// sort: those of one line keep the order they were found in).
pub fn sorted(mut d: Vec<Diagnostic>) -> Vec<Diagnostic> {
    d.sort_by_key(|d| (matches!(d.at.origin, Origin::CommandLine), d.at.line));
    d
}
