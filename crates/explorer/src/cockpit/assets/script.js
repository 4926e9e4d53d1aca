// zgrid cockpit: keeps the page live and copies ids. Pages work without it.
"use strict";
(() => {
  // Copy buttons: the id goes to the clipboard where the browser allows it (HTTPS or
  // localhost); elsewhere the id is selected, ready for Ctrl+C.
  document.addEventListener("click", (event) => {
    const button = event.target.closest("button[data-copy]");
    if (!button) return;
    const text = button.dataset.copy;
    const done = () => {
      button.textContent = "copied";
      setTimeout(() => { button.textContent = "copy"; }, 1500);
    };
    if (navigator.clipboard && window.isSecureContext) {
      navigator.clipboard.writeText(text).then(done, () => select(button));
    } else {
      select(button);
    }
  });

  function select(button) {
    const code = button.parentElement.querySelector("code");
    if (!code) return;
    const range = document.createRange();
    range.selectNodeContents(code);
    const selection = window.getSelection();
    selection.removeAllRanges();
    selection.addRange(range);
  }

  // Live: when the explorer reports a change, load this page again and swap its <main>,
  // keeping which history lists were open. The filter form is outside <main>, so what is
  // being typed stays.
  const main = document.getElementById("live");
  if (!main || !window.EventSource) return;
  let loading = false;
  let again = false;

  async function reload() {
    if (loading) { again = true; return; }
    loading = true;
    try {
      const response = await fetch(window.location.href, { cache: "no-store", headers: { Accept: "text/html" } });
      if (!response.ok) return;
      const fresh = new DOMParser().parseFromString(await response.text(), "text/html").getElementById("live");
      if (!fresh) return;
      const open = new Set([...main.querySelectorAll("tr[data-workload] details[open]")]
        .map((d) => d.closest("tr").dataset.workload));
      main.replaceChildren(...fresh.childNodes);
      for (const row of main.querySelectorAll("tr[data-workload]")) {
        if (open.has(row.dataset.workload)) row.querySelector("details")?.setAttribute("open", "");
      }
    } catch (_) {
      // The explorer is away; the next event tries again.
    } finally {
      loading = false;
      if (again) { again = false; reload(); }
    }
  }

  const events = new EventSource("/cockpit/events");
  events.addEventListener("change", reload);
  events.addEventListener("open", () => { document.body.dataset.live = "yes"; });
})();
