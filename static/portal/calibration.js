// The calibration page's threshold slider: each step is a target precision whose pass and fail
// thresholds the server computed by fixed-sequence testing (no statistics in the browser).
(function () {
  "use strict";
  var data = document.getElementById("thresholds-data");
  var slider = document.getElementById("target-precision");
  if (!data || !slider) return;
  var rows = JSON.parse(data.textContent);
  function pct(x) { return x === null || x === undefined ? "–" : (100 * x).toFixed(1) + "%"; }
  function num(x) { return x === null || x === undefined ? "none" : (+x).toFixed(3); }
  function show() {
    var row = rows[+slider.value];
    if (!row) return;
    document.getElementById("tp-out").textContent = pct(row.target_precision);
    document.getElementById("tp-pass").textContent = row.pass_at === null ? "none" : "≥ " + num(row.pass_at);
    document.getElementById("tp-pass-note").textContent = row.pass_at === null
      ? "no threshold reaches this precision with 95% confidence"
      : row.pass_all
        ? "passes every trace: the share of good labels alone meets the target (95%)"
        : "precision at least " + pct(row.target_precision) + " with 95% confidence (this threshold's own bound: "
          + pct(row.guaranteed_precision_low) + ")";
    document.getElementById("tp-fail").textContent = row.fail_at === null ? "none" : "≤ " + num(row.fail_at);
    document.getElementById("tp-fail-note").textContent = row.fail_at === null
      ? "no threshold reaches this NPV with 95% confidence"
      : row.fail_all
        ? "fails every trace: the share of bad labels alone meets the target (95%)"
        : "fails are bad at least " + pct(row.target_precision) + " of the time with 95% confidence (this threshold's "
          + "own bound: " + pct(row.guaranteed_npv_low) + ")";
    document.getElementById("tp-human").textContent = row.to_human + " / " + row.n;
  }
  slider.addEventListener("input", show);
  show();
})();
