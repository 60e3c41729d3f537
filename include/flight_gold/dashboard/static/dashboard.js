/* Flight Gold dashboard: fetches api/dashboard every 30 s and draws it with the vendored ECharts.
 * Data strings (countries, run ids...) only ever go through textContent, never innerHTML,
 * except in chart tooltips, where they are escaped first. */
(function () {
  "use strict";

  var REFRESH_MS = 30000;
  var PHASE_COLORS = {
    GROUND: "#8c8c8c", TAKEOFF: "#f28e2b", CLIMB: "#59a14f", CRUISE: "#4e79a7",
    DESCENT: "#b07aa1", TRANSITION: "#76b7b2", UNKNOWN: "#c9c9c9"
  };

  var el = function (id) { return document.getElementById(id); };
  var state = { timer: null, controller: null, lastOk: null };

  function isDark() {
    try {  // same origin as the Airflow UI that frames this page: follow its color mode
      var root = window.parent.document.documentElement;
      if (root.classList.contains("dark")) return true;
      if (root.classList.contains("light")) return false;
    } catch (e) { /* opened on its own */ }
    return window.matchMedia && window.matchMedia("(prefers-color-scheme: dark)").matches;
  }
  var dark = isDark();
  if (dark) document.documentElement.classList.add("dark");

  var charts = {};
  function chart(id) {
    if (!charts[id]) {
      var node = el(id);
      charts[id] = echarts.init(node, dark ? "dark" : null, { renderer: "canvas" });
      charts[id].on("finished", function () { node.dataset.rendered = "true"; });
    }
    return charts[id];
  }
  window.addEventListener("resize", function () {
    Object.keys(charts).forEach(function (k) { charts[k].resize(); });
  });

  // -- formatting -------------------------------------------------------------------------------
  function escapeHtml(s) {
    return String(s).replace(/[&<>"']/g, function (c) {
      return { "&": "&amp;", "<": "&lt;", ">": "&gt;", '"': "&quot;", "'": "&#39;" }[c];
    });
  }
  function hhmm(iso) { return iso ? iso.slice(11, 16) : "–"; }
  function dayHhmm(iso) { return iso ? iso.slice(0, 10) + " " + iso.slice(11, 16) : "–"; }
  function windowLabel(start, end) {
    return start.slice(0, 10) === end.slice(0, 10) ? dayHhmm(start) + "–" + hhmm(end) : dayHhmm(start) + " – " + dayHhmm(end);
  }
  function duration(seconds) {
    if (seconds === null || seconds === undefined) return "–";
    var s = Math.round(Math.abs(seconds));
    if (s < 90) return s + " s";
    if (s < 5400) return Math.round(s / 60) + " min";
    if (s < 172800) return (s / 3600).toFixed(1) + " h";
    return (s / 86400).toFixed(1) + " days";
  }
  function pct(rate) { return (rate * 100).toFixed(1) + " %"; }
  function num(v, digits) {
    return v === null || v === undefined ? "–" : Number(v).toLocaleString("en-US", { maximumFractionDigits: digits || 0 });
  }
  function node(tag, attrs, children) {
    var n = document.createElement(tag);
    Object.keys(attrs || {}).forEach(function (k) {
      if (k === "text") n.textContent = attrs[k];
      else if (k === "className") n.className = attrs[k];
      else n.setAttribute(k, attrs[k]);
    });
    (children || []).forEach(function (c) { if (c) n.appendChild(typeof c === "string" ? document.createTextNode(c) : c); });
    return n;
  }
  // `code` spans of the server's messages become <code>, the rest stays text.
  function richText(parent, text) {
    String(text).split("`").forEach(function (part, i) {
      parent.appendChild(i % 2 ? node("code", { text: part }) : document.createTextNode(part));
    });
  }

  // -- time range -------------------------------------------------------------------------------
  function readUrl() {
    var q = new URLSearchParams(window.location.search);
    if (q.get("start")) {
      el("range").value = "custom";
      el("start").value = q.get("start").slice(0, 16);
      if (q.get("end")) el("end").value = q.get("end").slice(0, 16);
    } else if (q.get("range")) {
      var known = Array.prototype.some.call(el("range").options, function (o) { return o.value === q.get("range"); });
      if (known) el("range").value = q.get("range");
    }
    el("custom-range").hidden = el("range").value !== "custom";
  }
  function query() {
    var q = new URLSearchParams();
    if (el("range").value === "custom") {
      if (el("start").value) q.set("start", el("start").value + ":00Z");
      if (el("end").value) q.set("end", el("end").value + ":00Z");
    } else {
      q.set("range", el("range").value);
    }
    return q;
  }

  // -- loading ----------------------------------------------------------------------------------
  function showError(text) {
    var box = el("error");
    box.textContent = text || "";
    box.hidden = !text;
  }

  function load() {
    if (state.controller) state.controller.abort();
    var controller = new AbortController();
    state.controller = controller;
    var q = query();
    if (el("range").value === "custom" && !q.get("start")) {
      showError("Choose a start time for the custom range.");
      return Promise.resolve();
    }
    window.history.replaceState(null, "", "?" + q.toString());
    el("status").textContent = "Loading…";
    return fetch("api/dashboard?" + q.toString(), {
      credentials: "same-origin", headers: { Accept: "application/json" }, signal: controller.signal
    }).then(function (response) {
      if (response.status === 401 || response.status === 403) {
        throw new Error("Your Airflow session has expired or lacks access: reload the Airflow page to sign in again.");
      }
      return response.json().catch(function () { return {}; }).then(function (body) {
        if (!response.ok) throw new Error(body.detail || ("The dashboard API answered " + response.status));
        return body;
      });
    }).then(function (data) {
      showError(null);
      render(data);
      state.lastOk = new Date();
      el("status").textContent = "Updated " + data.generated_at.slice(11, 19) + " UTC · refreshes every 30 s";
      document.body.dataset.loaded = data.generated_at;
    }).catch(function (err) {
      if (err.name === "AbortError") return;
      showError(err.message);
      el("status").textContent = state.lastOk ? "Last good update " + state.lastOk.toISOString().slice(11, 19) + " UTC" : "";
    });
  }

  function schedule() {
    clearTimeout(state.timer);
    state.timer = setTimeout(function () { load().then(schedule); }, REFRESH_MS);
  }
  function reload() { load().then(schedule); }

  // The UI frames this page in a sandbox without top navigation, so a plain target=_top link
  // would do nothing there: hand the route to the UI's own router (same origin) instead.
  function airflowLink(href, text) {
    var a = node("a", { href: href, target: "_top", text: text });
    a.addEventListener("click", function (e) {
      try {
        var top = window.top;
        if (top === window || top.location.origin !== window.location.origin) return;
        e.preventDefault();
        top.history.pushState(null, "", href);
        top.dispatchEvent(new PopStateEvent("popstate", { state: null }));
      } catch (err) { /* not framed by the Airflow UI: the plain link works */ }
    });
    return a;
  }

  // -- rendering --------------------------------------------------------------------------------
  var generatedAt = null;
  function render(data) {
    generatedAt = data.generated_at;
    renderEmptyState(data.empty_state);
    renderRangeNote(data.range);
    renderFreshness(data.freshness, data.streaming_run, data.stream_health);
    renderPhases(data.phase_counts, data.range);
    renderAnomalies(data.anomaly_rates, data.threshold);
    renderMetrics(data.stream_metrics, data.range.requested || data.range);
    renderBreaches(data.breaches, data.threshold, data.last_alert);
  }

  // The server moved a relative range that held no window to the newest data: say so.
  function renderRangeNote(range) {
    var note = el("range-note");
    note.hidden = !range.adjusted;
    note.textContent = range.adjusted ? range.note : "";
  }

  function renderEmptyState(empty) {
    el("empty-state").hidden = !empty;
    if (!empty) return;
    el("empty-title").textContent = empty.title;
    var list = el("empty-steps");
    list.textContent = "";
    empty.steps.forEach(function (step) { var li = node("li"); richText(li, step); list.appendChild(li); });
  }

  function renderFreshness(fresh, run, health) {
    var box = el("freshness");
    box.textContent = "";
    var behind = {};
    ((health && health.freshness && health.freshness.tables) || []).forEach(function (b) { behind[b.table] = b; });
    fresh.tables.forEach(function (t) {
      // Gold is judged against Silver_ML's data when Silver_ML has some: recorded traffic is old
      // but fresh; else against the clock.
      var silver = behind[t.table] && behind[t.table].behind_seconds !== null ? behind[t.table] : null;
      var stale = silver ? silver.stale : t.stale;
      var status = t.status === "ok" && stale ? "stale" : t.status;
      var lines = [];
      if (t.status === "ok") {
        var headline = silver ? (silver.behind_seconds > 0 ? duration(silver.behind_seconds) + " behind Silver_ML" : "up to date with Silver_ML") :
          (t.lag_seconds >= 0 ? duration(t.lag_seconds) + " behind now" : "ends " + duration(-t.lag_seconds) + " in the future (clock skew?)");
        lines.push(node("div", { className: "big freshness", text: headline }));
        lines.push(node("div", { className: "line", text: "newest window " + windowLabel(t.newest_window_start, t.newest_window_end) + " UTC" +
          (silver ? " · " + duration(t.lag_seconds) + " before now" : "") }));
        lines.push(node("div", { className: "line", text: (silver ? "stale beyond " + duration(health.freshness.threshold_seconds) :
          "expected ≤ " + duration(t.expected_lag_seconds)) + " · " + num(t.rows) + " rows · v" + t.version }));
      } else {
        lines.push(node("div", { className: "big", text: t.status === "missing" ? "not created yet" : "no window yet" }));
        lines.push(node("div", { className: "line", text: t.path }));
      }
      box.appendChild(node("div", { className: "card", "data-table": t.table }, [
        node("h3", {}, [node("span", { text: t.table }), node("span", { className: "badge " + status, text: status })])
      ].concat(lines)));
    });
    if (health) box.appendChild(healthCard(health));
    box.appendChild(runCard(run));
  }

  var STATE_TEXT = { running: "running", restarting: "restarting", starting: "starting", stopped: "stopped",
    gave_up: "gave up", unknown: "no news", never_started: "never started" };
  function healthCard(h) {
    var children = [node("h3", {}, [node("span", { text: "Stream health" }),
      node("span", { className: "badge " + h.state, text: STATE_TEXT[h.state] || h.state })])];
    var big = h.state === "running" && h.running_since ?
      "running for " + duration((Date.parse(generatedAt) - Date.parse(h.running_since)) / 1000) :
      h.state === "restarting" && h.next_restart_at ? "restarting at " + hhmm(h.next_restart_at) + " UTC" : (STATE_TEXT[h.state] || h.state);
    children.push(node("div", { className: "big", text: big }));
    if (h.running_since) children.push(node("div", { className: "line running-since", text: "running since " + dayHhmm(h.running_since) + " UTC" }));
    children.push(node("div", { className: "line restarts", text: h.restarts_24h + (h.restarts_24h === 1 ? " restart" : " restarts") + " in the last 24 h" }));
    if (h.last_failure) {
      children.push(node("div", { className: "line last-failure", text: "last failure " + dayHhmm(h.last_failure.at) + " UTC: " + h.last_failure.reason }));
    }
    if (h.message && h.state !== "running") {
      var msg = node("div", { className: "line" });
      richText(msg, h.message);
      children.push(msg);
    }
    return node("div", { className: "card", "data-table": "stream-health" }, children);
  }

  function runCard(run) {
    var children = [];
    var status = run.status === "ok" ? run.run.state : run.status;
    children.push(node("h3", {}, [node("span", { text: "Last " + run.dag_id + " run" }),
      node("span", { className: "badge " + status, text: status.replace(/_/g, " ") })]));
    if (run.status === "ok") {
      var r = run.run, since = r.start_date || r.run_after;
      var headline = r.end_date ? "ended " + duration((Date.parse(generatedAt) - Date.parse(r.end_date)) / 1000) + " ago"
        : (r.start_date ? "started " : "queued ") + duration((Date.parse(generatedAt) - Date.parse(since)) / 1000) + " ago";
      children.push(node("div", { className: "big", text: headline }));
      children.push(node("div", { className: "line" }, [airflowLink(r.url, r.run_id)]));
      children.push(node("div", { className: "line", text: (r.start_date ? "started " : "queued ") + dayHhmm(since) + " UTC" +
        (r.end_date ? " · ended " + dayHhmm(r.end_date) + " UTC" : "") }));
      if (run.is_paused) children.push(node("div", { className: "line", text: "the DAG is paused" }));
    } else {
      var msg = node("div", { className: "line" });
      richText(msg, run.message || "");
      children.push(msg);
      if (run.dag_url) children.push(node("div", { className: "line" }, [airflowLink(run.dag_url, "open " + run.dag_id)]));
    }
    return node("div", { className: "card", "data-table": "streaming-run" }, children);
  }

  // A chart without data gives way to a sentence saying why.
  function showChart(prefix, table, status, has) {
    var box = el(prefix + "-chart"), empty = el(prefix + "-empty");
    empty.hidden = has;
    empty.textContent = status === "missing" ? table + " does not exist yet: see above for what to start." :
      status === "empty" ? table + " has no window yet." : "No " + table + " window in this time range.";
    var wasHidden = box.hidden;
    box.hidden = !has;
    if (has && wasHidden && charts[prefix + "-chart"]) charts[prefix + "-chart"].resize();
    return has;
  }

  function renderPhases(p, range) {
    if (!showChart("phase", p.table, p.status, p.minutes.length > 0)) return;
    var series = p.phases.map(function (s) {
      return {
        name: s.phase, type: "bar", stack: "observations", barMaxWidth: 28, large: p.minutes.length > 600,
        itemStyle: { color: PHASE_COLORS[s.phase] || undefined },
        emphasis: { focus: "series" },
        data: p.minutes.map(function (m, i) { return [m, s.flight_count[i], s.avg_altitude[i], s.avg_velocity[i]]; })
      };
    });
    chart("phase-chart").setOption({
      backgroundColor: "transparent", useUTC: true, animation: false,
      legend: { top: 0 },
      grid: { left: 56, right: 24, top: 36, bottom: 36 },
      tooltip: {
        trigger: "axis", axisPointer: { type: "shadow" }, confine: true,
        formatter: function (items) {
          if (!items.length) return "";
          var rows = items.filter(function (it) { return it.value[1] > 0; }).map(function (it) {
            return '<div class="tt-row" data-phase="' + escapeHtml(it.seriesName) + '">' + it.marker +
              escapeHtml(it.seriesName) + ": <b>" + num(it.value[1]) + "</b> obs · avg " +
              num(it.value[2]) + " m · " + num(it.value[3]) + " km/h</div>";
          });
          var total = items.reduce(function (a, it) { return a + (it.value[1] || 0); }, 0);
          var start = items[0].value[0];
          return "<div><b>" + dayHhmm(start) + " UTC</b> · " + num(total) + " observations</div>" + rows.join("");
        }
      },
      xAxis: { type: "time", min: range.start, max: range.end },
      yAxis: { type: "value", name: "observations / min", nameGap: 12 },
      dataZoom: [{ type: "inside" }],
      series: series
    }, { notMerge: true });
  }

  function renderAnomalies(a, threshold) {
    if (!showChart("anomaly", a.table, a.status, a.cells.length > 0)) return;
    el("anomaly-subtitle").textContent = "anomaly_alerts · " + Math.round(a.window_seconds / 60) + "-minute windows by start (UTC) · threshold " + threshold +
      (a.countries_hidden ? " · " + a.countries.length + " of " + a.countries_total + " countries (highest rates)" : "");
    var box = el("anomaly-chart");
    var height = Math.max(220, 26 * a.countries.length + 110);
    if (box.style.height !== height + "px") { box.style.height = height + "px"; chart("anomaly-chart").resize(); }
    var windows = a.windows, countries = a.countries;
    var data = a.cells.map(function (c) {
      return { value: c, itemStyle: c[2] > threshold ? { borderColor: dark ? "#fff" : "#5a0000", borderWidth: 1.5 } : undefined };
    });
    var t = threshold;
    chart("anomaly-chart").setOption({
      backgroundColor: "transparent", animation: false,
      grid: { left: 120, right: 24, top: 10, bottom: 84 },
      tooltip: {
        position: "top", confine: true,
        formatter: function (it) {
          var c = it.value, start = windows[c[0]];
          var end = new Date(Date.parse(start) + a.window_seconds * 1000).toISOString();
          return '<div class="tt-cell" data-country="' + escapeHtml(countries[c[1]]) + '"><b>' +
            escapeHtml(countries[c[1]]) + "</b><br>" + windowLabel(start, end) + " UTC<br>anomaly_rate <b>" +
            pct(c[2]) + "</b> of " + num(c[3]) + " observations" +
            (c[2] > t ? "<br><b>above the threshold " + t + "</b>" : "") + "</div>";
        }
      },
      xAxis: { type: "category", data: windows.map(function (w) { return dayHhmm(w); }), splitArea: { show: true },
               axisLabel: { formatter: function (v) { return v.slice(11); } } },
      yAxis: { type: "category", data: countries, inverse: true, splitArea: { show: true } },
      visualMap: {
        type: "piecewise", dimension: 2, orient: "horizontal", left: "center", bottom: 0,
        pieces: [
          { min: 0, max: t / 2, color: "#cfe8cf", label: "0 – " + (t / 2) },
          { gt: t / 2, lte: t, color: "#f3de8a", label: (t / 2) + " – " + t + " (threshold)" },
          { gt: t, lte: Math.min(1, 2 * t), color: "#f08a4b", label: "> " + t + " breach" },
          { gt: Math.min(1, 2 * t), lte: 1, color: "#c0392b", label: "> " + Math.min(1, 2 * t) }
        ]
      },
      dataZoom: [{ type: "inside", xAxisIndex: 0 }],
      series: [{ name: "anomaly_rate", type: "heatmap", data: data, progressive: 5000,
                 emphasis: { itemStyle: { borderColor: "#000", borderWidth: 1 } } }]
    }, { notMerge: true });
  }

  var METRIC_CHARTS = [
    ["metrics-rate-chart", "processed_rows_per_second", "rows / s"],
    ["metrics-duration-chart", "batch_duration_ms", "batch duration (ms)"],
    ["metrics-state-chart", "state_rows", "state rows"],
    ["metrics-late-chart", "late_rows_dropped", "late rows dropped"]
  ];
  function renderMetrics(m, range) {
    var queries = m ? Object.keys(m.queries) : [];
    var empty = el("metrics-empty");
    empty.hidden = queries.length > 0;
    empty.textContent = !m || m.status === "missing" ? "No metrics yet: the streaming job writes them while it runs." :
      "No micro-batch in this time range.";
    var wasHidden = el("metrics-charts").hidden;
    el("metrics-charts").hidden = queries.length === 0;
    if (!queries.length) return;
    METRIC_CHARTS.forEach(function (spec) {
      var c = chart(spec[0]);
      if (wasHidden) c.resize();
      c.setOption({
        backgroundColor: "transparent", useUTC: true, animation: false,
        title: { text: spec[2], textStyle: { fontSize: 12 }, left: 0, top: 0 },
        legend: { top: 0, right: 0 },
        grid: { left: 56, right: 16, top: 32, bottom: 28 },
        tooltip: { trigger: "axis", confine: true },
        xAxis: { type: "time", min: range.start, max: range.end },
        yAxis: { type: "value" },
        series: queries.map(function (q) {
          return { name: q, type: "line", showSymbol: false, sampling: "lttb",
                   data: m.queries[q].times.map(function (t, i) { return [t, m.queries[q][spec[1]][i]]; }) };
        })
      }, { notMerge: true });
    });
  }

  function renderBreaches(b, threshold, lastAlert) {
    el("breach-subtitle").textContent = "anomaly_rate > " + threshold +
      (b.min_observations > 1 ? ", at least " + b.min_observations + " observations" : "") + " · what the alert DAG sends";
    el("breach-count").textContent = b.total + (b.total === 1 ? " breach" : " breaches") + " in this time range" +
      (b.truncated ? " (newest " + b.rows.length + " shown)" : "") + (b.countries.length ? " · " + b.countries.join(", ") : "");
    renderLastAlert(lastAlert);
    var body = el("breach-table").querySelector("tbody");
    body.textContent = "";
    b.rows.forEach(function (r) {
      body.appendChild(node("tr", { "data-country": r.origin_country, "data-window-start": r.window_start }, [
        node("td", { text: windowLabel(r.window_start, r.window_end) }),
        node("td", { text: r.origin_country }),
        node("td", { className: "num rate", text: pct(r.anomaly_rate) }),
        node("td", { className: "num", text: num(r.total_observations) }),
        node("td", { className: "num", text: num(r.altitude_anomalies) }),
        node("td", { className: "num", text: num(r.velocity_anomalies) })
      ]));
    });
    el("breach-table").hidden = b.rows.length === 0;
    el("breach-empty").hidden = b.rows.length > 0;
    el("breach-empty").textContent = b.status === "missing" ? "anomaly_alerts does not exist yet." : "No breach in this time range.";
  }

  function renderLastAlert(a) {
    var box = el("last-alert");
    box.textContent = "";
    box.className = a.status === "error" ? "error-text" : "";
    if (a.status !== "sent") { box.textContent = a.message || a.status; return; }
    box.appendChild(document.createTextNode(dayHhmm(a.sent_at) + " UTC (" + a.breaches +
      (a.breaches === 1 ? " breach" : " breaches") + ", "));
    box.appendChild(a.url ? airflowLink(a.url, a.run_id) : node("span", { text: a.run_id }));
    box.appendChild(document.createTextNode(")"));
  }

  // -- wiring -----------------------------------------------------------------------------------
  el("range").addEventListener("change", function () {
    var custom = el("range").value === "custom";
    el("custom-range").hidden = !custom;
    if (custom && !el("start").value) {
      var now = new Date();
      el("end").value = now.toISOString().slice(0, 16);
      el("start").value = new Date(now.getTime() - 3600000).toISOString().slice(0, 16);
    }
    reload();
  });
  ["start", "end"].forEach(function (id) { el(id).addEventListener("change", reload); });
  el("range-form").addEventListener("submit", function (e) { e.preventDefault(); reload(); });
  document.addEventListener("visibilitychange", function () {
    if (document.visibilityState === "visible" && (!state.lastOk || new Date() - state.lastOk > REFRESH_MS)) reload();
  });

  readUrl();
  reload();
})();
