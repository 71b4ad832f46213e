//! Results for people: aligned text tables for a terminal ([`text`]), self-contained HTML
//! pages with inline SVG charts ([`html`]), and the report of a drift job's run ([`run`]). The
//! numbers in all of them are written by [`crate::format`].

pub mod html;
pub mod run;
pub mod text;
