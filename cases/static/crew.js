// The crew page, progressively enhanced: finishing and rejecting ask in a dialog; every tap is sent in the
// background; a tap taken without a connection is kept on the phone (localStorage), shown as pending and sent
// again when the connection is back (each tap carries its own key: the server applies it once).
(function () {
  "use strict";
  var STORE = "lykta-crew-pending";
  var body = document.body;
  var pendingBox = document.getElementById("pending");
  var answer = document.getElementById("answer");
  var dialog = document.getElementById("confirm");

  function load() {
    try { return JSON.parse(localStorage.getItem(STORE) || "[]"); } catch (e) { return []; }
  }
  function keep(list) {
    localStorage.setItem(STORE, JSON.stringify(list));
    show();
  }
  function show() {
    var list = load();
    pendingBox.hidden = list.length === 0;
    pendingBox.querySelector("span").textContent = body.dataset.pending + " (" + list.length + ")";
    document.querySelectorAll("section.order").forEach(function (s) { s.removeAttribute("data-pending"); });
    list.forEach(function (item) {
      var order = document.getElementById("wo-" + item.order);
      if (order) { order.setAttribute("data-pending", item.action); }
    });
  }
  function say(text, problem) {
    answer.textContent = text;
    answer.className = problem ? "error" : "flash";
    answer.setAttribute("role", problem ? "alert" : "status");
    answer.hidden = false;
  }
  function send(item) {
    return fetch(item.url, {
      method: "POST",
      body: new URLSearchParams(item.fields),
      headers: { "Accept": "application/json" },
      credentials: "same-origin"
    }).then(function (r) {
      return r.json().catch(function () { return { ok: false, message: "" }; }).then(function (a) {
        return { status: r.status, answer: a };
      });
    });
  }
  function ask(question) {
    return new Promise(function (resolve) {
      if (!dialog || typeof dialog.showModal !== "function") { resolve(window.confirm(question)); return; }
      document.getElementById("confirm-question").textContent = question;
      dialog.returnValue = "";
      dialog.addEventListener("close", function done() {
        dialog.removeEventListener("close", done);
        resolve(dialog.returnValue === "yes");
      });
      dialog.showModal();
    });
  }
  var flushing = false;
  function flush() {
    var list = load();
    if (flushing || list.length === 0 || navigator.onLine === false) { return Promise.resolve(); }
    flushing = true;
    var item = list[0];
    return send(item).then(function (res) {
      flushing = false;
      if (res.status >= 500) { return; }  // the server is not ready: try again later
      keep(load().filter(function (x) { return x.fields.key !== item.fields.key; }));
      if (res.answer.ok) { say(body.dataset.sent + " #" + item.order); } else { say(res.answer.message, true); }
      if (load().length) { return flush(); }
      window.setTimeout(function () { window.location.reload(); }, 1500);
    }, function () { flushing = false; });  // still no connection
  }
  document.querySelectorAll("form.action").forEach(function (form) {
    form.addEventListener("submit", function (event) {
      event.preventDefault();
      var go = form.dataset.confirm ? ask(form.dataset.confirm) : Promise.resolve(true);
      go.then(function (yes) {
        if (!yes) { return; }
        var fields = {};
        new FormData(form).forEach(function (v, k) { fields[k] = v; });
        fields.confirmed = "1";
        var item = { url: form.action, fields: fields, order: form.action.split("/").slice(-2)[0],
                     action: form.dataset.action, at: Date.now() };
        send(item).then(function (res) {
          if (res.answer.ok) { window.location.assign("/crew?msg=saved"); return; }
          if (res.status >= 500) { keep(load().concat([item])); return; }
          say(res.answer.message, true);
        }, function () { keep(load().concat([item])); });  // no connection: kept on the phone
      });
    });
  });
  window.addEventListener("online", flush);
  window.setInterval(flush, 15000);
  show();
  flush();
}());
