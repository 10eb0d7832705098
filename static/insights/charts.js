// Draws the insights pages' Plotly figures. Figures are built in Python (markets/insight_charts.py)
// and embedded with json_script; each chart is an element with data-figure="<id of the json_script>".
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
  // A filter change swaps in a results fragment with a new figure: release the old plots, draw the new.
  document.addEventListener("htmx:beforeSwap", function (event) {
    if (typeof Plotly === "undefined") return;
    event.detail.target.querySelectorAll("[data-figure]").forEach(function (el) { Plotly.purge(el); });
  });
  document.addEventListener("htmx:afterSwap", function () { draw(document); });
})();
