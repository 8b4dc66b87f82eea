function (root) {
  // maskviz viewer: draws the page data in the <script class="maskviz-data"> inside
  // `root`. Everything lives in this closure (no globals), so several viewers can
  // share a notebook page. No network: all data and code are in the page.
  "use strict";
  root.dataset.maskvizBound = "1";
  const ALLOWED = 1, EVICTED = 2, NOT_YET = 3; // maskviz.view's cell states
  const data = JSON.parse(root.querySelector("script.maskviz-data").textContent);
  const pool = data.pool, C = data.colors, base = data.indexBase;
  const stepping = data.mode === "cached" && data.steps > 0;
  const st = { layer: data.initial.layer, head: data.initial.head, step: data.initial.step,
               focusRow: null, timer: null, cursor: null };  // cursor: the cell keys moved to
  const memo = new Map();

  // ---------------------------------------------------------------- data
  function bytes(b64) {
    const bin = atob(b64), out = new Uint8Array(bin.length);
    for (let i = 0; i < bin.length; i++) out[i] = bin.charCodeAt(i);
    return out;
  }
  function once(key, make) {
    if (!memo.has(key)) memo.set(key, make());
    return memo.get(key);
  }
  function statesOf(panel) {
    return once("s" + panel.states, () => new Int8Array(bytes(pool[panel.states]).buffer));
  }
  function weightsOf(panel) {
    // only ALLOWED cells are stored, row by row, as integers 0..q
    return once(panel, () => {
      const s = statesOf(panel), raw = bytes(panel.w), n = panel.n, q = data.q;
      const out = new Float32Array(n * n);
      let j = 0;
      for (let i = 0; i < n * n; i++) {
        if (s[i] !== ALLOWED) continue;
        out[i] = (q > 255 ? raw[2 * j] | (raw[2 * j + 1] << 8) : raw[j]) / q;
        j++;
      }
      return out;
    });
  }
  function deltaOf(view) {
    // stored for the cells either side may attend to, row by row, as float32
    return once(view, () => {
      const raw = bytes(view.delta), dv = new DataView(raw.buffer);
      const sa = statesOf(view.panels[0]), sb = statesOf(view.panels[1]);
      const out = new Float32Array(sa.length);
      let j = 0;
      for (let i = 0; i < out.length; i++) {
        if (sa[i] === ALLOWED || sb[i] === ALLOWED) out[i] = dv.getFloat32(4 * j++, true);
      }
      return out;
    });
  }
  function lut(hex) {
    return once(hex, () => {
      const out = new Uint8Array(hex.length / 2);
      for (let i = 0; i < out.length; i++) out[i] = parseInt(hex.substr(2 * i, 2), 16);
      return out;
    });
  }
  function rgb(hex) {
    return [1, 3, 5].map((i) => parseInt(hex.substr(i, 2), 16));
  }
  const rowsMap = (ref) => once("m" + ref, () => new Map(pool[ref]));
  function reasonsOf(panel) {
    // a mask page's reason for each cell, run-length coded: [reason, count, ...]
    return once(panel.reasons, () => {
      const runs = panel.reasons.runs, out = new Uint8Array(panel.n * panel.n);
      for (let i = 0, at = 0; i < runs.length; i += 2) {
        out.fill(runs[i], at, at + runs[i + 1]);
        at += runs[i + 1];
      }
      return out;
    });
  }

  // ---------------------------------------------------------------- DOM helpers
  function el(tag, cls, text, parent) {
    const e = document.createElement(tag);
    if (cls) e.className = cls;
    if (text !== undefined && text !== null) e.textContent = text;
    if (parent) parent.appendChild(e);
    return e;
  }
  const body = el("div", "mv-body", null, root);
  // a standalone page's heading (its main landmark's); a notebook's output sits under its own
  el(data.standalone ? "h1" : "h2", "mv-title", data.title, body);
  const header = el("div", "mv-header", null, body);
  const controls = el("div", "mv-controls", null, body);
  controls.setAttribute("role", "group");
  controls.setAttribute("aria-label", "view controls");
  // the maps, and the step box under them or, where that gives larger cells, beside
  const stage = el("div", "mv-stage", null, body);
  const figures = el("div", "mv-figures", null, stage);
  const stepBox = el("div", "mv-step" + (stepping ? " mv-stepping" : ""), null, stage);
  const verdict = el("p", "mv-verdict", null, body);
  const tables = el("div", "mv-tables", null, body);
  const legend = el("div", "mv-legend", null, body);
  const footer = el("div", "mv-footer", null, body);
  const tip = el("div", "mv-tip", null, body); // shown, not spoken: `say` speaks
  tip.hidden = true;
  // what a screen reader is told, politely and only when asked: the cell the keys
  // moved to, the step the keys chose or playback stopped on; never a mouse move or
  // a playing step. Quick presses in a row say only the last.
  const live = el("div", "mv-live", null, body);
  live.setAttribute("role", "status");
  let saying = 0;
  function say(text) {
    clearTimeout(saying);
    saying = setTimeout(() => { live.textContent = text; }, 300);
  }
  const cursorBox = el("div", "mv-cursor", null, body); // outlines the cell the tooltip reads
  cursorBox.hidden = true;

  function select(label, options, value, onChange) {
    const wrap = el("label", "mv-control", label + " ", controls);
    const sel = el("select", null, null, wrap);
    for (const [v, text] of options) {
      const o = el("option", null, text, sel);
      o.value = String(v);
    }
    sel.value = String(value);
    sel.addEventListener("change", () => onChange(sel.value));
    return sel;
  }
  const aggs = data.aggs || [];  // heads combined ("mean", "max"), when the page has them
  const groups = data.groups || [];  // some heads side by side ("1,3"), as --heads chose
  // a head selector's value: a head number, "all", a group, or an aggregate's name
  const named = (v) => v === "all" || aggs.includes(v) || groups.includes(v);
  const headValue = (v) => (named(v) ? v : Number(v));
  const several = () => st.head === "all" || groups.includes(st.head);
  const many = data.layers.length > 1 || data.heads.length > 1 || data.allHeads;
  let layerSel = null, headSel = null, slider = null, play = null, stepOut = null;
  let refocusing = false; // a redraw giving the focus back to a map: nothing to say
  let hover = null; // { map, x, y }: the pointer's last place over a map (window coordinates)
  if (many) {
    layerSel = select("layer", data.layers.map((l) => [l, String(l)]), st.layer, (v) => {
      st.layer = Number(v); update();
    });
    const heads = data.heads.map((h) => [h, String(h)]);
    for (const g of groups) heads.push([g, "heads " + g.replaceAll(",", ", ")]);
    if (data.allHeads) heads.push(["all", "all heads"]);
    for (const a of aggs) heads.push([a, a + " over heads"]);
    headSel = select("head", heads, st.head, (v) => { st.head = headValue(v); update(); });
  }
  if (stepping) {
    const wrap = el("span", "mv-control mv-stepper", null, controls);
    play = el("button", "mv-play", "▶ play", wrap);
    play.type = "button";
    play.addEventListener("click", togglePlay);
    const lab = el("label", null, "step ", wrap);
    slider = el("input", "mv-slider", null, lab);
    Object.assign(slider, { type: "range", min: "0", max: String(data.steps), step: "1" });
    slider.setAttribute("aria-label", "decoding step (0 = the prefill pass)");
    slider.addEventListener("input", () => { st.step = Number(slider.value); update(); say(stepSummary); });
    // shown, not spoken: the slider's value text says it, and a playing page's steps
    // are not announced (an <output> would be a live region)
    stepOut = el("span", "mv-step-out", null, wrap);
    stepOut.setAttribute("aria-hidden", "true");
  }

  // ---------------------------------------------------------------- selection
  function current() {
    const key = st.layer + "/" + st.head;
    const hit = data.select[key] || data.select[Object.keys(data.select)[0]];
    const view = data.views[hit[0]];
    return { view, panels: hit[1].map((i) => view.panels[i]) };
  }
  // the value of ``list`` nearest to ``v`` (the first when v is not a number)
  const nearest = (list, v) => (Number.isFinite(v)
    ? list.reduce((a, b) => (Math.abs(b - v) < Math.abs(a - v) ? b : a)) : list[0]);
  function clampState() {
    if (!data.layers.includes(st.layer)) st.layer = nearest(data.layers, st.layer);
    if (st.head === "all" ? !data.allHeads : typeof st.head === "string" && !named(st.head)) {
      st.head = data.heads[0];
    } else if (typeof st.head === "number" && !data.heads.includes(st.head)) {
      st.head = nearest(data.heads, st.head);
    }
    st.step = Math.max(0, Math.min(data.steps, Math.round(st.step) || 0));
  }
  function readHash() {
    if (!data.standalone) return;
    const h = new URLSearchParams(location.hash.replace(/^#/, ""));
    if (h.has("layer")) st.layer = Number(h.get("layer"));
    if (h.has("head")) st.head = headValue(h.get("head"));
    if (h.has("step")) st.step = Number(h.get("step"));
  }
  function writeHash() {
    if (!data.standalone || !(many || stepping)) return;
    // a page of one view has no layer or head to choose: its link names none
    const h = "#" + [many ? "layer=" + st.layer + "&head=" + st.head : "",
      stepping ? "step=" + st.step : ""].filter(Boolean).join("&");
    if (location.hash !== h) history.replaceState(null, "", h);
  }
  const lastRow = (n) => (stepping ? Math.min(n - 1, data.stepsFrom - 1 + st.step) : n - 1);

  // ---------------------------------------------------------------- drawing
  const FONT = "11px ui-monospace, Menlo, Consolas, monospace";
  const BOX_W = 300, GAP = 24; // the step box beside a map: its width, the space between
  // fitting a window's height never makes a map smaller than 300 px or 2 px a cell
  const MIN_TALL = 300;
  let fit = null; // what a map is fitted to the window's height by: { above, box }, or none
  // the heights a map may take with the step box under it and beside it, and whether the
  // box would not fit under the least map
  function heights(f) {
    if (!f) return [Infinity, Infinity, false];
    const high = window.innerHeight - f.above;
    return [Math.max(MIN_TALL, high - f.box), Math.max(MIN_TALL, high), high - f.box < MIN_TALL];
  }
  const NOTE_CELL = 12; // rows this tall or taller hold an 11 px note apart from the next
  const measure = document.createElement("canvas").getContext("2d");
  measure.font = FONT;
  const textWidth = (s) => Math.ceil(measure.measureText(s).width);
  const label = (panel, i) => {
    const l = pool[panel.labels][i];
    return l ? String(i + base) + " " + l : String(i + base);
  };
  // what the axes and tooltips name a position: its token only once it exists
  const shown = (panel, i) => (i <= lastRow(panel.n) ? label(panel, i) : String(i + base));
  const axisLabel = (panel, i, cell) => (cell >= 10 ? shown(panel, i) : String(i + base));
  // a heatmap's margins: row labels (as wide as the longest) and notes beside the rows
  // without labels, a 2 px margin keeps the frame's top and left edges on the canvas
  function margins(panel, kind, cell, withLabels, withNotes) {
    const notes = rowsMap(panel.notes);
    // measured once per label set: the layout tries several cell sizes (full labels,
    // even for tokens not generated yet, so that stepping never moves the map)
    const full = cell >= 10;
    const labelW = withLabels ? once("w" + panel.labels + full, () => Math.max(
      ...pool[panel.labels].map((_, i) => textWidth(full ? label(panel, i) : String(i + base))))) + 6 : 2;
    // notes beside their rows only where a row is taller than their font (and only
    // when the page has room for them); the tooltip gives them at any size
    const notesW = withLabels && withNotes && kind !== "delta" && notes.size && cell >= NOTE_CELL
      ? Math.max(...[...notes.values()].map(textWidth)) + 8 : 0;
    return { labelW, notesW, width: labelW + panel.n * cell + notesW + 2 };
  }

  // a masked cell: the mask forbids it (on a |Δ| map: neither side attends there);
  // s0: the left panel's states, which a |Δ| map also reads
  const maskedCell = (kind, i, s, s0) => (kind === "delta"
    ? s[i] !== ALLOWED && s0[i] !== ALLOWED
    : s[i] !== ALLOWED && s[i] !== EVICTED && s[i] !== NOT_YET);
  // a map's colours, RGB triples: 0..255 its ramp (weights: viridis, |Δ|: inferno), then
  // the fixed colours; each cell is one entry, so a redraw makes no colour of its own
  const PENDING = 256, MASKED = 257, EVICTED_BIG = 258, EVICTED_SMALL = 259, MAY = 260;
  function palette(kind) {
    return once("palette" + kind, () => {
      const out = new Uint8Array(3 * 261);
      if (kind !== "mask") out.set(lut(kind === "delta" ? C.inferno : C.viridis));
      const fixed = [C.pending, C.masked, C.evicted, C.evictedSmall, data.allowedColor];
      fixed.forEach((hex, j) => { if (hex) out.set(rgb(hex), 3 * (PENDING + j)); });
      return out;
    });
  }
  // the entry of a cell neither pending nor masked (masked cells are dotted over, see `dots`)
  function cellEntry(kind, i, s, w, d, small) {
    if (kind === "delta") {
      const floor = Math.log10(C.diffFloor);
      const t = (Math.log10(Math.max(d[i], C.diffFloor)) - floor) / -floor;
      return Math.max(0, Math.min(255, Math.round(255 * t)));
    }
    // hatched over when cells are big enough; else flat, darker: visible on the page
    if (s[i] === EVICTED) return small ? EVICTED_SMALL : EVICTED_BIG;
    if (s[i] === NOT_YET) return PENDING; // nothing there yet: blank, not masked
    if (kind === "mask") return MAY;
    return Math.round(255 * w[i]);
  }

  // the figures' masked cells: light grey dotted with darker grey ("...."), so that
  // masked never passes for a weight, even printed in grey. A tile of two dots, one
  // device pixel each way per CSS pixel, anchored to the canvas: continuous across cells
  function dots(ctx) {
    const k = Math.max(1, Math.round(window.devicePixelRatio || 1));
    const tile = once("dots" + k, () => {
      const t = document.createElement("canvas");
      t.width = t.height = 4 * k;
      const g = t.getContext("2d");
      g.fillStyle = C.masked;
      g.fillRect(0, 0, 4 * k, 4 * k);
      g.fillStyle = C.maskedDots;
      g.fillRect(k, k, k, k);
      g.fillRect(3 * k, 3 * k, k, k);
      return t;
    });
    const pattern = ctx.createPattern(tile, "repeat");
    const scale = ctx.getTransform().a; // the canvas's device pixels per CSS pixel
    pattern.setTransform(new DOMMatrix().scale(1 / scale));
    return pattern;
  }
  // evicted keys' hatching: a dark magenta "/" across each cell
  function hatch(ctx, x, y, cell) {
    ctx.moveTo(x, y + cell);
    ctx.lineTo(x + cell, y);
  }

  function drawPanel(fig, panel, view, kind, cell, withLabels, withNotes) {
    const n = panel.n, s = statesOf(panel);
    const w = kind === "weights" ? weightsOf(panel) : null;
    const d = kind === "delta" ? deltaOf(view) : null;
    const last = lastRow(n);
    const notes = rowsMap(panel.notes);
    const { labelW, notesW } = margins(panel, kind, cell, withLabels, withNotes);
    const left = labelW, top = labelW, side = n * cell;
    const cssW = left + side + notesW + 2, cssH = top + side + 2;
    const canvas = el("canvas", "mv-canvas", null, fig);
    const dpr = window.devicePixelRatio || 1;
    canvas.width = Math.ceil(cssW * dpr);
    canvas.height = Math.ceil(cssH * dpr);
    canvas.style.width = cssW + "px";
    canvas.style.height = cssH + "px";
    canvas.tabIndex = 0;
    canvas.setAttribute("role", "img");
    // named as its caption is ("layer 1 · head 2"), not by the panel alone
    const caption = fig.querySelector("figcaption").textContent;
    canvas.setAttribute("aria-label", caption + ": focus and use the arrow keys to read cells");
    Object.assign(canvas.dataset, { n: String(n), cell: String(cell), left: String(left), top: String(top) });
    const ctx = canvas.getContext("2d");
    ctx.scale(dpr, dpr);
    // one pixel per cell, scaled up without smoothing: fast at any size
    const img = new ImageData(n, n), px = img.data;
    const small = cell < C.smallCell, colors = palette(kind);
    const s0 = kind === "delta" ? statesOf(view.panels[0]) : null;
    ctx.beginPath(); // the masked cells, a rectangle per run in a row, to dot
    for (let r = 0; r < n; r++) {
      let from = -1;
      for (let c = 0; c <= n; c++) {
        const i = r * n + c, pending = r > last || c > last;
        const masked = c < n && !pending && maskedCell(kind, i, s, s0);
        if (c < n) {
          const k = 3 * (pending ? PENDING : masked ? MASKED : cellEntry(kind, i, s, w, d, small));
          px[4 * i] = colors[k];
          px[4 * i + 1] = colors[k + 1];
          px[4 * i + 2] = colors[k + 2];
          px[4 * i + 3] = 255;
        }
        if (masked && from < 0) from = c;
        if (!masked && from >= 0) {
          ctx.rect(left + from * cell, top + r * cell, (c - from) * cell, cell);
          from = -1;
        }
      }
    }
    const off = document.createElement("canvas");
    off.width = n; off.height = n;
    off.getContext("2d").putImageData(img, 0, 0);
    ctx.imageSmoothingEnabled = false;
    ctx.drawImage(off, left, top, side, side);
    ctx.fillStyle = dots(ctx);
    ctx.fill();
    ctx.strokeStyle = "#808080"; // a frame: keys not reached yet are white like the page
    ctx.lineWidth = 1;
    ctx.strokeRect(left - 0.5, top - 0.5, side + 1, side + 1);
    // evicted keys are hatched: told apart from masked without colour (not on a |Δ| map,
    // where, as in the figures, a key neither side attends is masked)
    if (!small && kind !== "delta") {
      ctx.strokeStyle = C.evictedHatch;
      ctx.lineWidth = 1;
      ctx.beginPath();
      for (let r = 0; r <= last; r++) {
        for (let c = 0; c <= last; c++) {
          if (s[r * n + c] === EVICTED) hatch(ctx, left + c * cell, top + r * cell, cell);
        }
      }
      ctx.stroke();
    }
    for (const [index] of panel.marks) {
      if (index <= 0 || index >= n) continue;
      ctx.strokeStyle = C.boundary; // orange, as the figures: seen on dark cells and grey
      ctx.setLineDash([4, 3]);
      ctx.lineWidth = 1.5;
      ctx.beginPath();
      ctx.moveTo(left, top + index * cell); ctx.lineTo(left + side, top + index * cell);
      ctx.moveTo(left + index * cell, top); ctx.lineTo(left + index * cell, top + side);
      ctx.stroke();
    }
    ctx.setLineDash([]);
    const hl = stepping ? last : panel.highlight;
    if (hl !== null && hl !== undefined) {
      // the prefill computes every prompt row at once; a decoding step one row
      const from = stepping && st.step === 0 ? 0 : hl;
      ctx.strokeStyle = C.highlight;
      ctx.lineWidth = 2;
      ctx.strokeRect(left - 1, top + from * cell, side + 2, (hl - from + 1) * cell);
    }
    ctx.fillStyle = "#222222";
    ctx.font = FONT;
    if (withLabels) {
      ctx.textBaseline = "middle";
      const every = Math.max(1, Math.ceil(12 / cell));
      for (let i = 0; i < n; i += every) {
        const t = axisLabel(panel, i, cell);
        ctx.textAlign = "right";
        ctx.fillText(t, left - 4, top + (i + 0.5) * cell);
        ctx.save();
        ctx.translate(left + (i + 0.5) * cell, top - 4);
        ctx.rotate(-Math.PI / 2);
        ctx.textAlign = "left";
        ctx.fillText(t, 0, 0);
        ctx.restore();
      }
      if (notesW) {
        ctx.textAlign = "left";
        for (const [r, note] of notes) {
          if (r <= last) ctx.fillText(note, left + side + 6, top + (r + 0.5) * cell);
        }
      }
    }
    // the reading cursor starts on the step's row and stays where the keys moved it,
    // across steps, heads and layers
    const cursor = () => (st.cursor
      ? { r: Math.min(st.cursor.r, n - 1), c: Math.min(st.cursor.c, n - 1) }
      : { r: hl ?? n - 1, c: 0 });
    // the cell at a point of the window, or null
    const cellAt = (x, y) => {
      const box = canvas.getBoundingClientRect();
      const r = Math.floor((y - box.top - top) / cell), c = Math.floor((x - box.left - left) / cell);
      return r >= 0 && c >= 0 && r < n && c < n ? { r, c } : null;
    };
    // a redraw asks again for the pointer's last position, so a parked pointer keeps its
    // tooltip while steps play
    canvas.tipAt = (x, y) => {
      const hit = cellAt(x, y);
      if (hit) showTip(canvas, panel, view, kind, hit.r, hit.c); else hideTip();
    };
    canvas.addEventListener("mousemove", (e) => {
      hover = { map: [...figures.querySelectorAll("canvas")].indexOf(canvas), x: e.clientX, y: e.clientY };
      canvas.tipAt(e.clientX, e.clientY);
    });
    canvas.addEventListener("mouseleave", () => { hover = null; hideTip(); });
    // a click or a tap puts the reading cursor on its cell: the focus that follows
    // shows the cursor's cell, and the arrow keys move on from there
    canvas.addEventListener("pointerdown", (e) => {
      const hit = e.button === 0 ? cellAt(e.clientX, e.clientY) : null; // not a right click
      if (hit) st.cursor = hit;
    });
    canvas.addEventListener("focus", () => {
      const { r, c } = cursor();
      showTip(canvas, panel, view, kind, r, c);
      if (!refocusing) say(tip.textContent); // not when a redraw puts the focus back
    });
    canvas.addEventListener("blur", hideTip);
    canvas.addEventListener("keydown", (e) => {
      const move = { ArrowUp: [-1, 0], ArrowDown: [1, 0], ArrowLeft: [0, -1], ArrowRight: [0, 1] }[e.key];
      if (!move) return;
      e.preventDefault();
      e.stopPropagation();
      const { r, c } = cursor();
      st.cursor = { r: Math.max(0, Math.min(n - 1, r + move[0])),
                    c: Math.max(0, Math.min(n - 1, c + move[1])) };
      showTip(canvas, panel, view, kind, st.cursor.r, st.cursor.c);
      say(tip.textContent);
      cursorBox.scrollIntoView({ block: "nearest", inline: "nearest" });  // on narrow screens
    });
    return canvas;
  }

  // ---------------------------------------------------------------- tooltip
  function stateText(panel, view, r, c, s) {
    const last = lastRow(panel.n);
    if (r > last) return "not computed yet at step " + st.step;
    if (c > last) return "not generated yet at step " + st.step;
    const v = s[r * panel.n + c];
    if (v === ALLOWED) return stepping && r >= data.stepsFrom ? "allowed (in the KV cache)" : "allowed";
    if (v === EVICTED) return "evicted from the rolling KV cache (sliding window " + view.window + ")";
    if (v === NOT_YET) return "not generated yet when this query ran: nothing to mask";
    if (panel.reasons) { // a mask page: why, worked out from the mask
      const why = panel.reasons.texts[reasonsOf(panel)[r * panel.n + c]];
      return why ? "masked: " + why : "masked";
    }
    const pads = view.pads || []; // padding first: a padded row masks every key
    if (pads.includes(c) || pads.includes(r)) return "masked: padding";
    if (c > r) return "masked: future (key after query)";
    if (view.window && c <= r - view.window) return "masked: outside the sliding window " + view.window;
    return "masked";
  }
  // as Python's format(x, ".2e") writes it, like the page's other text: 1.90e-03
  const sci = (x, digits) => x.toExponential(digits).replace(/e([+-])(\d)$/, "e$10$2");
  function fmtWeight(x) {
    // below what the stored precision can tell from zero, say so rather than print 0
    if (data.q > 255) return x >= 0.00005 ? x.toFixed(4) : "< 0.0001";
    return x >= 0.002 ? "≈" + x.toFixed(3) : "< 0.002";
  }
  function tipText(panel, view, kind, r, c) {
    const lines = ["query " + shown(panel, r), "key " + shown(panel, c)];
    const s = statesOf(panel);
    const i = r * panel.n + c;
    if (kind === "delta") {
      const [a, b] = view.panels;
      const sa = statesOf(a), sb = statesOf(b);
      const tol = view.tolerance ? " (tolerance " + sci(view.tolerance, 1) + ")" : "";
      const computed = sa[i] === ALLOWED || sb[i] === ALLOWED;
      lines.push(computed ? "|Δ| " + sci(deltaOf(view)[i], 2) + tol
        : "|Δ| none: neither side attends here");
      lines.push(a.title + ": " + (sa[i] === ALLOWED ? fmtWeight(weightsOf(a)[i]) : stateText(a, view, r, c, sa)));
      lines.push(b.title + ": " + (sb[i] === ALLOWED ? fmtWeight(weightsOf(b)[i]) : stateText(b, view, r, c, sb)));
      return lines.join("\n");
    }
    const state = stateText(panel, view, r, c, s);
    if (kind === "weights" && s[i] === ALLOWED && !state.startsWith("not")) {
      lines.push("weight " + fmtWeight(weightsOf(panel)[i]));
    }
    // the row's note (next token, its max |Δ|, ...): beside the row only when rows are
    // tall enough, so here at any size; a comparison's belong to the row, both sides
    const note = rowsMap((view.delta ? view.panels[1] : panel).notes).get(r);
    if (note && r <= lastRow(panel.n)) lines.push((view.notesLabel || "") + note.replace(/^◀ /, ""));
    lines.push(state);
    return lines.join("\n");
  }
  function showTip(canvas, panel, view, kind, r, c) {
    tip.textContent = tipText(panel, view, kind, r, c);
    tip.hidden = false;
    const cell = Number(canvas.dataset.cell);
    // in the root's content coordinates: the root scrolls when the page is narrow
    const box = canvas.getBoundingClientRect(), rb = root.getBoundingClientRect();
    const cellTop = box.top + Number(canvas.dataset.top) + r * cell;  // in the window
    const x = box.left - rb.left + root.scrollLeft + Number(canvas.dataset.left) + c * cell;
    const y = cellTop - rb.top + root.scrollTop;
    const right = root.scrollLeft + root.clientWidth - tip.offsetWidth - 4;
    const below = cellTop + cell + 8 + tip.offsetHeight <= window.innerHeight
      || cellTop - 8 - tip.offsetHeight < 0;
    tip.style.left = Math.max(root.scrollLeft, Math.min(x + cell + 8, right)) + "px";
    tip.style.top = (below ? y + cell + 8 : y - 8 - tip.offsetHeight) + "px";
    Object.assign(cursorBox.style, { left: x - 1 + "px", top: y - 1 + "px",
                                     width: cell + 2 + "px", height: cell + 2 + "px" });
    cursorBox.hidden = false;
    tip.dataset.row = String(r + base);
    tip.dataset.key = String(c + base);
    if (data.rows && !stepping && st.focusRow !== r) { st.focusRow = r; drawStepBox(current().view); }
  }
  function hideTip() { tip.hidden = true; cursorBox.hidden = true; }

  // ---------------------------------------------------------------- text parts
  // the step box, and what `say` tells of the step: its number and the row's choice
  let stepSummary = "";
  function drawStepBox(view) {
    stepBox.textContent = "";
    const panel = view.panels[view.panels.length - 1];
    const n = panel.n;
    const r = stepping ? lastRow(n) : (st.focusRow ?? n - 1);
    const head = stepping
      ? (st.step === 0 ? "prefill" : "step " + st.step + " of " + data.steps)
      : "row " + (r + base);
    stepSummary = head;
    if (!data.rows) { stepBox.hidden = true; return; }
    stepBox.hidden = false;
    const details = rowsMap(panel.details);
    el("p", "mv-step-head", head, stepBox);
    if (details.has(r)) el("p", null, details.get(r), stepBox);
    const row = data.rows[r];
    const chose = row.next ? "→ " + row.next[0] + " " + pct(row.next[1]) : "(the run stopped here)";
    const query = "query " + label(panel, r) + " " + chose;
    stepSummary = head + ": " + query;
    el("p", null, query, stepBox);
    const list = el("ol", "mv-topk", null, stepBox);
    list.setAttribute("aria-label", "likeliest next tokens");
    for (const [tok, pr] of row.top) {
      const li = el("li", null, null, list);
      const bar = el("span", "mv-bar", null, li);
      bar.style.width = Math.max(1, Math.round(80 * pr)) + "px";
      el("span", null, " " + tok + " " + pct(pr), li);
    }
  }
  const pct = (x) => (x >= 0.995 ? (100 * x).toFixed(0) : x >= 0.001 ? (100 * x).toFixed(1) : "<0.1") + "%";

  function drawText(view) {
    header.textContent = "";
    for (const line of view.header) el("p", null, line, header);
    footer.textContent = "";
    for (const line of view.footer) el("p", null, line, footer);
    verdict.textContent = "";
    verdict.hidden = !view.verdict;
    if (view.verdict) {
      verdict.textContent = (view.verdict[1] ? "✓ " : "✗ ") + view.verdict[0];
      verdict.className = "mv-verdict " + (view.verdict[1] ? "mv-good" : "mv-bad");
    }
    tables.textContent = "";
    for (const t of view.tables) {
      const table = el("table", "mv-table", null, tables);
      el("caption", null, t.title, table);
      const hr = el("tr", null, null, el("thead", null, null, table));
      for (const c of t.columns) el("th", null, c, hr);
      const tb = el("tbody", null, null, table);
      for (const row of t.rows) {
        const tr = el("tr", null, null, tb);
        row.forEach((v, i) => el(i ? "td" : "th", null, v, tr));
      }
    }
  }

  // a legend key drawn as the heatmaps draw what it names: a cell, a dashed line, an
  // outline; ``paint(ctx, w, h)`` draws it on a ``w`` x 12 canvas
  function key(parent, text, paint, w = 14) {
    const item = el("span", "mv-key", null, parent);
    const c = el("canvas", "mv-swatch", null, item);
    const dpr = window.devicePixelRatio || 1;
    c.width = Math.ceil(w * dpr); c.height = Math.ceil(14 * dpr);
    c.style.width = w + "px"; c.style.height = "14px";
    const ctx = c.getContext("2d");
    ctx.scale(dpr, dpr);
    paint(ctx, w, 14);
    el("span", null, " " + text, item);
  }
  // a cell of ``color`` (or a pattern), framed in grey as the page's white is
  const cellKey = (color, over) => (ctx, w, h) => {
    ctx.fillStyle = color === "dots" ? dots(ctx) : color;
    ctx.fillRect(1, 1, w - 2, h - 2);
    if (over) over(ctx, w, h);
    ctx.strokeStyle = "#999999"; ctx.lineWidth = 1;
    ctx.strokeRect(0.5, 0.5, w - 1, h - 1);
  };
  const hatchedKey = (ctx, w, h) => { // four cells of 6 px, hatched as the maps' are
    ctx.strokeStyle = C.evictedHatch; ctx.lineWidth = 1;
    ctx.beginPath();
    for (let y = 1; y < h - 1; y += 6) for (let x = 1; x < w - 1; x += 6) hatch(ctx, x, y, 6);
    ctx.stroke();
  };
  const dashedKey = (ctx, w, h) => {
    ctx.strokeStyle = C.boundary; ctx.lineWidth = 1.5; ctx.setLineDash([4, 3]);
    ctx.beginPath(); ctx.moveTo(0, h / 2); ctx.lineTo(w, h / 2); ctx.stroke();
  };
  const outlineKey = (ctx, w, h) => {
    ctx.strokeStyle = C.highlight; ctx.lineWidth = 2;
    ctx.strokeRect(1, 3, w - 2, h - 6);
  };
  function ramp(parent, hex, from, to, text) {
    const item = el("span", "mv-key", null, parent);
    el("span", null, from + " ", item);
    const c = el("canvas", "mv-ramp", null, item);
    c.width = 128; c.height = 1;
    const ctx = c.getContext("2d"), L = lut(hex);
    for (let i = 0; i < 128; i++) {
      ctx.fillStyle = "rgb(" + L[6 * i] + "," + L[6 * i + 1] + "," + L[6 * i + 2] + ")";
      ctx.fillRect(i, 0, 1, 1);
    }
    el("span", null, " " + to + " " + text, item);
  }
  function drawLegend(view, panels, cell) {
    legend.textContent = "";
    if (data.kind === "mask") key(legend, "may attend", cellKey(data.allowedColor));
    else ramp(legend, C.viridis, "0", "1", "attention weight");
    // a large page keeps its weights in 8 bits (see the tooltips' ≈)
    if (data.kind !== "mask" && data.q <= 255) el("span", "mv-key", "weights kept to ±0.002 (8 bits)", legend);
    if (view.delta) ramp(legend, C.inferno, "≤1e-12", "1", "|left − right|");
    key(legend, "masked (not allowed)", cellKey("dots"));
    const present = (state) => panels.some((p) => statesOf(p).includes(state));
    if (present(EVICTED)) {
      // as drawn at this size: hatched, or flat where cells are too small to hatch
      const small = cell < C.smallCell;
      key(legend, "evicted from the rolling KV cache",
          small ? cellKey(C.evictedSmall) : cellKey(C.evicted, hatchedKey));
    }
    if (stepping || present(NOT_YET)) key(legend, "not generated yet", cellKey(C.pending));
    const kinds = [];
    for (const p of panels) {
      for (const [index, mk] of p.marks) {
        if (index > 0 && index < p.n && !kinds.includes(mk)) kinds.push(mk);
      }
    }
    for (const mk of kinds) key(legend, data.markLabels[mk] || mk, dashedKey, 24);
    const outlined = stepping || panels.some((p) => p.highlight !== null && p.highlight !== undefined);
    if (outlined) {
      const rows = st.step === 0 ? "the rows the prefill computes (the prompt)" : "the row this step computes";
      key(legend, stepping ? rows : data.highlightText || "highlighted query row", outlineKey, 20);
    }
  }

  // ---------------------------------------------------------------- update
  function update() {
    clampState();
    const { view, panels } = current();
    const focused = [...figures.querySelectorAll("canvas")].indexOf(document.activeElement);
    figures.textContent = "";
    hideTip();
    const all = several();
    const kind = data.kind === "mask" ? "mask" : "weights";
    const n = Math.max(...panels.map((p) => p.n));
    const perRow = all ? Math.min(panels.length, 4) : view.delta ? 3 : view.sideBySide ? panels.length : 1;
    // one map alone grows with long sequences (at most 4 px a cell, up to 1024 px)
    const target = all ? 200 : perRow >= 3 ? 300 : perRow === 2 ? 420 : Math.max(560, Math.min(4 * n, 1024));
    const largest = Math.max(1, Math.min(18, Math.floor(target / n)));
    // every map, its labels and notes fit the page's width (a phone's too); maps wrap.
    // Notes go before the cells shrink below their size: the tooltip still gives them.
    // One map alone on a saved page also fits the window's height with the step box (a
    // projector's 768 px): under the map, or beside it where that leaves larger cells or
    // the box would not fit under. Heights take the step's box at its tallest, so that
    // stepping never resizes the map. (A notebook's output may grow with what it holds,
    // so its window's height says nothing: there, the width alone.)
    drawText(view);
    drawStepBox(view);
    const single = perRow === 1 && !all;
    fit = single && data.standalone ? {
      // above the map: title, text and controls, then its caption and the page's margin
      above: figures.getBoundingClientRect().top - root.getBoundingClientRect().top + 40,
      box: data.rows ? (4 + data.rows[0].top.length) * 19 + 30 : 0,
    } : null;
    const [tallUnder, tallAside, cramped] = heights(fit);
    function layout(room, tall) {
      const fits = (c, withNotes) => panels.every((p) => {
        const m = margins(p, kind, c, !all || c >= 10, withNotes);
        return m.width <= room && (c <= 2 || m.labelW + p.n * c <= tall);
      });
      let c = largest;
      while (c > NOTE_CELL && !fits(c, true)) c--;
      if (fits(c, true)) return { cell: c, notes: true };
      c = largest;
      while (c > 1 && !fits(c, false)) c--;
      return { cell: c, notes: false };
    }
    const room = stage.clientWidth;
    const under = layout(room, tallUnder);
    const aside = fit && data.rows ? layout(room - BOX_W - GAP, tallAside) : under;
    const beside = aside !== under && (aside.cell > under.cell || (aside.cell === under.cell && cramped));
    stage.classList.toggle("mv-beside", beside);
    Object.assign(stepBox.style, { width: beside ? BOX_W + "px" : "" });
    Object.assign(stage.style, { columnGap: beside ? GAP + "px" : "" });
    const { cell, notes } = beside ? aside : under;
    const figure = (title) => {
      const f = el("figure", "mv-figure", null, figures);
      el("figcaption", null, title, f);
      return f;
    };
    panels.forEach((p) => {
      const f = figure(all ? p.title : data.kind === "trace" ? "layer " + st.layer + " · " + p.title : p.title);
      const canvas = drawPanel(f, p, view, kind, cell, !all || cell >= 10, notes);
      if (all) {
        canvas.title = "open " + p.title + " (click or Enter)";
        const layer = data.kind === "trace" ? "layer " + st.layer + " · " : "";
        canvas.setAttribute("aria-label", layer + p.title + ": Enter opens it; the arrow keys read its cells");
        const open = () => { st.head = Number(p.title.replace(/^head /, "")); update(); };
        canvas.addEventListener("click", open);
        canvas.addEventListener("keydown", (e) => { if (e.key === "Enter") open(); });
      }
    });
    if (view.delta) {
      const f = figure("|left − right|");
      drawPanel(f, view.panels[1], view, "delta", cell, true, false);
    }
    // the focus stays on the map it was on, or the nearest left (opening one head of
    // "all heads" leaves one map: it takes the focus, not the page's body)
    const maps = figures.querySelectorAll("canvas");
    if (focused >= 0 && maps.length) {
      refocusing = true;
      maps[Math.min(focused, maps.length - 1)].focus({ preventScroll: true });
      refocusing = false;
    }
    if (hover && maps[hover.map]) maps[hover.map].tipAt(hover.x, hover.y);
    drawLegend(view, panels, cell);
    if (layerSel) layerSel.value = String(st.layer);
    if (headSel) headSel.value = String(st.head);
    if (slider) {
      slider.value = String(st.step);
      stepOut.textContent = st.step === 0 ? "prefill" : st.step + " / " + data.steps;
      slider.setAttribute("aria-valuetext", st.step === 0 ? "prefill" : "step " + st.step + " of " + data.steps);
    }
    if (many) Object.assign(root.dataset, { layer: String(st.layer), head: String(st.head) });
    root.dataset.step = String(st.step);
    writeHash();
    drawn = [stage.clientWidth, window.devicePixelRatio, ...heights(fit)];
    root.dataset.maskvizReady = "1";
  }

  function togglePlay() {
    if (st.timer) {
      clearInterval(st.timer);
      st.timer = null;
      say(stepSummary); // where it stopped; the steps played by are not spoken
    } else {
      if (st.step >= data.steps) st.step = 0;
      st.timer = setInterval(() => {
        st.step += 1;
        update();
        if (st.step >= data.steps) togglePlay(); // the last step: "▶ play" at once
      }, 700);
      update();
    }
    play.textContent = st.timer ? "❚❚ pause" : "▶ play";  // the label says what a press does
  }

  // arrow keys move the step anywhere in the viewer except where they already mean
  // something: a select, the slider (native), a focused heatmap (moves the cell)
  root.addEventListener("keydown", (e) => {
    if (!stepping || e.defaultPrevented) return;
    const t = e.target;
    if (t === slider || t.tagName === "SELECT" || t.tagName === "CANVAS") return;
    const delta = { ArrowLeft: -1, ArrowDown: -1, ArrowRight: 1, ArrowUp: 1 }[e.key];
    if (delta !== undefined) st.step += delta;
    else if (e.key === "Home") st.step = 0;
    else if (e.key === "End") st.step = data.steps;
    else return;
    e.preventDefault();
    update();
    say(stepSummary);
  });
  if (data.standalone) window.addEventListener("hashchange", () => { readHash(); update(); });
  let drawn = [0, 0], pending = 0;
  window.addEventListener("resize", () => {
    clearTimeout(pending);
    pending = setTimeout(() => {
      // a window's height matters only where it changes what a map may take (a phone's
      // browser bar coming and going leaves a map at its least alone)
      const now = [stage.clientWidth, window.devicePixelRatio, ...heights(fit)];
      if (now.some((v, i) => v !== drawn[i])) update();
    }, 150);
  });
  readHash();
  update();
}
