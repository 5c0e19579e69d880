// "Enable notifications on this device", on the settings page: registers the console's service worker,
// subscribes this browser to Web Push with the server's VAPID key, and hands the subscription to the server.
// Without JavaScript, service workers or the Push API the block says so instead.
(function () {
  "use strict";
  var block = document.querySelector("[data-push]");
  if (!block) { return; }
  var state = block.querySelector("[data-push-state]");
  var enable = block.querySelector("[data-push-enable]");
  var disable = block.querySelector("[data-push-disable]");
  var csrf = document.querySelector('meta[name="csrf-token"]');

  function say(text) { state.textContent = text; }
  function show(on) {
    enable.hidden = on;
    disable.hidden = !on;
  }

  if (!("serviceWorker" in navigator) || !("PushManager" in window) || !("Notification" in window)) {
    var ios = /iPhone|iPad|iPod/.test(navigator.userAgent);
    say(ios
      ? "On an iPhone or iPad, first add Companion to your Home Screen (Share, then Add to Home Screen), open it from there, and enable notifications in its Settings."
      : "This browser cannot show notifications from Companion. The inbox still lists everything that waits for you.");
    enable.hidden = true;
    return;
  }

  // The server's key, as the Push API wants it: bytes, not base64url text.
  function keyBytes(text) {
    var base64 = (text + "===".slice((text.length + 3) % 4)).replace(/-/g, "+").replace(/_/g, "/");
    var raw = atob(base64);
    var bytes = new Uint8Array(raw.length);
    for (var i = 0; i < raw.length; i++) { bytes[i] = raw.charCodeAt(i); }
    return bytes;
  }

  function sameKey(subscription, key) {
    var held = subscription.options && subscription.options.applicationServerKey;
    if (!held) { return true; }
    var mine = new Uint8Array(held);
    if (mine.length !== key.length) { return false; }
    for (var i = 0; i < key.length; i++) { if (mine[i] !== key[i]) { return false; } }
    return true;
  }

  function post(path, body) {
    return fetch(path, {
      method: "POST",
      credentials: "same-origin",
      headers: { "Content-Type": "application/json", "X-CSRF-Token": csrf ? csrf.content : "" },
      body: JSON.stringify(body),
    }).then(function (response) {
      return response.json().then(function (answer) {
        if (!response.ok) { throw new Error(answer.error ? answer.error.message : "HTTP " + response.status); }
        return answer;
      });
    });
  }

  function serverKey() {
    return fetch("/push/key", { credentials: "same-origin" }).then(function (response) {
      if (!response.ok) { throw new Error("Sign in again, then try once more."); }
      return response.json();
    });
  }

  var ready = navigator.serviceWorker.register("/sw.js", { scope: "/" }).then(function () {
    return navigator.serviceWorker.ready;
  });

  // The browser's own errors, in words a person can act on; the server's answers already are.
  function plain(problem, otherwise) {
    if (problem && problem.name === "NotAllowedError") {
      return "This browser does not allow notifications from Companion. Allow them for this site in the browser's settings, then try again.";
    }
    if (problem && problem.name === "AbortError") {
      return "This browser could not reach its push service, so notifications cannot be turned on now. Try again later.";
    }
    return (problem && problem.message) || otherwise;
  }

  function devices(count) {
    return count === 1 ? "1 device" : count + " devices";
  }

  function turnOn() {
    enable.disabled = true;
    say("Asking this browser for permission…");
    Notification.requestPermission().then(function (permission) {
      if (permission !== "granted") {
        throw new DOMException("permission " + permission, "NotAllowedError");
      }
      return Promise.all([ready, serverKey()]);
    }).then(function (both) {
      var registration = both[0];
      var key = keyBytes(both[1].public_key);
      return registration.pushManager.getSubscription().then(function (old) {
        // A subscription made with another key (the server's key changed) can no longer be used.
        if (old && !sameKey(old, key)) { return old.unsubscribe().then(function () { return null; }); }
        return old;
      }).then(function (old) {
        return old || registration.pushManager.subscribe({ userVisibleOnly: true, applicationServerKey: key });
      });
    }).then(function (subscription) {
      return post("/push/subscriptions", subscription.toJSON());
    }).then(function (answer) {
      // The channel choice on this page goes on with it, so saving that form later keeps it on.
      var choice = document.querySelector('input[name="notify_push"]');
      if (choice) { choice.checked = true; }
      show(true);
      say("Notifications are on for this device (" + devices(answer.devices) + " in all). When an approval waits for you, it shows here; tap it to open the approval.");
    }).catch(function (problem) {
      say(plain(problem, "Notifications could not be turned on."));
    }).then(function () { enable.disabled = false; });
  }

  function turnOff() {
    disable.disabled = true;
    ready.then(function (registration) {
      return registration.pushManager.getSubscription();
    }).then(function (subscription) {
      if (!subscription) { return { devices: null }; }
      var endpoint = subscription.endpoint;
      return subscription.unsubscribe().then(function () {
        return post("/push/subscriptions/remove", { endpoint: endpoint });
      });
    }).then(function () {
      show(false);
      say("Notifications are off for this device.");
    }).catch(function (problem) {
      say(plain(problem, "Notifications could not be turned off."));
    }).then(function () { disable.disabled = false; });
  }

  enable.addEventListener("click", turnOn);
  disable.addEventListener("click", turnOff);

  // On for this device: a subscription with the server's current key, permission still granted, and the server
  // still sending to it for this person (its push service may have dropped it, or someone else enabled it since).
  Promise.all([ready, serverKey()]).then(function (both) {
    return both[0].pushManager.getSubscription().then(function (subscription) {
      var usable = Boolean(subscription) && Notification.permission === "granted" && sameKey(subscription, keyBytes(both[1].public_key));
      return usable ? post("/push/subscriptions/check", { endpoint: subscription.endpoint }) : { subscribed: false };
    });
  }).then(function (answer) {
    show(answer.subscribed);
    say(answer.subscribed
      ? "Notifications are on for this device. When an approval waits for you, it shows here; tap it to open the approval."
      : "Get a notification on this device when an approval waits for you. Enable it on each phone or computer you want to be told on.");
  }).catch(function () {
    say("Notifications could not be set up on this page. Reload it to try again.");
  });
})();
