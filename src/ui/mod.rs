//! What people see: the printer (stdout for data, stderr for the rest), live
//! progress, and result rendering.

mod printer;
mod progress;
pub mod summary;

pub use printer::Printer;
pub use progress::Progress;
