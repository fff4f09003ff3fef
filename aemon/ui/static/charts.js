// Draws every chart whose figure a page embeds as JSON (no inline script: the page's CSP forbids it).
document.querySelectorAll('script[type="application/json"][data-chart]').forEach(function (el) {
  var fig = JSON.parse(el.textContent);
  var target = document.getElementById(el.dataset.chart);
  Plotly.newPlot(target, fig.data, fig.layout, {displaylogo: false, responsive: true});
});
