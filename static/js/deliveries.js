// The delivery log's live blocks (htmx polling, marked data-live) made gentler.
// Everything works without this file: it only skips a refresh while the admin
// is selecting text in the block (app.js skips them while the tab is hidden), and keeps each <details>
// (chart data, attempts) open or closed as the admin left it across refreshes.
"use strict";

document.addEventListener("htmx:beforeRequest", (event) => {
  const elt = event.detail.elt;
  if (!(elt instanceof Element) || !elt.hasAttribute("data-live")) return;
  const selection = document.getSelection();
  const selecting = selection && !selection.isCollapsed && elt.contains(selection.anchorNode);
  if (selecting) event.preventDefault(); // polling goes on; this tick is skipped
});

let detailsState = new Map();
document.addEventListener("htmx:beforeSwap", () => {
  detailsState = new Map([...document.querySelectorAll("details[id]")].map((d) => [d.id, d.open]));
});
document.addEventListener("htmx:afterSettle", () => {
  detailsState.forEach((open, id) => {
    const details = document.getElementById(id);
    if (details) details.open = open;
  });
});
