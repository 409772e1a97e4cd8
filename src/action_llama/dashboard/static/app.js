// The dashboard's own script: small, optional (every page works without it), no eval.
// - keeps "3m ago" / "in 5s" texts current, in the browser (the daemon sends nothing for it);
// - holds a live update back while the user is typing in (or has opened) a form it would
//   replace, and applies it once they are done;
// - follows a run's log: keeps the view at the bottom while it is there, and resumes a
//   dropped stream after the last line it got;
// - goes to the login page when a live stream is refused because the session has ended;
// - says so when an action's request got no answer (the daemon is away, or the browser
//   dropped the connection: Chrome does when an interface comes or goes, as containers'
//   do), instead of leaving the page as if nothing had been asked.
(function () {
  "use strict";

  function relative(seconds) {
    seconds = Math.abs(seconds);
    if (seconds < 90) return Math.round(seconds) + "s";
    if (seconds < 5400) return Math.round(seconds / 60) + "m";
    if (seconds < 129600) return Math.round(seconds / 3600) + "h";
    return Math.round(seconds / 86400) + "d";
  }

  function refreshTimes(root) {
    var now = Date.now();
    (root || document).querySelectorAll("time[datetime]").forEach(function (el) {
      var when = Date.parse(el.getAttribute("datetime"));
      if (isNaN(when)) return;
      var delta = (when - now) / 1000;
      el.textContent = delta > 0 ? "in " + relative(delta) : relative(delta) + " ago";
    });
  }
  setInterval(refreshTimes, 15000);

  // A live region is busy while the user works in it: a focused field, or an open <details>.
  var held = new Map();
  function busy(region) {
    var active = document.activeElement;
    if (active && region.contains(active) && /^(INPUT|TEXTAREA|SELECT)$/.test(active.tagName)) {
      return true;
    }
    return region.querySelector("details[open]") !== null;
  }
  function release(region) {
    var html = held.get(region);
    if (html === undefined || busy(region)) return;
    held.delete(region);
    htmx.swap(region, html, { swapStyle: "innerHTML" });
  }
  document.addEventListener("htmx:sseBeforeMessage", function (evt) {
    var region = evt.target;
    if (evt.detail.type === "page" && busy(region)) {
      held.set(region, evt.detail.data);
      evt.preventDefault();
    }
  });
  ["focusout", "toggle", "submit"].forEach(function (name) {
    document.addEventListener(name, function () {
      setTimeout(function () { held.forEach(function (_, region) { release(region); }); }, 200);
    }, true);
  });

  // The log: stay at the bottom while the reader is there.
  document.addEventListener("htmx:sseBeforeMessage", function (evt) {
    if (evt.detail.type !== "line") return;
    var log = evt.target;
    log.dataset.follow = log.scrollHeight - log.scrollTop - log.clientHeight < 40 ? "1" : "";
  });
  document.addEventListener("htmx:sseMessage", function (evt) {
    var log = evt.target;
    if (evt.detail.type === "line" && log.dataset.follow) log.scrollTop = log.scrollHeight;
    refreshTimes(evt.target);
  });

  // When htmx opens a log stream again (after the browser gave up reconnecting), it asks
  // for what follows the last line received, not for what the page first asked for.
  var lastLine = {};
  function openStream(url) {
    var asked = lastLine[url] ? url.replace(/after=\d+/, "after=" + lastLine[url]) : url;
    var source = new EventSource(asked);
    source.addEventListener("line", function (e) {
      if (e.lastEventId) lastLine[url] = e.lastEventId;
    });
    return source;
  }

  // A stream that ended (or was refused): if the session has ended, log in again; not when
  // this page is being left anyway (logging out ends its streams while it goes to /login).
  var leaving = false;
  window.addEventListener("beforeunload", function () { leaving = true; });
  window.addEventListener("pageshow", function () { leaving = false; });
  function checkSession() {
    if (leaving) return;
    fetch("/login", { redirect: "manual", credentials: "same-origin" }).then(function (r) {
      if (r.status === 200 && !leaving) {
        location.href = "/login?next=" + encodeURIComponent(location.pathname + location.search);
      }
    }).catch(function () { /* the daemon is away: htmx tries again */ });
  }
  document.addEventListener("htmx:sseClose", function (evt) {
    if (evt.detail.type === "message") checkSession();
  });
  document.addEventListener("htmx:sseError", function (evt) {
    var source = evt.detail.source;
    if (source && source.readyState === EventSource.CLOSED) checkSession();
  });

  // An action that got no answer: said where the server's notes go, once.
  document.addEventListener("htmx:sendError", function (evt) {
    var config = evt.detail.requestConfig;
    if (!config || config.verb !== "post") return;
    var notes = document.querySelector(".notes");
    if (!notes) {
      notes = document.createElement("div");
      notes.className = "notes";
      notes.setAttribute("role", "status");
      document.querySelector("header.top").after(notes);
    }
    var note = notes.querySelector(".send-error") || document.createElement("p");
    note.className = "error send-error";
    note.textContent = "al start did not answer (the connection dropped): " +
      "the page shows what is done; try again if it is not.";
    notes.appendChild(note);
  });

  document.addEventListener("DOMContentLoaded", function () {
    if (window.htmx) htmx.createEventSource = openStream;
    var log = document.getElementById("log");
    if (log) log.scrollTop = log.scrollHeight;
  });
})();
