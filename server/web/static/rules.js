// The rule form's enhancements; every page also works without them.
(function () {
  "use strict";
  var lastAction = "";

  // Which button or field asked for the redraw (its hx-vals), so focus can follow what the person did.
  document.addEventListener("htmx:beforeRequest", function (event) {
    var values = event.detail.elt.getAttribute("hx-vals");
    try { lastAction = values ? JSON.parse(values).action || "" : ""; } catch (e) { lastAction = ""; }
  });

  // A refused rule (422) still redraws the form, so each problem shows beside its field.
  document.addEventListener("htmx:beforeSwap", function (event) {
    if (event.detail.xhr.status === 422) {
      event.detail.shouldSwap = true;
      event.detail.isError = false;
    }
  });

  function focus(el) {
    if (!el) { return; }
    if (!el.hasAttribute("tabindex") && !/^(A|BUTTON|INPUT|SELECT|TEXTAREA)$/.test(el.tagName)) {
      el.setAttribute("tabindex", "-1");
    }
    el.focus();
  }

  // A typed value is not in the plain-words preview until the next redraw: say so rather than show stale words.
  document.addEventListener("input", function (event) {
    var editor = document.getElementById("rule-editor");
    var preview = editor && editor.querySelector(".rule-preview");
    if (!preview || !editor.contains(event.target) || event.target.hasAttribute("hx-post")) { return; }
    preview.classList.add("is-stale");
  });

  document.addEventListener("htmx:afterSettle", function (event) {
    var editor = document.getElementById("rule-editor");
    if (!editor || !editor.contains(event.detail.elt) && event.detail.elt !== editor) { return; }
    var summary = editor.querySelector(".error-summary");
    if (lastAction === "simulate") {
      focus(summary || document.getElementById("simulation"));
    } else if (lastAction === "add-condition") {
      var rows = editor.querySelectorAll(".condition-row select");
      focus(rows.length ? rows[rows.length - 1] : null);
    } else if (lastAction.indexOf("remove-condition") === 0) {
      focus(editor.querySelector("#conditions-title"));
    }
  });
})();
