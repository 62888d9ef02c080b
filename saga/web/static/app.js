// pgsaga dashboard: progressive enhancement only; every page works without this file.
// - forms with data-confirm ask before they are sent;
// - pages with <body data-refresh="N"> reload their <main> every N seconds, unless the
//   tab is hidden, a field has the focus, or refresh is paused (remembered per tab).
"use strict";
(function () {
  document.addEventListener("submit", function (event) {
    var question = event.target.getAttribute("data-confirm");
    if (question && !window.confirm(question)) {
      event.preventDefault();
    }
  });

  var seconds = parseInt(document.body.getAttribute("data-refresh") || "0", 10);
  var toggle = document.getElementById("refresh-toggle");
  if (!seconds || !toggle || !window.fetch || !window.DOMParser) {
    return;
  }
  var key = "saga-refresh-paused";
  var paused = window.sessionStorage.getItem(key) === "1";
  function show() {
    toggle.textContent = paused ? "resume refresh" : "pause refresh";
    toggle.setAttribute("aria-pressed", paused ? "true" : "false");
  }
  toggle.hidden = false;
  show();
  toggle.addEventListener("click", function () {
    paused = !paused;
    window.sessionStorage.setItem(key, paused ? "1" : "0");
    show();
  });

  function busy() {
    var active = document.activeElement;
    return active && /^(INPUT|SELECT|TEXTAREA)$/.test(active.tagName);
  }
  function refresh() {
    if (paused || document.hidden || busy()) {
      return;
    }
    window.fetch(window.location.href, {credentials: "same-origin"})
      .then(function (response) { return response.ok ? response.text() : null; })
      .then(function (text) {
        if (!text) { return; }
        var fresh = new DOMParser().parseFromString(text, "text/html").querySelector("main");
        var current = document.querySelector("main");
        if (fresh && current) { current.replaceWith(fresh); }
      })
      .catch(function () { /* the next tick tries again */ });
  }
  window.setInterval(refresh, seconds * 1000);
})();
