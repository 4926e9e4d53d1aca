//! The console's web page: the container's processes, a form to start one, and a terminal
//! attached over the WebSocket (`#attach=N` attaches on load): xterm.js when the node serves it
//! (`/assets/xterm.js`), else plain text with a line of input. The JSON API under `/api` does
//! the same for scripts.

/// The page, served at `/`.
pub const PAGE: &str = include_str!("page.html");
