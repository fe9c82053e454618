//! Domain configs in Xen's `xl` syntax: the lexer and parser, the merged
//! settings with command-line overrides, and the typed [`spec::DomainSpec`].

pub mod ast;
pub mod diag;
pub mod file;
pub mod lexer;
pub mod parser;
