// The job page: the whole job drawn as a strip of states (from a run-length string, small for any job size),
// and a viewer for finished frames at full size with previous/next. Without JS the strip is a labelled image,
// the pager links work and each thumbnail links to its full-size image.
const STATE_COLOURS = {q: "#c9ced6", l: "#3b82f6", r: "#a855f7", v: "#f59e0b", s: "#16a34a", f: "#dc2626",
                       c: "#6b7280"};

function drawStrip(canvas) {
  const runs = (canvas.dataset.runs || "").split(" ").filter(Boolean)
    .map((run) => [run[0], Number(run.slice(1))]);
  const total = runs.reduce((sum, [, n]) => sum + n, 0);
  const ctx = canvas.getContext("2d");
  const width = canvas.clientWidth || canvas.width;
  canvas.width = width;
  ctx.clearRect(0, 0, width, canvas.height);
  let done = 0;
  for (const [code, n] of runs) {
    ctx.fillStyle = STATE_COLOURS[code] || "#000";
    const x0 = Math.floor(done / total * width);
    done += n;
    ctx.fillRect(x0, 0, Math.max(Math.floor(done / total * width) - x0, 1), canvas.height);
  }
  canvas.onclick = (event) => {
    const index = Math.floor(event.offsetX / width * total);
    const page = Math.floor(index / Number(canvas.dataset.perPage || 48)) + 1;
    window.location.search = `?page=${page}`;
  };
  canvas.style.cursor = total ? "pointer" : "default";
}

function setUpViewer(page) {
  const dialog = document.getElementById("frame-viewer");
  if (!dialog) return;
  const image = dialog.querySelector("img");
  const title = dialog.querySelector("h2");
  let current = null;
  const links = () => [...page.querySelectorAll(".frame-grid a.view")];
  const show = (link) => {
    current = link;
    image.src = link.href;
    image.alt = link.dataset.label;
    title.textContent = link.dataset.label;
    const all = links();
    const at = all.indexOf(link);
    dialog.querySelector('[data-step="-1"]').disabled = at <= 0;
    dialog.querySelector('[data-step="1"]').disabled = at >= all.length - 1;
    if (!dialog.open) dialog.showModal();
  };
  const step = (by) => {
    const all = links();
    const next = all[all.indexOf(current) + by];
    if (next) show(next);
  };
  page.addEventListener("click", (event) => {
    const link = event.target.closest(".frame-grid a.view");
    if (!link) return;
    event.preventDefault();
    show(link);
  });
  dialog.querySelectorAll("[data-step]").forEach((b) => b.addEventListener("click", () => step(Number(b.dataset.step))));
  dialog.addEventListener("keydown", (event) => {
    if (event.key === "ArrowLeft") step(-1);
    if (event.key === "ArrowRight") step(1);
  });
}

document.addEventListener("DOMContentLoaded", () => {
  const page = document.getElementById("job-page");
  if (!page) return;
  const redraw = () => page.querySelectorAll("canvas.frame-strip").forEach(drawStrip);
  redraw();
  page.addEventListener("parts-applied", redraw);
  window.addEventListener("resize", redraw);
  setUpViewer(page);
});
