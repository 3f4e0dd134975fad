// Live updates: the server pushes one event per task notification (LISTEN/NOTIFY);
// the page then fetches its own live part again and swaps it in. No build step.
(function () {
  "use strict";
  // Every <time data-utc> gets the browser's local time beside its UTC text.
  function pad(n) { return (n < 10 ? "0" : "") + n; }
  function localize(root) {
    var stamps = root.querySelectorAll("time[data-utc]");
    for (var i = 0; i < stamps.length; i++) {
      var el = stamps[i];
      if (el.querySelector(".local")) { continue; }
      var when = new Date(el.getAttribute("datetime"));
      if (isNaN(when.getTime())) { continue; }
      var zone = -when.getTimezoneOffset();
      var text = when.getFullYear() + "-" + pad(when.getMonth() + 1) + "-" + pad(when.getDate()) +
        " " + pad(when.getHours()) + ":" + pad(when.getMinutes()) + ":" + pad(when.getSeconds()) +
        " UTC" + (zone < 0 ? "-" : "+") + pad(Math.floor(Math.abs(zone) / 60)) + ":" + pad(Math.abs(zone) % 60);
      var span = document.createElement("span");
      span.className = "local";
      span.title = "your local time";
      span.textContent = " (local " + text + ")";
      el.appendChild(span);
    }
  }
  localize(document);
  var base = document.body.dataset.base || "";
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
        localize(live);
        document.body.dataset.updated = String(Date.now());
      })
      .catch(function () {});
  }
  var source = new EventSource(base + "/events");
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
