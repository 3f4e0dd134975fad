// Live updates: the server pushes one event per task notification (LISTEN/NOTIFY);
// the page then fetches its own live part again and swaps it in. No build step.
(function () {
  "use strict";
  var live = document.getElementById("live");
  var badge = document.getElementById("live-status");
  if (!live || !window.EventSource) { return; }
  var pending = null;
  function refresh() {
    pending = null;
    fetch(window.location.href, { headers: { "X-Fragment": "live" }, credentials: "same-origin" })
      .then(function (r) { return r.ok ? r.text() : Promise.reject(r.status); })
      .then(function (html) {
        live.innerHTML = html;
        document.body.dataset.updated = String(Date.now());
      })
      .catch(function () {});
  }
  var source = new EventSource("/events");
  source.addEventListener("ready", function () {
    badge.classList.add("on");
    document.body.dataset.live = "on";
    refresh(); // whatever changed between this page's rendering and its subscription
  });
  source.onerror = function () { badge.classList.remove("on"); };
  source.onmessage = function () {
    if (pending === null) { pending = window.setTimeout(refresh, 300); }
  };
})();
