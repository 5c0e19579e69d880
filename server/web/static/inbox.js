// Keeps the pending list current: a server-sent event says the set changed, then the list is fetched again.
(function () {
  "use strict";
  var list = document.getElementById("pending");
  if (!list || !window.htmx) { return; }
  var source = list.getAttribute("data-src");
  var polling = null;

  function refresh() {
    window.htmx.ajax("GET", source, { target: "#pending", swap: "outerHTML" }).then(function () {
      var count = document.getElementById("pending-count");
      var fresh = document.getElementById("pending");
      if (count && fresh) { count.textContent = String(fresh.querySelectorAll("article.status-pending, article.status-outcome_unknown").length); }
    });
  }

  function poll() {
    if (!polling) { polling = window.setInterval(refresh, 5000); }
  }

  if (!window.EventSource) { poll(); return; }
  var events = new EventSource(list.getAttribute("data-events"));
  // Every event refreshes, the first too: something may have arrived between the page and the stream.
  events.addEventListener("approvals", refresh);
  events.addEventListener("error", function () {
    if (events.readyState === EventSource.CLOSED) { poll(); }
  });
})();
