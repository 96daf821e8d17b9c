// Live updates: the server names the concern that changed (ids only); this page re-fetches its own fragment.
(function () {
  "use strict";
  var summary = document.querySelector(".error-summary");
  if (summary) summary.focus();  // keyboard and screen-reader users land on what to fix
  var live = document.getElementById("live");
  if (!live || !window.EventSource) return;
  var watching = live.getAttribute("data-live-concern");
  var status = document.getElementById("live-status");
  var busy = false, again = false, opened = false;

  function refresh() {
    if (busy) { again = true; return; }
    busy = true;
    var focused = document.activeElement && live.contains(document.activeElement) ? document.activeElement.id : "";
    fetch(live.getAttribute("data-live-src"), { credentials: "same-origin", headers: { Accept: "text/html" } })
      .then(function (r) { if (!r.ok || r.redirected) throw new Error(String(r.status)); return r.text(); })
      .then(function (html) {
        live.innerHTML = html;
        if (focused && document.getElementById(focused)) document.getElementById(focused).focus();
        status.textContent = "Updated at " + new Date().toLocaleTimeString("en-NZ");
      })
      .catch(function () { status.textContent = "Live updates have stopped: reload the page to see changes."; })
      .then(function () { busy = false; if (again) { again = false; refresh(); } });
  }

  var source = new EventSource("/console/events");
  source.addEventListener("concern", function (e) { if (!watching || !e.data || e.data === watching) refresh(); });
  // After a dropped connection, catch up on whatever changed meanwhile.
  source.addEventListener("open", function () { if (opened) refresh(); opened = true; });
})();
