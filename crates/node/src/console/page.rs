//! The console's web page: the container's processes in a table (pid as the container sees it,
//! state, command line, with attach and kill buttons), a field to start a program, and a
//! terminal attached over the WebSocket (`#attach=N` attaches on load): xterm.js when the node
//! serves it (`/assets/xterm.js`), else plain text with a line of input. The JSON API under
//! `/api` does the same for scripts.

/// The page, with `{{container}}` where the container's id goes.
const PAGE: &str = include_str!("page.html");

/// The page for container `container`.
pub fn render(container: &str) -> String {
    let escaped: String = container
        .chars()
        .map(|c| match c {
            '&' => "&amp;".into(),
            '<' => "&lt;".into(),
            '>' => "&gt;".into(),
            '"' => "&quot;".into(),
            '\'' => "&#39;".into(),
            c => c.to_string(),
        })
        .collect();
    PAGE.replace("{{container}}", &escaped)
}

#[cfg(test)]
mod tests {
    #[test]
    fn the_container_id_is_escaped_into_the_page() {
        let page = super::render("a<b");
        assert!(page.contains("a&lt;b") && !page.contains("a<b") && !page.contains("{{container}}"));
    }
}
