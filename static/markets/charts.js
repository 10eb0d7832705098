/* Draws every chart on the page with Plotly.react: on load and after each htmx swap.
 *
 * Figures are built on the server (markets/charts.py). A chart element names, in data-meta, an
 * element carrying either
 *   data-src + data-version: a URL returning the figure as JSON, fetched again only when the
 *     source or the version changes (polls that bring no new data cost no chart download), or
 *   data-figure: the id of a <script type="application/json"> holding the figure.
 * Chart elements carry hx-preserve, so Plotly's state (zoom, hover) survives the swaps.
 */
(function () {
  "use strict";

  var CONFIG = { responsive: true, displaylogo: false, modeBarButtonsToRemove: ["lasso2d", "select2d"] };

  function draw(el, figure) {
    var layout = Object.assign({}, figure.layout);
    Plotly.react(el, figure.data, layout, Object.assign({}, CONFIG, figure.config || {}));
    el.classList.remove("chart-loading", "chart-error");
    el.dataset.drawn = String(Number(el.dataset.drawn || 0) + 1);
  }

  function fail(el, message) {
    el.classList.remove("chart-loading");
    el.classList.add("chart-error");
    el.setAttribute("data-error", message);
  }

  function refresh(el) {
    var meta = document.getElementById(el.dataset.meta);
    if (!meta) return;
    if (meta.dataset.figure) {
      var source = document.getElementById(meta.dataset.figure);
      if (source) draw(el, JSON.parse(source.textContent));
      return;
    }
    var key = meta.dataset.src + "|" + meta.dataset.version;
    if (el.dataset.key === key) return;
    el.dataset.key = key;
    el.classList.add("chart-loading");
    fetch(meta.dataset.src, { headers: { Accept: "application/json" }, credentials: "same-origin" })
      .then(function (response) {
        return response.json().then(function (body) {
          if (!response.ok) throw new Error(body.error || response.statusText);
          return body;
        });
      })
      .then(function (figure) {
        // A newer request may have started meanwhile; only the latest one draws.
        if (el.dataset.key === key) draw(el, figure);
      })
      .catch(function (error) {
        if (el.dataset.key === key) {
          el.dataset.key = "";
          fail(el, "Could not load the chart: " + error.message);
        }
      });
  }

  function refreshAll() {
    if (typeof Plotly === "undefined") return;
    document.querySelectorAll("[data-meta]").forEach(refresh);
  }

  document.addEventListener("DOMContentLoaded", refreshAll);
  document.addEventListener("htmx:afterSwap", refreshAll);
})();
