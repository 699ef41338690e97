// Upload with a real progress bar (XHR upload progress). Without JS the form posts normally.
document.addEventListener("DOMContentLoaded", () => {
  const form = document.getElementById("upload-form");
  if (!form || !window.XMLHttpRequest || !window.FormData) return;
  const box = document.getElementById("upload-progress");
  const bar = document.getElementById("upload-bar");
  const percent = document.getElementById("upload-percent");
  const error = document.getElementById("upload-error");
  const button = form.querySelector("button[type=submit]");
  const maxBytes = Number(form.dataset.maxBytes || 0);

  const fail = (message) => {
    error.textContent = message;
    error.hidden = false;
    box.hidden = true;
    button.disabled = false;
  };
  const show = (value) => {
    bar.value = value;
    bar.textContent = percent.textContent = `${value} %`;
  };

  form.addEventListener("submit", (event) => {
    const file = form.querySelector("input[type=file]").files[0];
    if (!file) return; // let the server say what is missing
    event.preventDefault();
    if (maxBytes && file.size > maxBytes) {
      fail(`the file is ${(file.size / 1048576).toFixed(1)} MiB, over the upload limit of ${maxBytes / 1048576} MiB`);
      return;
    }
    error.hidden = true;
    box.hidden = false;
    button.disabled = true;
    show(0);
    const xhr = new XMLHttpRequest();
    xhr.open("POST", form.action || window.location.href);
    xhr.setRequestHeader("X-Requested-With", "XMLHttpRequest");
    xhr.upload.addEventListener("progress", (e) => {
      if (e.lengthComputable) show(Math.floor((e.loaded / e.total) * 100));
    });
    xhr.addEventListener("load", () => {
      let body = {};
      try { body = JSON.parse(xhr.responseText); } catch (e) { /* not JSON: a server error page */ }
      if (xhr.status >= 200 && xhr.status < 300 && body.url) {
        show(100);
        window.location.assign(body.url);
      } else {
        fail(body.error || `upload failed (HTTP ${xhr.status})`);
      }
    });
    xhr.addEventListener("error", () => fail("upload failed: the connection was lost"));
    xhr.send(new FormData(form));
  });
});
