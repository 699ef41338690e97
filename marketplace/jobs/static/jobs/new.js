// Shows "Split into tiles" only while one frame is selected (a still). Without JS the field is always there and
// the server refuses tiles for more than one frame.
document.addEventListener("DOMContentLoaded", () => {
  const form = document.getElementById("job-form");
  const tiles = document.getElementById("id_tiles");
  if (!form || !tiles) return;
  const row = tiles.closest("div");
  const start = form.elements.namedItem("frame_start");
  const end = form.elements.namedItem("frame_end");
  const update = () => {
    const still = start.value !== "" && start.value === end.value;
    row.hidden = !still;
    if (!still) tiles.value = "1";
  };
  start.addEventListener("input", update);
  end.addEventListener("input", update);
  update();
});
