// web/static/app.js — draws the dashboard's charts with vega (Debian libjs-vega, served as
// /vendor/vega.js) from the /api/ JSON. Each <div class=chart data-kind=K data-experiment=E>
// becomes an SVG chart; when drawn, the div gets data-points (the number of point marks, one
// per data point) so tests can check it. Text reaches the page only through vega's SVG text
// nodes (never innerHTML), so names from the database stay text.
'use strict';
if (window.performance && performance.mark) performance.mark('segx-app');

// `segx report --format html` embeds the JSON the charts need (keys: the /api/ paths), so the
// file works offline; the dashboard fetches it.
var embedded = (function () {
  var el = document.getElementById('segx-data');
  return el ? JSON.parse(el.textContent) : null;
})();

// One fetch per path and page (the scaling page's two charts read the same two answers).
var fetched = {};
function api(path) {
  if (embedded) {
    return path in embedded ? Promise.resolve(embedded[path])
                            : Promise.reject(new Error('not in this report: ' + path));
  }
  if (!(path in fetched)) {
    fetched[path] = fetch(path, {credentials: 'same-origin'}).then(function (r) {
      if (!r.ok) return r.json().then(function (j) { throw new Error(j.error || r.statusText); });
      return r.json();
    });
  }
  return fetched[path];
}

function expPath(div, what) {
  return '/api/e/' + encodeURIComponent(div.dataset.experiment) + '/' + what;
}

function num(v) { return typeof v === 'number' && isFinite(v); }

// A big study's page names one model (data-model): fetch only its rows.
function modelQuery(div, sep) {
  return div.dataset.model !== undefined ? sep + 'model=' + encodeURIComponent(div.dataset.model) : '';
}

function scalingLabel(r) {
  return r.model + ' · ' + r.gpu_type + ' · ' + (r.scaling === 'strong'
    ? 'strong, global batch ' + r.global_batch : 'weak, batch/GPU ' + r.batch_per_gpu);
}

function scalingKey(r) {
  return [r.model, r.gpu_type, r.scaling, r.batch_per_gpu, r.global_batch, r.gpus, r.nodes].join('\u0001');
}

function distinctSorted(vals) {
  return Array.from(new Set(vals)).sort(function (a, b) { return a - b; });   // (indexOf: quadratic at 10,000 points)
}

// One x/y chart: points {x, y, s[, lo, hi]}, optional ideal line, band {x, lo, hi, s},
// highlighted points {x, y, label}, a horizontal target line.
function xyChart(o) {
  var pts = o.points, xs = distinctSorted(pts.map(function (p) { return p.x; }));
  var bars = pts.filter(function (p) { return num(p.lo) && num(p.hi); });
  var yFields = [{data: 'd_points', field: 'y'}];
  if (bars.length) yFields.push({data: 'd_bars', field: 'lo'}, {data: 'd_bars', field: 'hi'});
  if (o.band && o.band.length) yFields.push({data: 'd_band', field: 'lo'}, {data: 'd_band', field: 'hi'});
  if (o.ideal) yFields.push({data: 'd_ideal', field: 'y'});
  if (num(o.targetY)) yFields.push({data: 'd_target', field: 'y'});
  var xAxis = {orient: 'bottom', scale: 'x', title: o.xTitle, grid: true, labelOverlap: true, tickCount: 6};
  if (o.xLog2) { xAxis.values = xs; xAxis.format = ',d'; }
  var spec = {
    width: o.width || 520, height: o.height || 300, padding: 8, autosize: {type: 'pad'},
    data: [
      {name: 'd_points', values: pts},
      {name: 'd_none', values: []},
      {name: 'd_bars', values: bars},
      {name: 'd_band', values: o.band || []},
      {name: 'd_ideal', values: o.ideal || []},
      {name: 'd_hl', values: o.highlight || []},
      {name: 'd_target', values: num(o.targetY) ? [{y: o.targetY}] : []}
    ],
    scales: [
      o.xLog2 ? {name: 'x', type: 'log', base: 2, domain: {data: 'd_points', field: 'x'}, range: 'width', nice: false, padding: 12}
              : {name: 'x', type: 'linear', domain: {data: 'd_points', field: 'x'}, range: 'width', nice: true, zero: !!o.xZero},
      {name: 'y', type: 'linear', domain: {fields: yFields}, range: 'height', nice: true, zero: !!o.yZero},
      {name: 'color', type: 'ordinal', domain: {data: 'd_points', field: 's'}, range: 'category'}
    ],
    axes: [xAxis, {orient: 'left', scale: 'y', title: o.yTitle, grid: true}],
    legends: [{stroke: 'color', fill: 'color', title: o.legendTitle || 'series', orient: 'bottom', direction: 'vertical',
               symbolType: 'circle', labelLimit: 480, titleLimit: 480}],
    marks: [
      {type: 'group', from: {facet: {name: 'bandS', data: 'd_band', groupby: 's'}},
       marks: [{type: 'area', name: 'band', from: {data: 'bandS'}, encode: {enter: {
         x: {scale: 'x', field: 'x'}, y: {scale: 'y', field: 'lo'}, y2: {scale: 'y', field: 'hi'},
         fill: {scale: 'color', field: 's'}, fillOpacity: {value: 0.18}}}}]},
      {type: 'line', name: 'ideal', from: {data: 'd_ideal'}, encode: {enter: {
        x: {scale: 'x', field: 'x'}, y: {scale: 'y', field: 'y'}, stroke: {value: '#777'},
        strokeDash: {value: [5, 4]}, strokeWidth: {value: 1.5}}}},
      {type: 'rule', name: 'target', from: {data: 'd_target'}, encode: {enter: {
        x: {value: 0}, x2: {signal: 'width'}, y: {scale: 'y', field: 'y'}, stroke: {value: '#cf222e'},
        strokeDash: {value: [2, 3]}}}},
      // (no lines: no facet either; on the cost chart's 10,000 points it was a third of the draw)
      {type: 'group', from: {facet: {name: 'lineS', data: o.noLines ? 'd_none' : 'd_points', groupby: 's'}},
       marks: [{type: 'line', name: 'line', from: {data: 'lineS'}, sort: {field: 'datum.x'}, encode: {enter: {
         x: {scale: 'x', field: 'x'}, y: {scale: 'y', field: 'y'}, stroke: {scale: 'color', field: 's'},
         strokeWidth: {value: o.noLines ? 0 : 2}}}}]},
      {type: 'rule', name: 'errorbars', from: {data: 'd_bars'}, encode: {enter: {
        x: {scale: 'x', field: 'x'}, y: {scale: 'y', field: 'lo'}, y2: {scale: 'y', field: 'hi'},
        stroke: {scale: 'color', field: 's'}, strokeWidth: {value: 1.5}}}},
      {type: 'symbol', name: 'points', from: {data: o.noSymbols ? 'd_none' : 'd_points'}, encode: {enter: {
        x: {scale: 'x', field: 'x'}, y: {scale: 'y', field: 'y'}, size: {value: o.pointSize || 40},
        fill: {scale: 'color', field: 's'}, stroke: {value: '#fff'}, strokeWidth: {value: 0.5},
        tooltip: {signal: 'datum.tip'}}}},
      {type: 'symbol', name: 'highlight', from: {data: 'd_hl'}, encode: {enter: {
        x: {scale: 'x', field: 'x'}, y: {scale: 'y', field: 'y'}, size: {value: 320}, shape: {value: 'circle'},
        fill: {value: 'transparent'}, stroke: {value: '#cf222e'}, strokeWidth: {value: 2.5}, tooltip: {signal: 'datum.label'}}}},
      {type: 'text', name: 'highlight-label', from: {data: 'd_hl'}, encode: {enter: {
        x: {scale: 'x', field: 'x'}, y: {scale: 'y', field: 'y'}, dx: {value: 12}, dy: {value: -10},
        text: {field: 'label'}, fill: {value: '#cf222e'}, fontWeight: {value: 'bold'}}}}
    ]
  };
  if (o.title) spec.title = {text: o.title, anchor: 'start'};
  return spec;
}

// A big study has hundreds of series: past MAX_SERIES, one model's are drawn (?model=, else
// the first), and if that is still too many, one GPU type's of it (?gpu_type=), with links to
// the others.
var MAX_SERIES = 40;
function limitSeries(div, pts, extra) {
  var params = new URLSearchParams(location.search), note = null, shown = [];
  function count(ps) { var s = {}; ps.forEach(function (p) { s[p.s] = 1; }); return Object.keys(s).length; }
  [['m', 'model'], ['g', 'gpu_type']].forEach(function (lv) {
    var field = lv[0], name = lv[1], want = params.get(name);
    if (count(pts) <= MAX_SERIES && want === null) return;
    var vals = [];
    pts.forEach(function (p) { if (p[field] !== undefined && vals.indexOf(p[field]) < 0) vals.push(p[field]); });
    if (vals.length < 2 && want === null) return;
    vals.sort();
    var v = want !== null && vals.indexOf(want) >= 0 ? want : vals[0];
    var before = count(pts);
    var keep = function (p) { return p[field] === undefined || p[field] === v; };
    pts = pts.filter(keep);
    extra = (extra || []).filter(keep);
    if (!note) {
      note = document.createElement('p');
      note.className = 'note';
      note.appendChild(document.createTextNode(before + ' series: showing'));
    }
    note.appendChild(document.createTextNode(' ' + name + ' ' + v + ' (others:'));
    vals.forEach(function (o) {
      if (o === v) return;
      var a = document.createElement('a'), u = new URLSearchParams(location.search);
      u.set(name, o);
      a.href = '?' + u.toString();
      a.textContent = o;
      note.appendChild(document.createTextNode(' '));
      note.appendChild(a);
    });
    note.appendChild(document.createTextNode(')'));
    shown.push(v);
  });
  return {points: pts, extra: extra, note: note};
}

var CANVAS_POINTS = 2000;
// ?renderer=svg or canvas chooses for every chart (svg: to save a figure from the browser).
var RENDERER = (function () {
  var r = new URLSearchParams(location.search).get('renderer');
  return r === 'svg' || r === 'canvas' ? r : null;
})();
function draw(div, spec, npoints, note) {
  div.innerHTML = '';
  if (note) div.appendChild(note);
  if (!npoints) {
    var p = document.createElement('p');
    p.className = 'empty';
    p.textContent = 'No data yet for this chart.';
    div.appendChild(p);
    div.dataset.points = '0';
    return Promise.resolve();
  }
  // SVG keeps one element per mark (tests count them); past CANVAS_POINTS marks a canvas draws
  // them several times faster.
  var renderer = RENDERER || (npoints > CANVAS_POINTS ? 'canvas' : 'svg');
  var view = new vega.View(vega.parse(spec), {renderer: renderer, container: div, hover: true});
  return view.runAsync().then(function () {
    div.dataset.points = String(npoints);
    div.dataset.renderer = renderer;
    if (window.performance && performance.mark) performance.mark('segx-drawn-' + div.dataset.kind);
  });
}

// The cells report's columns the cost chart reads (plus the metric): /api/e/NAME/cells answers
// columns, not one object per cell (web/README.md).
var COST_COLUMNS = 'cell,model,gpu_type,gpus,seed,gpu_hours';

var charts = {
  speedup: scaling('speedup'),
  efficiency: scaling('efficiency'),
  accuracy: function (div) {
    var m = div.dataset.metric;
    return api(expPath(div, 'accuracy') + modelQuery(div, '?')).then(function (rows) {
      var pts = rows.filter(function (r) { return num(r[m + '_mean']) && num(r.global_batch); }).map(function (r) {
        var sd = r[m + '_std'];
        return {x: r.global_batch, y: r[m + '_mean'], lo: num(sd) ? r[m + '_mean'] - sd : null,
                hi: num(sd) ? r[m + '_mean'] + sd : null, s: r.model + ' · ' + r.gpu_type, m: r.model, g: r.gpu_type,
                tip: r.model + ' · ' + r.gpus + ' GPUs · global batch ' + r.global_batch + ': ' + m + ' ' +
                     r[m + '_mean'].toFixed(4) + (num(sd) ? ' ± ' + sd.toFixed(4) : '') + ' (n=' + r[m + '_n'] + ')'};
      });
      var lim = limitSeries(div, pts);
      pts = lim.points;
      return draw(div, xyChart({points: pts, xLog2: true, xTitle: 'global batch (log2)',
                                yTitle: m + ' (mean ± std over seeds)', legendTitle: 'model · GPU type'}), pts.length, lim.note);
    });
  },
  'curve-epoch': curve('epoch'),
  'curve-wall': curve('wall_s'),
  cost: function (div) {
    var m = div.dataset.metric, target = parseFloat(div.dataset.target), lower = /loss$/.test(m);
    return api(expPath(div, 'cells') + '?columns=' + COST_COLUMNS + ',' + m + '&limit=all').then(function (ans) {
      var c = ans.columns, pts = [];
      (c.cell || []).forEach(function (key, i) {
        var y = c[m][i], x = c.gpu_hours[i];
        if (!num(y) || !num(x)) return;
        pts.push({x: x, y: y, s: c.model[i] + ' · ' + c.gpu_type[i], m: c.model[i], key: key,
                  tip: key.slice(0, 12) + ' · ' + c.model[i] + ' · ' + c.gpus[i] + ' GPUs · seed ' + c.seed[i] + ': ' +
                       x.toFixed(4) + ' GPU-h, ' + m + ' ' + y.toFixed(4)});
      });
      var hl = [];
      if (num(target)) {
        var best = null;
        pts.forEach(function (p) {
          if ((lower ? p.y <= target : p.y >= target) && (!best || p.x < best.x)) best = p;
        });
        if (best) hl.push({x: best.x, y: best.y, label: 'cheapest reaching ' + m + (lower ? ' ≤ ' : ' ≥ ') + target});
        div.dataset.cheapest = best ? best.key : '';
      }
      return draw(div, xyChart({points: pts, xTitle: 'GPU-hours', yTitle: 'final ' + m, xZero: true, noLines: true,
                                legendTitle: 'model · GPU type', highlight: hl, targetY: target}), pts.length);
    });
  }
};

function scaling(which) {
  return function (div) {
    return Promise.all([api(expPath(div, 'speedup') + modelQuery(div, '?')),
                        api(expPath(div, 'scaling-errors') + modelQuery(div, '?'))]).then(function (res) {
      var rows = res[0], errs = {};
      res[1].forEach(function (e) { errs[scalingKey(e)] = e; });
      var pts = [];
      rows.forEach(function (r) {
        var tp = num(r.speedup_throughput);
        var y = which === 'speedup' ? (tp ? r.speedup_throughput : r.speedup_time)
                                    : (tp ? r.efficiency_throughput : r.efficiency_time);
        if (!num(y)) return;
        var e = errs[scalingKey(r)], sd = e && tp ? e[which + '_std'] : null;
        pts.push({x: r.gpus, y: y, s: scalingLabel(r), m: r.model, g: r.gpu_type, lo: num(sd) ? y - sd : null, hi: num(sd) ? y + sd : null,
                  tip: scalingLabel(r) + ' · ' + r.gpus + ' GPUs: ' + which + ' ' + y.toFixed(3) +
                       (num(sd) ? ' ± ' + sd.toFixed(3) : '') + ' (n=' + r.n + ', from ' + (tp ? 'images/s' : 'epoch time') + ')'});
      });
      var lim = limitSeries(div, pts);
      pts = lim.points;
      var xs = distinctSorted(pts.map(function (p) { return p.x; }));
      var ideal = xs.map(function (x) { return {x: x, y: which === 'speedup' ? x : 1}; });
      return draw(div, xyChart({points: pts, ideal: ideal, xLog2: true, yZero: true, xTitle: 'GPUs (log2)',
                                yTitle: which === 'speedup' ? 'speedup vs 1 GPU' : 'efficiency (speedup / GPUs)',
                                legendTitle: 'model · GPU type · scaling rule'}), pts.length, lim.note);
    });
  };
}

function curve(xField) {
  return function (div) {
    var m = div.dataset.metric, lower = /loss$/.test(m);
    return api(expPath(div, 'curves') + '?metric=' + encodeURIComponent(m) + modelQuery(div, '&') + '&limit=all').then(function (c) {
      var pts = [], band = [], hl = [], reached = {};
      c.series.forEach(function (g) {   // one cell group: its points as arrays (web/README.md)
        var s = g.model + ' · ' + g.gpu_type + ' · ' + g.gpus + ' GPUs · batch/GPU ' + g.batch_per_gpu;
        g.epoch.forEach(function (epoch, i) {
          var wall = g.wall_s[i], mean = g.mean[i], n = g.n[i], x = xField === 'epoch' ? epoch : wall;
          if (!num(x) || !num(mean)) return;
          pts.push({x: x, y: mean, s: s, m: g.model, g: g.gpu_type, tip: s + ' · epoch ' + epoch + ' · ' + (num(wall) ? wall.toFixed(1) + ' s' : '') +
                    ': ' + m + ' ' + mean.toFixed(4) + ' (' + n + ' seed' + (n === 1 ? '' : 's') + ')'});
          if (n > 1) band.push({x: x, lo: g.lo[i], hi: g.hi[i], s: s, m: g.model, g: g.gpu_type});
          if (num(c.target) && !reached[s] && (lower ? mean <= c.target : mean >= c.target)) {
            reached[s] = true;
            hl.push({x: x, y: mean, label: '', m: g.model, g: g.gpu_type});
          }
        });
      });
      var lim = limitSeries(div, pts, band.concat(hl));
      pts = lim.points;
      band = lim.extra.filter(function (b) { return 'lo' in b; });
      hl = lim.extra.filter(function (b) { return !('lo' in b); });
      return draw(div, xyChart({points: pts, band: band, highlight: hl, targetY: c.target, pointSize: 16,
                                noSymbols: pts.length > CANVAS_POINTS,
                                xTitle: xField === 'epoch' ? 'epoch' : 'wall-clock seconds (attempts stitched)',
                                yTitle: m + ' (mean over seeds; band: min–max)', legendTitle: 'cell group'}), pts.length, lim.note);
    });
  };
}

// When every chart is drawn (or failed), <html data-charts-ms=T>: milliseconds since the page's
// navigation started (bench/web reads it).
var pending = [];
document.querySelectorAll('div.chart').forEach(function (div) {
  var f = charts[div.dataset.kind];
  if (!f) return;
  if (typeof vega === 'undefined') {
    div.textContent = 'Charts need the vega library (Debian package libjs-vega): it was not found by segx serve.';
    div.dataset.error = 'no vega';
    return;
  }
  pending.push(f(div).catch(function (e) {
    div.textContent = 'chart failed: ' + e.message;
    div.dataset.error = e.message;
  }));
});
Promise.all(pending).then(function () {
  if (window.performance && performance.mark) performance.mark('segx-charts');
  document.documentElement.dataset.chartsMs = String(Math.round(performance.now()));
});
