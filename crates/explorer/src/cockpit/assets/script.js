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

  // Live: twice a second while the page is visible, ask how many changes the explorer has
  // accepted; when that grew, load this page again and swap its <main>, keeping which history
  // lists were open. The filter form is outside <main>, so what is being typed stays. Polling
  // holds no connection open (browsers allow 6 to a host, across tabs).
  const main = document.getElementById("live");
  if (!main) return;
  let seen = null;

  async function poll() {
    if (document.visibilityState !== "visible") return;
    try {
      const response = await fetch("/cockpit/changes", { cache: "no-store" });
      if (!response.ok) return;
      const count = await response.text();
      document.body.dataset.live = "yes";
      if (seen === null || count === seen || await reload()) seen = count;
    } catch (_) {
      // The explorer is away; the next poll tries again.
    }
  }

  // Load this page again and swap its <main>; whether that was done.
  async function reload() {
    const response = await fetch(window.location.href, { cache: "no-store", headers: { Accept: "text/html" } });
    if (!response.ok) return false;
    const fresh = new DOMParser().parseFromString(await response.text(), "text/html").getElementById("live");
    if (!fresh) return false;
    const open = new Set([...main.querySelectorAll("tr[data-workload] details[open]")]
      .map((d) => d.closest("tr").dataset.workload));
    main.replaceChildren(...fresh.childNodes);
    for (const row of main.querySelectorAll("tr[data-workload]")) {
      if (open.has(row.dataset.workload)) row.querySelector("details")?.setAttribute("open", "");
    }
    return true;
  }

  // One poll at a time: the next starts half a second after the last ended.
  (async function loop() {
    await poll();
    setTimeout(loop, 500);
  })();
})();
