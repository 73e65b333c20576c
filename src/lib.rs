//! payops: builds, inspects and removes a payment-processing environment on
//! AWS through the AWS SDK for Rust.
//!
//! Layout: `engine` walks a dependency graph and knows nothing of AWS;
//! `resources` holds one file per resource type and the registry; `commands`
//! wire settings, state and the engine together and make no SDK call.

pub mod aws;
pub mod cli;
pub mod commands;
pub mod duration;
pub mod engine;
pub mod naming;
pub mod outputs;
pub mod resources;
pub mod settings;
pub mod spec;
pub mod state;
pub mod tags;
pub mod ui;
