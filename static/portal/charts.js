/* Candor portal charts (uPlot): the feature page's series per prompt version with markers where a
   version first appeared, small multiples per segment, and overview sparklines. Every chart has its
   numbers in a table next to it. Data comes from a json_script element; no network. */
(function () {
  "use strict";
  var COLORS = ["#3b5bdb", "#e8590c", "#2b8a3e", "#ae3ec9", "#1098ad", "#c92a2a", "#5c940d", "#495057"];
  var FORMAT = {
    success: function (v) { return (v * 100).toFixed(1) + "%"; },
    thumbs_down_share: function (v) { return (v * 100).toFixed(1) + "%"; },
    cost_per_success_usd: function (v) { return "$" + v.toFixed(4); },
    p95_latency_ms: function (v) { return v.toFixed(0) + " ms"; }
  };
  // One colour per prompt version on every chart of the page (by first sight, the main chart's order first).
  var colorOf = (function () {
    var assigned = {}, next = 0;
    return function (version) {
      if (!Object.prototype.hasOwnProperty.call(assigned, version)) assigned[version] = COLORS[next++ % COLORS.length];
      return assigned[version];
    };
  })();
  function fmt(metric, v) { return v === null || v === undefined ? "–" : FORMAT[metric](v); }
  function epoch(day) { return Date.parse(day + "T00:00:00Z") / 1000; }

  // A dashed line where each version first appeared, named beside it: to its right, or to its left when the
  // plot ends first. Names that would overlap (versions days apart on a narrow chart) go a row lower; one that
  // fits in no row of the plot's top third is left out: the legend, the table and the chart's title name it.
  function markerPlugin(markers) {
    return { hooks: { draw: [function (u) {
      var ctx = u.ctx, dpr = devicePixelRatio, box = u.bbox, gap = 4 * dpr, rowHeight = 13 * dpr;
      var rows = Math.max(1, Math.floor(box.height / 3 / rowHeight)), ends = [];
      ctx.save();
      // uPlot leaves the context as its axes had it (right-aligned values): set what the names need.
      ctx.font = (11 * dpr) + "px system-ui"; ctx.textAlign = "left"; ctx.textBaseline = "alphabetic";
      markers.map(function (m) { return { version: m.version, x: Math.round(u.valToPos(epoch(m.day), "x", true)) }; })
        .filter(function (m) { return m.x >= box.left && m.x <= box.left + box.width; })
        .sort(function (a, b) { return a.x - b.x; })
        .forEach(function (m) {
          ctx.strokeStyle = "#868e96"; ctx.setLineDash([4, 4]); ctx.lineWidth = 1;
          ctx.beginPath(); ctx.moveTo(m.x, box.top); ctx.lineTo(m.x, box.top + box.height); ctx.stroke();
          var width = ctx.measureText(m.version).width;
          var left = m.x + gap + width <= box.left + box.width ? m.x + gap : Math.max(box.left, m.x - gap - width);
          for (var row = 0; row < rows; row++) {
            if (ends[row] === undefined || ends[row] + gap <= left) {
              ends[row] = left + width;
              ctx.setLineDash([]); ctx.fillStyle = "#495057";
              ctx.fillText(m.version, left, box.top + 12 * dpr + row * rowHeight);
              return;
            }
          }
        });
      ctx.restore();
    }] } };
  }
  // The markers in words, as the chart's tooltip: the one place every version's name is whole.
  function markerTitle(markers) {
    return markers.map(function (m) { return m.version + " from " + m.day; }).join("; ");
  }

  // A day read from far fewer traces than its line's usual day is left out (the table lists it): a version's
  // first hours would draw a spike no interval backs. A line of small days (a new organization's first
  // traces, a small segment) is drawn whole.
  var MIN_TRACES = 20;
  // What a day's value is read from: thumbs for their share, the traces success is a share of (scored by the
  // judge, rated...) for success and cost per success, traces for latency.
  function countOf(p, metric) {
    if (metric === "thumbs_down_share") return p.thumbs;
    if (metric === "success" || metric === "cost_per_success_usd") return p.success_n === undefined ? p.traces : p.success_n;
    return p.traces;
  }
  function line(points, metric) {
    var counts = points.filter(function (p) { return p && p[metric] !== null && p[metric] !== undefined; })
      .map(function (p) { return countOf(p, metric); }).sort(function (a, b) { return a - b; });
    var median = counts.length ? counts[Math.floor(counts.length / 2)] : 0;
    return points.map(function (p) {
      if (!p || p[metric] === undefined || p[metric] === null) return null;
      // Left out: a day far smaller than the line's usual one (under a quarter of its median, and under
      // MIN_TRACES), such as a version's first hours; a line of small days keeps them all.
      var n = countOf(p, metric);
      return n < MIN_TRACES && n < median / 4 ? null : p[metric];
    });
  }
  function noData(el, names) {
    var note = document.createElement("p"); note.className = "muted small";
    note.textContent = "No data to draw: " + names.join(", ") + " (see the table).";
    el.appendChild(note);
  }
  function hasData(series, metric) {
    return series.versions.some(function (v) { return line(series.points[v], metric).some(function (x) { return x !== null; }); });
  }
  // One y range for small multiples, so that segments compare at a glance.
  function sharedRange(all, metric) {
    var lo = Infinity, hi = -Infinity;
    all.forEach(function (s) { s.versions.forEach(function (v) { line(s.points[v], metric).forEach(function (x) {
      if (x !== null) { lo = Math.min(lo, x); hi = Math.max(hi, x); }
    }); }); });
    if (lo === Infinity) return null;
    var pad = (hi - lo) * 0.08 || Math.abs(hi) * 0.1 || 1;
    return [Math.max(0, lo - pad), hi + pad];
  }

  function chart(el, title, metric, days, series, markers, width, height, range) {
    var data = [days.map(epoch)];
    var opts = {
      title: title, width: width, height: height, plugins: [markerPlugin(markers || [])],
      scales: range ? { x: { time: true }, y: { range: range } } : { x: { time: true } },
      legend: { live: false },
      axes: [{}, { values: function (u, vals) { return vals.map(function (v) { return fmt(metric, v); }); }, size: 70 }],
      series: [{}]
    };
    series.versions.forEach(function (version) {
      data.push(line(series.points[version], metric));
      opts.series.push({ label: version, stroke: colorOf(version), width: 2, spanGaps: false,
        points: { show: true, size: 4 }, value: function (u, v) { return fmt(metric, v); } });
    });
    var box = document.createElement("div"); box.className = "chart";
    el.appendChild(box);
    var plot = new uPlot(opts, data, box);
    var heading = box.querySelector(".u-title");
    if (heading && markers && markers.length) heading.title = "Dashed lines: " + markerTitle(markers);
    return plot;
  }

  function table(el, days, series, metrics, label) {
    var html = "<table><thead><tr><th>Day</th>" + (label ? "<th>" + label + "</th>" : "") + "<th>Version</th><th class=num>Traces</th>";
    Object.keys(metrics).forEach(function (m) { html += "<th class=num>" + metrics[m] + "</th>"; });
    html += "</tr></thead><tbody>";
    (series.rows || [series]).forEach(function (s) {
      days.forEach(function (day, i) {
        s.versions.forEach(function (v) {
          var p = s.points[v][i]; if (!p) return;
          html += "<tr><td>" + day + "</td>" + (label ? "<td>" + escape(s.segment) + "</td>" : "") + "<td>" + escape(v) + "</td><td class=num>" + p.traces + "</td>";
          Object.keys(metrics).forEach(function (m) { html += "<td class=num>" + fmt(m, p[m]) + "</td>"; });
          html += "</tr>";
        });
      });
    });
    el.innerHTML = html + "</tbody></table>";
  }
  function escape(s) { var d = document.createElement("div"); d.textContent = s === null ? "(none)" : String(s); return d.innerHTML; }

  function featurePage() {
    var source = document.getElementById("chart-data");
    var holder = document.getElementById("charts");
    if (!source || !holder || typeof uPlot === "undefined") return;
    var data = JSON.parse(source.textContent);
    var c = data.chart;
    var w = Math.max(320, Math.floor((holder.clientWidth - 64) / 2));
    var blank = [];
    Object.keys(c.metrics).forEach(function (metric) {
      if (hasData(c, metric)) chart(holder, c.metrics[metric], metric, c.days, c, c.markers, w, 240);
      else blank.push(c.metrics[metric]);
    });
    if (blank.length) noData(holder, blank);
    table(document.getElementById("chart-table"), c.days, c, c.metrics);
    var segs = document.getElementById("segments");
    if (!segs) return;
    var pick = document.getElementById("segment-metric");
    function drawSegments() {
      segs.innerHTML = "";
      var sw = Math.max(260, Math.floor((segs.clientWidth - 72) / 3));
      var range = sharedRange(data.segments, pick.value);
      var empty = [];
      data.segments.forEach(function (s) {
        var name = s.segment === null ? "(none)" : s.segment;
        if (!hasData(s, pick.value)) { empty.push(name); return; }
        chart(segs, name + " · " + c.metrics[pick.value], pick.value, c.days, s, c.markers, sw, 200, range);
      });
      if (empty.length) noData(segs, empty);
    }
    pick.addEventListener("change", drawSegments);
    drawSegments();
    table(document.getElementById("segment-table"), c.days, { rows: data.segments }, c.metrics, "Segment");
  }

  function sparklines() {
    var source = document.getElementById("sparklines");
    if (!source || typeof uPlot === "undefined") return;
    var all = JSON.parse(source.textContent);
    document.querySelectorAll("[data-sparkline]").forEach(function (el) {
      var points = all[el.getAttribute("data-sparkline")] || [];
      var metric = el.getAttribute("data-metric");
      var data = [points.map(function (p) { return epoch(p.day); }), points.map(function (p) { return p[metric]; })];
      new uPlot({ width: 140, height: 36, legend: { show: false }, cursor: { show: false },
        axes: [{ show: false }, { show: false }], scales: { x: { time: true } },
        series: [{}, { stroke: metric === "success" ? "#2b8a3e" : "#3b5bdb", width: 1.5, spanGaps: true, points: { show: false } }]
      }, data, el);
    });
  }

  document.addEventListener("DOMContentLoaded", function () { featurePage(); sparklines(); });
})();
