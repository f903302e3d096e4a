// The console's only script besides htmx (no inline script: the CSP forbids it).
"use strict";

// Live regions poll only while the page is visible; a hidden tab costs the
// coordinator nothing, and coming back refreshes at once.
document.addEventListener("htmx:beforeRequest", (event) => {
  if (document.visibilityState !== "visible") event.preventDefault();
});
document.addEventListener("visibilitychange", () => {
  if (document.visibilityState === "visible") {
    document.body.dispatchEvent(new Event("visible-again"));
  }
});

// Destructive buttons ask first (with JavaScript off the form simply submits).
document.addEventListener("submit", (event) => {
  const message = event.submitter && event.submitter.dataset.confirm;
  if (message && !window.confirm(message)) event.preventDefault();
});
