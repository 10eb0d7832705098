// Draws every Plotly figure on the backtest pages. Figures are built in Python (backtests/charts.py)
// and embedded with json_script; each chart is a <div data-figure="ID-of-the-json-script">.
(function () {
  "use strict";

  function draw(root) {
    if (typeof Plotly === "undefined") return;
    root.querySelectorAll("[data-figure]").forEach(function (el) {
      var source = document.getElementById(el.dataset.figure);
      if (!source) return;
      var figure = JSON.parse(source.textContent);
      Plotly.react(el, figure.data, figure.layout, { responsive: true, displaylogo: false });
      el.dataset.drawn = "true";
    });
  }

  document.addEventListener("DOMContentLoaded", function () { draw(document); });
  // A finished run replaces its polled fragment with results that carry charts.
  document.addEventListener("htmx:afterSettle", function () { draw(document); });
})();
