// Tiny progressive enhancement instead of an SPA: elements with data-poll="URL" refresh their inner HTML
// from a server-rendered fragment every few seconds; everything works without JS (pages reload).
document.addEventListener("DOMContentLoaded", () => {
  document.querySelectorAll("[data-poll]").forEach((el) => {
    const every = Number(el.dataset.pollSeconds || 3) * 1000;
    const tick = async () => {
      try {
        const r = await fetch(el.dataset.poll, {headers: {"X-Fragment": "1"}});
        if (r.ok) el.innerHTML = await r.text();
      } catch (e) { /* offline: try again next tick */ }
      // A fragment that marks itself final (data-final) stops the polling: nothing will change.
      if (!el.querySelector("[data-final]")) setTimeout(tick, every);
    };
    setTimeout(tick, every);
  });
});
