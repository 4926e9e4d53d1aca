//! The console's web page: the container's processes, a form to start one, and a terminal
//! attached over the WebSocket. The terminal is a plain text view with a line of input, so the
//! page needs nothing but the agent; the JSON API under `/api` does the same for scripts.

/// The page, served at `/`.
pub const PAGE: &str = include_str!("page.html");
