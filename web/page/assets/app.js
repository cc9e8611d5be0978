// The Sluice dashboard. It talks only to the public query API, with the
// read-scoped token it finds in the URL fragment (#token=...), which never
// reaches a server log. Numbers it shows carry their query in data-query,
// so anyone can check them against the API.
(function () {
  "use strict";

  var params = new URLSearchParams(location.hash.slice(1));
  var token = params.get("token") || sessionStorage.getItem("sluice.token") || "";
  if (params.get("token")) sessionStorage.setItem("sluice.token", token);

  function $(id) { return document.getElementById(id); }
  function el(tag, attrs, text) {
    var e = document.createElement(tag);
    for (var k in attrs || {}) e.setAttribute(k, attrs[k]);
    if (text !== undefined) e.textContent = text;
    return e;
  }
  function showError(msg) { $("error").textContent = msg; }

  // api calls the query API and returns the decoded JSON; errors carry the
  // server's message.
  function api(path, query) {
    var url = path + (query ? "?" + query : "");
    return fetch(url, { headers: { "Authorization": "Bearer " + token, "Accept": "application/json" } })
      .then(function (res) {
        return res.json().then(function (body) {
          if (!res.ok) throw new Error(res.status + ": " + (body.error || res.statusText));
          if (body.status !== undefined && body.status !== "ok") throw new Error("incomplete answer");
          return body;
        });
      });
  }

  function countColumn(meta) {
    for (var i = 0; i < meta.columns.length; i++) {
      if (meta.columns[i].measure === "count") return meta.columns[i].name;
    }
    return null;
  }

  function fmt(n) {
    if (n === null || n === undefined) return "–";
    if (typeof n === "number" && !Number.isInteger(n)) return n.toFixed(2);
    return String(n);
  }

  function stat(parent, id, label, value, query) {
    var s = el("div", { "class": "stat", "id": id, "data-value": String(value), "data-query": query || "" });
    s.appendChild(el("b", {}, fmt(value)));
    s.appendChild(el("span", {}, label));
    parent.appendChild(s);
  }

  var charts = {};

  function chart(container, key, title, xs, series) {
    if (charts[key]) { charts[key].destroy(); delete charts[key]; }
    container.textContent = "";
    var opts = {
      title: title, width: Math.max(320, container.clientWidth || 640), height: 200,
      scales: { x: { time: true } },
      series: [{}].concat(series.map(function (s, i) {
        return { label: s.label, stroke: ["#2563eb", "#dc2626", "#059669", "#d97706", "#7c3aed"][i % 5], width: 1.5 };
      })),
    };
    charts[key] = new uPlot(opts, [xs].concat(series.map(function (s) { return s.values; })), container);
  }

  // One panel per table: throughput, lag and freshness from the last hour
  // of one-minute windows, and the windows as a chart.
  function tablePanel(name) {
    var panel = el("div", { "class": "panel", "id": "panel-" + name });
    panel.appendChild(el("h2", {}, name));
    var stats = el("div", { "class": "stats" });
    var box = el("div", { "id": "chart-" + name, "class": "chart" });
    panel.appendChild(stats);
    panel.appendChild(box);
    $("tables").appendChild(panel);

    var now = new Date();
    var to = new Date(Math.ceil(now.getTime() / 60000) * 60000);
    var from = new Date(to.getTime() - 3600 * 1000);
    var q = new URLSearchParams({ table: name, window: "1m", from: from.toISOString(), to: to.toISOString(), fill: "zero" }).toString();
    return api("/v1/query", q).then(function (res) {
      var col = countColumn(res.meta);
      var xs = [], ys = [], total = 0, latest = null, lastFull = null;
      var wm = res.meta.watermark ? new Date(res.meta.watermark) : null;
      res.rows.forEach(function (r) {
        var start = new Date(r.start), end = new Date(r.end), n = col ? r[col] : 0;
        xs.push(start.getTime() / 1000);
        ys.push(n);
        total += n;
        if (n > 0) latest = end;
        if (wm && end <= wm) lastFull = { n: n, end: end };
      });
      stats.textContent = "";
      stat(stats, "stat-total-" + name, "events in the last hour", total, q);
      stat(stats, "stat-rate-" + name, "events/s in the last complete minute", lastFull ? Math.round(lastFull.n / 60 * 100) / 100 : 0, q);
      stat(stats, "stat-lag-" + name, "seconds behind (watermark lag)", wm ? Math.max(0, Math.round((now - wm) / 1000)) : "–", q);
      stat(stats, "stat-fresh-" + name, "seconds since the newest summarised event", latest ? Math.max(0, Math.round((now - latest) / 1000)) : "–", q);
      chart(box, "table-" + name, "events per minute", xs, [{ label: col || "rows", values: ys }]);
      panel.setAttribute("data-state", "done");
    });
  }

  // The builder's state lives in the URL's query string, so a query can
  // be shared by its URL (the token stays in the fragment).
  var fields = ["table", "window", "tz", "from", "to", "group_by", "measures", "filter", "order_by", "order", "limit", "fill"];
  var ids = { table: "b-table", window: "b-window", tz: "b-tz", from: "b-from", to: "b-to", group_by: "b-group", measures: "b-measures", filter: "b-filter", order_by: "b-order", order: "b-dir", limit: "b-limit", fill: "b-fill" };

  function formParams() {
    var p = new URLSearchParams();
    fields.forEach(function (f) {
      var e = $(ids[f]);
      if (f === "fill") { if (e.checked) p.set("fill", "zero"); return; }
      if (f === "order" && !$("b-order").value) return;
      if (e.value) p.set(f, e.value);
    });
    return p;
  }

  function fillForm(p) {
    fields.forEach(function (f) {
      if (!p.has(f)) return;
      var e = $(ids[f]);
      if (f === "fill") { e.checked = p.get(f) === "zero"; return; }
      if (e.tagName === "SELECT" && !Array.prototype.some.call(e.options, function (o) { return o.value === p.get(f); })) {
        e.appendChild(el("option", { value: p.get(f) }, p.get(f)));
      }
      e.value = p.get(f);
    });
  }

  function runBuilder() {
    var p = formParams();
    history.replaceState(null, "", "?" + p.toString() + location.hash);
    var status = $("b-status");
    status.setAttribute("data-state", "running");
    status.textContent = "running…";
    return api("/v1/query", p.toString()).then(function (res) {
      var t = $("b-result");
      t.textContent = "";
      var head = el("tr");
      res.meta.columns.forEach(function (c) { head.appendChild(el("th", {}, c.name)); });
      t.appendChild(head);
      res.rows.forEach(function (r) {
        var tr = el("tr");
        res.meta.columns.forEach(function (c) { tr.appendChild(el("td", {}, fmt(r[c.name]))); });
        t.appendChild(tr);
      });
      // Chart the first measure per bucket when nothing is grouped.
      var m = res.meta.columns.filter(function (c) { return c.measure; })[0];
      var grouped = res.meta.columns.some(function (c) { return c.type !== "timestamp" && !c.measure; });
      if (m && !grouped && res.rows.length > 0) {
        chart($("b-chart"), "builder", m.name, res.rows.map(function (r) { return new Date(r.start).getTime() / 1000; }),
          [{ label: m.name, values: res.rows.map(function (r) { return r[m.name]; }) }]);
      } else {
        $("b-chart").textContent = "";
      }
      status.textContent = res.rows.length + " rows, source window " + res.meta.source_window + (res.meta.complete ? ", complete" : ", not complete yet");
      status.setAttribute("data-rows", String(res.rows.length));
      status.setAttribute("data-state", "done");
    }).catch(function (err) {
      status.textContent = err.message;
      status.setAttribute("data-state", "error");
    });
  }

  function start() {
    if (!token) {
      showError("No token: open this page with #token=<a read-scoped token> (sluice dev prints one).");
      return;
    }
    $("b-form").addEventListener("submit", function (ev) { ev.preventDefault(); runBuilder(); });
    var now = new Date();
    $("b-to").value = new Date(Math.ceil(now.getTime() / 3600000) * 3600000).toISOString();
    $("b-from").value = new Date(Math.ceil(now.getTime() / 3600000) * 3600000 - 24 * 3600000).toISOString();
    api("/v1/tables").then(function (res) {
      var names = res.tables.map(function (t) { return t.name; }).sort();
      names.forEach(function (n) { $("b-table").appendChild(el("option", { value: n }, n)); });
      var shared = new URLSearchParams(location.search);
      fillForm(shared);
      if (shared.has("table")) runBuilder();
      return Promise.all(names.map(tablePanel));
    }).then(function () {
      $("updated").textContent = "updated " + new Date().toLocaleTimeString();
      document.body.setAttribute("data-state", "ready");
    }).catch(function (err) { showError(err.message); });
  }

  start();
})();
