// Marketplace and integration pages: OAuth sign-in in a popup, and its end. Every form also works without this.
(function () {
  "use strict";
  var CONNECTED = "harmony:connected";
  var popup = null;

  function blockedNotice(form) {
    return form.querySelector("[data-popup-blocked]") || document.querySelector("[data-popup-blocked]");
  }

  function setBusy(form, busy) {
    var button = form.querySelector('button[type="submit"]');
    if (button) { button.disabled = busy; button.setAttribute("aria-busy", busy ? "true" : "false"); }
  }

  // The popup must open during the click itself, or the browser blocks it; the provider's link arrives after.
  function startOAuth(form) {
    var notice = blockedNotice(form);
    if (notice) { notice.hidden = true; }
    popup = window.open("", "harmony-connect", "popup,width=560,height=720");
    setBusy(form, true);
    fetch(form.action, {
      method: "POST",
      body: new FormData(form),
      headers: { Accept: "application/json" },
      credentials: "same-origin"
    }).then(function (response) {
      return response.json().then(function (body) { return { ok: response.ok, body: body }; });
    }).then(function (answer) {
      if (!answer.ok) {
        // Let the server show its message beside the fields, as it does without JavaScript.
        if (popup) { popup.close(); }
        form.submit();
        return;
      }
      var url = answer.body.authorize_url;
      if (popup && !popup.closed) {
        popup.location.href = url;
        popup.focus();
        watch(form);
      } else if (notice) {
        notice.querySelector("[data-popup-link]").href = url;
        notice.hidden = false;
        setBusy(form, false);
      } else {
        window.location.assign(url);
      }
    }).catch(function () {
      if (popup) { popup.close(); }
      form.submit();
    });
  }

  // Someone may close the popup without finishing: the button works again.
  function watch(form) {
    var timer = window.setInterval(function () {
      if (!popup || popup.closed) { window.clearInterval(timer); setBusy(form, false); }
    }, 500);
  }

  document.addEventListener("submit", function (event) {
    var form = event.target;
    if (form.matches && form.matches("form[data-oauth]")) {
      event.preventDefault();
      startOAuth(form);
    }
  });

  // The popup says it finished: show the new (or renewed) integration.
  window.addEventListener("message", function (event) {
    if (event.origin !== window.location.origin || !event.data || event.data.type !== CONNECTED) { return; }
    if (popup && !popup.closed) { popup.close(); }
    window.location.assign("/integrations/" + encodeURIComponent(event.data.id));
  });

  // On the page the provider returns to: tell the opener and close; opened in a tab of its own, go on there.
  function finishConnect() {
    var done = document.querySelector("[data-connected]");
    if (!done) { return; }
    var id = done.getAttribute("data-connected");
    if (window.opener && !window.opener.closed) {
      try {
        window.opener.postMessage({ type: CONNECTED, id: id }, window.location.origin);
        window.close();
        return;
      } catch (ignored) { /* the opener is another site now: stay here */ }
    }
    var link = done.querySelector("[data-connected-link]");
    if (link) { window.location.replace(link.href); }
  }

  // htmx leaves error answers unswapped; elements marked data-swap-errors show the server's message in place.
  document.addEventListener("htmx:beforeSwap", function (event) {
    var from = event.detail.elt || event.target;
    var source = from.closest && from.closest("[data-swap-errors]");
    if (source && event.detail.isError) { event.detail.shouldSwap = true; event.detail.isError = false; }
  });

  if (document.readyState === "loading") {
    document.addEventListener("DOMContentLoaded", finishConnect);
  } else {
    finishConnect();
  }
})();
