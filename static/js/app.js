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

  // "The test uses the saved settings": say so as soon as the form is edited.
  const settingsForm = document.getElementById("webhook-form");
  const unsaved = document.getElementById("test-unsaved");
  if (settingsForm && unsaved) {
    const markDirty = (event) => {
      // The Test's event picker sits inside the settings form but belongs to the test form.
      if (event.target.form && event.target.form !== settingsForm) return;
      unsaved.classList.remove("d-none");
    };
    settingsForm.addEventListener("input", markDirty);
    settingsForm.addEventListener("change", markDirty);
    settingsForm.addEventListener("click", (event) => {
      if (event.target.closest("[data-remove-row], [data-add-row], [data-check-all], [data-check-none]")) markDirty(event);
    });
  }

  // The Test button waits for the receiver (up to the 10 s deadline): show that it is busy.
  const testButton = document.getElementById("test-webhook");
  const testResult = document.getElementById("test-result");
  if (testButton && testResult) {
    const label = testButton.textContent;
    document.body.addEventListener("htmx:beforeRequest", (event) => {
      if (event.detail.elt.id !== "webhook-test-form") return;
      testButton.textContent = "Sending test…";
      testResult.setAttribute("aria-busy", "true");
    });
    document.body.addEventListener("htmx:afterRequest", (event) => {
      if (event.detail.elt.id !== "webhook-test-form") return;
      testButton.textContent = label;
      testResult.removeAttribute("aria-busy");
      if (!event.detail.successful) {
        // htmx swaps nothing on an error reply (an expired CSRF token, a crash): say something.
        const status = event.detail.xhr && event.detail.xhr.status;
        const alert = document.createElement("div");
        alert.className = "alert alert-danger mt-2 mb-0";
        alert.id = "test-outcome";
        alert.textContent = status
          ? `The test could not be sent (HTTP ${status} from Hookline). Reload the page and try again.`
          : "The test could not be sent: Hookline did not answer. Check your connection and try again.";
        testResult.replaceChildren(alert);
      }
    });
  }

  document.querySelectorAll("[data-copy]").forEach((button) => {
    button.addEventListener("click", async () => {
      const source = document.querySelector(button.dataset.copy);
      source.select();
      try { await navigator.clipboard.writeText(source.value); } catch (e) { document.execCommand("copy"); }
      button.textContent = "Copied";
    });
  });
});

// Live blocks (marked data-live, polled by htmx) back off while the tab is
// hidden: no request at all until it is visible again, then one at once
// (blocks that listen for "hl:visible"), so a tab left open in the background
// costs the server nothing.
document.addEventListener("htmx:beforeRequest", (event) => {
  const elt = event.detail.elt;
  if (document.hidden && elt instanceof Element && elt.hasAttribute("data-live")) event.preventDefault();
});
document.addEventListener("visibilitychange", () => {
  if (!document.hidden) document.dispatchEvent(new Event("hl:visible"));
});
