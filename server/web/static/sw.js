// Harmony Companion's service worker: it shows an approval's notification and opens the approval when tapped.
//
// Companion's server sends each notification through the browser's push service (Web Push), encrypted to this
// device: {title, body, url}, where body is the approval's one-line summary and url its page in the console.
// It caches nothing: every page is fetched fresh, so what a person decides on is always the server's current view.
"use strict";

self.addEventListener("install", function () {
  self.skipWaiting();
});

self.addEventListener("activate", function (event) {
  event.waitUntil(self.clients.claim());
});

// Only a page of this console is ever opened, whatever a message says.
function pageOf(url) {
  try {
    var target = new URL(url, self.location.origin);
    if (target.origin === self.location.origin) { return target.href; }
  } catch (ignored) { /* not a URL: fall back to the inbox */ }
  return new URL("/inbox", self.location.origin).href;
}

self.addEventListener("push", function (event) {
  var message = {};
  try {
    message = event.data ? event.data.json() : {};
  } catch (ignored) { /* not JSON: show the generic notice below */ }
  var url = pageOf(message.url || "/inbox");
  event.waitUntil(self.registration.showNotification(String(message.title || "An approval waits for you"), {
    body: String(message.body || "Open Harmony Companion to approve or deny it."),
    // One notification per approval: a second message about the same one replaces it.
    tag: url,
    data: { url: url },
    icon: "/static/icon-192.png",
    badge: "/static/badge-96.png",
  }));
});

self.addEventListener("notificationclick", function (event) {
  event.notification.close();
  var url = pageOf(event.notification.data && event.notification.data.url);
  event.waitUntil(self.clients.matchAll({ type: "window", includeUncontrolled: true }).then(function (windows) {
    for (var i = 0; i < windows.length; i++) {
      if (windows[i].url === url && "focus" in windows[i]) { return windows[i].focus(); }
    }
    return self.clients.openWindow(url);
  }));
});
