// Tiny progressive enhancement instead of an SPA: elements with data-poll="URL" refresh their inner HTML
// from a server-rendered fragment every few seconds; everything works without JS (pages reload).
document.addEventListener("DOMContentLoaded", () => {
  document.querySelectorAll("[data-poll]").forEach((el) => {
    if (el.dataset.pollMode === "parts") return pollParts(el);
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

// data-poll-mode="parts" (the job page): one JSON poll answers with only what changed since our cursor: parts
// (elements marked data-part="name") to replace, frame rows (id "frame-row-<pk>") to replace or add, and
// whether to keep polling. Every `full_every` polls the cursor is dropped to get everything once.
function pollParts(el) {
  const every = Number(el.dataset.pollSeconds || 3) * 1000;
  let cursor = el.dataset.pollCursor || "";
  let polls = 0;
  const apply = (answer) => {
    for (const [name, html] of Object.entries(answer.parts || {})) {
      const part = el.querySelector(`[data-part="${name}"]`);
      if (part) part.innerHTML = html;
    }
    // Rows by element id: "frame-row-<pk>" (table) and "frame-card-<pk>" (grid); a new one is appended.
    const containers = {"frame-row-": '[data-part="frames"]', "frame-card-": '[data-part="cards"]'};
    for (const [id, html] of Object.entries(answer.rows || {})) {
      const row = document.getElementById(id);
      if (row) { row.outerHTML = html; continue; }
      const prefix = Object.keys(containers).find((p) => id.startsWith(p));
      const box = prefix && el.querySelector(containers[prefix]);
      if (box) box.insertAdjacentHTML("beforeend", html);
    }
    el.dataset.state = answer.state;
    el.dispatchEvent(new CustomEvent("parts-applied"));
  };
  const tick = async () => {
    let live = true;
    try {
      polls += 1;
      const full = answer_full_every && polls % answer_full_every === 0;
      const params = el.dataset.pollParams ? `${el.dataset.pollParams}&` : "";  // e.g. the page of frames shown
      const url = `${el.dataset.poll}?${params}cursor=${encodeURIComponent(full ? "" : cursor)}`;
      const r = await fetch(url, {headers: {"Accept": "application/json"}});
      if (r.ok) {
        const answer = await r.json();
        answer_full_every = answer.full_every || 0;
        apply(answer);
        cursor = answer.cursor;
        el.dataset.pollCursor = cursor;
        live = answer.live;
      }
    } catch (e) { /* offline: try again next tick */ }
    if (live) setTimeout(tick, every);
    else el.dataset.pollDone = "1";
  };
  let answer_full_every = 0;
  setTimeout(tick, every);
}
