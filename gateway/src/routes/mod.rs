//! Route handlers: public routes, and the citizen and operator APIs with one file per resource.
//! Each audience's `configure` registers its routes.
pub mod citizen;
pub mod operator;
pub mod public;
