// The inbox and the approval page, built so the console never decides what the person did not choose.
// - New requests never reflow the list: they wait behind the "N new requests · Show" bar, whose space is kept
//   at all times, and go in only when the person clicks Show (an empty list takes them at once: nothing can move).
// - A card decided elsewhere, or expired, stays where it is, covered by a note, until the person dismisses it.
// - A decided card keeps the height it had, so nothing below it moves under the pointer; its confirmation
//   stays until dismissed.
// - After a decision focus moves to the next waiting card's first control (its title link, never a decision
//   button), or to "No more requests", and a live region says what happened.
(function () {
  "use strict";
  var list = document.getElementById("pending");
  var announcer = document.getElementById("announcer");
  var bar = document.getElementById("new-requests");
  var words = document.getElementById("new-words");
  var showButton = document.getElementById("show-new");
  var allDone = document.getElementById("all-done");
  var count = document.getElementById("pending-count");
  var FOCUSABLE = 'a[href], button:not([disabled]), input:not([type="hidden"]):not([disabled]), select, textarea, summary';
  // A control that has just appeared where the pointer may already be ignores clicks for a moment:
  // a click meant for what was there before lands on nothing instead.
  var ARMING_MS = 600;
  var arrived = []; // cards fetched and not shown yet, newest first
  var heights = {}; // a card's height when its decision was sent, by card id

  function say(text) {
    if (!announcer) { return; }
    announcer.textContent = "";
    window.setTimeout(function () { announcer.textContent = text; }, 60);
  }

  function plural(n, one, many) { return n + " " + (n === 1 ? one : many); }

  function cards() {
    return list ? Array.prototype.slice.call(list.querySelectorAll("article.approval")) : [];
  }

  function isLive(card) {
    return (card.classList.contains("status-pending") || card.classList.contains("status-outcome_unknown")) &&
      !card.hasAttribute("data-gone");
  }

  function titleOf(card) {
    var heading = card.querySelector("h3");
    return heading ? heading.textContent.trim() : "";
  }

  // The count beside the Waiting tab, and the page's own (the menu's badges and the tab title) with it.
  function updateCount() {
    if (!count) { return; }
    var n = cards().filter(isLive).length + arrived.length;
    count.textContent = String(n);
    Array.prototype.forEach.call(document.querySelectorAll("[data-waiting]"), function (badge) {
      badge.firstChild.nodeValue = String(n);
      badge.hidden = n === 0;
    });
    document.title = (n ? "(" + n + ") " : "") + document.title.replace(/^\(\d+\) /, "");
  }

  // The next waiting card after ``from`` (else the nearest one before it); null when none is left.
  function nextLive(from) {
    var all = cards();
    var at = all.indexOf(from);
    var after = all.slice(at + 1).filter(isLive);
    if (after.length) { return after[0]; }
    var before = all.slice(0, Math.max(at, 0)).filter(isLive);
    return before.length ? before[before.length - 1] : null;
  }

  // Focus the next waiting card, or say that none is left; returns words for the announcement.
  function moveOn(from) {
    var next = nextLive(from);
    if (next) {
      var first = next.querySelector(FOCUSABLE);
      if (first) { first.focus(); }
      return " Next: " + titleOf(next);
    }
    if (arrived.length && showButton) {
      showButton.focus();
      return " " + plural(arrived.length, "new request waits", "new requests wait") + ": press Show to see them.";
    }
    if (allDone) {
      allDone.hidden = false;
      allDone.focus();
    }
    return " No more requests wait for you.";
  }

  function setBusy(card, busy) {
    Array.prototype.forEach.call(card.querySelectorAll("button, input:not([type=hidden])"), function (el) {
      if (busy) {
        if (!el.disabled) { el.disabled = true; el.setAttribute("data-was-enabled", ""); }
      } else if (el.hasAttribute("data-was-enabled")) {
        el.disabled = false;
        el.removeAttribute("data-was-enabled");
      }
    });
    if (busy) { card.setAttribute("data-busy", ""); } else { card.removeAttribute("data-busy"); }
  }

  // A note over the card, in its own box: the card keeps its size and nothing around it moves.
  function cover(card, text, keepDisabled) {
    var old = card.querySelector(".cover");
    if (old) { old.remove(); }
    var note = document.createElement("div");
    note.className = "cover";
    var words = document.createElement("p");
    words.textContent = text;
    var close = document.createElement("button");
    close.type = "button";
    close.className = "button small";
    close.textContent = "Dismiss";
    close.setAttribute("data-cover-close", keepDisabled ? "card" : "note");
    close.setAttribute("data-armed-at", String(Date.now() + ARMING_MS));
    note.appendChild(words);
    note.appendChild(close);
    card.appendChild(note);
  }

  function markGone(card) {
    card.setAttribute("data-gone", "");
    setBusy(card, true);
    card.removeAttribute("data-busy");
    cover(card, "No longer waiting: it was decided elsewhere, or it expired. Nothing you click here changes it.", true);
  }

  function removeCard(card) {
    var next = nextLive(card);
    var hadFocus = card.contains(document.activeElement);
    card.remove();
    updateCount();
    if (!hadFocus) { return; }
    if (next) {
      var first = next.querySelector(FOCUSABLE);
      if (first) { first.focus(); }
    } else if (allDone && !cards().some(isLive)) {
      allDone.hidden = false;
      allDone.focus();
    }
  }

  // Decisions sent through htmx: remember the card's height and keep its buttons from a second press.
  document.addEventListener("htmx:beforeRequest", function (event) {
    var card = event.target.closest && event.target.closest("article.approval");
    if (!card) { return; }
    heights[card.id] = card.getBoundingClientRect().height;
    setBusy(card, true);
  });

  // A refused decision (decided elsewhere meanwhile, an expired form) is said on the card, not dropped.
  document.addEventListener("htmx:beforeSwap", function (event) {
    var status = event.detail.xhr ? event.detail.xhr.status : 200;
    var card = event.detail.target && event.detail.target.closest && event.detail.target.closest("article.approval");
    if (!card || status < 400) { return; }
    event.detail.shouldSwap = false;
    event.detail.isError = false;
    var text = "That did not work. Reload the page and try again.";
    try {
      var page = new DOMParser().parseFromString(event.detail.serverResponse || "", "text/html");
      var said = page.querySelector(".card.narrow p");
      if (said && said.textContent.trim()) { text = said.textContent.trim(); }
    } catch (ignored) { /* keep the general words */ }
    card.removeAttribute("data-busy");
    cover(card, text, status === 409 || status === 404);
    var close = card.querySelector("[data-cover-close]");
    if (close) { close.focus(); }
    say(text);
  });

  // The decided card, swapped in: as tall as the card it replaced (set before the browser paints, so nothing
  // below moves even for a frame), then focus moves on and the result is said.
  document.addEventListener("htmx:afterSwap", function (event) {
    var card = event.target;
    if (!card.matches || !card.matches("article.approval[data-done]")) { return; }
    card.removeAttribute("data-done");
    if (heights[card.id]) { card.style.minHeight = heights[card.id] + "px"; }
    var done = card.querySelector(".done-text");
    var result = done ? done.textContent.trim() : "Done.";
    if (list && list.contains(card)) {
      updateCount();
      say(result + moveOn(card));
    } else {
      if (done) { done.focus(); }
      say(result);
    }
  });

  // Until htmx settles a swap, the new card wears the old one's class and style; then it gets its own back
  // (no style at all), so the kept height goes on again, and the count is taken from the real status.
  document.addEventListener("htmx:afterSettle", function (event) {
    var card = event.target;
    if (!card.matches || !card.matches("article.approval") || !heights[card.id]) { return; }
    card.style.minHeight = heights[card.id] + "px";
    card.removeAttribute("data-done");
    delete heights[card.id];
    updateCount(); // its class (the status) is its own only now
  });

  document.addEventListener("click", function (event) {
    var early = event.target.closest("[data-armed-at]");
    if (early && Date.now() < Number(early.getAttribute("data-armed-at"))) {
      event.preventDefault();
      event.stopPropagation();
      return;
    }
    var closer = event.target.closest("[data-cover-close]");
    if (closer) {
      var covered = closer.closest("article.approval");
      event.preventDefault();
      event.stopPropagation();
      if (closer.getAttribute("data-cover-close") === "card" && list && list.contains(covered)) {
        removeCard(covered);
      } else {
        closer.closest(".cover").remove();
        if (!covered.hasAttribute("data-gone")) { setBusy(covered, false); }
      }
      return;
    }
    // In the list, dismissing a decided card's confirmation puts the card away (it is in History).
    var dismiss = event.target.closest("[data-dismiss]");
    var card = dismiss && list && dismiss.closest("article.approval");
    if (card && list.contains(card) && !isLive(card)) {
      event.preventDefault();
      event.stopPropagation();
      removeCard(card);
    }
  }, true);

  // The approval page: a decision made anywhere else covers the card here, with what it became.
  var watched = document.getElementById("watched");
  if (watched && window.EventSource) {
    var stream = new EventSource(watched.getAttribute("data-events"));
    stream.addEventListener("approvals", function () {
      var mine = watched.querySelector("article.approval");
      if (!mine || !isLive(mine) || mine.hasAttribute("data-busy")) { return; }
      window.fetch(watched.getAttribute("data-watch"), { credentials: "same-origin", headers: { Accept: "text/html" } })
        .then(function (response) { return response.ok ? response.text() : ""; })
        .then(function (html) {
          var now = new DOMParser().parseFromString(html, "text/html").getElementById(mine.id);
          if (!now || isLive(now)) { return; }
          var badge = now.querySelector(".badges .badge:last-child");
          mine.setAttribute("data-gone", "");
          setBusy(mine, true);
          mine.removeAttribute("data-busy");
          cover(mine, "No longer waiting: it is " + (badge ? badge.textContent.trim() : "decided") +
            " now, decided elsewhere or expired. Reload the page to see it.", false);
          say("This request is no longer waiting: it was decided elsewhere, or it expired.");
        })
        .catch(function () { /* the next event tries again */ });
    });
  }

  if (!list) { return; }

  var idle = document.getElementById("new-idle");
  function updateBar() {
    if (!bar) { return; }
    if (arrived.length) { words.textContent = plural(arrived.length, "new request", "new requests"); }
    if (arrived.length && bar.hidden && showButton) {
      showButton.setAttribute("data-armed-at", String(Date.now() + ARMING_MS));
    }
    bar.hidden = !arrived.length;
    if (idle) { idle.classList.toggle("covered", !!arrived.length); }
  }

  function insertArrived() {
    var empty = list.querySelector("[data-empty]");
    if (empty) { empty.remove(); }
    var top = list.firstElementChild;
    var inserted = arrived.map(function (card) {
      var node = document.importNode(card, true);
      list.insertBefore(node, top);
      if (window.htmx) { window.htmx.process(node); }
      return node;
    });
    arrived = [];
    updateBar();
    if (allDone) { allDone.hidden = true; }
    updateCount();
    return inserted;
  }

  if (showButton) {
    showButton.addEventListener("click", function () {
      var inserted = insertArrived();
      if (!inserted.length) { return; }
      var first = inserted[0].querySelector(FOCUSABLE);
      if (first) { first.focus(); }
      say(plural(inserted.length, "new request", "new requests") + " shown. First: " + titleOf(inserted[0]));
    });
  }

  function merge(fresh) {
    var freshCards = Array.prototype.slice.call(fresh.querySelectorAll("article.approval"));
    var freshIds = {};
    freshCards.forEach(function (card) { freshIds[card.id] = true; });
    var shown = {};
    var complete = fresh.getAttribute("data-full") !== "yes";
    cards().forEach(function (card) {
      shown[card.id] = true;
      if (complete && isLive(card) && !freshIds[card.id] && !card.hasAttribute("data-busy")) { markGone(card); }
    });
    var before = arrived.length;
    arrived = freshCards.filter(function (card) { return !shown[card.id]; });
    if (!cards().length && arrived.length) {
      // Nothing on the page can move: the new cards go in at once.
      var inserted = insertArrived();
      say(plural(inserted.length, "new request", "new requests") + " waiting. First: " + titleOf(inserted[0]));
      return;
    }
    updateBar();
    updateCount();
    if (arrived.length > before) {
      say(plural(arrived.length, "new request", "new requests") + " waiting. Use Show, above the list, to see them.");
    }
  }

  var source = list.getAttribute("data-src");
  var fetching = false;
  var again = false;
  function refresh() {
    if (fetching) { again = true; return; }
    fetching = true;
    again = false;
    window.fetch(source, { credentials: "same-origin", headers: { Accept: "text/html" } })
      .then(function (response) { return response.ok ? response.text() : ""; })
      .then(function (html) {
        var fresh = new DOMParser().parseFromString(html, "text/html").getElementById("pending");
        if (fresh) { merge(fresh); }
      })
      .catch(function () { /* the next event or tick tries again */ })
      .then(function () {
        fetching = false;
        if (again) { refresh(); }
      });
  }

  var polling = null;
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
