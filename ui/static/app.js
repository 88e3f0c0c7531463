// sagarunner web inbox: live updates. The server renders every page; this
// script only listens to the page's event stream and, when something the
// page shows changes, fetches the page again and swaps in its live
// regions (elements with data-live and an id). A region holding a form
// the user is typing in is left alone and a notice offers a reload.
(function () {
  "use strict";
  var body = document.body;
  var dirty = new WeakSet();
  document.addEventListener("input", function (e) {
    if (e.target.form) { dirty.add(e.target.form); }
  });

  function watched() {
    var keys = [];
    document.querySelectorAll("[data-watch]").forEach(function (el) { keys.push(el.getAttribute("data-watch")); });
    return keys;
  }

  // relevant says whether a change concerns this page: a list page shows
  // many things and takes every change; a task or instance page only the
  // changes of what it watches (an instance page also its tasks').
  function relevant(ev) {
    var keys = watched();
    if (keys.length === 0) { return true; }
    var key = ev.kind === "task" ? "task:" + ev.domain + "/" + ev.taskId : "instance:" + ev.instance;
    if (keys.indexOf(key) >= 0) { return true; }
    return ev.instance && keys.indexOf("instance:" + ev.instance) >= 0;
  }

  function guarded(el) {
    if (el.contains(document.activeElement) && document.activeElement !== body) { return true; }
    var forms = el.querySelectorAll("form");
    for (var i = 0; i < forms.length; i++) { if (dirty.has(forms[i])) { return true; } }
    return false;
  }

  var notice;
  function offerReload() {
    if (notice) { return; }
    notice = document.createElement("p");
    notice.className = "flash";
    notice.setAttribute("role", "status");
    notice.textContent = "This page changed while you were editing. ";
    var a = document.createElement("a");
    a.href = location.href;
    a.textContent = "Reload";
    notice.appendChild(a);
    document.getElementById("main").prepend(notice);
  }

  var pending = null;
  function refresh() {
    pending = null;
    fetch(location.href, { credentials: "same-origin", cache: "no-store", headers: { "Accept": "text/html" } })
      .then(function (res) { return res.ok ? res.text() : Promise.reject(res.status); })
      .then(function (html) {
        var doc = new DOMParser().parseFromString(html, "text/html");
        document.querySelectorAll("[data-live][id], .count[id]").forEach(function (el) {
          var fresh = doc.getElementById(el.id);
          if (!fresh) { return; }
          if (el.getAttribute("data-live") === "guarded" && guarded(el)) { offerReload(); return; }
          el.replaceWith(document.importNode(fresh, true));
        });
        body.setAttribute("data-refreshed", String(Date.now()));
      })
      .catch(function () { /* the next change tries again */ });
  }

  // schedule coalesces changes: at most one reload of the page's live
  // parts per second, however busy the system is.
  var last = 0;
  function schedule() {
    if (pending) { return; }
    var wait = Math.max(200, last + 1000 - Date.now());
    pending = setTimeout(function () { last = Date.now(); refresh(); }, wait);
  }

  var url = body.getAttribute("data-stream");
  if (!url || !window.EventSource) { return; }
  var state = document.getElementById("livestate");
  var es = new EventSource(url);
  es.addEventListener("ready", function () {
    body.setAttribute("data-live", "on");
    if (state) { state.textContent = "● live"; }
  });
  es.addEventListener("change", function (m) {
    var ev;
    try { ev = JSON.parse(m.data); } catch (e) { return; }
    if (relevant(ev)) { schedule(); }
  });
  es.addEventListener("error", function () {
    body.setAttribute("data-live", "off");
    if (state) { state.textContent = "reconnecting…"; }
  });
  es.addEventListener("open", function () {
    // A reconnect may have missed changes: load the page's state again.
    if (body.getAttribute("data-connected")) { schedule(); }
    body.setAttribute("data-connected", "1");
  });
})();
