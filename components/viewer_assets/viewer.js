// MosMed stack viewer: st.components.v2 ES module. The default export runs on EVERY render (each rerun
// re-delivers `data`), so all state lives in one instance object per mount point; a render whose stack key
// is unchanged only updates style / navigation, it never re-decodes.
//
// Payload (see components/viewer.py): "MSV1" | u32 LE header length | JSON header | image blobs.

const INSTANCES = new WeakMap();
const LINK_EVENT = "msv-link";
// Exposed for benchmarks and browser tests: latency of input event -> slice painted (ms), bounded.
// `stacks`: one record per decoded stack (performance.now() times: payload rendered, first slice painted,
// whole stack decoded), so a benchmark can time a study switch or a window change from its own click.
const STATS = (window.__msvStats = window.__msvStats ||
  { latencies: [], paints: 0, firstPaintMs: [], stacks: [], renders: 0, lightRenders: 0, needs: 0 });
const DECODE_PARALLEL = 8;

function parsePayload(data) {
  let u8 = data;
  if (data instanceof ArrayBuffer) u8 = new Uint8Array(data);
  if (!(u8 instanceof Uint8Array) || u8.length < 8) throw new Error("viewer: no payload");
  const magic = String.fromCharCode(u8[0], u8[1], u8[2], u8[3]);
  if (magic !== "MSV1") throw new Error("viewer: bad payload");
  const n = new DataView(u8.buffer, u8.byteOffset + 4, 4).getUint32(0, true);
  const header = JSON.parse(new TextDecoder().decode(u8.subarray(8, 8 + n)));
  return { header, blobs: u8.subarray(8 + n) };
}

function el(tag, cls, parent, text) {
  const e = document.createElement(tag);
  if (cls) e.className = cls;
  if (text !== undefined) e.textContent = text; // textContent only: nothing from data is parsed as HTML
  if (parent) parent.appendChild(e);
  return e;
}

function blobOf(blobs, ref, type) {
  return new Blob([blobs.subarray(ref[0], ref[0] + ref[1])], { type });
}

function buildDom(root) {
  const ui = {};
  ui.root = el("div", "msv", root);
  ui.root.tabIndex = 0;
  ui.root.setAttribute("role", "application");
  ui.root.setAttribute("aria-label", "CT slice viewer: wheel or arrow keys change the slice");
  const main = el("div", "msv-main", ui.root);
  ui.stage = el("div", "msv-stage", main);
  ui.canvas = el("canvas", "msv-axial", ui.stage);
  ui.canvas.setAttribute("data-testid", "msv-axial");
  for (const [c, t] of [["t", "A"], ["b", "P"], ["l", "R"], ["r", "L"]]) el("div", "msv-lbl " + c, ui.stage, t);
  ui.tl = el("div", "msv-info tl", ui.stage);
  ui.tr = el("div", "msv-info tr", ui.stage);
  ui.bl = el("div", "msv-info bl", ui.stage);
  ui.br = el("div", "msv-info br", ui.stage);
  ui.loading = el("div", "msv-loading", ui.stage);
  const bar = el("div", "msv-bar", main);
  ui.prev = el("button", "", bar, "◀");
  ui.prev.title = "Previous slice (down the body)";
  ui.slider = el("input", "msv-slider", bar);
  ui.slider.type = "range";
  ui.slider.min = "1";
  ui.slider.step = "1";
  ui.slider.setAttribute("aria-label", "slice");
  ui.next = el("button", "", bar, "▶");
  ui.next.title = "Next slice (up the body)";
  ui.play = el("button", "", bar, "Play");
  ui.play.title = "Cine (Space)";
  el("span", "msv-fps-lbl", bar, "fps");
  ui.fps = el("input", "msv-fps", bar);
  ui.fps.type = "range";
  ui.fps.min = "1";
  ui.fps.max = "30";
  ui.fps.value = "10";
  ui.fpsVal = el("span", "", bar, "10");
  ui.lesPrev = el("button", "", bar, "◀ lesion");
  ui.lesPrev.title = "Previous slice with lesion";
  ui.lesNext = el("button", "", bar, "lesion ▶");
  ui.lesNext.title = "Next slice with lesion";
  ui.strip = el("canvas", "msv-strip", main);
  ui.strip.title = "Lesion area per slice: click to jump";
  ui.help = el("div", "msv-help", main,
    "Wheel / ↑ ↓ / PgUp PgDn / Home End: move through slices · Space: cine · click: HU at that voxel");
  const side = (ui.side = el("div", "msv-side", ui.root));
  const f1 = el("figure", "", side);
  ui.cor = el("canvas", "", f1);
  ui.corCap = el("figcaption", "", f1);
  const f2 = el("figure", "", side);
  ui.sag = el("canvas", "", f2);
  ui.sagCap = el("figcaption", "", f2);
  return ui;
}

function makeInstance(parentElement) {
  const inst = {
    id: Math.random().toString(36).slice(2),
    ui: buildDom(parentElement),
    header: null,
    blobs: null,
    stack: null,          // {key, n, grey: ImageBitmap[], layers: {name: Map<k, ImageBitmap>}, gen}
    k: 0,
    navSeq: null,
    reportTimer: null,
    lastReported: null,
    pendingEventT: null,
    rafId: null,
    playing: false,
    playLast: 0,
    tints: new Map(),
    probe: null,
    reformat: { key: null, cor: null, sag: null },
    api: {},
    wheelAcc: 0,
  };
  inst.ctx = inst.ui.canvas.getContext("2d");
  inst.tintCanvas = document.createElement("canvas");
  wire(inst);
  return inst;
}

// ------------------------------------------------------------------------------------------ decoding

async function decodeStack(inst, header, blobs) {
  const n = header.n;
  const gen = (inst.stack ? inst.stack.gen : 0) + 1;
  const stack = { key: header.stack_key, n, gen, grey: new Array(n).fill(null), layers: {}, decoded: 0, pending: {},
                  t0: performance.now(), firstPaint: null,
                  rec: { key: header.stack_key, renderT: performance.now(), firstPaintT: null, readyT: null,
                         bytes: blobs.length } };
  STATS.stacks.push(stack.rec);
  if (STATS.stacks.length > 500) STATS.stacks.splice(0, 250);
  const old = inst.stack;
  // The overlay layers do not depend on the window: a window change of the same study keeps them decoded.
  const study = (k) => String(k).split(":")[0];
  const keepLayers = !!(old && study(old.key) === study(header.stack_key) && old.layersDone);
  if (keepLayers) stack.layers = old.layers;
  else for (const name of ["lesion", "lesion_outline", "lung_outline"]) stack.layers[name] = new Map();
  stack.layersDone = keepLayers;
  inst.stack = stack;
  if (old) { // free the previous stack's decoded bitmaps (a study is ~45 x 1 MB of pixels)
    old.grey.forEach((b) => b && b.close && b.close());
    if (!keepLayers) Object.values(old.layers).forEach((m) => m.forEach((b) => b.close && b.close()));
  }
  const type = header.img_type || "image/jpeg";
  const start = Math.min(Math.max(inst.k, 0), n - 1);
  // Current slice first, then outward from it, so the view paints before the stack is decoded.
  const order = [start];
  for (let d = 1; order.length < n; d++) {
    if (start + d < n) order.push(start + d);
    if (start - d >= 0) order.push(start - d);
  }
  const decodeOne = (k) => {
    if (stack.pending[k]) return stack.pending[k];
    stack.pending[k] = (async () => {
      const jobs = [createImageBitmap(blobOf(blobs, header.grey[k], type))];
      const names = [];
      for (const name of ["lesion", "lesion_outline", "lung_outline"]) {
        if (keepLayers) break;
        const ref = header[name] && header[name][String(k)];
        if (ref) { names.push(name); jobs.push(createImageBitmap(blobOf(blobs, ref, "image/png"))); }
      }
      const bmps = await Promise.all(jobs);
      if (inst.stack !== stack) { bmps.forEach((b) => b.close && b.close()); return; } // replaced by a newer stack
      names.forEach((name, i) => stack.layers[name].set(k, bmps[i + 1]));
      stack.grey[k] = bmps[0];
      stack.decoded++;
      inst.ui.loading.style.transform = `scaleX(${1 - stack.decoded / n})`;
      inst.ui.root.dataset.decoded = String(stack.decoded);
      if (k === inst.k) schedulePaint(inst);
    })();
    return stack.pending[k];
  };
  stack.decodeOne = decodeOne;
  await decodeOne(start);
  // The rest through a small pool of parallel decodes (the browser decodes off the main thread), nearest
  // slices first; a pool keeps every decoder busy where fixed batches wait for their slowest member.
  let next = 1;
  const worker = async () => {
    while (next < order.length && inst.stack === stack) await decodeOne(order[next++]);
  };
  await Promise.all(Array.from({ length: DECODE_PARALLEL }, worker));
  if (inst.stack !== stack) return;
  stack.layersDone = true;
  stack.rec.readyT = performance.now();
  inst.ui.loading.style.transform = "scaleX(0)";
  inst.ui.root.dataset.ready = "1";
  drawStrip(inst);
}

async function decodeReformats(inst, header, blobs) {
  const rf = header.reformat || {};
  if (inst.reformat.key === rf.key && inst.reformat.stackKey === header.stack_key) return;
  inst.reformat = { key: rf.key, stackKey: header.stack_key, cor: null, sag: null };
  const mine = inst.reformat;
  const [cor, sag] = await Promise.all([
    header.coronal ? createImageBitmap(blobOf(blobs, header.coronal, "image/jpeg")) : null,
    header.sagittal ? createImageBitmap(blobOf(blobs, header.sagittal, "image/jpeg")) : null,
  ]);
  if (inst.reformat !== mine) return;
  mine.cor = cor;
  mine.sag = sag;
  drawSide(inst);
}

// ------------------------------------------------------------------------------------------ painting

function tinted(inst, name, k, bmp, color) {
  const key = `${name}|${k}|${color}`;
  let c = inst.tints.get(key);
  if (c) return c;
  c = document.createElement("canvas");
  c.width = bmp.width;
  c.height = bmp.height;
  const g = c.getContext("2d");
  g.drawImage(bmp, 0, 0);
  g.globalCompositeOperation = "source-in"; // keep the layer's shape, take the colour
  g.fillStyle = color;
  g.fillRect(0, 0, c.width, c.height);
  if (inst.tints.size > 400) inst.tints.clear();
  inst.tints.set(key, c);
  return c;
}

function schedulePaint(inst, eventT) {
  if (eventT !== undefined && inst.pendingEventT === null) inst.pendingEventT = eventT;
  if (inst.rafId !== null) return;
  inst.rafId = requestAnimationFrame(() => {
    inst.rafId = null;
    paint(inst);
  });
}

function paint(inst) {
  const h = inst.header, st = inst.stack;
  if (!h || !st) return;
  const k = inst.k, ui = inst.ui, ctx = inst.ctx;
  const bmp = st.grey[k];
  if (!bmp && st.decodeOne) st.decodeOne(k); // jumped ahead of the background decoder: this slice next
  if (bmp) {
    ctx.globalAlpha = 1;
    ctx.drawImage(bmp, 0, 0, ui.canvas.width, ui.canvas.height);
    const s = h.style || {};
    if (s.show_lung) {
      const lb = st.layers.lung_outline.get(k);
      if (lb) { ctx.globalAlpha = 0.9; ctx.drawImage(tinted(inst, "lung", k, lb, s.lung_color), 0, 0, ui.canvas.width, ui.canvas.height); }
    }
    if (s.show_mask && h.has_mask) {
      const name = s.mode === "outline" ? "lesion_outline" : "lesion";
      const mb = st.layers[name].get(k);
      if (mb) {
        ctx.globalAlpha = s.mode === "outline" ? Math.max(0.6, s.opacity) : s.opacity;
        ctx.drawImage(tinted(inst, name, k, mb, s.color), 0, 0, ui.canvas.width, ui.canvas.height);
      }
    }
    ctx.globalAlpha = 1;
    if (inst.probe && inst.probe.z === k) {
      const sx = ui.canvas.width / h.width, sy = ui.canvas.height / h.height;
      const x = (inst.probe.col + 0.5) * sx, y = (inst.probe.row + 0.5) * sy;
      ctx.strokeStyle = "#00e5ff";
      ctx.lineWidth = Math.max(1, ui.canvas.width / 400);
      ctx.beginPath();
      ctx.moveTo(x - 10, y); ctx.lineTo(x - 3, y); ctx.moveTo(x + 3, y); ctx.lineTo(x + 10, y);
      ctx.moveTo(x, y - 10); ctx.lineTo(x, y - 3); ctx.moveTo(x, y + 3); ctx.lineTo(x, y + 10);
      ctx.stroke();
    }
    STATS.paints++;
    if (inst.pendingEventT !== null) {
      STATS.latencies.push(performance.now() - inst.pendingEventT);
      if (STATS.latencies.length > 2000) STATS.latencies.splice(0, 1000);
      inst.pendingEventT = null;
    }
    if (st.firstPaint === null) {
      st.firstPaint = performance.now() - st.t0;
      st.rec.firstPaintT = performance.now();
      STATS.firstPaintMs.push(st.firstPaint);
    }
  }
  const z = h.z_mm ? h.z_mm[k] : null;
  ui.bl.textContent = `Slice ${k + 1} / ${h.n}` + (z !== null && z !== undefined ? `\nz = ${z.toFixed(1)} mm` : "");
  const area = h.lesion_mm2 ? h.lesion_mm2[k] : null;
  ui.br.textContent = h.has_mask ? `lesion ${area ? area.toFixed(0) : 0} mm²` : "no lesion mask";
  ui.slider.value = String(k + 1);
  ui.root.dataset.slice = String(k);
  drawStrip(inst);
  drawSide(inst);
}

function drawStrip(inst) {
  const h = inst.header, c = inst.ui.strip;
  if (!h) return;
  const w = Math.max(50, Math.round(c.clientWidth || 400)), hh = 46;
  if (c.width !== w) c.width = w;
  if (c.height !== hh) c.height = hh;
  const g = c.getContext("2d");
  g.clearRect(0, 0, w, hh);
  const n = h.n, bw = w / n;
  const areas = h.lesion_mm2;
  if (areas) {
    const max = Math.max(1, ...areas);
    g.fillStyle = (h.style && h.style.color) || "#ff3b30";
    for (let i = 0; i < n; i++) {
      if (areas[i] > 0) {
        const bh = Math.max(2, (areas[i] / max) * (hh - 6));
        g.fillRect(i * bw + 0.5, hh - bh, Math.max(1, bw - 1), bh);
      }
    }
  } else {
    g.fillStyle = "#888";
    g.font = "11px sans-serif";
    g.fillText("no lesion mask: strip shows slice position only", 6, 16);
  }
  g.fillStyle = "#0a84ff";
  g.fillRect(inst.k * bw, 0, Math.max(2, bw), hh);
}

function drawSide(inst) {
  const h = inst.header, rf = inst.reformat;
  if (!h) return;
  const draw = (canvas, bmp, crossFrac) => {
    if (!bmp) return;
    if (canvas.width !== bmp.width) canvas.width = bmp.width;
    if (canvas.height !== bmp.height) canvas.height = bmp.height;
    const g = canvas.getContext("2d");
    g.drawImage(bmp, 0, 0);
    const y = ((h.n - 1 - inst.k) + 0.5) / h.n * bmp.height; // rows = Z reversed (head up)
    g.strokeStyle = "#ffd60a";
    g.lineWidth = Math.max(1, bmp.width / 300);
    g.beginPath(); g.moveTo(0, y); g.lineTo(bmp.width, y); g.stroke();
    g.strokeStyle = "rgba(0,229,255,0.6)";
    g.setLineDash([4, 4]);
    const x = crossFrac * bmp.width;
    g.beginPath(); g.moveTo(x, 0); g.lineTo(x, bmp.height); g.stroke();
    g.setLineDash([]);
  };
  const r = h.reformat || {};
  draw(inst.ui.cor, rf.cor, (r.col + 0.5) / h.width);      // coronal columns = axial columns
  draw(inst.ui.sag, rf.sag, (r.row + 0.5) / h.height);     // sagittal columns = axial rows
  inst.ui.corCap.textContent = `Coronal, row ${r.row + 1} (dashed: sagittal cut) · head up, R left`;
  inst.ui.sagCap.textContent = `Sagittal, column ${r.col + 1} (dashed: coronal cut) · head up, A left`;
}

// ------------------------------------------------------------------------------------------ navigation

function setSlice(inst, k, opts = {}) {
  const h = inst.header;
  if (!h) return;
  k = Math.min(Math.max(Math.round(k), 0), h.n - 1);
  if (k === inst.k && !opts.force) return;
  inst.k = k;
  inst.ui.root.dataset.slice = String(k); // synchronous, for tests; the pixels follow in the next frame
  schedulePaint(inst, opts.eventT);
  if (opts.user) {
    scheduleReport(inst);
    syncUrl(inst);
    if (h.link && !opts.fromLink) {
      const z = h.z_mm ? h.z_mm[k] : null;
      window.dispatchEvent(new CustomEvent(LINK_EVENT, { detail: {
        group: h.link.group, source: inst.id, frac: h.n > 1 ? k / (h.n - 1) : 0, mm: z } }));
    }
  }
}

// The viewer page's own link (study, slice, window, plane) follows the view at once, without a rerun.
function syncUrl(inst) {
  const h = inst.header;
  if (!h || !h.url_params) return;
  try {
    const u = new URL(window.location.href);
    for (const [k, v] of Object.entries(h.url_params)) u.searchParams.set(k, v);
    u.searchParams.set("slice", String(inst.k + 1));
    if (u.href !== window.location.href) window.history.replaceState(window.history.state, "", u.href);
  } catch (e) { /* the address bar is a convenience: never break the viewer for it */ }
}

function scheduleReport(inst) {
  clearTimeout(inst.reportTimer);
  // Every setStateValue reruns the script (or fragment): only report once scrolling has settled.
  inst.reportTimer = setTimeout(() => {
    if (inst.playing) return;
    const h = inst.header;
    if (!h || inst.lastReported === `${h.stack_key}|${inst.k}`) return;
    inst.lastReported = `${h.stack_key}|${inst.k}`;
    inst.api.setStateValue("slice", { study: h.study_id, index: inst.k });
  }, (inst.header && inst.header.debounce_ms) || 400);
}

function lesionSlice(inst, dir) {
  const a = inst.header && inst.header.lesion_mm2;
  if (!a) return null;
  for (let i = inst.k + dir; i >= 0 && i < a.length; i += dir) if (a[i] > 0) return i;
  return null;
}

function togglePlay(inst, on) {
  inst.playing = on === undefined ? !inst.playing : on;
  inst.ui.play.textContent = inst.playing ? "Pause" : "Play";
  if (!inst.playing) { scheduleReport(inst); return; }
  inst.playLast = performance.now();
  const step = (t) => {
    if (!inst.playing || !inst.ui.root.isConnected) { inst.playing = false; return; }
    const fps = Number(inst.ui.fps.value) || 10;
    if (t - inst.playLast >= 1000 / fps) {
      inst.playLast = t;
      const n = inst.header.n;
      setSlice(inst, (inst.k + 1) % n, { user: true });
    }
    requestAnimationFrame(step);
  };
  requestAnimationFrame(step);
}

// Ask Python for the full payload of `key`, and ask again every 1.5 s until that stack is here (a request
// whose rerun was interrupted by another one must not leave the viewer waiting for ever).
function requestStack(inst, key) {
  const now = performance.now();
  clearTimeout(inst.needTimer);
  if (inst.needKey !== key || now - (inst.needT || 0) > 1500) {
    inst.needKey = key;
    inst.needT = now;
    STATS.needs++;
    inst.api.setStateValue("need", { key, token: Math.random().toString(36).slice(2) });
  }
  inst.needTimer = setTimeout(() => {
    const h = inst.wantKey;
    if (h === key && (!inst.stack || inst.stack.key !== key) && inst.ui.root.isConnected) requestStack(inst, key);
  }, 1600);
}

// The event's own timestamp (same clock as performance.now()), so input queueing counts in the latency.
function evT(e) {
  const t = e && e.timeStamp;
  return typeof t === "number" && t > 0 && t <= performance.now() ? t : performance.now();
}

function wire(inst) {
  const ui = inst.ui;
  ui.stage.addEventListener("wheel", (e) => {
    e.preventDefault();
    const px = e.deltaMode === 1 ? e.deltaY * 33 : e.deltaMode === 2 ? e.deltaY * 400 : e.deltaY;
    let steps = 0;
    if (Math.abs(px) >= 50) {
      steps = Math.sign(px); // one mouse-wheel notch = one slice
      inst.wheelAcc = 0;
    } else {
      inst.wheelAcc += px;   // trackpads send many small deltas
      if (Math.abs(inst.wheelAcc) >= 50) { steps = Math.sign(inst.wheelAcc); inst.wheelAcc = 0; }
    }
    if (steps) setSlice(inst, inst.k - steps, { user: true, eventT: evT(e) }); // wheel down = down the body
  }, { passive: false });
  ui.root.addEventListener("keydown", (e) => {
    const h = inst.header;
    if (!h) return;
    const page = Math.max(1, Math.round(h.n / 10));
    const map = { ArrowUp: inst.k + 1, ArrowRight: inst.k + 1, ArrowDown: inst.k - 1, ArrowLeft: inst.k - 1,
                  PageUp: inst.k + page, PageDown: inst.k - page, Home: 0, End: h.n - 1 };
    if (e.key in map) {
      e.preventDefault();
      setSlice(inst, map[e.key], { user: true, eventT: evT(e) });
    } else if (e.key === " ") {
      e.preventDefault();
      togglePlay(inst);
    }
  });
  ui.stage.addEventListener("pointerdown", () => ui.root.focus({ preventScroll: true }));
  ui.canvas.addEventListener("click", (e) => {
    const h = inst.header;
    if (!h) return;
    const r = ui.canvas.getBoundingClientRect();
    const col = Math.floor((e.clientX - r.left) / r.width * h.width);
    const row = Math.floor((e.clientY - r.top) / r.height * h.height);
    if (col < 0 || row < 0 || col >= h.width || row >= h.height) return;
    inst.probe = { z: inst.k, row, col };
    schedulePaint(inst);
    inst.api.setTriggerValue("probe", { z: inst.k, row, col });
  });
  ui.slider.addEventListener("input", () => setSlice(inst, Number(ui.slider.value) - 1, { user: true, eventT: performance.now() }));
  ui.prev.addEventListener("click", () => setSlice(inst, inst.k - 1, { user: true, eventT: performance.now() }));
  ui.next.addEventListener("click", () => setSlice(inst, inst.k + 1, { user: true, eventT: performance.now() }));
  ui.play.addEventListener("click", () => togglePlay(inst));
  ui.fps.addEventListener("input", () => { ui.fpsVal.textContent = ui.fps.value; });
  ui.lesPrev.addEventListener("click", () => { const k = lesionSlice(inst, -1); if (k !== null) setSlice(inst, k, { user: true }); });
  ui.lesNext.addEventListener("click", () => { const k = lesionSlice(inst, 1); if (k !== null) setSlice(inst, k, { user: true }); });
  ui.strip.addEventListener("click", (e) => {
    const h = inst.header;
    if (!h) return;
    const r = ui.strip.getBoundingClientRect();
    setSlice(inst, Math.floor((e.clientX - r.left) / r.width * h.n), { user: true, eventT: performance.now() });
  });
  const sideJump = (canvas) => (e) => {
    const h = inst.header;
    if (!h) return;
    const r = canvas.getBoundingClientRect();
    const fromTop = Math.floor((e.clientY - r.top) / r.height * h.n);
    setSlice(inst, h.n - 1 - fromTop, { user: true, eventT: performance.now() });
  };
  ui.cor.addEventListener("click", sideJump(ui.cor));
  ui.sag.addEventListener("click", sideJump(ui.sag));
  inst.onLink = (e) => {
    const d = e.detail, h = inst.header;
    if (!h || !h.link || d.group !== h.link.group || d.source === inst.id) return;
    let k;
    if (h.link.mode === "mm" && d.mm !== null && h.z_mm) {
      let best = 0;
      for (let i = 1; i < h.n; i++) if (Math.abs(h.z_mm[i] - d.mm) < Math.abs(h.z_mm[best] - d.mm)) best = i;
      k = best;
    } else {
      k = Math.round(d.frac * (h.n - 1));
    }
    setSlice(inst, k, { user: true, fromLink: true });
  };
  window.addEventListener(LINK_EVENT, inst.onLink);
  inst.onResize = () => { fitCanvas(inst); drawStrip(inst); };
  window.addEventListener("resize", inst.onResize);
  if (window.ResizeObserver) {
    inst.resizeObs = new ResizeObserver(() => inst.onResize());
    inst.resizeObs.observe(ui.stage);
  }
}

// Display size: as wide as the stage allows, never taller than max_height, aspect from the pixel spacing.
// (The canvas keeps the image's own resolution; the browser scales it, which costs nothing per slice.)
function fitCanvas(inst) {
  const h = inst.header, ui = inst.ui;
  if (!h) return;
  const cw = ui.canvas.width, ch = ui.canvas.height;
  const availW = ui.stage.clientWidth || cw;
  const maxH = h.max_height || 600;
  const dispH = Math.max(1, Math.min(maxH, availW * ch / cw));
  ui.canvas.style.width = `${Math.round(dispH * cw / ch)}px`;
  ui.canvas.style.height = `${Math.round(dispH)}px`;
}

function updateButtons(inst) {
  const h = inst.header, ui = inst.ui;
  const hasLesion = !!(h.lesion_mm2 && h.lesion_mm2.some((a) => a > 0));
  ui.lesPrev.disabled = !hasLesion;
  ui.lesNext.disabled = !hasLesion;
  ui.slider.max = String(h.n);
  ui.slider.disabled = h.n < 2;
  ui.play.disabled = h.n < 2;
}

export default function (component) {
  const { data, parentElement, setStateValue, setTriggerValue } = component;
  STATS.lastRender = performance.now();
  let inst = INSTANCES.get(parentElement);
  if (!inst) {
    inst = makeInstance(parentElement);
    INSTANCES.set(parentElement, inst);
    const mine = inst;
    // One cleanup per instance, returned by every render path.
    inst.cleanup = () => {
      clearTimeout(mine.reportTimer);
      clearTimeout(mine.needTimer);
      mine.playing = false;
      window.removeEventListener(LINK_EVENT, mine.onLink);
      window.removeEventListener("resize", mine.onResize);
      if (mine.resizeObs) mine.resizeObs.disconnect();
      if (INSTANCES.get(parentElement) === mine) INSTANCES.delete(parentElement);
    };
  }
  inst.api = { setStateValue, setTriggerValue };
  let parsed;
  try {
    parsed = parsePayload(data);
  } catch (err) {
    inst.ui.tl.textContent = String(err.message || err);
    return inst.cleanup;
  }
  const { header, blobs } = parsed;
  inst.wantKey = header.stack_key;  // the stack Python wants shown now
  const newStack = !inst.stack || inst.stack.key !== header.stack_key;
  STATS.renders++;
  if (header.light) {
    STATS.lightRenders++;
    if (newStack) {
      // Python believes we hold this stack but we do not (remounted, or its message was lost): ask for it.
      // Until it arrives the previous image stays; nothing from this header is applied.
      requestStack(inst, header.stack_key);
      return inst.cleanup;
    }
  }
  const prevHeader = inst.header;
  inst.header = header;
  inst.blobs = blobs;
  const ui = inst.ui;
  ui.root.dataset.stackKey = header.stack_key;
  ui.root.dataset.n = String(header.n);
  ui.tl.textContent = header.study_label;
  ui.tr.textContent = header.window_label;
  const cw = header.width, ch = Math.max(1, Math.round(header.height * header.aspect));
  if (ui.canvas.width !== cw) ui.canvas.width = cw;
  if (ui.canvas.height !== ch) ui.canvas.height = ch;
  fitCanvas(inst);
  updateButtons(inst);
  ui.side.style.display = header.side === false ? "none" : "";
  if (prevHeader && prevHeader.style && header.style && prevHeader.style.color !== header.style.color) inst.tints.clear();
  // Python-side navigation (new study, URL, "open at slice") applies only when its sequence changes.
  const nav = header.nav || { slice: 0, seq: 0 };
  const navKey = `${header.study_id}|${nav.seq}`;
  if (newStack && (!prevHeader || prevHeader.study_id !== header.study_id)) {
    inst.k = nav.slice;
    inst.probe = null;
    inst.navSeq = navKey;
  } else if (inst.navSeq !== navKey) {
    inst.k = Math.min(Math.max(nav.slice, 0), header.n - 1);
    inst.navSeq = navKey;
  }
  inst.k = Math.min(Math.max(inst.k, 0), header.n - 1);
  syncUrl(inst);
  if (newStack) {
    ui.root.dataset.ready = "0";
    ui.root.dataset.decoded = "0";
    inst.tints.clear();
    decodeStack(inst, header, blobs).catch((err) => { ui.tl.textContent = "decode failed: " + err; });
  }
  decodeReformats(inst, header, blobs).catch(() => {});
  schedulePaint(inst);
  return inst.cleanup;
}
