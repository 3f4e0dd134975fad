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
  // A swap must not undo what the operator is typing: a field whose value differs from the
  // one the server rendered (or that has the focus) keeps its value, and the focus, in the
  // new content. Fields are matched by their form's action and their name.
  function fieldKey(el) {
    return (el.form ? el.form.getAttribute("action") : "") + "#" + el.name;
  }
  function keepEdits(root) {
    var kept = { values: {}, focus: null };
    var fields = root.querySelectorAll("input[name], select[name], textarea[name]");
    for (var i = 0; i < fields.length; i++) {
      var el = fields[i];
      if (el.type === "hidden") { continue; }
      var focused = el === document.activeElement;
      if (focused) { kept.focus = fieldKey(el); }
      var edited = el.tagName === "SELECT"
        ? el.selectedIndex >= 0 && !el.options[el.selectedIndex].defaultSelected
        : el.value !== el.defaultValue;
      if (focused || edited) { kept.values[fieldKey(el)] = el.value; }
    }
    return kept;
  }
  function restoreEdits(root, kept) {
    var fields = root.querySelectorAll("input[name], select[name], textarea[name]");
    for (var i = 0; i < fields.length; i++) {
      var el = fields[i];
      var key = fieldKey(el);
      if (Object.prototype.hasOwnProperty.call(kept.values, key)) { el.value = kept.values[key]; }
      if (key === kept.focus) { el.focus(); }
    }
  }
  function refresh() {
    pending = null;
    fetch(window.location.href, { headers: { "X-Fragment": "live" }, credentials: "same-origin" })
      .then(function (r) { return r.ok ? r.text() : Promise.reject(r.status); })
      .then(function (html) {
        var kept = keepEdits(live);
        live.innerHTML = html;
        restoreEdits(live, kept);
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
