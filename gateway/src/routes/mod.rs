//! Route handlers, one file per audience. Each file's `configure` registers its routes.
pub mod citizen;
pub mod clock;
pub mod operator;
pub mod public;
