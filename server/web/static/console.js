// Small enhancements; every page also works without them.
(function () {
  "use strict";
  document.documentElement.classList.add("js");
  var csrf = document.querySelector('meta[name="csrf-token"]');

  // htmx requests carry the session's CSRF token, like the forms do.
  document.addEventListener("htmx:configRequest", function (event) {
    if (csrf) { event.detail.headers["X-CSRF-Token"] = csrf.content; }
  });

  document.addEventListener("change", function (event) {
    var el = event.target;
    if (el.matches && el.matches("[data-autosubmit]") && el.form) { el.form.requestSubmit(); }
  });

  // The Menu button of a narrow screen shows and hides the sidebar's links; Escape hides them again.
  var menuButton = document.querySelector("[data-menu]");
  function showMenu(open) {
    menuButton.setAttribute("aria-expanded", open ? "true" : "false");
    document.documentElement.classList.toggle("menu-open", open);
  }
  if (menuButton) {
    menuButton.addEventListener("click", function () {
      showMenu(menuButton.getAttribute("aria-expanded") !== "true");
    });
    document.addEventListener("keydown", function (event) {
      if (event.key === "Escape" && menuButton.getAttribute("aria-expanded") === "true") {
        showMenu(false);
        menuButton.focus();
      }
    });
  }

  // <button data-dialog="id"> opens <dialog id="id">; <button data-close> closes the dialog it is in.
  document.addEventListener("click", function (event) {
    var opener = event.target.closest("[data-dialog]");
    if (opener) {
      var dialog = document.getElementById(opener.getAttribute("data-dialog"));
      if (dialog && dialog.showModal) { event.preventDefault(); dialog.showModal(); }
      return;
    }
    // <button data-dismiss> puts away the message it is in; messages never leave on a timer.
    var dismiss = event.target.closest("[data-dismiss]");
    if (dismiss) {
      var message = dismiss.closest("[data-dismissable]");
      if (message) { event.preventDefault(); message.remove(); }
      return;
    }
    var closer = event.target.closest("[data-close]");
    if (closer) {
      var open = closer.closest("dialog");
      if (open) { event.preventDefault(); open.close(); }
    }
  });
})();

// The installed app's service worker, on every page, so a notification tapped on a phone opens the approval
// whichever page was visited first. It only shows notifications: it answers no request and caches nothing.
if ("serviceWorker" in navigator && document.querySelector(".sidebar, .topbar")) {
  navigator.serviceWorker.register("/sw.js", { scope: "/" }).catch(function () {});
}
