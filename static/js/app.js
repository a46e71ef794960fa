// Progressive enhancement for the panel. Every form works without this file;
// it only saves round trips (add/remove header rows, select all/none, copy).
"use strict";

document.addEventListener("DOMContentLoaded", () => {
  document.querySelectorAll(".js-only").forEach((el) => el.classList.remove("d-none"));

  // Add a header row on the client instead of a server round trip.
  document.querySelectorAll("[data-add-row]").forEach((button) => {
    button.addEventListener("click", (event) => {
      event.preventDefault();
      const rows = document.querySelector(button.dataset.addRow);
      const template = document.getElementById("header-row-template");
      const used = [...rows.querySelectorAll("input[name^='headers-']")]
        .map((input) => parseInt(input.name.split("-")[1], 10));
      const next = used.length ? Math.max(...used) + 1 : 0;
      const html = template.innerHTML.replaceAll("__i__", String(next));
      rows.insertAdjacentHTML("beforeend", html);
      rows.lastElementChild.querySelector("input").focus();
    });
  });

  // Remove a header row (event delegation: rows are added dynamically).
  document.addEventListener("click", (event) => {
    const button = event.target.closest("[data-remove-row]");
    if (button) button.closest("[data-header-row]").remove();
  });

  const setAll = (name, checked) =>
    document.querySelectorAll(`input[type=checkbox][name='${name}']`).forEach((box) => { box.checked = checked; });
  document.querySelectorAll("[data-check-all]").forEach((b) => b.addEventListener("click", () => setAll(b.dataset.checkAll, true)));
  document.querySelectorAll("[data-check-none]").forEach((b) => b.addEventListener("click", () => setAll(b.dataset.checkNone, false)));

  document.querySelectorAll("[data-copy]").forEach((button) => {
    button.addEventListener("click", async () => {
      const source = document.querySelector(button.dataset.copy);
      source.select();
      try { await navigator.clipboard.writeText(source.value); } catch (e) { document.execCommand("copy"); }
      button.textContent = "Copied";
    });
  });
});
