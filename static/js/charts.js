/* The one script that draws every Plotly chart: on load and after each htmx swap.
 *
 * Figures are built on the server (markets/charts.py, markets/insight_charts.py, backtests/charts.py)
 * as plain {data, layout} dicts. A chart element says where its figure is:
 *   data-figure="ID": the id of a <script type="application/json"> (json_script) holding it; or
 *   data-meta="ID": the id of a hidden element carrying either
 *     data-src + data-version: a URL returning the figure as JSON, fetched again only when the
 *       source or the version changes (polls that bring no new data cost no chart download), or
 *     data-json: the id of a json_script holding it.
 * Charts that must keep Plotly's state (zoom, hover) across refreshes carry hx-preserve and use
 * data-meta, whose element is swapped every time. data-drawn counts how often a chart was drawn.
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

  function embedded(id) {
    var source = id && document.getElementById(id);
    return source ? JSON.parse(source.textContent) : null;
  }

  function fetched(el, meta) {
    var key = meta.dataset.src + "|" + meta.dataset.version;
    if (el.dataset.key === key) return;
    el.dataset.key = key;
    el.classList.add("chart-loading");
    fetch(meta.dataset.src, { headers: { Accept: "application/json" }, credentials: "same-origin" })
      .then(function (response) {
        return response.json().then(function (body) {
          if (!response.ok) throw new Error(body.error || body.detail || response.statusText);
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

  function refresh(el) {
    if (el.dataset.figure) {
      var figure = embedded(el.dataset.figure);
      if (figure) draw(el, figure);
      return;
    }
    var meta = document.getElementById(el.dataset.meta);
    if (!meta) return;
    if (meta.dataset.json) {
      var inline = embedded(meta.dataset.json);
      if (inline) draw(el, inline);
    } else if (meta.dataset.src) {
      fetched(el, meta);
    }
  }

  function refreshAll() {
    if (typeof Plotly === "undefined") return;
    document.querySelectorAll("[data-figure], [data-meta]").forEach(refresh);
  }

  document.addEventListener("DOMContentLoaded", refreshAll);
  // Charts inside a fragment about to be replaced are released before their elements go away.
  document.addEventListener("htmx:beforeSwap", function (event) {
    if (typeof Plotly === "undefined" || !event.detail.target) return;
    event.detail.target.querySelectorAll("[data-figure]").forEach(function (el) { Plotly.purge(el); });
  });
  document.addEventListener("htmx:afterSettle", refreshAll);
})();
