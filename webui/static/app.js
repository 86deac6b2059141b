// Sealgate: conveniences only. Every page works without this script.
"use strict";
document.addEventListener("submit", (event) => {
  const form = event.target;
  const question = form instanceof HTMLFormElement ? form.dataset.confirm : null;
  if (question && !window.confirm(question)) {
    event.preventDefault();
  }
});
document.addEventListener("change", (event) => {
  const box = event.target;
  if (box instanceof HTMLInputElement && box.dataset.selectAll !== undefined) {
    for (const other of document.querySelectorAll("input[name='" + box.dataset.selectAll + "']")) {
      other.checked = box.checked;
    }
  }
});
