//! stdout carries results (tables, JSON); stderr carries progress and logs.

use std::io::{self, IsTerminal, Write};

use serde::Serialize;

use crate::cli::OutputFormat;
use crate::settings::Verbosity;

#[derive(Clone, Copy, Debug)]
pub struct Printer {
    pub format: OutputFormat,
    pub verbosity: Verbosity,
}

impl Printer {
    pub fn new(format: OutputFormat, verbosity: Verbosity) -> Self {
        Self { format, verbosity }
    }

    pub fn json_mode(&self) -> bool {
        self.format == OutputFormat::Json
    }

    /// Live spinners only make sense on a terminal and when not asked to be quiet.
    pub fn live(&self) -> bool {
        self.verbosity != Verbosity::Quiet && io::stderr().is_terminal()
    }

    pub fn quiet(&self) -> bool {
        self.verbosity == Verbosity::Quiet
    }

    pub fn verbose(&self) -> bool {
        matches!(self.verbosity, Verbosity::Verbose(_))
    }

    /// A result for stdout (text mode).
    pub fn data(&self, text: &str) -> io::Result<()> {
        let mut out = io::stdout().lock();
        out.write_all(text.as_bytes())?;
        if !text.ends_with('\n') {
            out.write_all(b"\n")?;
        }
        out.flush()
    }

    pub fn json<T: Serialize>(&self, value: &T) -> io::Result<()> {
        let mut out = io::stdout().lock();
        serde_json::to_writer_pretty(&mut out, value)?;
        out.write_all(b"\n")?;
        out.flush()
    }

    /// A message for people (stderr), hidden by --quiet.
    pub fn info(&self, message: &str) {
        if !self.quiet() {
            eprintln!("{message}");
        }
    }

    /// A warning or error (stderr), always shown.
    pub fn warn(&self, message: &str) {
        eprintln!("{message}");
    }
}
